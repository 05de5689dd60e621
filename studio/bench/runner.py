"""`studio bench`: a fixed set of measurements, printed as a table or one JSON object."""

from __future__ import annotations

import math
import platform
from pathlib import Path
from typing import Any

# figure -> (label, target as text, whether lower is better)
_ROWS: list[tuple[str, str, str]] = [
    ("engine_overhead_ratio", "Engine time / bare diffusers (25 steps, previews)", "≤ 1.03"),
    ("preview_cost_share.linear", "Preview cost per step, linear", "≤ 2%"),
    ("preview_cost_share.vae", "Preview cost per step, full VAE", ""),
    ("window_over_engine_ratio", "A generation in the window / in the engine alone", ""),
    ("event_loop_gap_ms.p50", "Event-loop gap p50 (ms, 5 ms timer)", ""),
    ("event_loop_gap_ms.p99", "Event-loop gap p99 (ms)", "≤ 16"),
    ("event_loop_gap_ms.max", "Event-loop gap max (ms)", "≤ 50"),
    ("live_latency_ms.p50", "Live mode: an edit to its picture p50 (ms)", "≤ 250"),
    ("live_latency_ms.p90", "Live mode: an edit to its picture p90 (ms)", ""),
    ("live_event_loop_gap_ms.p99", "Event-loop gap p99 in live mode (ms)", "≤ 16"),
    ("startup_window_s", "Start-up to window shown (s)", "≤ 1.0"),
    ("startup_first_image_s", "Start-up to first image (s)", ""),
    ("exit_idle_s", "Window closed to process gone, idle (s)", "≤ 1.0"),
    ("exit_busy_s", "Window closed to process gone, generating (s)", "≤ 2.0"),
    ("mode_switch_ms", "Mode switches txt→inpaint→img→txt (ms)", "≤ 50"),
    ("mode_switch_weight_loads", "Weights loaded by those switches", "0"),
    ("peak_rss_mb", "Peak resident memory of a generation (MB)", ""),
    ("speedup_s_per_image_ratio.channels_last", "s/image, + channels-last / engine", ""),
    ("speedup_s_per_image_ratio.fuse_qkv", "s/image, + fused attention / engine", ""),
    ("speedup_s_per_image_ratio.compile_unet", "s/image, + compiled UNet / engine", ""),
    ("speedup_s_per_image_ratio.cuda_graphs", "s/image, + CUDA graphs / engine", ""),
    ("speedup_first_run_s.compile_unet", "First image with the UNet compiled (s)", ""),
    ("speedup_first_run_s.cuda_graphs", "First image with CUDA graphs (s)", ""),
    ("gallery_first_thumbnails_s", "Gallery of 10,000: first thumbnails on screen (s)", "≤ 0.5"),
    ("gallery_scroll_max_stall_ms", "Gallery: longest stall scrolling to the end (ms)", "≤ 16"),
    ("gallery_memory_growth_mb", "Gallery: memory growth after the scroll (MB)", "≤ 50"),
    ("ray.jobs_per_s_one_engine", "Ray: jobs/s, 1 engine × 1 CPU (16 jobs, 64 px, 8 steps)", ""),
    ("ray.jobs_per_s_two_engines", "Ray: jobs/s, 2 engines × 1 CPU", ""),
    ("ray.throughput_ratio", "Ray: 2 engines / 1 engine", "≥ 1.7"),
    ("ray.concurrency_two_engines", "Ray: jobs running at once on 2 engines (mean)", "2.0"),
    ("ray.seconds_per_job_one_engine", "Ray: s per job on 1 engine", ""),
    ("ray.seconds_per_job_two_engines", "Ray: s per job on each of 2 engines", ""),
    ("ray.preview_ms_ray.p50", "Ray: a step's preview, engine to window, p50 (ms)", ""),
    ("ray.preview_ms_local.p50", "This machine: the same, p50 (ms)", ""),
    ("ray.preview_added_ms.p50", "Ray: added latency per step's preview, p50 (ms)", "≤ 20"),
    ("ray.preview_added_ms.p99", "Ray: added latency per step's preview, p99 (ms)", ""),
]


# `--parts`, in this order
PARTS = ("engine", "families", "window", "process", "memory", "speedups", "gallery")


def run_bench(
    quick: bool,
    model: str,
    compile_rows: bool = True,
    parts: tuple[str, ...] = PARTS,
    families: tuple[str, ...] | None = None,
) -> dict[str, Any]:
    """The measurements of `parts`: the engine against bare diffusers (and its previews and
    mode switches), the engine on every model family (or on `families`), the window
    (event-loop gaps, a generation there against the engine), the process (start-up and
    exit times), memory, the speed-up ladder, and the gallery on a folder of 10,000 images."""
    from studio.bench import engine_bench, ui_bench
    from studio.core.settings import EngineSettings
    from studio.engine.generate import Engine

    repeats = 3 if quick else 9
    runs = 1 if quick else 3
    steps = 4 if quick else 25  # a quick run checks that every figure is made, not its value
    request = engine_bench.bench_request(model, steps=steps)
    results: dict[str, Any] = {"machine": machine(), "model": model, "repeats": repeats}
    if "engine" in parts or "window" in parts:
        engine = Engine(EngineSettings(preview_method="linear", preview_every=1))
        overhead = engine_bench.engine_overhead(engine, request, repeats)
        results.update(overhead)
        if "engine" in parts:
            results["preview_cost_share"] = engine_bench.preview_cost(
                engine, request, overhead["step_seconds"]
            )
            results.update(engine_bench.mode_switches(engine, model))
        engine.models.unload()
    if "families" in parts:
        from studio.bench import family_bench

        results.update(family_bench.measure_families(families or family_bench.FAMILIES, quick))
    if "window" in parts:
        window = ui_bench.event_loop_gaps(model, runs=runs)
        # what the window adds to a generation: showing every step, saving, the gallery
        results["window_over_engine_ratio"] = (
            window.pop("seconds_per_image") / results["engine_seconds_per_image"]
        )
        results["event_loop_gap_ms"] = window
        results.update(ui_bench.live_latency(model, edits=5 if quick else 20))
    if "process" in parts:
        results.update(ui_bench.startup_times(model, runs=runs))
        results.update(ui_bench.exit_times(model, runs=runs))
    if "memory" in parts:
        results["peak_rss_mb"] = engine_bench.peak_rss_mb(model, steps=steps)
    if "speedups" in parts:
        results.update(_speedups(model, request, repeats, compile_rows))
    if "gallery" in parts:
        from studio.bench import gallery

        results.update(gallery.measure())
    return results


def _speedups(model: str, request: Any, repeats: int, compile_rows: bool) -> dict[str, Any]:
    """The speed-up ladder on this model and device: each row's seconds per image over the
    engine's, measured in the same run, and what its first image cost."""
    from studio.bench.ladder import COMPILED_ROWS, ROWS, run_ladder
    from studio.core.request import Mode
    from studio.engine.models import ModelManager

    models = ModelManager()
    pipe = models.pipeline(model, Mode.TEXT_TO_IMAGE)
    dtype = str(models.dtype).removeprefix("torch.")
    rows: dict[str, dict[str, Any]] = {}
    chosen = tuple(r for r in ROWS[1:] if compile_rows or r not in COMPILED_ROWS)
    run_ladder(pipe, request, models.device, dtype, chosen, repeats, rows.__setitem__)
    models.unload()
    engine_s = rows["engine"].get("s_per_image")
    measured = {
        row: f for row, f in rows.items() if engine_s and "s_per_image" in f and row != "engine"
    }
    return {
        "speedup_s_per_image_ratio": {r: f["s_per_image"] / engine_s for r, f in measured.items()},
        "speedup_first_run_s": {r: f["first_run_s"] for r, f in measured.items()},
        "speedup_errors": {r: f["error"] for r, f in rows.items() if "error" in f},
        "speedup_ladder": {
            "device": str(models.device),
            "device_name": device_name(models.device),
            "workload": f"{model}, {request.width}×{request.height}, {request.steps} steps",
            "rows": rows,
        },
    }


def device_name(device: Any) -> str:
    """The device as the user knows it."""
    import torch

    if device.type == "cuda":
        return torch.cuda.get_device_name(device)
    return {"mps": "Apple GPU (MPS)", "cpu": "CPU"}.get(device.type, str(device))


def record_speedups(results: dict[str, Any]) -> Path | None:
    """Keep the speed-up ladder's rows for the Settings dialog (the GPU bench's when it
    ran, else the CPU bench's); None if no speed-up has a figure to show."""
    from studio.bench.ladder import ROWS
    from studio.core import speedup_figures

    gpu = results.get("gpu")
    if gpu is not None:
        ladder = {
            "device": gpu["device"],
            "device_name": gpu.get("device_name", gpu["device"]),
            "workload": f"{_architecture(gpu)}, {gpu['size']}×{gpu['size']}, {gpu['steps']} steps",
            "rows": {row: gpu[row] for row in ROWS if row in gpu},
        }
    else:
        ladder = results.get("speedup_ladder")
    if ladder is None:
        return None
    measurement = speedup_figures.from_ladder(
        ladder["rows"], ladder["device"], ladder["device_name"], ladder["workload"]
    )
    return speedup_figures.record(measurement)


def machine() -> dict[str, Any]:
    import os

    import torch

    info = {
        "platform": platform.platform(),
        "python": platform.python_version(),
        "torch": torch.__version__,
        "cpu_count": os.cpu_count(),
        "processor": platform.processor() or platform.machine(),
    }
    if torch.cuda.is_available():
        info["gpu"] = torch.cuda.get_device_name(0)
    return info


def lookup(results: dict[str, Any], dotted: str) -> Any:
    value: Any = results
    for part in dotted.split("."):
        if not isinstance(value, dict) or part not in value:
            return None
        value = value[part]
    return value


def format_table(results: dict[str, Any]) -> str:
    lines = []
    for key, label, target in _ROWS:
        value = lookup(results, key)
        if value is None:
            continue
        if not lines:
            lines = [f"{'measure':<52} {'value':>10}  target", "-" * 72]
        if key.startswith("preview_cost_share"):
            shown = f"{value:.2%}"
        elif isinstance(value, float):
            shown = f"{value:.3f}" if value < 10 else f"{value:.1f}"
        else:
            shown = str(value)
        lines.append(f"{label:<52} {shown:>10}  {target}")
    for row, error in results.get("speedup_errors", {}).items():
        lines.append(f"{'Speed-up row ' + row + ' failed:':<52} {error}")
    from studio.bench.family_bench import family_table

    rows = family_table(results)
    if rows:
        lines += ["", *rows] if lines else rows
    gpu = results.get("gpu")
    if gpu:
        lines += ["", *_gpu_table(gpu)] if lines else _gpu_table(gpu)
    return "\n".join(lines)


def _gpu_table(gpu: dict[str, Any]) -> list[str]:
    from studio.bench.ladder import ROWS

    lines = [
        f"GPU bench: {gpu.get('device_name', gpu['device'])}, {_architecture(gpu)}, "
        f"{gpu['size']}×{gpu['size']}, {gpu['steps']} steps, batch 1",
        "(each row adds one speed-up to the row above)",
        f"{'':<16} {'it/s':>8} {'s/image':>9} {'1st run s':>10} {'VRAM MB':>9} {'util.':>7}",
    ]
    for key in ROWS:
        row = gpu.get(key)
        if row is None:
            continue
        if "it_per_s" not in row:
            lines.append(f"{key:<16} {row.get('error') or row.get('skipped')}")
            continue
        vram = row.get("peak_vram_mb")
        lines.append(
            f"{key:<16} {row['it_per_s']:>8.2f} {row['s_per_image']:>9.3f} "
            f"{row['first_run_s']:>10.1f} {(f'{vram:.0f}' if vram else '-'):>9} "
            f"{row['utilisation']:>7.1%}"
        )
        if row.get("graph_breaks") or row.get("cudagraph_skips"):
            lines[-1] += (
                f"  ({row['graph_breaks']} graph breaks, {row['cudagraph_skips']} CUDA-graph skips)"
            )
    lines.append(
        f"Denoiser GFLOP per step: {gpu['unet_flops_per_step'] / 1e9:.1f}; "
        f"bf16 matmul peak: {gpu['matmul_peak_tflops_bf16']:.1f} TFLOP/s"
    )
    if gpu.get("anchor"):
        lines.append(f"({gpu['anchor']})")
    return lines


def _architecture(gpu: dict[str, Any]) -> str:
    return gpu.get("model_label", "SD 1.5 architecture")  # results of before SDXL and Flux


def all_finite(results: dict[str, Any], keys: list[str]) -> list[str]:
    """The keys whose figures are missing or not finite numbers (for the bench's own test)."""
    bad = []
    for key in keys:
        value = lookup(results, key)
        values = value.values() if isinstance(value, dict) else [value]
        if value is None or not all(
            isinstance(v, int | float) and math.isfinite(v) for v in values
        ):
            bad.append(key)
    return bad
