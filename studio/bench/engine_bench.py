"""Engine measurements: overhead against bare diffusers, preview cost, mode switches, memory.

Every time is compared with a baseline taken in the same process, alternating the two,
so the figures are ratios that survive a change of machine.
"""

from __future__ import annotations

import json
import statistics
import subprocess
import sys
import time
from collections.abc import Callable
from typing import Any

from studio.core.request import GenerationRequest, Mode

BENCH_PROMPT = "a small red circle at the top left on a blue background"


class _CountingReporter:
    """Receives every step, as the studio's worker does, and keeps only a count."""

    def __init__(self) -> None:
        self.steps = 0
        self.previews = 0

    def status(self, message: str, fraction: float | None) -> None:
        pass

    def step(self, progress: Any) -> None:
        self.steps += 1
        self.previews += progress.preview is not None


def bench_request(model: str, steps: int = 25) -> GenerationRequest:
    from pathlib import Path

    from studio.core.catalog import read_model_card, resolve

    source = resolve(model)
    card = read_model_card(Path(source.location)) if source.is_local else {}
    width, height = card.get("default_size", [512, 512])
    return GenerationRequest(
        prompt=BENCH_PROMPT,
        model=model,
        width=width,
        height=height,
        steps=steps,
        cfg_scale=float(card.get("default_cfg", 7.0)),
        seed=1234,
    )


def _time(action: Callable[[], Any]) -> float:
    started = time.perf_counter()
    action()
    return time.perf_counter() - started


def engine_overhead(engine: Any, request: GenerationRequest, repeats: int) -> dict[str, Any]:
    """Median seconds per image: the studio's engine (previews every step) vs bare diffusers."""
    engine.run(request, _CountingReporter())  # load and warm up
    pipe = engine.models.pipeline(request.model, Mode.TEXT_TO_IMAGE)

    def bare() -> None:
        bare_call(pipe, request)

    def studio() -> None:
        reporter = _CountingReporter()
        engine.run(request, reporter)
        assert reporter.steps == request.steps

    bare()  # warm the bare path too
    bare_times, studio_times = [], []
    for round_index in range(repeats):
        # alternate the order so drift in machine speed hits both sides alike
        pair = [(bare, bare_times), (studio, studio_times)]
        for action, times in pair if round_index % 2 == 0 else reversed(pair):
            times.append(_time(action))
    bare_s, studio_s = statistics.median(bare_times), statistics.median(studio_times)
    return {
        "engine_overhead_ratio": studio_s / bare_s,
        "bare_seconds_per_image": bare_s,
        "engine_seconds_per_image": studio_s,
        "step_seconds": bare_s / request.steps,
    }


def bare_call(pipe: Any, request: GenerationRequest, **extra: Any) -> None:
    """The request as a plain diffusers call: the baseline the engine is held against
    (under inference_mode, as the engine runs), with the sampler and guidance arguments
    the engine gives the model's family."""
    import torch

    from studio.engine.family_runtime import family_of
    from studio.engine.generate import guidance_arguments, sampler_for
    from studio.engine.schedulers import scheduler_for

    family = family_of(pipe)
    sampler = sampler_for(family, request.scheduler)
    pipe.scheduler = scheduler_for(pipe, sampler, family.is_flow)
    with torch.inference_mode():
        pipe(
            prompt=request.prompt,
            width=request.width,
            height=request.height,
            num_inference_steps=request.steps,
            generator=torch.Generator("cpu").manual_seed(request.seed),
            output_type="pil",
            **guidance_arguments(pipe, request.cfg_scale, request.negative_prompt),
            **extra,
        )


def preview_cost(engine: Any, request: GenerationRequest, step_seconds: float) -> dict[str, float]:
    """Seconds of one preview of each method as a share of one denoising step."""
    import torch

    from studio.engine.preview import Previewer

    pipe = engine.models.pipeline(request.model, Mode.TEXT_TO_IMAGE)
    factor = 2 ** (len(pipe.vae.config.block_out_channels) - 1)
    channels = pipe.vae.config.latent_channels
    x0 = torch.randn(
        1, channels, request.height // factor, request.width // factor, device=pipe.device
    ).to(pipe.vae.dtype)
    shares: dict[str, float] = {}
    for method in ("linear", "vae"):
        previewer: Previewer = engine._previewer(pipe, request.width, request.height, method)
        if previewer.method != method:
            continue
        reps = 200 if method == "linear" else 5

        def previews(previewer: Previewer = previewer, reps: int = reps) -> None:
            # as the loop makes them: started one after another and collected later, so on
            # a GPU the copies run behind the work, as they do behind the UNet's
            for copy in [previewer.start(x0) for _ in range(reps)]:
                if copy is not None:
                    copy.collect()

        with torch.inference_mode():
            previews()  # warm up, pinned host memory for the copies included
            seconds = _time(previews) / reps
        shares[method] = seconds / step_seconds
    return shares


def mode_switches(engine: Any, model: str) -> dict[str, Any]:
    """Text→image → inpaint → image→image → back: time and weight loads."""
    engine.models.unload()
    engine.models.pipeline(model, Mode.TEXT_TO_IMAGE)  # the load itself is not a switch
    loads = engine.models.weight_loads
    started = time.perf_counter()
    for mode in (Mode.INPAINT, Mode.IMAGE_TO_IMAGE, Mode.TEXT_TO_IMAGE):
        engine.models.pipeline(model, mode)
    return {
        "mode_switch_ms": (time.perf_counter() - started) * 1000,
        "mode_switch_weight_loads": engine.models.weight_loads - loads,
    }


def peak_rss_mb(model: str, steps: int) -> float:
    """Peak resident memory of a fresh process that loads the model and makes one image."""
    code = (
        "import json, resource, sys\n"
        "from studio.bench.engine_bench import bench_request\n"
        "from studio.engine.generate import Engine\n"
        f"Engine().run(bench_request({model!r}, {steps}))\n"
        "peak_kb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss\n"
        "print(json.dumps({'peak_rss_mb': peak_kb / 1024}))\n"
    )
    done = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=600, check=True
    )
    return float(json.loads(done.stdout.strip().splitlines()[-1])["peak_rss_mb"])
