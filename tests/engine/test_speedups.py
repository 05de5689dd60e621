"""Speed-ups change how fast, never what: fused attention, channels-last and a compiled UNet
draw the same picture, and a compiler that fails or a GPU out of memory costs a retry, not
the image."""

from __future__ import annotations

import threading
from collections.abc import Iterator

import numpy as np
import pytest
import torch

from studio.core.jobs import GenerationError
from studio.core.request import GenerationRequest, Mode
from studio.core.settings import EngineSettings
from studio.engine.generate import Engine
from studio.engine.guidance import AlphaDenoised, GuidanceSettings, GuidanceTap
from studio.engine.speedups import is_compiled
from tests.engine.conftest import RecordingReporter


@pytest.fixture
def base(tiny_sd: str) -> GenerationRequest:
    return GenerationRequest(
        prompt="a red circle", model=tiny_sd, width=32, height=32, steps=3, seed=11
    )


@pytest.fixture
def compiled_graphs(monkeypatch: pytest.MonkeyPatch) -> None:
    """The engine's torch.compile traced by Dynamo and AOT autograd as inductor's is (the
    same graphs, graph breaks, guards, hooks and recompiles) but run by the "aot_eager"
    backend: inductor's C++ code for the tiny UNet takes 70-100 s a graph on two cores with
    a cold cache, over the suite's limit for a test. Inductor's own compile is what
    `studio bench` times (its compiled rows). The tests that ask for this fixture keep
    what Dynamo made for each other, as the studio keeps it from one job to the next;
    their assertions hold with or without."""
    compile_ = torch.compile

    def traced(model: torch.nn.Module, mode: str) -> torch.nn.Module:
        assert mode == "default"  # the engine's mode on the CPU
        return compile_(model, backend="aot_eager")

    monkeypatch.setattr(torch, "compile", traced)


@pytest.fixture(autouse=True)
def _fresh_compiler(request: pytest.FixtureRequest) -> Iterator[None]:
    # The compiler caches what it made (or failed to make) for the UNet's code: start and
    # leave each test with none of it, but for the tests that share compiled graphs.
    shares = "compiled_graphs" in request.fixturenames
    if not shares:
        torch._dynamo.reset()
    yield
    if not shares:
        torch._dynamo.reset()


@pytest.fixture(autouse=True, scope="module")
def _no_compiled_graphs_after() -> Iterator[None]:
    yield
    torch._dynamo.reset()  # none of this module's graphs reach the next module


def _pixels(engine: Engine, request: GenerationRequest, **kwargs) -> np.ndarray:
    return np.asarray(engine.run(request, **kwargs).images[0], dtype=np.int16)


def _largest_difference(a: np.ndarray, b: np.ndarray) -> int:
    return int(np.abs(a - b).max())


def _fused(unet: torch.nn.Module) -> bool:
    processors = getattr(unet, "_orig_mod", unet).attn_processors.values()
    return all(type(p).__name__ == "FusedAttnProcessor2_0" for p in processors)


def _fused_weights(unet: torch.nn.Module) -> list[int]:
    """Identities of the fused projection weights."""
    return [id(m.weight) for name, m in unet.named_modules() if name.endswith(("to_qkv", "to_kv"))]


def test_fused_attention_and_channels_last_draw_the_same_picture(base, tiny_sd) -> None:
    plain = _pixels(Engine(), base)
    engine = Engine(EngineSettings(fuse_qkv=True, channels_last=True))
    fast = _pixels(engine, base)
    unet = engine.models.pipeline(tiny_sd, Mode.TEXT_TO_IMAGE).unet
    assert _fused(unet)
    assert unet.conv_in.weight.is_contiguous(memory_format=torch.channels_last)
    assert _largest_difference(plain, fast) <= 2  # rounding, not a different picture


def test_a_compiled_unet_draws_the_same_pictures_with_every_preview(
    base, tiny_sd, compiled_graphs
) -> None:
    eager = Engine()
    engine = Engine(EngineSettings(compile_unet=True))
    reporter = RecordingReporter()
    compiled = _pixels(engine, base, reporter=reporter)
    assert is_compiled(engine.models.pipeline(tiny_sd, Mode.TEXT_TO_IMAGE).unet)
    assert is_compiled(engine.models.pipeline(tiny_sd, Mode.IMAGE_TO_IMAGE).unet)
    # the guidance hooks see the compiled UNet's every call: a preview at every step
    assert [p.step for p in reporter.steps] == [1, 2, 3]
    assert all(p.preview is not None for p in reporter.steps)
    assert _largest_difference(_pixels(eager, base), compiled) <= 2
    assert not engine.models.compile_failed
    # the first image at a size told the user why it was slow; later ones do not
    assert any("Compiling the UNet" in message for message, _ in reporter.statuses)
    later = RecordingReporter()
    engine.run(base, later)
    assert not any("Compiling" in message for message, _ in later.statuses)


def test_guidance_that_reshapes_the_output_works_through_a_compiled_unet(
    base, compiled_graphs
) -> None:
    thresholded = base.replace(cfg_scale=12.0, dynamic_thresholding=True, cfg_rescale=0.5)
    # PNDM without CFG keeps the UNet's raw output across steps
    unguided = base.replace(cfg_scale=1.0, scheduler="PNDM")
    eager = Engine()
    engine = Engine(EngineSettings(compile_unet=True))
    assert _largest_difference(_pixels(eager, thresholded), _pixels(engine, thresholded)) <= 2
    assert _largest_difference(_pixels(eager, unguided), _pixels(engine, unguided)) <= 2
    assert not engine.models.compile_failed


def test_a_failing_compiler_costs_a_retry_not_the_image(base, tiny_sd, monkeypatch) -> None:
    def broken_backend(graph: torch.fx.GraphModule, inputs: list) -> None:
        raise RuntimeError("no working C++ compiler")

    compile_ = torch.compile
    monkeypatch.setattr(
        torch, "compile", lambda model, mode: compile_(model, backend=broken_backend)
    )
    expected = _pixels(Engine(), base)
    engine = Engine(EngineSettings(compile_unet=True))
    reporter = RecordingReporter()
    assert np.array_equal(_pixels(engine, base, reporter=reporter), expected)
    assert any("Compilation failed" in message for message, _ in reporter.statuses)
    assert [p.step for p in reporter.steps][-3:] == [1, 2, 3]  # the retry, in full
    # every pipeline of the model runs eager now, and the next job goes straight to it
    for mode in (Mode.TEXT_TO_IMAGE, Mode.IMAGE_TO_IMAGE, Mode.INPAINT):
        assert not is_compiled(engine.models.pipeline(tiny_sd, mode).unet)
    again = RecordingReporter()
    assert np.array_equal(_pixels(engine, base, reporter=again), expected)
    assert not any("Compilation failed" in message for message, _ in again.statuses)


def test_an_error_that_is_not_the_compilers_is_not_retried(base, monkeypatch) -> None:
    compile_ = torch.compile  # the "eager" backend: traced, not compiled, so quick
    monkeypatch.setattr(torch, "compile", lambda model, mode: compile_(model, backend="eager"))
    # no previews: this random model's are decoded by the VAE, which breaks here on purpose
    engine = Engine(EngineSettings(compile_unet=True, preview_method="none"))
    engine.run(base)
    pipe = engine.models.pipeline(base.model, Mode.TEXT_TO_IMAGE)

    def broken_decode(*args, **kwargs):
        raise RuntimeError("the VAE broke")

    monkeypatch.setattr(pipe.vae, "decode", broken_decode)
    reporter = RecordingReporter()
    with pytest.raises(RuntimeError, match="the VAE broke"):
        engine.run(base, reporter)
    assert len(reporter.steps) == base.steps  # the steps ran once: no retry
    assert not any("Compilation failed" in message for message, _ in reporter.statuses)
    assert is_compiled(pipe.unet) and not engine.models.compile_failed


def _tap(settings: GuidanceSettings, copy_output: bool = False) -> GuidanceTap:
    return GuidanceTap(
        settings,
        AlphaDenoised(torch.linspace(0.99, 0.01, 1000), "epsilon"),
        cancel=threading.Event(),
        batched_cfg=True,
        copy_output=copy_output,
    )


def test_with_cuda_graphs_the_pipeline_gets_its_own_copy_of_each_prediction() -> None:
    # A CUDA graph writes every call's output into the same memory; a scheduler that keeps
    # a raw prediction across steps (PNDM) must be handed a copy.
    def tap(copy_output: bool) -> GuidanceTap:
        return _tap(GuidanceSettings(cfg_scale=1.0), copy_output)

    sample, prediction = torch.randn(1, 4, 8, 8), torch.randn(1, 4, 8, 8)
    t = torch.tensor(500)
    assert tap(copy_output=False).scheduler_step(prediction, t, sample) is prediction
    copied = tap(copy_output=True).scheduler_step(prediction, t, sample)
    assert torch.equal(copied, prediction) and copied.data_ptr() != prediction.data_ptr()


DEVICES = ["cpu"] + (["cuda"] if torch.cuda.is_available() else [])


@pytest.mark.parametrize("device", DEVICES)
def test_the_studios_work_at_each_step_never_waits_for_the_device(device: str) -> None:
    """Guidance, x0 and the preview read no value back to the CPU: on a GPU that would make
    the loop wait for the GPU at every step, leaving it idle while the next is prepared."""
    from torch.utils._python_dispatch import TorchDispatchMode

    from studio.engine.preview import KNOWN_COEFFICIENTS, Previewer

    class ReadBacks(TorchDispatchMode):
        def __init__(self) -> None:
            super().__init__()
            self.seen: list[str] = []

        def __torch_dispatch__(self, func, types, args=(), kwargs=None):  # noqa: ANN001
            if func.__name__.split(".")[0] in ("item", "_local_scalar_dense"):
                self.seen.append(func.__name__)
            return func(*args, **(kwargs or {}))

    every_control = GuidanceSettings(
        cfg_scale=7.0, cfg_rescale=0.7, dynamic_thresholding=True, threshold_max=1.5
    )
    tap = _tap(every_control)
    previewer = Previewer("linear", coefficients=KNOWN_COEFFICIENTS["sd1"])
    sample = torch.randn(2, 4, 8, 8, device=device)  # CFG: unconditional and conditional
    t = torch.tensor(500.5, device=device)
    prediction = torch.randn(2, 4, 8, 8, device=device)

    def one_step() -> None:
        guided = tap._after((prediction,))[0]  # CFG rescale
        tap.scheduler_step(guided[:1], t, sample[:1])  # thresholding and x0

    one_step()  # first call: tables move to the device
    previewer.start(tap.latest_x0())
    sync_mode = torch.cuda.get_sync_debug_mode() if device == "cuda" else None
    if device == "cuda":
        torch.cuda.set_sync_debug_mode("error")  # a wait for the GPU raises
    try:
        with torch.inference_mode(), ReadBacks() as read_backs:
            one_step()
            copy = previewer.start(tap.latest_x0())
    finally:
        if sync_mode is not None:
            torch.cuda.set_sync_debug_mode(sync_mode)
    assert read_backs.seen == []
    assert copy is not None and copy.collect().shape == (8, 8, 3)


def test_a_gpu_preview_is_read_only_after_its_copy_is_done(monkeypatch) -> None:
    """The CUDA path of a preview's copy, with torch.cuda stood in for (no GPU here): the
    copy is queued without waiting, on the preview's own device, and read after it is done."""
    from studio.engine.preview import PreviewCopy

    happened: list[tuple] = []

    class Event:
        done = False

        def record(self, stream: str) -> None:
            happened.append(("record", stream))

        def query(self) -> bool:
            return self.done

        def synchronize(self) -> None:
            happened.append(("wait",))
            self.done = True

    class PinnedHost:
        def numpy(self) -> np.ndarray:
            happened.append(("read",))
            return np.zeros((1, 2, 2, 3), np.uint8)

    class GpuPreview:
        device = torch.device("cuda", 1)

        def to(self, device: str, non_blocking: bool = False) -> PinnedHost:
            happened.append(("copy", device, non_blocking))
            return PinnedHost()

    monkeypatch.setattr(torch.cuda, "Event", Event)
    monkeypatch.setattr(torch.cuda, "current_stream", lambda device: f"stream of {device}")
    copy = PreviewCopy(GpuPreview())
    assert happened == [("copy", "cpu", True), ("record", "stream of cuda:1")]
    assert copy.in_flight
    assert copy.collect().shape == (2, 2, 3)
    assert happened[2:] == [("wait",), ("read",)]
    assert not copy.in_flight


def test_out_of_gpu_memory_retries_with_memory_savers_then_puts_them_back(base, tiny_sd) -> None:
    engine = Engine(EngineSettings(fuse_qkv=True))
    expected = _pixels(engine, base)
    unet = engine.models.pipeline(tiny_sd, Mode.TEXT_TO_IMAGE).unet
    fused_weights = _fused_weights(unet)
    calls: list[int] = []

    def out_of_memory(first_only: bool):
        def hook(module: torch.nn.Module, args: tuple) -> None:
            calls.append(1)
            if not first_only or len(calls) == 1:
                raise torch.cuda.OutOfMemoryError("CUDA out of memory. Tried to allocate 2 GiB")

        return unet.register_forward_pre_hook(hook)

    hook = out_of_memory(first_only=True)
    reporter = RecordingReporter()
    try:
        retried = _pixels(engine, base, reporter=reporter)
    finally:
        hook.remove()
    assert any("Out of memory" in message for message, _ in reporter.statuses)
    assert _largest_difference(retried, expected) <= 2  # sliced attention, same picture
    assert _fused(unet)  # slicing was for that run only: the chosen attention is back
    # and back without fusing the weights again, which would allocate right after an OOM
    assert _fused_weights(unet) == fused_weights

    hook = out_of_memory(first_only=False)
    try:
        with pytest.raises(GenerationError, match="ran out of memory even with memory savers"):
            engine.run(base)
    finally:
        hook.remove()
    assert np.array_equal(_pixels(engine, base), expected)  # and the engine runs on


def test_a_retry_drops_the_step_its_failed_attempt_held_back(base, monkeypatch) -> None:
    """A step held while its preview was on its way from the GPU belongs to the attempt that
    ran out of memory: after the retry starts, it is not reported."""
    from studio.engine.preview import PreviewCopy

    monkeypatch.setattr(PreviewCopy, "in_flight", property(lambda self: True))
    engine = Engine()
    unet = engine.models.pipeline(base.model, Mode.TEXT_TO_IMAGE).unet
    calls: list[int] = []

    def out_of_memory_at_the_third_step(module: torch.nn.Module, args: tuple) -> None:
        calls.append(1)
        if len(calls) == 3:  # steps 1 and 2 done, step 2 held back
            raise torch.cuda.OutOfMemoryError("CUDA out of memory. Tried to allocate 2 GiB")

    hook = unet.register_forward_pre_hook(out_of_memory_at_the_third_step)
    reporter = RecordingReporter()
    try:
        result = engine.run(base, reporter)
    finally:
        hook.remove()
    assert result.images and any("Out of memory" in m for m, _ in reporter.statuses)
    assert [p.step for p in reporter.steps] == [1, 1, 2, 3]


def test_a_retry_of_the_x4_upscaler_with_pndm_starts_its_steps_again(
    base, tiny_upscaler, monkeypatch
) -> None:
    """PNDM's legacy callback starts at index 1, after a warm-up timestep: a retry is
    recognised by the index going back, not by a step 1."""
    from PIL import Image

    from studio.engine.preview import PreviewCopy

    monkeypatch.setattr(PreviewCopy, "in_flight", property(lambda self: True))
    engine = Engine()
    pipe = engine.models.upscaler(tiny_upscaler)
    monkeypatch.setattr(pipe, "_studio_card", {"default_scheduler": "PNDM", "default_steps": 4})
    calls: list[int] = []

    def out_of_memory_at_the_third_call(module: torch.nn.Module, args: tuple) -> None:
        calls.append(1)
        if len(calls) == 3:  # the warm-up and step 1 done, step 1 held back
            raise torch.cuda.OutOfMemoryError("CUDA out of memory. Tried to allocate 2 GiB")

    hook = pipe.unet.register_forward_pre_hook(out_of_memory_at_the_third_call)
    reporter = RecordingReporter()
    request = base.replace(
        mode=Mode.UPSCALE, init_image=Image.new("RGB", (16, 16)), upscale_model=tiny_upscaler
    )
    try:
        result = engine.run(request, reporter)
    finally:
        hook.remove()
    assert result.images and any("Out of memory" in m for m, _ in reporter.statuses)
    assert [(p.step, p.total) for p in reporter.steps] == [(1, 4), (2, 4), (3, 4), (4, 4)]
