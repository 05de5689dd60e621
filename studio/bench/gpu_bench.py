"""The GPU benchmark: the SD 1.5, SDXL or Flux.1-dev architecture with random weights.

The compute of a denoising step does not depend on the weights' values, so a model built
from the published configs measures what the real one would, with nothing to download.
SD 1.5 also runs on a CPU at a small size, so that it never rots; SDXL and Flux are built
on the meta device in the tests (their configs, parameter counts and pipeline assembly).
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from studio.bench.ladder import ROWS, run_ladder, synchroniser


@dataclass(frozen=True)
class Architecture:
    """A model the GPU bench builds, and the workload it runs on it."""

    label: str
    builder: str  # the function of studio.bench.random_models that builds it
    size: int  # its native size
    steps: int
    cfg_scale: float
    cuda_dtype: str  # SDXL and SD 1.5 in fp16; Flux in bf16 (its activations overflow fp16)
    anchor: str = ""  # a published figure to read ours beside


ARCHITECTURES: dict[str, Architecture] = {
    "sd15": Architecture("SD 1.5 architecture", "build_sd15", 512, 20, 7.5, "float16"),
    # the same code path in seconds, for machines without a GPU (tests)
    "sd15-narrow": Architecture(
        "SD 1.5 layout, narrowed", "build_sd15_narrow", 64, 2, 7.5, "float16"
    ),
    "sdxl": Architecture(
        "SDXL architecture",
        "build_sdxl",
        1024,
        30,
        5.0,
        "float16",
        "published: SDXL 1024², 30 steps, A100, compiled with fused projections ≈ 2.5 s/image",
    ),
    "flux": Architecture(
        "Flux.1-dev architecture",
        "build_flux",
        1024,
        28,
        3.5,
        "bfloat16",
        "published: Flux.1-dev 1024², 28 steps, H100: eager 6.7 s/image, compiled 4.3–4.5 s",
    ),
}


def _matmul_peak_tflops(device: Any) -> float:
    """A measured bf16 matrix-multiply peak: the ceiling the UNet is held against."""
    import torch

    n = 8192 if device.type == "cuda" else 512
    a = torch.randn(n, n, device=device, dtype=torch.bfloat16)
    b = torch.randn(n, n, device=device, dtype=torch.bfloat16)
    sync = synchroniser(device)
    for _ in range(3):
        a @ b
    sync()
    reps = 20 if device.type == "cuda" else 3
    started = time.perf_counter()
    for _ in range(reps):
        a @ b
    sync()
    return 2 * n**3 * reps / (time.perf_counter() - started) / 1e12


class _Captured(Exception):
    """Stops a pipeline call at its first denoiser call, whose inputs were kept."""


def denoiser_flops_per_step(pipe: Any, request: Any) -> float:
    """FLOPs of the denoiser's call in one step of `request` (with batched CFG, a batch of
    two), counted on the very inputs the pipeline gives it."""
    import torch
    from torch.utils.flop_counter import FlopCounterMode

    from studio.bench.engine_bench import bare_call
    from studio.engine.family_runtime import denoiser
    from studio.engine.speedups import eager

    network = eager(denoiser(pipe))  # count the model, not its compiled wrapper
    seen: dict[str, Any] = {}

    def keep(module: Any, args: tuple, kwargs: dict) -> None:
        seen.update(args=args, kwargs=kwargs)
        raise _Captured

    handle = network.register_forward_pre_hook(keep, with_kwargs=True)
    try:
        bare_call(pipe, request.replace(steps=1))
    except _Captured:
        pass
    finally:
        handle.remove()
    with torch.inference_mode(), FlopCounterMode(display=False) as counter:
        network(*seen["args"], **seen["kwargs"])
    return float(counter.get_total_flops())


def run_gpu_bench(
    device: str | None,
    size: int | None,
    steps: int | None,
    repeats: int,
    rows: tuple[str, ...] = ROWS,
    on_results: Callable[[dict[str, Any]], None] | None = None,
    model: str = "sd15",
) -> dict[str, Any]:
    """Measure `rows` (of ROWS) in order on `model` (of ARCHITECTURES; its native size and
    steps unless told); `on_results` gets the results so far after each, so a run cut
    short still leaves every row it finished. A row that fails records its error and the
    next one runs."""
    import torch

    from studio.bench import random_models
    from studio.bench.engine_bench import BENCH_PROMPT
    from studio.bench.runner import device_name
    from studio.core.request import GenerationRequest
    from studio.engine.devices import pick_device
    from studio.engine.models import quiet_libraries

    architecture = ARCHITECTURES[model]
    size = size or architecture.size
    steps = steps or architecture.steps
    target = pick_device(device)
    dtype = architecture.cuda_dtype if target.type == "cuda" else "float32"
    results: dict[str, Any] = {"device": str(target), "size": size, "steps": steps}
    results.update(model=model, model_label=architecture.label, anchor=architecture.anchor)
    results["device_name"] = device_name(target)
    quiet_libraries()
    # built once, on the device: random initialisation of billions of weights is slow
    build = getattr(random_models, architecture.builder)
    pipe = build(getattr(torch, dtype), device=target)
    request = GenerationRequest(
        prompt=BENCH_PROMPT,
        model=f"{model}-random",
        width=size,
        height=size,
        steps=steps,
        cfg_scale=architecture.cfg_scale,
        seed=1,
        scheduler="Euler",
    )
    results["unet_flops_per_step"] = denoiser_flops_per_step(pipe, request)
    results["matmul_peak_tflops_bf16"] = _matmul_peak_tflops(target)
    report = on_results or (lambda _results: None)
    report(results)

    def add_row(row: str, figures: dict[str, Any]) -> None:
        if "it_per_s" in figures:
            achieved = results["unet_flops_per_step"] * figures["it_per_s"] / 1e12
            figures["achieved_tflops"] = achieved
            figures["utilisation"] = achieved / results["matmul_peak_tflops_bf16"]
        results[row] = figures
        report(results)

    run_ladder(pipe, request, target, dtype, rows, repeats, add_row)
    return results
