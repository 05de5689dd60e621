"""Every mode end to end on tiny random-weight pipelines: sizes, previews, cancel, seeds."""

from __future__ import annotations

import numpy as np
import pytest
from PIL import Image

from studio.core.request import GenerationRequest, Mode, Upscaler
from studio.core.schedulers import SCHEDULER_NAMES, SCHEDULERS
from tests.engine.conftest import RecordingReporter


def pixels(image: Image.Image) -> np.ndarray:
    return np.asarray(image, dtype=np.int16)


@pytest.fixture
def base(tiny_sd: str) -> GenerationRequest:
    return GenerationRequest(
        prompt="a red circle", model=tiny_sd, width=32, height=32, steps=3, seed=11
    )


@pytest.fixture
def picture() -> Image.Image:
    gradient = np.linspace(0, 255, 32, dtype=np.uint8)
    rgb = np.stack(
        [
            np.tile(gradient, (32, 1)),
            np.tile(gradient[:, None], (1, 32)),
            np.full((32, 32), 128, np.uint8),
        ],
        axis=-1,
    )
    return Image.fromarray(rgb)


def test_text_to_image_reports_every_step_with_a_preview(engine, base) -> None:
    reporter = RecordingReporter()
    result = engine.run(base.replace(batch_size=2), reporter)
    assert [im.size for im in result.images] == [(32, 32), (32, 32)]
    assert result.seeds == [11, 12] and not result.cancelled
    assert [p.step for p in reporter.steps] == [1, 2, 3]
    assert all(p.total == 3 for p in reporter.steps)
    # the batch side by side, at latent size: a model of no known latent space (this
    # random one) gets a projection fitted from its own VAE, not another model's
    vae_scale = 2 ** (
        len(engine.models.pipeline(base.model, Mode.TEXT_TO_IMAGE).vae.config.block_out_channels)
        - 1
    )  # noqa: E501
    side = 32 // vae_scale
    assert all(
        p.preview.shape == (side, 2 * side, 3) and p.preview.dtype == np.uint8
        for p in reporter.steps
    )
    assert result.timings["generate"] > 0


def test_same_request_same_pixels(engine, base) -> None:
    first = engine.run(base).images[0]
    again = engine.run(base).images[0]
    assert np.array_equal(pixels(first), pixels(again))
    other = engine.run(base.replace(seed=12)).images[0]
    assert not np.array_equal(pixels(first), pixels(other))


def test_any_image_of_a_batch_can_be_made_again_alone(engine, base) -> None:
    batch = engine.run(base.replace(batch_size=3)).images
    alone = engine.run(base.replace(seed=13)).images[0]
    assert np.abs(pixels(batch[2]) - pixels(alone)).max() <= 2


def test_random_seed_is_resolved_and_recorded(engine, base) -> None:
    result = engine.run(base.replace(seed=-1))
    assert 0 <= result.request.seed < 2**32
    assert result.seeds == [result.request.seed]
    again = engine.run(result.request).images[0]
    assert np.array_equal(pixels(again), pixels(result.images[0]))


def test_cancel_at_a_step_returns_nothing_and_the_engine_runs_on(engine, base) -> None:
    reporter = RecordingReporter(cancel_at=2, engine=engine)
    result = engine.run(base.replace(steps=10), reporter)
    assert result.cancelled and result.images == []
    assert [p.step for p in reporter.steps] == [1, 2]  # stopped within one step
    after = engine.run(base)
    assert not after.cancelled and len(after.images) == 1


def test_mode_switches_share_one_loaded_model(engine, base, picture) -> None:
    engine.models.unload()
    loads = engine.models.weight_loads
    mask = Image.new("L", (32, 32), 0)
    mask.paste(255, (8, 8, 24, 24))
    engine.run(base)
    engine.run(base.replace(mode=Mode.IMAGE_TO_IMAGE, init_image=picture, strength=0.5))
    engine.run(base.replace(mode=Mode.INPAINT, init_image=picture, mask=mask))
    engine.run(base)
    assert engine.models.weight_loads == loads + 1
    txt = engine.models.pipeline(base.model, Mode.TEXT_TO_IMAGE)
    inpaint = engine.models.pipeline(base.model, Mode.INPAINT)
    assert inpaint.unet is txt.unet and inpaint.vae is txt.vae


def test_inpaint_repaints_the_mask_and_keeps_the_rest_exactly(engine, base, picture) -> None:
    mask = Image.new("L", (32, 32), 0)
    mask.paste(255, (8, 8, 24, 24))
    request = base.replace(
        mode=Mode.INPAINT, init_image=picture, mask=mask, mask_blur=0, strength=1.0
    )
    out = pixels(engine.run(request).images[0])
    original = pixels(picture)
    outside = np.asarray(mask) == 0
    assert np.array_equal(out[outside], original[outside])
    assert np.abs(out[~outside] - original[~outside]).mean() > 5


def test_inpaint_only_masked_works_on_a_crop_of_a_larger_image(engine, base) -> None:
    big = Image.new("RGB", (96, 64), (40, 90, 200))
    mask = Image.new("L", big.size, 0)
    mask.paste(255, (70, 40, 80, 50))
    request = base.replace(
        mode=Mode.INPAINT,
        init_image=big,
        mask=mask,
        mask_blur=0,
        inpaint_only_masked=True,
        inpaint_padding=4,
        strength=1.0,
    )
    out = pixels(engine.run(request).images[0])
    assert out.shape == (64, 96, 3)  # the whole picture comes back
    original = pixels(big)
    outside = np.asarray(mask) == 0
    assert np.array_equal(out[outside], original[outside])
    assert np.abs(out[~outside] - original[~outside]).mean() > 5


def test_x4_upscale_mode(engine, base, tiny_upscaler, picture) -> None:
    reporter = RecordingReporter()
    request = base.replace(mode=Mode.UPSCALE, init_image=picture, upscale_model=tiny_upscaler)
    result = engine.run(request, reporter)
    assert result.images[0].size == (128, 128)
    assert reporter.steps and {p.stage for p in reporter.steps} == {"upscale"}


@pytest.mark.parametrize(("scheduler", "unet_calls"), [("Heun", 7), ("PNDM", 5)])
def test_x4_upscale_reports_its_steps_whatever_the_scheduler(
    engine, base, tiny_upscaler, picture, monkeypatch, scheduler, unet_calls
) -> None:
    # The ×4 pipeline calls the legacy `callback` once per scheduler step, not once per
    # timestep: Heun runs 2 timesteps a step after the first (4 steps are 7 timesteps),
    # PNDM one warm-up timestep before its first call (4 steps are 5).
    pipe = engine.models.upscaler(tiny_upscaler)
    card = {"default_scheduler": scheduler, "default_steps": 4}
    monkeypatch.setattr(pipe, "_studio_card", card)
    calls: list[int] = []
    hook = pipe.unet.register_forward_pre_hook(lambda *args: calls.append(1))
    reporter = RecordingReporter()
    request = base.replace(mode=Mode.UPSCALE, init_image=picture, upscale_model=tiny_upscaler)
    try:
        engine.run(request, reporter)
    finally:
        hook.remove()
    assert len(calls) == unet_calls  # the scheduler asked for ran
    assert [(p.step, p.total) for p in reporter.steps] == [(1, 4), (2, 4), (3, 4), (4, 4)]
    assert reporter.steps[-1].preview is not None  # the last step always has one


def test_text_to_image_then_x4_is_a_cascade(engine, base, tiny_upscaler) -> None:
    reporter = RecordingReporter()
    request = base.replace(upscaler=Upscaler.X4, upscale_model=tiny_upscaler, batch_size=2)
    result = engine.run(request, reporter)
    assert [im.size for im in result.images] == [(128, 128), (128, 128)]
    assert [p.stage for p in reporter.steps][:3] == ["generate"] * 3
    assert "upscale" in {p.stage for p in reporter.steps}


def test_hires_fix_doubles_the_size(engine, base) -> None:
    reporter = RecordingReporter()
    result = engine.run(base.replace(upscaler=Upscaler.HIRES, upscale_strength=0.4), reporter)
    assert result.images[0].size == (64, 64)
    assert "hires" in {p.stage for p in reporter.steps}


@pytest.mark.parametrize("scheduler", SCHEDULER_NAMES)
def test_every_scheduler_runs_with_every_guidance_control(engine, base, scheduler) -> None:
    request = base.replace(scheduler=scheduler, cfg_rescale=0.7, dynamic_thresholding=True)
    result = engine.run(request)
    assert result.images[0].size == (32, 32)
    assert pixels(result.images[0]).std() > 0  # a picture, not a flat fill
    # the scheduler that ran is the one named, with its settings (Karras sigmas, SDE…)
    ran = engine.models.pipeline(base.model, Mode.TEXT_TO_IMAGE).scheduler
    class_name, overrides = SCHEDULERS[scheduler]
    assert type(ran).__name__ == class_name
    assert {key: ran.config[key] for key in overrides} == overrides


def test_guidance_controls_change_the_picture(engine, base) -> None:
    plain = pixels(engine.run(base.replace(cfg_scale=12)).images[0])
    rescaled = pixels(engine.run(base.replace(cfg_scale=12, cfg_rescale=1.0)).images[0])
    thresholded = pixels(
        engine.run(base.replace(cfg_scale=12, dynamic_thresholding=True, threshold_max=0.5)).images[
            0
        ]
    )
    assert not np.array_equal(plain, rescaled)
    assert not np.array_equal(plain, thresholded)


def test_preview_cadence_and_methods(base, tiny_sd) -> None:
    from studio.core.settings import EngineSettings
    from studio.engine.generate import Engine

    every_two = RecordingReporter()
    Engine(EngineSettings(preview_every=2)).run(base.replace(steps=5), every_two)
    assert [p.preview is not None for p in every_two.steps] == [False, True, False, True, True]

    vae = RecordingReporter()
    Engine(EngineSettings(preview_method="vae")).run(base, vae)
    assert vae.steps[-1].preview.shape == (32, 32, 3)  # decoded at full size

    none = RecordingReporter()
    Engine(EngineSettings(preview_method="none")).run(base, none)
    assert all(p.preview is None for p in none.steps)


def test_a_preview_still_on_its_way_from_the_gpu_is_reported_a_step_later(
    engine, base, monkeypatch
) -> None:
    """On a CUDA GPU the preview's copy runs behind the UNet: the loop goes on, and the step
    is reported once the copy is done. Here every copy is made to look in flight."""
    from studio.engine.preview import PreviewCopy

    pipe = engine.models.pipeline(base.model, Mode.TEXT_TO_IMAGE)
    unet_calls = []
    hook = pipe.unet.register_forward_hook(lambda *args: unet_calls.append(1))

    class CountingReporter(RecordingReporter):
        def step(self, progress) -> None:
            self.unet_calls_seen = [*getattr(self, "unet_calls_seen", []), len(unet_calls)]
            super().step(progress)

    try:
        at_once = CountingReporter()
        engine.run(base.replace(steps=4), at_once)
        unet_calls.clear()
        monkeypatch.setattr(PreviewCopy, "in_flight", property(lambda self: True))
        later = CountingReporter()
        engine.run(base.replace(steps=4), later)
        unet_calls.clear()
        cancelled = CountingReporter(cancel_at=2, engine=engine)
        result = engine.run(base.replace(steps=10), cancelled)
    finally:
        hook.remove()
    assert at_once.unet_calls_seen == [1, 2, 3, 4]  # the CPU: each step reported at once
    assert later.unet_calls_seen == [2, 3, 4, 4]  # the loop went on; the last is not held
    # every step still arrives, in order, with its own step's preview
    assert [p.step for p in later.steps] == [1, 2, 3, 4]
    assert all(
        np.array_equal(a.preview, b.preview)
        for a, b in zip(at_once.steps, later.steps, strict=True)
    )
    # a cancel seen at step 2 stops the loop at the next step, which was already under way
    assert result.cancelled and [p.step for p in cancelled.steps] == [1, 2]
    assert len(unet_calls) == 3


def test_a_reporter_that_shows_frames_at_a_rate_gets_every_step_in_batches(engine, base) -> None:
    """A window shows at most 30 frames a second: its reporter says so, and the steps
    ending within one frame's time are reported together, each with its own preview (made
    in one go). The first step shows at once; a cancel still stops the loop within a step."""
    pipe = engine.models.pipeline(base.model, Mode.TEXT_TO_IMAGE)
    unet_calls: list[int] = []
    hook = pipe.unet.register_forward_hook(lambda *args: unet_calls.append(1))

    class FrameReporter(RecordingReporter):
        frame_interval = 3600.0  # never due by time: only the first, last and cancelled

        def step(self, progress) -> None:
            self.unet_calls_seen = [*getattr(self, "unet_calls_seen", []), len(unet_calls)]
            super().step(progress)

    def cancel_at_third_call(*args) -> None:
        if len(unet_calls) == 3:
            engine.cancel()

    try:
        at_once = RecordingReporter()
        engine.run(base.replace(steps=5), at_once)
        unet_calls.clear()
        batched = FrameReporter()
        engine.run(base.replace(steps=5), batched)
        unet_calls.clear()
        cancelling = pipe.unet.register_forward_hook(cancel_at_third_call)
        try:
            cancelled = FrameReporter()
            result = engine.run(base.replace(steps=10), cancelled)
        finally:
            cancelling.remove()
    finally:
        hook.remove()
    assert batched.unet_calls_seen == [1, 5, 5, 5, 5]
    assert [p.step for p in batched.steps] == [1, 2, 3, 4, 5]
    for alone, together in zip(at_once.steps, batched.steps, strict=True):
        assert np.array_equal(alone.preview, together.preview)
    # cancelled during step 3: the steps held back arrive with their previews, none after
    assert result.cancelled and [p.step for p in cancelled.steps] == [1, 2, 3]
    assert all(p.preview is not None for p in cancelled.steps)
    assert len(unet_calls) == 3


def test_nan_latents_fail_the_job_with_a_sentence_not_a_black_picture(engine, base) -> None:
    """Forced through the real pipeline: the UNet's prediction turns to NaN at the last step."""
    from studio.core.jobs import GenerationError

    unet = engine.models.pipeline(base.model, Mode.TEXT_TO_IMAGE).unet
    calls: list[int] = []

    def poison(module, args, kwargs, output):  # noqa: ANN001, ANN202
        calls.append(1)
        if len(calls) == base.steps:
            output[0].fill_(float("nan")) if isinstance(output, tuple) else output.sample.fill_(
                float("nan")
            )
        return output

    hook = unet.register_forward_hook(poison, with_kwargs=True)
    try:
        with pytest.raises(GenerationError, match="The denoising went out of range"):
            engine.run(base.replace(scheduler="Euler"))
    finally:
        hook.remove()
    assert pixels(engine.run(base).images[0]).std() > 0  # and the next job is fine


def test_a_half_precision_decode_that_gives_nan_is_done_again_in_float32(base) -> None:
    """fp16 VAEs overflow where float32 does not: the studio decodes again, and the picture
    is the float32 one (here the half precision is bfloat16, which this CPU runs)."""
    import torch

    from studio.core.settings import EngineSettings
    from studio.engine.generate import Engine

    engine = Engine(EngineSettings(dtype="bfloat16"))
    vae = engine.models.pipeline(base.model, Mode.TEXT_TO_IMAGE).vae
    real = type(vae).decode

    def overflowing(self, latents, *args, **kwargs):  # noqa: ANN001, ANN002, ANN003, ANN202
        decoded = real(self, latents, *args, **kwargs)
        if self.dtype != torch.float32:
            decoded[0].fill_(float("nan"))
        return decoded

    vae.decode = overflowing.__get__(vae)
    image = engine.run(base).images[0]
    assert pixels(image).std() > 0 and vae.dtype == torch.bfloat16  # back to its own dtype


def test_the_finite_check_sees_one_bad_value_and_no_overflow() -> None:
    """The NaN checks sum instead of testing every value: one NaN, one infinity, or two that
    would cancel (inf − inf) must still be seen, and a large half-precision picture of
    ordinary values must not overflow into a false alarm."""
    import torch

    from studio.engine.generate import _finite

    for bad in (float("nan"), float("inf"), -float("inf")):
        values = torch.zeros(1, 3, 8, 8)
        values[0, 1, 2, 3] = bad
        assert not _finite(values)
    both = torch.zeros(4)
    both[0], both[1] = float("inf"), -float("inf")
    assert not _finite(both)
    assert _finite(torch.ones(1, 3, 1024, 1024, dtype=torch.float16))


def test_a_run_of_the_loaded_model_reads_none_of_its_files(engine, base, monkeypatch) -> None:
    """Every run asks its model's family before loading (size steps, the hires refusal):
    for the loaded model it is the loaded pipeline's, not its files read again, which cost
    a tiny model's run about a percent right after its steps."""
    from studio.engine import models

    engine.run(base)  # loaded
    read: list[str] = []
    real = models.model_family
    monkeypatch.setattr(models, "model_family", lambda spec: read.append(spec) or real(spec))
    result = engine.run(base.replace(seed=12))
    assert read == [] and result.images[0].size == (32, 32)
