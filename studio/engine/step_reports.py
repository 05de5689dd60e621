"""Reporting each denoising step, with its preview, from inside the pipeline's loop."""

from __future__ import annotations

import math
import threading
import time
from typing import Any

from studio.engine.guidance import GenerationCancelled, GuidanceTap
from studio.engine.jobs import Reporter, StepProgress
from studio.engine.preview import PreviewCopy, Previewer


class StepReports:
    """The pipeline's step callback: reports each step in order, with a preview every
    `every` steps and at the last, and stops the loop once the job is cancelled.

    A step whose preview is still being copied from the GPU is held and reported at the
    next step, or when `flush` is called after the pipeline returns, so the loop never
    waits for the GPU. A retry starts again at step 1 and drops what the failed attempt
    held.
    """

    def __init__(
        self,
        pipe: Any,
        tap: GuidanceTap,
        previewer: Previewer,
        every: int,
        stage: str,
        reporter: Reporter,
        cancel: threading.Event,
        legacy_callback: bool,
    ) -> None:
        self.pipe = pipe
        self.tap = tap
        self.previewer = previewer
        self.every = max(1, every)
        self.stage = stage
        self.reporter = reporter
        self.cancel = cancel
        # The legacy `callback` is called once per scheduler step, not once per timestep:
        # second-order schedulers (Heun, DPM2) run two timesteps a step.
        self._timesteps_per_call = getattr(pipe.scheduler, "order", 1) if legacy_callback else 1
        self._started = time.perf_counter()
        self._held: tuple[int, int, PreviewCopy | None] | None = None

    def __call__(self, index: int) -> None:
        total = self._total()
        step = index + 1
        if step == 1:
            self._held = None  # a retry: the failed attempt's last step is not this one's
        copy = None
        if self.previewer.enabled and (step % self.every == 0 or step == total):
            x0 = self.tap.latest_x0()
            copy = self.previewer.start(x0) if x0 is not None else None
        self.flush()
        if copy is not None and copy.in_flight and step < total:
            self._held = (step, total, copy)
        else:
            self._report(step, total, copy)
        if self.cancel.is_set():
            raise GenerationCancelled

    def flush(self) -> None:
        """Report the step held back, if any."""
        if self._held is not None:
            held, self._held = self._held, None
            self._report(*held)

    def _total(self) -> int:
        # image→image pipelines run only the tail of the schedule; they record its length
        timesteps = getattr(self.pipe, "_num_timesteps", None) or len(self.pipe.scheduler.timesteps)
        return math.ceil(timesteps / self._timesteps_per_call)

    def _report(self, step: int, total: int, copy: PreviewCopy | None) -> None:
        preview = copy.collect() if copy is not None else None
        elapsed = time.perf_counter() - self._started
        self.reporter.step(StepProgress(self.stage, step, total, elapsed, preview))
