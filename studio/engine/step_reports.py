"""Reporting each denoising step, with its preview, from inside the pipeline's loop."""

from __future__ import annotations

import math
import threading
import time
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch

from studio.core.jobs import Reporter, StepProgress, frame_interval_of
from studio.engine.guidance import GenerationCancelled, GuidanceTap
from studio.engine.preview import PreviewCopy, Previewer

# Steps kept for one batch at most, whatever the reporter's interval: each keeps references
# to its latents and prediction until its preview is made.
MOST_STEPS_IN_A_BATCH = 64


@dataclass
class _Step:
    step: int
    total: int
    elapsed: float  # seconds from the stage's start to the end of this step
    # what its preview is made of: the latents themselves (the last step: the result), the
    # tap's estimate (made into x0 with the batch), or nothing (no preview this step)
    source: torch.Tensor | tuple[Any, ...] | None


class StepReports:
    """The pipeline's step callback: reports each step in order, with a preview every
    `every` steps and at the last, and stops the loop once the job is cancelled.

    Steps are reported in batches, at most as often as the reporter can show a frame
    (`frame_interval_of`; by default each step as it ends): a batch's previews are made in
    one go, each step's own, where a step's a few operations each cost a tiny model's
    step a few percent. A real model's step outlasts the interval: each is its own batch.
    The first step, the last and a cancelled one end a batch at once.

    A batch whose previews are still being copied from the GPU is held and reported at the
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
        shown: tuple[float, float] = (1.0, 1.0),
    ) -> None:
        """`legacy_steps`: for a pipeline with the legacy `callback` (the ×4 upscaler), its
        number of inference steps. That callback is called once per progress-bar step, not
        once per timestep: second-order schedulers run two timesteps a step, and PNDM's
        first call comes after a warm-up timestep, at index 1. `steps_before`: steps a
        branch shares with its parent, which its loop passes over unreported. `shown`: the
        share of the picture's width and height that the result keeps (the ×4 upscaler's
        input is padded to its multiple and its result cut back): the previews show that."""
        self.pipe = pipe
        self.tap = tap
        self.previewer = previewer
        self.every = max(1, every)
        self.stage = stage
        self.reporter = reporter
        self.cancel = cancel
        self.legacy_steps = legacy_steps
        self.shown = shown
        self.frame_interval = frame_interval_of(reporter)
        self._started = time.perf_counter()
        self._last_index = -1
        self._steps_before = steps_before
        self._steps = steps_before  # steps of this attempt
        self._batch: list[_Step] = []  # steps made, not reported yet
        self._batch_ended = -math.inf  # when the last batch was sent
        self._held: tuple[list[_Step], list[tuple[PreviewCopy, int]]] | None = None

    def __call__(self, index: int, latents: Any = None) -> None:
        """`latents`: the pipeline's latents after this step; the last step's are the result."""
        if index <= self._last_index:  # a retry: the failed attempt's steps are not its
            self._steps, self._held, self._batch = self._steps_before, None, []
        self._last_index = index
        self._steps += 1
        step, total = self._steps, self._total()
        now = time.perf_counter()
        source = None
        if self.previewer.enabled and (step % self.every == 0 or step == total):
            # The last step's latents are what the engine decodes: previewing them makes the
            # last frame the result. The last denoised estimate is not quite it where the
            # scheduler combines several steps' predictions (PNDM, LMS), most with few steps.
            last = step == total and latents is not None
            source = latents if last else self.tap.latest_estimate()
        self._batch.append(_Step(step, total, now - self._started, source))
        cancelled = self.cancel.is_set()
        ends = (
            step >= total
            or cancelled
            or now - self._batch_ended >= self.frame_interval
            or len(self._batch) >= MOST_STEPS_IN_A_BATCH
        )
        if not ends:
            self._report_held()
            return
        self._batch_ended = now
        batch, self._batch = self._batch, []
        copies = self._start_previews(batch)
        self._report_held()
        if step < total and not cancelled and any(copy.in_flight for copy, _ in copies):
            self._held = (batch, copies)
        else:
            self._report(batch, copies)
        if cancelled:
            raise GenerationCancelled

    def _total(self) -> int:
        if self.legacy_steps is not None:
            return self.legacy_steps
        # image→image pipelines run only the tail of the schedule; they record its length
        return getattr(self.pipe, "_num_timesteps", None) or len(self.pipe.scheduler.timesteps)

    def _start_previews(self, batch: list[_Step]) -> list[tuple[PreviewCopy, int]]:
        """The batch's previews, started as one preview of all their x0 (one for each run
        of steps of one shape, should the shape change): each copy with its step count."""
        runs: list[list[torch.Tensor]] = []
        for s in batch:
            if s.source is None:
                continue
            x0 = s.source if isinstance(s.source, torch.Tensor) else self.tap.x0_of(s.source)
            if runs and runs[-1][0].shape == x0.shape:
                runs[-1].append(x0)
            else:
                runs.append([x0])
        started = [
            (self.previewer.start(torch.cat(r) if len(r) > 1 else r[0]), len(r)) for r in runs
        ]
        return [(copy, count) for copy, count in started if copy is not None]

    def _report_held(self) -> None:
        if self._held is not None:
            held, self._held = self._held, None
            self._report(*held)

    def _report(self, batch: list[_Step], copies: list[tuple[PreviewCopy, int]]) -> None:
        frames: list[np.ndarray] = []
        for copy, count in copies:
            frames += copy.frames(count)
        if self.shown != (1.0, 1.0):
            frames = [_cut(frame, self.shown) for frame in frames]
        previews = iter(frames)
        for s in batch:
            preview = next(previews) if s.source is not None else None
            self.reporter.step(StepProgress(self.stage, s.step, s.total, s.elapsed, preview))


def _cut(frame: np.ndarray, shown: tuple[float, float]) -> np.ndarray:
    """The top left of a preview frame that the result keeps (its share of each side)."""
    height, width = frame.shape[:2]
    kept = frame[: max(1, math.ceil(height * shown[1])), : max(1, math.ceil(width * shown[0]))]
    return np.ascontiguousarray(kept)
