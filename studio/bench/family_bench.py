"""The engine on every model family: its time over a bare diffusers call of the same
pipeline with the same settings, and what a preview costs as a share of a step.

The models are the tiny random-weight pipelines of each family (`tiny_families`), built
offline into a temporary folder: each keeps its family's layout (latent channels, packing,
text encoders, scheduler), so the engine does every family's work, on networks narrow
enough for a CPU. Their steps take milliseconds, so the engine's fixed cost per step (the
step report, the guidance tap, a preview every step) weighs far more here than beside a
real model's step of a second or more: these ratios are upper bounds.
"""

from __future__ import annotations

import math
import statistics
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from studio.bench.tiny_families import FAMILIES
from studio.bench.tiny_families import SIZE as _SIZE
from studio.core.jobs import FRAMES_PER_SECOND

SIZE = _SIZE[0]  # the size the tiny pipelines are tested at (square)

PROMPT = "a small red circle at the top left on a blue background"


def parse_families(text: str) -> tuple[str, ...]:
    """`--families sd1,flux` → the families, in the bench's order; ValueError names an
    unknown one."""
    chosen = [name.strip() for name in text.split(",") if name.strip()]
    unknown = [name for name in chosen if name not in FAMILIES]
    if unknown or not chosen:
        raise ValueError(
            f"no family called {', '.join(unknown) or 'that'}: choose from {', '.join(FAMILIES)}"
        )
    return tuple(name for name in FAMILIES if name in chosen)


class _Counting:
    """Counts the steps; takes them in batches as the window's reporter does."""

    frame_interval = 1 / FRAMES_PER_SECOND

    def __init__(self) -> None:
        self.steps = 0

    def status(self, message: str, fraction: float | None) -> None:
        pass

    def step(self, progress: Any) -> None:
        self.steps += 1


def _seconds(action: Callable[[], Any]) -> float:
    started = time.perf_counter()
    action()
    return time.perf_counter() - started


def median_interval(values: list[float]) -> tuple[float, float, float]:
    """The median of `values` and a 95% confidence interval for it that assumes nothing of
    their distribution: the order statistics a binomial count of values below the median
    puts around the middle (at least the smallest and largest value with few of them)."""
    ordered = sorted(values)
    count = len(ordered)
    spread = 1.96 * math.sqrt(count)
    low = max(0, math.floor((count - spread) / 2) - 1)
    high = min(count - 1, math.ceil((count + spread) / 2))
    return statistics.median(ordered), ordered[low], ordered[high]


def measure_family(
    engine: Any, quiet: Any, folder: str, steps: int, repeats: int, size: int = SIZE
) -> dict[str, float]:
    """One family's figures: seconds per image of the engine (previews every step), of the
    engine with previews off (`quiet`, sharing `engine`'s models) and of the bare pipeline,
    medians of runs taken in turn; their ratios; what previews add to a run per denoising
    step, over that step (a step's time: the bare call's less its own with half the steps);
    and one preview timed alone over a bare run's time per step."""
    import torch

    from studio.core.request import GenerationRequest, Mode
    from studio.engine.generate import guidance_arguments

    request = GenerationRequest(
        prompt=PROMPT, model=folder, width=size, height=size, steps=steps, seed=1234
    )
    taps = warm_up_keeping_the_tap(engine, request)
    pipe = engine.models.pipeline(folder, Mode.TEXT_TO_IMAGE)  # with the sampler the run used
    guidance = guidance_arguments(pipe, request.cfg_scale, request.negative_prompt)

    def bare_of(count: int) -> Callable[[], None]:
        def bare() -> None:
            with torch.inference_mode():
                pipe(
                    prompt=request.prompt,
                    width=size,
                    height=size,
                    num_inference_steps=count,
                    generator=[torch.Generator("cpu").manual_seed(request.seed)],
                    output_type="pil",
                    **guidance,
                )

        return bare

    def run(which: Any) -> Callable[[], None]:
        def studio() -> None:
            reporter = _Counting()
            which.run(request, reporter)
            assert reporter.steps == steps

        return studio

    # `half`: the bare call with half the steps, so that a step's own time is told apart
    # from the run's fixed costs (the prompt's encoding, the VAE's decode)
    sides = {
        "bare": bare_of(steps),
        "half": bare_of(steps // 2),
        "engine": run(engine),
        "quiet": run(quiet),
    }
    for action in sides.values():
        action()  # warm every path
    times: dict[str, list[float]] = {side: [] for side in sides}
    order = list(sides)
    for index in range(repeats):
        # each in turn, starting one further each round, so drift hits all alike
        start = index % len(order)
        for side in order[start:] + order[:start]:
            times[side].append(_seconds(sides[side]))
    bare_s, engine_s = statistics.median(times["bare"]), statistics.median(times["engine"])
    step_s = bare_s / steps

    def per_step(minuend: str, subtrahend: str, count: float) -> float:
        pairs = zip(times[minuend], times[subtrahend], strict=True)
        return statistics.median(a - b for a, b in pairs) / count

    denoising_step_s = per_step("bare", "half", steps - steps // 2)

    def over_bare(side: str) -> tuple[float, float, float]:
        # the median of each round's ratio: a round's runs follow one another, so a change
        # in the machine's speed (other processes) touches both sides of a ratio alike;
        # with its confidence interval, as one round's ratio scatters by several percent
        return median_interval([s / b for s, b in zip(times[side], times["bare"], strict=True)])

    engine_over_bare, low, high = over_bare("engine")
    return {
        "engine_over_bare": engine_over_bare,
        "engine_over_bare_interval": [low, high],
        "engine_no_preview_over_bare": over_bare("quiet")[0],
        "preview_share": preview_seconds(engine, pipe, taps, size, size) / step_s,
        # what previews add to a run, a step's worth, over a denoising step: the preview
        # above timed alone, and what it costs the loop around it (a network call after
        # it finds its caches cold)
        "preview_share_in_run": per_step("engine", "quiet", steps) / denoising_step_s,
        "bare_s": bare_s,
        "engine_s": engine_s,
        "step_ms": step_s * 1000,
        "denoising_step_ms": denoising_step_s * 1000,
    }


def warm_up_keeping_the_tap(engine: Any, request: Any) -> list[Any]:
    """One run to load and warm up, keeping its guidance tap: the tap holds the last step's
    latents and prediction, so a preview is then timed on the very tensors a run makes
    (packed families hand the previewer packed latents), not on a guessed shape."""
    from studio.engine import generate

    taps: list[Any] = []
    made = generate.GuidanceTap

    class KeptTap(made):  # type: ignore[misc, valid-type]
        def __init__(self, *args: Any, **kwargs: Any) -> None:
            super().__init__(*args, **kwargs)
            taps.append(self)

    generate.GuidanceTap = KeptTap
    try:
        engine.run(request, _Counting())
    finally:
        generate.GuidanceTap = made
    return taps


def preview_seconds(
    engine: Any,
    pipe: Any,
    taps: list[Any],
    width: int,
    height: int,
    sync: Callable[[], None] = lambda: None,
) -> float:
    """Seconds of one preview as the loop makes it: the denoised estimate from the tap,
    projected (linear) where it lies, copied to the CPU. Started one after another and
    collected later, as the loop does, so on a GPU the copies run behind the work."""
    import torch

    previewer = engine._previewer(pipe, width, height, "linear")
    tap = taps[-1]
    reps = 200

    def previews() -> None:
        for copy in [previewer.start(tap.latest_x0()) for _ in range(reps)]:
            if copy is not None:
                copy.collect()
        sync()

    with torch.inference_mode():
        previews()  # warm up (pinned host memory for the copies included)
        return min(_seconds(previews) for _ in range(3)) / reps


def measure_families(
    names: tuple[str, ...], quick: bool, report: Callable[[str], None] | None = None
) -> dict[str, Any]:
    """`family_<name>_engine_over_bare` and `family_<name>_preview_share` for each family,
    and the seconds behind them under `families`."""
    import torch

    from studio.core.settings import EngineSettings
    from studio.engine.generate import Engine

    # 51 rounds: the median's 95% interval about ±1% on this 2-core host (31 gave ±1.5%)
    steps, repeats = (10, 5) if quick else (20, 51)
    results: dict[str, Any] = {}
    details: dict[str, Any] = {}
    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # networks this narrow run faster on one thread than on several
    try:
        with tempfile.TemporaryDirectory(prefix="studio-bench-families-") as root:
            from studio.bench.tiny_families import build

            engine = Engine(EngineSettings(preview_method="linear", preview_every=1))
            quiet = Engine(EngineSettings(preview_method="none"), models=engine.models)
            for name in names:
                folder = str(build(name, Path(root) / name))
                figures = measure_family(engine, quiet, folder, steps, repeats)
                engine.models.unload()
                results[f"family_{name}_engine_over_bare"] = figures["engine_over_bare"]
                results[f"family_{name}_preview_share"] = figures["preview_share"]
                results[f"family_{name}_preview_share_in_run"] = figures["preview_share_in_run"]
                details[name] = figures
                if report is not None:
                    report(name)
    finally:
        torch.set_num_threads(threads)
    results["families"] = {
        "workload": f"tiny random-weight pipelines, {SIZE}×{SIZE}, {steps} steps, "
        f"{repeats} alternated runs each, 1 CPU thread",
        "figures": details,
    }
    return results


def family_table(results: dict[str, Any]) -> list[str]:
    """The families' rows, for `studio bench`'s table."""
    info = results.get("families")
    if not info:
        return []
    lines = [
        f"Model families ({info['workload']})",
        f"{'family':<14} {'engine/bare (95% interval)':>26} {'no previews':>12} "
        f"{'preview/step':>13} {'alone':>7} {'step ms':>8}",
        f"{'(target)':<14} {'≤ 1.03':>26} {'':>12} {'≤ 2%':>13}",
    ]
    for name, figures in info["figures"].items():
        low, high = figures.get("engine_over_bare_interval") or (math.nan, math.nan)
        ratio = f"{figures['engine_over_bare']:.3f} ({low:.3f}–{high:.3f})"
        lines.append(
            f"{name:<14} {ratio:>26} "
            f"{figures['engine_no_preview_over_bare']:>12.3f} "
            f"{figures['preview_share_in_run']:>13.2%} {figures['preview_share']:>7.2%} "
            f"{figures['denoising_step_ms']:>8.2f}"
        )
    return lines
