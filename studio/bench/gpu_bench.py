"""The GPU benchmark: the Stable Diffusion 1.5 architecture with random weights.

The compute of a UNet step does not depend on the weights' values, so a model built from
the published configs measures what the real one would, with nothing to download.
It also runs on a CPU at a small size, so that it never rots.
"""

from __future__ import annotations

import statistics
import time
from typing import Any


class _LoopClock:
    """Times the denoising loop alone: from the first UNet call to the last step's end."""

    def __init__(self) -> None:
        self.first: float | None = None
        self.last: float = 0.0
        self.steps = 0

    def reset(self) -> None:
        self.first, self.steps = None, 0

    def before_unet(self, *args: Any, **kwargs: Any) -> None:
        if self.first is None:
            self.first = time.perf_counter()

    def step_end(self, sync: Any) -> None:
        sync()
        self.last = time.perf_counter()
        self.steps += 1

    @property
    def steps_per_second(self) -> float:
        assert self.first is not None
        return self.steps / (self.last - self.first)


def _matmul_peak_tflops(device: Any) -> float:
    """A measured bf16 matrix-multiply peak: the ceiling the UNet is held against."""
    import torch

    n = 8192 if device.type == "cuda" else 512
    a = torch.randn(n, n, device=device, dtype=torch.bfloat16)
    b = torch.randn(n, n, device=device, dtype=torch.bfloat16)
    sync = _synchroniser(device)
    for _ in range(3):
        a @ b
    sync()
    reps = 20 if device.type == "cuda" else 3
    started = time.perf_counter()
    for _ in range(reps):
        a @ b
    sync()
    return 2 * n**3 * reps / (time.perf_counter() - started) / 1e12


def _synchroniser(device: Any) -> Any:
    import torch

    if device.type == "cuda":
        return torch.cuda.synchronize
    return lambda: None


def _unet_flops_per_step(pipe: Any, size: int) -> float:
    """FLOPs of one CFG step (a batch of two through the UNet)."""
    import torch
    from torch.utils.flop_counter import FlopCounterMode

    unet = getattr(pipe.unet, "_orig_mod", pipe.unet)  # count the model, not its compiled wrapper
    latent = size // 8
    sample = torch.randn(2, 4, latent, latent, device=pipe.device, dtype=unet.dtype)
    context = torch.randn(2, 77, 768, device=pipe.device, dtype=unet.dtype)
    timestep = torch.tensor([500, 500], device=pipe.device)
    with torch.inference_mode(), FlopCounterMode(display=False) as counter:
        unet(sample, timestep, encoder_hidden_states=context)
    return float(counter.get_total_flops())


def run_gpu_bench(
    device: str | None, size: int, steps: int, repeats: int, compile_unet: bool | None
) -> dict[str, Any]:
    import torch

    from studio.engine.devices import pick_device
    from studio.engine.settings import EngineSettings

    target = pick_device(device)
    dtype = "float16" if target.type == "cuda" else "float32"
    compile_unet = target.type == "cuda" if compile_unet is None else compile_unet
    results: dict[str, Any] = {"device": str(target), "size": size, "steps": steps}
    if target.type == "cuda":
        results["device_name"] = torch.cuda.get_device_name(target)

    from studio.bench.random_models import build_sd15
    from studio.engine.models import quiet_libraries

    quiet_libraries()
    pipe = build_sd15(getattr(torch, dtype))  # built once: random init of 1B weights is slow
    base = EngineSettings(dtype=dtype, device=str(target))
    fast = EngineSettings(
        dtype=dtype, device=str(target), channels_last=True, compile_unet=compile_unet
    )
    results["bare_diffusers"] = _measure(pipe, base, True, target, size, steps, repeats)
    results["engine"] = _measure(pipe, base, False, target, size, steps, repeats)
    # last: the speed-ups change the pipeline in place (channels-last, a compiled UNet)
    results["engine_speedups"] = {
        **_measure(pipe, fast, False, target, size, steps, repeats),
        "compiled": compile_unet,
    }

    flops = results["engine"]["unet_flops_per_step"]
    peak = _matmul_peak_tflops(target)
    results["matmul_peak_tflops_bf16"] = peak
    for key in ("bare_diffusers", "engine", "engine_speedups"):
        achieved = flops * results[key]["it_per_s"] / 1e12
        results[key]["achieved_tflops"] = achieved
        results[key]["utilisation"] = achieved / peak
    return results


def _measure(
    built: Any, settings: Any, bare: bool, target: Any, size: int, steps: int, repeats: int
) -> dict[str, Any]:
    """Seconds per image and loop steps per second, bare diffusers or through the engine."""
    import torch

    from studio.bench.engine_bench import BENCH_PROMPT, preview_cost
    from studio.engine.generate import Engine
    from studio.engine.request import GenerationRequest, Mode
    from studio.engine.schedulers import make_scheduler

    model = "sd15-random"
    request = GenerationRequest(
        prompt=BENCH_PROMPT,
        model=model,
        width=size,
        height=size,
        steps=steps,
        cfg_scale=7.5,
        seed=1,
        scheduler="Euler",
    )
    sync = _synchroniser(target)
    engine = Engine(settings)
    engine.models.adopt(model, built)
    engine.run(request)  # warm up (and compile)
    pipe = engine.models.pipeline(model, Mode.TEXT_TO_IMAGE)
    clock = _LoopClock()
    hook = pipe.unet.register_forward_pre_hook(clock.before_unet)
    seconds, rates = [], []
    try:
        for _ in range(repeats):
            clock.reset()
            if target.type == "cuda":
                torch.cuda.reset_peak_memory_stats(target)
            started = time.perf_counter()
            if bare:
                pipe.scheduler = make_scheduler(request.scheduler, pipe.scheduler.config)
                pipe(
                    prompt=request.prompt,
                    width=size,
                    height=size,
                    num_inference_steps=steps,
                    guidance_scale=request.cfg_scale,
                    generator=torch.Generator("cpu").manual_seed(1),
                    callback_on_step_end=lambda p, i, t, kw: clock.step_end(sync) or {},
                )
            else:
                engine.run(request, _ClockReporter(clock, sync))
            sync()
            seconds.append(time.perf_counter() - started)
            rates.append(clock.steps_per_second)
    finally:
        hook.remove()
    figures: dict[str, Any] = {
        "it_per_s": statistics.median(rates),
        "s_per_image": statistics.median(seconds),
    }
    if target.type == "cuda":
        figures["peak_vram_mb"] = torch.cuda.max_memory_allocated(target) / 2**20
    if not bare:
        step_seconds = 1 / figures["it_per_s"]
        figures["preview_cost_share"] = preview_cost(engine, request, step_seconds)["linear"]
    figures["unet_flops_per_step"] = _unet_flops_per_step(pipe, size)
    engine.models.unload()
    return figures


class _ClockReporter:
    def __init__(self, clock: _LoopClock, sync: Any) -> None:
        self.clock, self.sync = clock, sync

    def status(self, message: str, fraction: float | None) -> None:
        pass

    def step(self, progress: Any) -> None:
        self.clock.step_end(self.sync)
