"""Every model family runs through the engine with every feature the studio has: live
previews at every step (the last one is the result), cancel within a step, reproducible
seeds, metadata of what ran, and image→image and inpaint where the family has them.

The models are tiny random-weight pipelines of each family's real layout, built offline
(tests/engine/tiny_families.py)."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from PIL import Image

from studio.core import families
from studio.core.branches import branch_of
from studio.core.catalog import model_defaults
from studio.core.request import GenerationRequest, Mode
from studio.core.settings import EngineSettings
from studio.engine.family_runtime import family_of
from studio.engine.generate import Engine
from tests.engine.conftest import RecordingReporter
from tests.engine.tiny_families import FAMILIES, build

# the fixture's name → the family the studio recognises in it
EXPECTED = {
    "sd1": "sd1",
    "sd2v": "sd2",
    "sdxl": "sdxl",
    "sd3": "sd3",
    "flux": "flux-dev",
    "flux2_klein": "flux2-klein",
    "qwen_image": "qwen-image",
    "z_image": "z-image",
    "chroma": "chroma",
}
SIZE = 64


pytestmark = pytest.mark.usefixtures("one_thread")  # tiny models: one thread is faster


@pytest.fixture(scope="module")
def folders(tmp_path_factory: pytest.TempPathFactory) -> dict[str, str]:
    root = tmp_path_factory.mktemp("families")
    return {name: str(build(name, root / name)) for name in FAMILIES}


@pytest.fixture(scope="module")
def engines() -> dict[str, Engine]:
    return {method: Engine(EngineSettings(preview_method=method)) for method in ("vae", "linear")}


def _request(model: str, **changes) -> GenerationRequest:  # noqa: ANN003
    base = GenerationRequest(
        prompt="a red circle", model=model, width=SIZE, height=SIZE, steps=3, seed=5
    )
    return base.replace(**changes)


def _picture() -> Image.Image:
    rgb = np.zeros((SIZE, SIZE, 3), np.uint8)
    rgb[:, :, 2] = 200
    rgb[16:48, 16:48] = (230, 200, 30)
    return Image.fromarray(rgb)


def _mask() -> Image.Image:
    mask = np.zeros((SIZE, SIZE), np.uint8)
    mask[16:48, 16:48] = 255
    return Image.fromarray(mask)


def _small(image: Image.Image, like: np.ndarray) -> np.ndarray:
    size = (like.shape[1], like.shape[0])
    return np.asarray(image.convert("RGB").resize(size, Image.Resampling.BOX), np.float32)


@pytest.mark.parametrize("fixture", FAMILIES, scope="module")
def test_each_family_is_recognised_with_its_defaults(folders, fixture: str) -> None:
    from pathlib import Path

    family = families.of_folder(Path(folders[fixture]))
    assert family is not None and family.name == EXPECTED[fixture]
    defaults = model_defaults(folders[fixture])
    assert defaults["scheduler"] == family.default_sampler
    assert defaults["steps"] == family.default_steps
    offered = family.samplers or families.by_name("sd1").samplers
    assert family.default_sampler in (offered or (family.default_sampler,))


@pytest.mark.parametrize("fixture", FAMILIES, scope="module")
def test_text_to_image_previews_every_step_and_ends_on_the_result(
    engines, folders, fixture: str
) -> None:
    engine = engines["vae"]
    reporter = RecordingReporter()
    result = engine.run(_request(folders[fixture]), reporter)
    pipe = engine.models.pipeline(folders[fixture], Mode.TEXT_TO_IMAGE)
    assert family_of(pipe).name == EXPECTED[fixture]
    assert result.images[0].size == (SIZE, SIZE) and not result.cancelled
    steps = [p for p in reporter.steps if p.stage == "generate"]
    assert [p.step for p in steps] == list(range(1, len(steps) + 1)) and steps
    assert all(p.preview is not None for p in steps)
    # the VAE preview of the last step is the picture itself
    last = steps[-1].preview.astype(np.float32)
    assert np.abs(last - _small(result.images[0], last)).mean() < 3.0
    # the metadata records what ran: this family's sampler
    assert result.stages[0].scheduler in (family_of(pipe).samplers or (result.request.scheduler,))
    assert result.request.scheduler == result.stages[0].scheduler


@pytest.mark.parametrize("fixture", FAMILIES, scope="module")
def test_the_linear_preview_is_fitted_for_a_family_of_no_known_projection(
    engines, folders, fixture: str
) -> None:
    engine = engines["linear"]
    reporter = RecordingReporter()
    engine.run(_request(folders[fixture], steps=4), reporter)
    preview = reporter.steps[-1].preview
    # at latent size (a projection, not a decode), for every family
    assert preview is not None and preview.shape[0] < SIZE
    # A window takes its steps in batches (30 a second): the previews of steps 2–4, made
    # in one go (two estimates and the last latents), are each step's own, as made alone.
    batched = RecordingReporter()
    batched.frame_interval = 3600.0
    engine.run(_request(folders[fixture], steps=4), batched)
    assert [p.step for p in batched.steps] == [1, 2, 3, 4]
    for alone, together in zip(reporter.steps, batched.steps, strict=True):
        assert np.array_equal(alone.preview, together.preview)


@pytest.mark.parametrize("fixture", ["flux", "flux2_klein", "qwen_image", "chroma"])
def test_the_linear_preview_of_tokens_is_the_preview_of_their_grid(
    engines, folders, fixture: str
) -> None:
    """Packing families' latents are projected as tokens, each token's pixels put in their
    rows after: the picture must be the one the unpacked grid gives, pixel for pixel."""
    from studio.engine import family_runtime
    from studio.engine.preview import Previewer, coefficients_for

    engine = engines["linear"]
    engine.run(_request(folders[fixture], steps=2))  # loads it
    pipe = engine.models.pipeline(folders[fixture], Mode.TEXT_TO_IMAGE)
    grid = family_runtime.token_grid(pipe, SIZE, SIZE)
    assert grid is not None
    rows, columns, patch = grid
    channels = len(coefficients_for(pipe)[0]) * patch * patch
    tokens = torch.randn(2, rows * columns, channels, generator=torch.Generator().manual_seed(3))

    def unpack(latents: torch.Tensor) -> torch.Tensor:
        return family_runtime.unpack(pipe, latents, SIZE, SIZE)

    made = [
        Previewer("linear", coefficients=coefficients_for(pipe), unpack=unpack, tokens=tokens_)
        .start(tokens)
        .collect()
        for tokens_ in (grid, None)
    ]
    assert made[0].shape == (rows * patch, 2 * columns * patch, 3)  # the batch side by side
    assert made[0].flags["C_CONTIGUOUS"]  # the window wraps its bytes as they are
    assert np.abs(made[0].astype(int) - made[1].astype(int)).max() <= 1  # float rounding


def test_a_pipeline_given_another_vae_previews_with_that_vaes_colours(engines, folders) -> None:
    """The previewer is kept per pipeline, for its VAE: a VAE put in its place gets its own
    projection, fitted from it (its encoder reads red as blue and blue as red here)."""
    import copy

    from studio.engine.preview import Previewer, fitted_coefficients

    engine = engines["linear"]
    engine.run(_request(folders["sd1"], steps=2))  # loads it
    pipe = engine.models.pipeline(folders["sd1"], Mode.TEXT_TO_IMAGE)
    first = engine._previewer(pipe, SIZE, SIZE)
    assert engine._previewer(pipe, SIZE, SIZE) is first  # kept between runs
    original = pipe.vae
    swapped = copy.deepcopy(original)
    with torch.no_grad():
        swapped.encoder.conv_in.weight.copy_(original.encoder.conv_in.weight[:, [2, 1, 0]])
    latents = torch.randn(1, 4, 8, 8, generator=torch.Generator().manual_seed(1))
    try:
        pipe.vae = swapped
        shown = engine._previewer(pipe, SIZE, SIZE).start(latents).collect().astype(int)
    finally:
        pipe.vae = original
    expected = Previewer("linear", coefficients=fitted_coefficients(swapped)).start(latents)
    assert np.abs(shown - expected.collect().astype(int)).max() <= 1
    old = first.start(latents).collect().astype(int)
    assert np.abs(shown - old).mean() > 10  # the old VAE's colours are another picture


@pytest.mark.parametrize("fixture", FAMILIES, scope="module")
def test_one_step_gives_a_picture(engines, folders, fixture: str) -> None:
    """A single step (distilled models, or a quick look): Qwen-Image's schedule stretched to
    its terminal σ made diffusers' one σ NaN, and the job failed as out of range."""
    result = engines["linear"].run(_request(folders[fixture], steps=1))
    assert len(result.images) == 1 and result.stages[0].steps == 1


@pytest.mark.parametrize("fixture", FAMILIES, scope="module")
def test_same_seed_same_pixels_and_cancel_within_a_step(engines, folders, fixture: str) -> None:
    engine = engines["vae"]
    request = _request(folders[fixture], steps=4)
    first = np.asarray(engine.run(request).images[0])
    again = np.asarray(engine.run(request).images[0])
    assert np.array_equal(first, again)
    reporter = RecordingReporter(cancel_at=2, engine=engine)
    result = engine.run(request, reporter)
    assert result.cancelled and result.images == []
    assert max(p.step for p in reporter.steps) == 2


@pytest.mark.parametrize("fixture", FAMILIES, scope="module")
def test_every_offered_sampler_runs_and_continues_exactly_from_a_step(
    engines, folders, fixture: str
) -> None:
    """A sampler the window offers for a family runs (Flux once offered flow Heun, which
    takes no σ schedule and failed before the first step), and a branch continued from
    its step 1 with nothing changed gives the parent's pixels bit for bit."""
    engine = engines["linear"]
    family = family_of(engine.models.pipeline(folders[fixture], Mode.TEXT_TO_IMAGE))
    offered = family.samplers or ("Euler a", "DPM++ 2M SDE", "Heun")  # SD: tests/engine/
    for name in offered:  # test_branching.py runs every one on the embedded model
        parent = engine.run(_request(folders[fixture], steps=3, scheduler=name))
        assert parent.request.scheduler == name
        branch = engine.run(branch_of(parent.request, parent.request, 1).request)
        assert np.array_equal(np.asarray(branch.images[0]), np.asarray(parent.images[0])), name


@pytest.mark.parametrize("fixture", FAMILIES, scope="module")
def test_image_to_image_and_inpaint_where_the_family_has_them(
    engines, folders, fixture: str
) -> None:
    engine = engines["vae"]
    family = families.of_folder(__import__("pathlib").Path(folders[fixture]))
    ran = []
    for mode in (Mode.IMAGE_TO_IMAGE, Mode.INPAINT):
        if mode.value not in family.pipelines:
            continue
        request = _request(
            folders[fixture],
            mode=mode,
            init_image=_picture(),
            mask=_mask() if mode is Mode.INPAINT else None,
            strength=0.6,
            steps=4,
        )
        reporter = RecordingReporter()
        result = engine.run(request, reporter)
        assert result.images[0].size == (SIZE, SIZE), mode
        assert reporter.steps and reporter.steps[-1].preview is not None
        ran.append(mode)
    assert ran or fixture == "flux2_klein"  # Klein has inpaint only (and edit)


@pytest.mark.parametrize("fixture", FAMILIES, scope="module")
def test_the_engine_draws_what_the_bare_pipeline_draws(engines, folders, fixture: str) -> None:
    """The studio's guidance arguments, sampler and decode give the pipeline's own picture."""
    from studio.engine.generate import guidance_arguments

    engine = engines["vae"]
    request = _request(folders[fixture], negative_prompt="blurry", cfg_scale=3.0)
    ours = np.asarray(engine.run(request).images[0], np.int16)
    pipe = engine.models.pipeline(folders[fixture], Mode.TEXT_TO_IMAGE)  # its sampler now
    bare = pipe(
        prompt=request.prompt,
        width=SIZE,
        height=SIZE,
        num_inference_steps=request.steps,
        generator=[torch.Generator("cpu").manual_seed(request.seed)],
        **guidance_arguments(pipe, request.cfg_scale, request.negative_prompt),
    ).images[0]
    assert np.abs(ours - np.asarray(bare, np.int16)).max() <= 2


@pytest.mark.parametrize("fixture", FAMILIES, scope="module")
def test_the_guidance_controls_that_apply_change_the_picture(
    engines, folders, fixture: str
) -> None:
    engine = engines["vae"]
    family = families.of_folder(__import__("pathlib").Path(folders[fixture]))
    request = _request(folders[fixture], negative_prompt="blurry", cfg_scale=5.0, steps=3)
    plain = np.asarray(engine.run(request).images[0], np.int16)
    # dynamic thresholding works on x0, which every family has
    thresholded = engine.run(request.replace(dynamic_thresholding=True, threshold_max=0.05))
    assert np.abs(np.asarray(thresholded.images[0], np.int16) - plain).mean() > 0.5
    if family.guidance.cfg_rescale:
        # (tiny random text encoders barely tell prompts apart: the change is small)
        rescaled = engine.run(request.replace(cfg_rescale=1.0)).images[0]
        assert not np.array_equal(np.asarray(rescaled, np.int16), plain)
    # the CFG slider and the negative prompt do what the window says they do (Z-Image ran
    # unguided whatever they said)
    if family.guidance.negative_prompt:
        other = engine.run(request.replace(negative_prompt="a blue square")).images[0]
        assert not np.array_equal(np.asarray(other, np.int16), plain)
    if family.guidance.scale:
        weaker = engine.run(request.replace(cfg_scale=2.0)).images[0]
        assert not np.array_equal(np.asarray(weaker, np.int16), plain)


def test_deriving_a_mode_keeps_the_models_precision(folders) -> None:
    """from_pipe casts the shared components to float32 unless told otherwise: image→image
    would turn a half-precision model (on a GPU) to float32, for every mode."""
    from studio.engine.models import ModelManager

    models = ModelManager(EngineSettings(dtype="bfloat16"))
    base = models.pipeline(folders["flux"], Mode.TEXT_TO_IMAGE)
    models.pipeline(folders["flux"], Mode.INPAINT)
    assert base.transformer.dtype == torch.bfloat16 and base.vae.dtype == torch.bfloat16


@pytest.mark.parametrize(
    ("family_name", "vae_config"),
    [
        ("sdxl", {"block_out_channels": [128, 256, 512, 512], "latent_channels": 4}),
        ("sd3", {"block_out_channels": [128, 256, 512, 512], "latent_channels": 16}),
        ("flux-dev", {"block_out_channels": [128, 256, 512, 512], "latent_channels": 16}),
        ("chroma", {"block_out_channels": [128, 256, 512, 512], "latent_channels": 16}),
    ],
)
def test_published_projections_fit_only_their_own_vae(family_name: str, vae_config) -> None:  # noqa: ANN001
    """A family's published latent→RGB rows are used with the family's real VAE (one row per
    latent channel); a VAE of another shape (the tiny test models, a fine-tune's own) gets a
    projection fitted from itself instead."""
    family = families.by_name(family_name)
    assert family.preview is not None
    assert len(family.preview[0]) == vae_config["latent_channels"] == family.latent_channels
    assert family.preview_fits(vae_config)
    assert not family.preview_fits({**vae_config, "latent_channels": 32})
    assert not family.preview_fits({**vae_config, "block_out_channels": [32, 64]})
