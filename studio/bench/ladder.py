"""The speed-up ladder: one pipeline measured as bare diffusers, through the engine, then
with one more speed-up per row, so that each row says what its speed-up buys.

The GPU bench runs it on the SD 1.5, SDXL or Flux.1-dev architecture, the CPU bench on
the embedded model. The hooks and figures follow the family's denoiser (a UNet or a
transformer), and a preview is timed on the latents the run itself made.
"""

from __future__ import annotations

import contextlib
import logging
import statistics
import time
from collections.abc import Callable
from typing import Any

from studio.core.settings import SPEEDUPS

log = logging.getLogger(__name__)

# After the bare call, the engine, then one row per speed-up (named by its EngineSettings
# field), each keeping the speed-ups above it, so the table says what each one buys.
ROWS = ("bare_diffusers", "engine", *(speedup.field for speedup in SPEEDUPS))
COMPILED_ROWS = tuple(s.field for s in SPEEDUPS if s.compiles)


def run_ladder(
    pipe: Any,
    request: Any,
    target: Any,
    dtype: str,
    rows: tuple[str, ...],
    repeats: int,
    on_row: Callable[[str, dict[str, Any]], None],
) -> None:
    """Measure `rows` (of ROWS) in order, handing each row's figures to `on_row` as it is
    done. A row that fails records its error and the next one runs."""
    import torch

    from studio.core.settings import EngineSettings
    from studio.engine.speedups import uncompile

    chosen: dict[str, bool] = {}
    for row in ROWS:
        if row not in ("bare_diffusers", "engine"):
            chosen[row] = True  # cumulative: a row has every speed-up above it
        if row not in rows:
            continue
        if row == "cuda_graphs" and target.type != "cuda":
            on_row(row, {"skipped": "CUDA graphs need a CUDA GPU."})
            continue
        # all on the device: the model was built there, and the memory policy would offload
        # one that leaves less free than it needs (Flux on a 48 GB GPU)
        settings = EngineSettings(dtype=dtype, device=str(target), cpu_offload=False, **chosen)
        try:
            figures = measure(pipe, request, settings, row == "bare_diffusers", target, repeats)
        except Exception as e:  # noqa: BLE001 - a row that fails must not cost the others
            log.exception("bench row %s failed", row)
            figures = {"error": f"{e.__class__.__name__}: {_first_line(e)}"}
        finally:
            uncompile(pipe)  # the next row compiles afresh, or not at all
            torch._dynamo.reset()
        on_row(row, figures)


def _first_line(error: BaseException) -> str:
    text = str(error).strip()
    return text.splitlines()[0][:300] if text else "(no message)"


def measure(
    built: Any, request: Any, settings: Any, bare: bool, target: Any, repeats: int
) -> dict[str, Any]:
    """Seconds per image and loop steps per second, bare diffusers or through the engine;
    the first run's seconds too, which is where compilation is paid."""
    import torch
    from torch._dynamo.utils import counters

    from studio.bench.engine_bench import bare_call
    from studio.bench.family_bench import preview_seconds, warm_up_keeping_the_tap
    from studio.core.request import Mode
    from studio.engine.family_runtime import denoiser
    from studio.engine.generate import Engine
    from studio.engine.speedups import eager, is_compiled

    model = request.model
    sync = synchroniser(target)
    engine = Engine(settings)
    engine.models.adopt(model, built)
    counters.clear()  # graph breaks and CUDA-graph skips of this row only
    if target.type == "cuda":
        # once, before the warm-up: CUDA graphs take their memory while being recorded
        torch.cuda.reset_peak_memory_stats(target)
    started = time.perf_counter()
    with _cold_compiler_caches() if settings.compile_unet else contextlib.nullcontext():
        # warm up (and compile, as on a machine that never compiled), keeping the run's tap
        taps = warm_up_keeping_the_tap(engine, request)
    sync()
    first_run_s = time.perf_counter() - started
    pipe = engine.models.pipeline(model, Mode.TEXT_TO_IMAGE)
    clock = _LoopClock(target)
    hook = denoiser(pipe).register_forward_pre_hook(clock.before_unet)
    seconds, rates = [], []
    try:
        for _ in range(repeats):
            clock.reset()
            started = time.perf_counter()
            if bare:
                bare_call(pipe, request, callback_on_step_end=clock.step_end_callback)
            else:
                engine.run(request, _ClockReporter(clock))
            sync()
            seconds.append(time.perf_counter() - started)
            rates.append(clock.steps_per_second)
    finally:
        hook.remove()
    if engine.models.compile_failed or settings.compile_unet != is_compiled(denoiser(pipe)):
        raise RuntimeError("the compiled UNet failed and the engine fell back to eager")
    figures: dict[str, Any] = {
        "it_per_s": statistics.median(rates),
        "s_per_image": statistics.median(seconds),
        "s_per_image_runs": seconds,  # every repetition: the spread behind the median
        "first_run_s": first_run_s,
    }
    # SDPA (AttnProcessor2_0) unless fused or sliced: the row names what it ran
    processors = getattr(eager(denoiser(pipe)), "attn_processors", {}).values()
    figures["attention"] = ", ".join(sorted({type(p).__name__ for p in processors}))
    if settings.compile_unet:  # parts left eager or not replayed: the row says so
        figures["graph_breaks"] = sum(counters["graph_break"].values())
        figures["cudagraph_skips"] = counters["inductor"]["cudagraph_skips"]
    if target.type == "cuda":
        figures["peak_vram_mb"] = torch.cuda.max_memory_allocated(target) / 2**20
        figures["peak_vram_reserved_mb"] = torch.cuda.max_memory_reserved(target) / 2**20
    if not bare:
        step_seconds = 1 / figures["it_per_s"]
        preview_s = preview_seconds(engine, pipe, taps, request.width, request.height, sync)
        figures["preview_cost_share"] = preview_s / step_seconds
    engine.models.unload()
    return figures


def _cold_compiler_caches() -> Any:
    """Compile as on a machine that never compiled: the first run's seconds are the cost
    a user pays once per size, not a cache hit left by the row before."""
    from torch._inductor import utils

    fresh = getattr(utils, "fresh_cache", None) or utils.fresh_inductor_cache
    return fresh()


class _ClockReporter:
    def __init__(self, clock: _LoopClock) -> None:
        self.clock = clock

    def status(self, message: str, fraction: float | None) -> None:
        pass

    def step(self, progress: Any) -> None:
        self.clock.step_end()


class _LoopClock:
    """Times the denoising loop alone: from the first UNet call to the last step's end.

    On a GPU the marks are CUDA events in the stream, read after the run: the clock adds no
    synchronisation of its own, so a pipeline that never waits for the GPU is timed as it
    runs, and one that waits (for a preview, say) pays for it in the figures.
    """

    def __init__(self, device: Any) -> None:
        self.cuda = device.type == "cuda"
        self.marks: list[Any] = []

    def reset(self) -> None:
        self.marks = []

    def before_unet(self, *args: Any, **kwargs: Any) -> None:
        if not self.marks:
            self.marks.append(self._mark())

    def step_end(self) -> None:
        self.marks.append(self._mark())

    def step_end_callback(self, pipe: Any, step: int, timestep: Any, kwargs: dict) -> dict:
        """diffusers' callback_on_step_end, for the bare call."""
        self.step_end()
        return {}

    def _mark(self) -> Any:
        if not self.cuda:
            return time.perf_counter()
        import torch

        event = torch.cuda.Event(enable_timing=True)
        event.record()
        return event

    @property
    def steps_per_second(self) -> float:
        first, last = self.marks[0], self.marks[-1]
        if self.cuda:
            last.synchronize()
            seconds = first.elapsed_time(last) / 1000
        else:
            seconds = last - first
        return (len(self.marks) - 1) / seconds


def synchroniser(device: Any) -> Any:
    import torch

    if device.type == "cuda":
        return torch.cuda.synchronize
    return lambda: None
