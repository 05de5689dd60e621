"""The GPU benchmark: the Stable Diffusion 1.5 architecture with random weights.

The compute of a UNet step does not depend on the weights' values, so a model built from
the published configs measures what the real one would, with nothing to download.
It also runs on a CPU at a small size, so that it never rots.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

from studio.bench.ladder import ROWS, run_ladder, synchroniser


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


def _unet_flops_per_step(pipe: Any, size: int) -> float:
    """FLOPs of one CFG step (a batch of two through the UNet)."""
    import torch
    from torch.utils.flop_counter import FlopCounterMode

    from studio.engine.speedups import eager

    unet = eager(pipe.unet)  # count the model, not its compiled wrapper
    latent = size // 8
    sample = torch.randn(2, 4, latent, latent, device=pipe.device, dtype=unet.dtype)
    context = torch.randn(2, 77, 768, device=pipe.device, dtype=unet.dtype)
    timestep = torch.tensor([500, 500], device=pipe.device)
    with torch.inference_mode(), FlopCounterMode(display=False) as counter:
        unet(sample, timestep, encoder_hidden_states=context)
    return float(counter.get_total_flops())


def run_gpu_bench(
    device: str | None,
    size: int,
    steps: int,
    repeats: int,
    rows: tuple[str, ...] = ROWS,
    on_results: Callable[[dict[str, Any]], None] | None = None,
) -> dict[str, Any]:
    """Measure `rows` (of ROWS) in order; `on_results` gets the results so far after each, so
    a run cut short still leaves every row it finished. A row that fails records its error
    and the next one runs."""
    import torch

    from studio.bench.engine_bench import BENCH_PROMPT
    from studio.bench.random_models import build_sd15
    from studio.bench.runner import device_name
    from studio.core.request import GenerationRequest
    from studio.engine.devices import pick_device
    from studio.engine.models import quiet_libraries

    target = pick_device(device)
    dtype = "float16" if target.type == "cuda" else "float32"
    results: dict[str, Any] = {"device": str(target), "size": size, "steps": steps}
    results["device_name"] = device_name(target)
    quiet_libraries()
    pipe = build_sd15(getattr(torch, dtype))  # built once: random init of 1B weights is slow
    results["unet_flops_per_step"] = _unet_flops_per_step(pipe.to(target), size)
    results["matmul_peak_tflops_bf16"] = _matmul_peak_tflops(target)
    report = on_results or (lambda _results: None)
    report(results)

    request = GenerationRequest(
        prompt=BENCH_PROMPT,
        model="sd15-random",
        width=size,
        height=size,
        steps=steps,
        cfg_scale=7.5,
        seed=1,
        scheduler="Euler",
    )

    def add_row(row: str, figures: dict[str, Any]) -> None:
        if "it_per_s" in figures:
            achieved = results["unet_flops_per_step"] * figures["it_per_s"] / 1e12
            figures["achieved_tflops"] = achieved
            figures["utilisation"] = achieved / results["matmul_peak_tflops_bf16"]
        results[row] = figures
        report(results)

    run_ladder(pipe, request, target, dtype, rows, repeats, add_row)
    return results
