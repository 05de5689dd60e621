"""Job ids, the queue, and the rule that only the current job may touch the window.

The controller lives on the UI thread. It numbers each request, sends one job at a time
to the engine thread (as many at once as the backend has engines: a Ray cluster's), and
drops every late signal from a job that is no longer running (cancelled or replaced) — so
a cancel can never leak a stale preview or result, as Orange3 insists. The window shows
the steps of the current job: the one started last. Step progress is coalesced to the
latest one and delivered at most ~30 times a second, so a fast model cannot flood the
event loop with repaints.
"""

from __future__ import annotations

import itertools
import logging
import random
from collections import deque
from pathlib import Path

from PySide6.QtCore import QObject, QTimer, Signal, Slot

from studio.core.branches import branch_of
from studio.core.formats import PNG
from studio.core.jobs import (
    FRAMES_PER_SECOND,
    GenerationResult,
    Job,
    JobRecord,
    JobState,
    StepProgress,
)
from studio.core.request import GenerationRequest
from studio.core.settings import EngineSettings
from studio.ui.backends import UNKNOWN_FRACTION, Backend, EngineFactory, LocalBackend

log = logging.getLogger(__name__)

PROGRESS_INTERVAL_MS = 1000 // FRAMES_PER_SECOND  # repaints a second at most
MAX_TIMELINE_FRAMES = 1000  # a safety cap; previews are latent-sized, so this is small
KEPT_JOBS = 20  # the jobs of a session whose steps stay in memory (the timeline of each)


class JobController(QObject):
    jobQueued = Signal(int)
    queueChanged = Signal()  # the waiting jobs or their order changed
    jobStarted = Signal(int)
    progress = Signal(int, object)  # job id, latest StepProgress (throttled)
    jobFinished = Signal(int, object)  # job id, GenerationResult: its files are already saved
    jobFailed = Signal(int, str)  # job id, one sentence
    jobCancelled = Signal(int)
    jobPlaced = Signal(int, str)  # job id, where it runs (a cluster's engine and node)
    busyChanged = Signal(bool)  # True while a job is current
    engineStatus = Signal(str, float)  # message, fraction (UNKNOWN_FRACTION when unknown)
    engineReady = Signal(str)
    outputDirChanged = Signal(object)  # Path

    def __init__(
        self,
        output_dir: Path,
        settings: EngineSettings | None = None,
        engine_factory: EngineFactory | None = None,
        parent: QObject | None = None,
        backend: Backend | None = None,
    ) -> None:
        """`backend`: where jobs run (default: the engine on a local worker thread, built
        with `settings` and `engine_factory`)."""
        super().__init__(parent)
        self._output_dir = output_dir
        self.save_as = PNG  # the format the next jobs' images are saved in
        self._engine = backend or LocalBackend(settings, engine_factory)
        self._engine.setParent(self)
        self._ids = itertools.count(1)
        self._jobs: dict[int, JobRecord] = {}
        self._queue: deque[int] = deque()
        self._running: dict[int, None] = {}  # sent to the backend, in the order they started
        self._places: dict[int, str] = {}  # running job -> where (a cluster's engine)
        self._kept: dict[str, dict[str, int]] = {}  # engine -> its kept jobs' steps, latest
        self._current: int | None = None  # the running job whose steps are shown
        self._latest: StepProgress | None = None
        self._closed = False

        self._flush_timer = QTimer(self)
        self._flush_timer.setSingleShot(True)
        self._flush_timer.setInterval(PROGRESS_INTERVAL_MS)
        self._flush_timer.timeout.connect(self._flush_progress)

        self._listen_to(self._engine)

    def _listen_to(self, backend: Backend) -> None:
        backend.stepped.connect(self._on_step)
        backend.finished.connect(self._on_finished)
        backend.failed.connect(self._on_failed)
        backend.cancelled.connect(self._on_worker_cancelled)
        backend.placed.connect(self._on_placed)
        backend.statusChanged.connect(self.engineStatus)
        backend.engineReady.connect(self.engineReady)
        backend.engineReady.connect(self._dispatch)  # a cluster may now run more at once

    # -- queries ------------------------------------------------------------------------------

    @property
    def current_job(self) -> int | None:
        return self._current

    @property
    def is_busy(self) -> bool:
        return bool(self._running)

    @property
    def running_jobs(self) -> list[int]:
        """The jobs the backend is running, oldest first (one, unless it has several
        engines)."""
        return list(self._running)

    def place_of(self, job_id: int) -> str:
        """Where a running job runs, when its backend said so ("" here)."""
        return self._places.get(job_id, "")

    @property
    def queued_jobs(self) -> list[int]:
        return list(self._queue)

    @property
    def engine_running(self) -> bool:
        return self._engine.is_running

    @property
    def backend(self) -> Backend:
        return self._engine

    @property
    def output_dir(self) -> Path:
        """Where the next job's images go: the window's one record of the output folder."""
        return self._output_dir

    def set_output_dir(self, folder: Path) -> None:
        if folder != self._output_dir:
            self._output_dir = folder
            self.outputDirChanged.emit(folder)

    def job(self, job_id: int) -> JobRecord | None:
        return self._jobs.get(job_id)

    def steps_kept(self, job_id: int) -> int | None:
        """How many of a finished job's first steps an engine still keeps, as its engine
        last said: a branch from one of those continues at once; from a later step, the
        job's steps up to it are computed again first. None for a job that keeps none (a
        batch, an unfinished job)."""
        record = self._jobs.get(job_id)
        kept = record.result.kept if record is not None and record.result else None
        if kept is None or not kept.job:
            return None
        return max((jobs.get(kept.job, 0) for jobs in self._kept.values()), default=0)

    def job_that_made(self, path: Path) -> JobRecord | None:
        """The finished job, still in memory, whose result includes the file at `path`."""
        for record in reversed(self._jobs.values()):
            if record.result is not None and path in record.result.paths:
                return record
        return None

    # -- commands -----------------------------------------------------------------------------

    def start_engine(self, preload_model: str = "") -> None:
        """Start the worker thread (imports torch there) after the window is shown."""
        if not self._closed:
            self._engine.start(preload_model)

    def configure(self, settings: EngineSettings) -> None:
        self._engine.configure(settings)

    def replace_backend(self, backend: Backend, timeout_ms: int = 2000) -> bool:
        """Run the next jobs on `backend` (started here), the old one stopped; only while no
        job runs or waits (False then, and nothing changes)."""
        if self._closed or self._running or self._queue:
            return False
        old = self._engine
        old.blockSignals(True)  # its last words (a late status) are not the new one's
        old.stop(timeout_ms)
        old.deleteLater()
        self._engine = backend
        backend.setParent(self)
        self._listen_to(backend)
        backend.start()
        return True

    def submit(
        self, request: GenerationRequest, parent: int | None = None, live: bool = False
    ) -> int:
        """Queue a request; it runs when every job before it is done. `parent`: the job a
        branch continues, whose first steps its timeline starts with; `live`: a live mode
        draft, whose image is not saved."""
        if self._closed:
            raise RuntimeError("the controller is shut down")
        job_id = next(self._ids)
        record = JobRecord(job_id, request, parent=parent, live=live)
        origin = self._jobs.get(parent) if parent is not None else None
        if origin is not None and request.branch is not None:
            at = request.branch.at_step  # the branch reports its own steps from step k on
            record.shared = [f for f in origin.timeline() if f.stage == "generate" and f.step < at]
        self._jobs[job_id] = record
        self._queue.append(job_id)
        self.jobQueued.emit(job_id)
        self.queueChanged.emit()
        self._dispatch()
        return job_id

    def continue_job(
        self, job_id: int, index: int, wanted: GenerationRequest, vary: float = 0.0
    ) -> tuple[int | None, str]:
        """Continue a finished job from its timeline's frame `index` with what of `wanted`
        (the panel's request) a branch takes, `vary` of the noise left there made fresh:
        the new job's id and a note of what it kept of the parent, or None and why not."""
        record = self._jobs.get(job_id)
        step = record.branchable_step(index) if record is not None else None
        if record is None or record.result is None or step is None:
            return None, "Continue from a step of a finished image, before its last."
        ran = record.result
        parent = ran.request.replace(seed=ran.seeds[0], batch_size=1)
        image = ran.paths[0].name if ran.paths else ""
        noise_seed = random.randrange(2**32) if vary > 0 else None  # each variation its own
        plan = branch_of(parent, wanted, step, noise_seed, parent_image=image, vary=vary)
        problems = plan.request.problems()
        if problems:
            return None, problems[0]
        return self.submit(plan.request, parent=job_id), plan.note()

    def move(self, job_id: int, position: int) -> bool:
        """Put a waiting job at `position` among the waiting jobs (0 runs next)."""
        if job_id not in self._queue:
            return False
        position = max(0, min(len(self._queue) - 1, position))
        if list(self._queue).index(job_id) == position:
            return False
        self._queue.remove(job_id)
        self._queue.insert(position, job_id)
        self.queueChanged.emit()
        return True

    def cancel(self, job_id: int | None = None) -> bool:
        """Cancel a job (the current one by default); its late signals are ignored from now."""
        job_id = self._current if job_id is None else job_id
        record = self._jobs.get(job_id) if job_id is not None else None
        if record is None or record.state.is_over:
            return False
        if record.state is JobState.QUEUED:
            self._queue.remove(job_id)
            self.queueChanged.emit()
        else:
            self._engine.cancel(job_id)  # thread-safe: stops the engine within one step
        running = job_id in self._running
        if running:
            self._end(record, JobState.CANCELLED)
        else:
            self._settle(record, JobState.CANCELLED)
        self.jobCancelled.emit(job_id)
        if running:
            self._dispatch()
        return True

    def cancel_all(self) -> None:
        for job_id in list(self._queue):
            self.cancel(job_id)
        self.cancel()

    def shutdown(self, timeout_ms: int = 2000) -> bool:
        """Cancel everything and stop the engine thread; True when it ended in time."""
        if self._closed:
            return True
        self._closed = True
        self._flush_timer.stop()
        self._queue.clear()
        for record in self._jobs.values():
            if not record.state.is_over:
                record.state = JobState.CANCELLED
        self._running.clear()
        self._places.clear()
        self._current = None  # from now on every late signal is stale
        return self._engine.stop(timeout_ms)

    # -- internals ------------------------------------------------------------------------------

    @Slot()
    def _dispatch(self) -> None:
        """Send waiting jobs while the backend has room (one job, or one per engine)."""
        if self._closed:
            return
        if not self._running and not self._queue:
            self.busyChanged.emit(False)
            return
        while self._queue and len(self._running) < max(1, self._engine.capacity):
            job_id = self._queue.popleft()
            self.queueChanged.emit()
            record = self._jobs[job_id]
            record.state = JobState.RUNNING
            self._running[job_id] = None
            self._flush_timer.stop()  # the steps shown from now on are this job's
            self._current = job_id
            self._latest = None
            job = Job(job_id, record.request, self._output_dir, self.save_as, keep=not record.live)
            self._engine.submit(job)
            self.busyChanged.emit(True)
            self.jobStarted.emit(job_id)

    def _is_current(self, job_id: int) -> bool:
        return job_id == self._current and not self._closed

    def _is_running(self, job_id: int) -> bool:
        return job_id in self._running and not self._closed

    @Slot(int, object)
    def _on_step(self, job_id: int, progress: StepProgress) -> None:
        if not self._is_running(job_id):
            return  # a stale step from a cancelled or replaced job
        record = self._jobs[job_id]
        if progress.preview is not None and len(record.frames) < MAX_TIMELINE_FRAMES:
            record.frames.append(progress)
        if job_id != self._current:
            return  # another engine's job: its steps feed its timeline, not the canvas
        self._latest = progress
        if not self._flush_timer.isActive():
            self._flush_timer.start()

    @Slot(int, str)
    def _on_placed(self, job_id: int, where: str) -> None:
        if not self._is_running(job_id):
            return
        self._jobs[job_id].frames.clear()  # placed again (its engine died): it starts over
        self._places[job_id] = where
        self.jobPlaced.emit(job_id, where)

    @Slot()
    def _flush_progress(self) -> None:
        if self._current is not None and self._latest is not None:
            self.progress.emit(self._current, self._latest)
        self._latest = None

    @Slot(int, object)
    def _on_finished(self, job_id: int, result: GenerationResult) -> None:
        if not self._is_running(job_id):
            return
        if job_id == self._current:
            self._flush_timer.stop()
            self._flush_progress()  # the last step's preview, so the timeline ends on it
        record = self._jobs[job_id]
        record.result = result
        if result.kept is not None:
            self._kept[result.kept.store] = result.kept.jobs
        self._end(record, JobState.DONE)
        self.jobFinished.emit(job_id, result)
        self._dispatch()

    @Slot(int, str)
    def _on_failed(self, job_id: int, message: str) -> None:
        if not self._is_running(job_id):
            log.info("dropped the failure of stale job %d: %s", job_id, message)
            return
        record = self._jobs[job_id]
        record.error = message
        self._end(record, JobState.FAILED)
        self.jobFailed.emit(job_id, message)
        self._dispatch()

    @Slot(int)
    def _on_worker_cancelled(self, job_id: int) -> None:
        # The controller marks a job cancelled the moment the user asks; the worker's
        # confirmation only matters if the engine cancelled on its own.
        if self._is_running(job_id):
            record = self._jobs[job_id]
            self._end(record, JobState.CANCELLED)
            self.jobCancelled.emit(job_id)
            self._dispatch()

    def _end(self, record: JobRecord, state: JobState) -> None:
        """A running job is over; the steps shown go on with the newest one still running."""
        self._settle(record, state)
        self._running.pop(record.id, None)
        self._places.pop(record.id, None)
        if record.id == self._current:
            self._current = next(reversed(self._running), None)
            self._latest = None

    def _settle(self, record: JobRecord, state: JobState) -> None:
        record.state = state
        # Keep the previews of finished jobs only: they feed the timeline.
        if state is not JobState.DONE:
            record.frames.clear()
        self._prune()

    def _prune(self, keep: int = KEPT_JOBS) -> None:
        """Old job records hold images and previews; keep only the recent ones."""
        settled = [i for i, r in self._jobs.items() if r.state.is_over]
        for job_id in settled[:-keep]:
            del self._jobs[job_id]


def fraction_or_none(fraction: float) -> float | None:
    return None if fraction == UNKNOWN_FRACTION or fraction < 0 else fraction
