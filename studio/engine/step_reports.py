"""Reporting each denoising step, with its preview, from inside the pipeline's loop."""

from __future__ import annotations

import threading
import time
from typing import Any

from studio.core.jobs import Reporter, StepProgress
from studio.engine.guidance import GenerationCancelled, GuidanceTap
from studio.engine.preview import PreviewCopy, Previewer


class StepReports:
    """The pipeline's step callback: reports each step in order, with a preview every
    `every` steps and at the last, and stops the loop once the job is cancelled.

    A step whose preview is still being copied from the GPU is held and reported at the
    next step, so the loop never waits for the GPU; the last step is never held. A retry
    (the callback's index going back) starts counting again and drops what the failed
    attempt held.
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
        legacy_steps: int | None = None,
        steps_before: int = 0,
    ) -> None:
        """`legacy_steps`: for a pipeline with the legacy `callback` (the ×4 upscaler), its
        number of inference steps. That callback is called once per progress-bar step, not
        once per timestep: second-order schedulers run two timesteps a step, and PNDM's
        first call comes after a warm-up timestep, at index 1. `steps_before`: steps a
        branch shares with its parent, which its loop passes over unreported."""
        self.pipe = pipe
        self.tap = tap
        self.previewer = previewer
        self.every = max(1, every)
        self.stage = stage
        self.reporter = reporter
        self.cancel = cancel
        self.legacy_steps = legacy_steps
        self._started = time.perf_counter()
        self._last_index = -1
        self._steps_before = steps_before
        self._steps = steps_before  # steps of this attempt
        self._held: tuple[int, int, PreviewCopy | None] | None = None

    def __call__(self, index: int, latents: Any = None) -> None:
        """`latents`: the pipeline's latents after this step; the last step's are the result."""
        if index <= self._last_index:  # a retry: the failed attempt's steps are not its
            self._steps, self._held = self._steps_before, None
        self._last_index = index
        self._steps += 1
        step, total = self._steps, self._total()
        copy = None
        if self.previewer.enabled and (step % self.every == 0 or step == total):
            # The last step's latents are what the engine decodes: previewing them makes the
            # last frame the result. The last denoised estimate is not quite it where the
            # scheduler combines several steps' predictions (PNDM, LMS), most with few steps.
            last = step == total and latents is not None
            x0 = latents if last else self.tap.latest_x0()
            copy = self.previewer.start(x0) if x0 is not None else None
        if self._held is not None:
            held, self._held = self._held, None
            self._report(*held)
        if copy is not None and copy.in_flight and step < total:
            self._held = (step, total, copy)
        else:
            self._report(step, total, copy)
        if self.cancel.is_set():
            raise GenerationCancelled

    def _total(self) -> int:
        if self.legacy_steps is not None:
            return self.legacy_steps
        # image→image pipelines run only the tail of the schedule; they record its length
        return getattr(self.pipe, "_num_timesteps", None) or len(self.pipe.scheduler.timesteps)

    def _report(self, step: int, total: int, copy: PreviewCopy | None) -> None:
        preview = copy.collect() if copy is not None else None
        elapsed = time.perf_counter() - self._started
        self.reporter.step(StepProgress(self.stage, step, total, elapsed, preview))
