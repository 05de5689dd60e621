"""The live preview shows the picture being made: in every mode, with every sampler and
both preview methods, the last step's preview is the result, and an image→image run
starts from the input, not from its negative (the bug this holds down: the image→image
and inpaint pipelines lost the model's own latent→RGB projection and previewed with
SD 1.x's, so a blue background showed pale green).

Measured on the embedded model, whose pictures are the ones an artist sees first. The
bound on the difference (0–255, the result box-filtered to the preview's size; inside the
mask for inpaint, where the rest is the original pasted back):
- linear: 45. The fitted projection alone is 11–32 off on studio-tiny's pictures, over
  every sampler and mode and 16 prompt/seed pairs; a preview made with another model's
  projection is 78–240 off.
- vae: 2. The last frame decodes the result's own latents, so it differs only by the
  preview's rounding (0.5 on average).
"""

from __future__ import annotations

import numpy as np
import pytest
from PIL import Image

from studio.core.catalog import is_installed
from studio.core.request import GenerationRequest, Mode, Upscaler
from studio.core.schedulers import SCHEDULER_NAMES
from studio.core.settings import EngineSettings
from studio.engine.family_runtime import family_of
from studio.engine.preview import coefficients_for
from tests.engine.conftest import RecordingReporter
from tests.pictures import box_mask
from tests.pictures import yellow_square_on_blue as _input

pytestmark = pytest.mark.skipif(
    not is_installed("studio-tiny"), reason="the embedded model is not built yet"
)

BOUND = {"linear": 45.0, "vae": 2.0}
STEPS = 6
MODES = ("txt2img", "img2img", "inpaint", "hires", "x4", "x4-odd")
PROMPT = "a large yellow square in the centre on a blue background"


def _request(mode: str, scheduler: str) -> tuple[GenerationRequest, str]:
    """The request for a mode, and the stage whose previews it judges."""
    base = GenerationRequest(prompt=PROMPT, scheduler=scheduler, steps=STEPS, seed=1234)
    if mode == "img2img":
        return base.replace(mode=Mode.IMAGE_TO_IMAGE, init_image=_input(), strength=0.6), "generate"
    if mode == "inpaint":
        inpaint = base.replace(mode=Mode.INPAINT, init_image=_input(), mask=box_mask(), mask_blur=0)
        return inpaint.replace(strength=0.8), "generate"
    if mode == "hires":
        return base.replace(upscaler=Upscaler.HIRES, upscale_strength=0.5), "hires"
    if mode == "x4":
        return base.replace(mode=Mode.UPSCALE, init_image=_input().resize((32, 32))), "upscale"
    if mode == "x4-odd":  # padded to the upscaler's multiple, and its result cut back
        return base.replace(mode=Mode.UPSCALE, init_image=_input().resize((30, 21))), "upscale"
    return base, "generate"


def _small(image: Image.Image, like: np.ndarray) -> np.ndarray:
    size = (like.shape[1], like.shape[0])
    return np.asarray(image.convert("RGB").resize(size, Image.Resampling.BOX), np.float32)


@pytest.fixture(scope="module")
def engines() -> dict:
    from studio.engine.generate import Engine

    return {m: Engine(EngineSettings(preview_method=m)) for m in ("linear", "vae")}


# The hires pass is image→image on the first picture (tested above with every sampler): its
# own samplers are one of each kind of step — ancestral, multistep, PNDM's warm-up, LMS's
# history, second order, predictor-corrector. The ×4 stage runs its own card's sampler,
# whatever is chosen.
SAMPLERS_OF_MODE = {
    **{mode: SCHEDULER_NAMES for mode in ("txt2img", "img2img", "inpaint")},
    "hires": ("Euler a", "DPM++ 2M", "PNDM", "LMS", "DPM2", "UniPC"),
    "x4": SCHEDULER_NAMES[:1],
    "x4-odd": SCHEDULER_NAMES[:1],
}
CASES = [(s, mode) for mode in MODES for s in SAMPLERS_OF_MODE[mode]]


@pytest.mark.parametrize("method", ["linear", "vae"])
@pytest.mark.parametrize(("scheduler", "mode"), CASES)
def test_the_last_preview_is_the_result(engines, scheduler: str, mode: str, method: str) -> None:
    request, stage = _request(mode, scheduler)
    reporter = RecordingReporter()
    result = engines[method].run(request, reporter)
    previews = [p.preview for p in reporter.steps if p.stage == stage and p.preview is not None]
    assert previews, f"no preview in the {stage} stage"
    last = previews[-1].astype(np.float32)
    # the picture the result is, not more: as wide for its height (a padded edge shows)
    width, height = result.images[0].size
    assert abs(last.shape[1] / last.shape[0] - width / height) < 0.05, (last.shape, (width, height))
    difference = np.abs(last - _small(result.images[0], last)).mean(axis=-1)
    if mode == "inpaint":  # inside the mask, one latent pixel away from its edge
        inside = np.asarray(box_mask().resize(last.shape[1::-1], Image.Resampling.BOX)) >= 255
        eroded = inside & np.roll(inside, 1, 0) & np.roll(inside, -1, 0)
        eroded &= np.roll(inside, 1, 1) & np.roll(inside, -1, 1)
        difference = difference[eroded]
    assert difference.mean() < BOUND[method]


@pytest.mark.parametrize("scheduler", ["DPM++ 2M", "UniPC", "Euler a", "DDIM"])
def test_the_first_image_to_image_preview_shows_the_input(engines, scheduler: str) -> None:
    """Not its negative, and not noise."""
    request, _ = _request("img2img", scheduler)
    reporter = RecordingReporter()
    engines["linear"].run(request, reporter)
    first = reporter.steps[0].preview.astype(np.float32)
    expected = _small(_input(), first)
    assert np.corrcoef(first.ravel(), expected.ravel())[0, 1] > 0.5


def test_derived_pipelines_keep_the_models_folder(engines) -> None:
    models = engines["linear"].models
    base = models.pipeline("studio-tiny", Mode.TEXT_TO_IMAGE)
    for mode in (Mode.IMAGE_TO_IMAGE, Mode.INPAINT):
        derived = models.pipeline("studio-tiny", mode)
        assert derived._studio_folder == base._studio_folder
        assert family_of(derived) is family_of(base)
        assert coefficients_for(derived) == coefficients_for(base)
