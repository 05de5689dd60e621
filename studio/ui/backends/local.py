"""The local backend: a long-lived worker thread that owns the engine, and so torch and
the loaded model.

`EngineWorker` is a QObject moved to a QThread; the UI talks to it only through queued
signals, except `accept()`, `cancel()` and `stop()`, which are thread-safe and act at once.
`LocalBackend` owns the thread and the worker and forwards the worker's reports.
The engine module (which imports torch) is imported inside the worker's slots, on the
worker thread, so the UI thread never pays for it.

Cancelling has one mechanism: every job gets its own `threading.Event` when the worker
accepts it (before its run is even queued), `cancel(job_id)` sets that event, and the
worker hands it to `engine.run(..., cancel=event)`, which checks it before every UNet
call. A cancel that lands before the run starts, or while it is starting, is therefore
never lost: a job whose event is set when its turn comes does not run at all.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable
from typing import TYPE_CHECKING, Any, Protocol

from PySide6.QtCore import QObject, QThread, Signal, Slot

from studio.core.errors import UserError, one_sentence
from studio.core.jobs import FRAMES_PER_SECOND, GenerationResult, Job
from studio.core.request import GenerationRequest, Mode
from studio.core.saving import save_job_result
from studio.core.settings import EngineSettings, needs_reload
from studio.ui.backends.base import UNKNOWN_FRACTION, Backend, JobSignals

if TYPE_CHECKING:
    from studio.core.jobs import StepProgress

log = logging.getLogger(__name__)


class EngineLike(Protocol):
    """What the worker needs from an engine; tests pass a fake with the same shape."""

    settings: EngineSettings

    def run(
        self, request: GenerationRequest, reporter: Any, cancel: threading.Event | None = None
    ) -> GenerationResult:
        """Run one request; return a cancelled result soon after `cancel` is set."""
        ...


EngineFactory = Callable[[EngineSettings], EngineLike]


def real_engine(settings: EngineSettings) -> EngineLike:
    """Build the diffusers engine; imports torch, so only call it on the worker thread."""
    from studio.engine.generate import Engine

    return Engine(settings)


class _SignalReporter:
    """The engine's reporter for one job: turns callbacks into queued signals. The window
    shows at most FRAMES_PER_SECOND frames: the engine may send its steps in batches."""

    frame_interval = 1 / FRAMES_PER_SECOND

    def __init__(self, worker: EngineWorker, job_id: int) -> None:
        self._worker = worker
        self._job_id = job_id

    def status(self, message: str, fraction: float | None) -> None:
        self._worker.statusChanged.emit(
            message, UNKNOWN_FRACTION if fraction is None else float(fraction)
        )

    def step(self, progress: StepProgress) -> None:
        self._worker.stepped.emit(self._job_id, progress)


class EngineWorker(JobSignals):
    """Owns the engine on the worker thread and runs one job at a time; reports with the
    same signals as a backend, which LocalBackend forwards."""

    noised = Signal(int, object)  # the noising view: token, picture or None

    def __init__(
        self, settings: EngineSettings | None = None, engine_factory: EngineFactory | None = None
    ) -> None:
        super().__init__()
        self._settings = settings or EngineSettings()
        self._factory = engine_factory or real_engine
        self._engine: EngineLike | None = None
        self._lock = threading.Lock()
        self._cancels: dict[int, threading.Event] = {}  # accepted jobs not yet done
        self._stopping = False
        self.latest_noising = 0  # the noising view asked for last: older asks are skipped

    # -- thread-safe, called from the UI thread ---------------------------------------------

    def accept(self, job_id: int) -> threading.Event:
        """Take a job on: from now on `cancel(job_id)` reaches it, even before it starts.

        Returns the job's cancel flag. Accepting a job twice returns the same flag; after
        `stop()` the flag comes back already set, so the job never runs.
        """
        with self._lock:
            event = self._cancels.get(job_id)
            if event is None:
                event = self._cancels[job_id] = threading.Event()
            if self._stopping:
                event.set()
            return event

    def cancel(self, job_id: int) -> None:
        """Stop a job within one step if it runs, or make it end unrun when its turn comes.

        A job the worker never accepted, or one that is already over, has nothing to cancel.
        """
        with self._lock:
            event = self._cancels.get(job_id)
        if event is not None:
            event.set()

    def stop(self) -> None:
        """Cancel everything, running or accepted, and every job accepted from now on; used
        when the window closes."""
        with self._lock:
            self._stopping = True
            events = list(self._cancels.values())
        for event in events:
            event.set()

    # -- slots, run on the worker thread -----------------------------------------------------

    @Slot(str)
    def start(self, preload_model: str) -> None:
        """Import the engine (torch, diffusers) and optionally load a model, with status."""
        if self._stopping:
            return
        try:
            self.statusChanged.emit("Loading the engine (torch, diffusers)…", UNKNOWN_FRACTION)
            engine = self._ensure_engine()
            if preload_model and hasattr(engine, "models"):
                self.statusChanged.emit(f"Loading {preload_model}…", UNKNOWN_FRACTION)
                engine.models.pipeline(preload_model, Mode.TEXT_TO_IMAGE)  # type: ignore[attr-defined]
        except UserError as e:
            self.engineReady.emit(f"Ready. {e}")
            return
        except Exception as e:  # noqa: BLE001 - the window must stay usable whatever happens
            log.exception("engine start failed")
            self.engineReady.emit(f"The engine could not start ({e.__class__.__name__}).")
            return
        self.engineReady.emit("Ready")

    @Slot(object)
    def configure(self, settings: EngineSettings) -> None:
        """New settings apply from the next job on.

        A queued slot on the worker thread, which runs one job per slot call, so this runs
        between jobs, never during one. Preview and VAE tiling changes go straight to the
        engine. A change of device, precision or placement drops the engine and its loaded
        model; the next job builds both anew under the new settings, and a device this
        machine lacks fails that job with one sentence.
        """
        previous, self._settings = self._settings, settings
        engine = self._engine
        if engine is None:
            return
        if not needs_reload(previous, settings):
            engine.settings = settings
            return
        self._engine = None
        models = getattr(engine, "models", None)
        if models is not None:
            models.unload()  # free the old model's memory before the next load

    @Slot(int, object)
    def noising(self, token: int, request: GenerationRequest) -> None:
        """The noising view of `request`, unless a newer one was asked for meanwhile."""
        if token != self.latest_noising or self._stopping:
            return
        try:
            engine = self._ensure_engine()
            view = getattr(engine, "noising_view", None)
            picture = view(request) if view is not None else None
        except Exception:  # noqa: BLE001 - a view that cannot be made shows nothing
            log.info("no noising view", exc_info=True)
            picture = None
        self.noised.emit(token, picture)

    @Slot(object)
    def run(self, job: Job) -> None:
        cancel = self.accept(job.id)  # the flag EngineThread.submit made, or a new one
        try:
            if cancel.is_set():
                self.cancelled.emit(job.id)  # cancelled before its turn: it never starts
                return
            self._run(job, cancel)
        finally:
            self._forget(job.id)

    # -- internals ------------------------------------------------------------------------------

    def _run(self, job: Job, cancel: threading.Event) -> None:
        """Run and save one job; whatever happens, it ends with exactly one signal."""
        try:
            engine = self._ensure_engine()
            result = engine.run(job.request, _SignalReporter(self, job.id), cancel=cancel)
            if result.cancelled or cancel.is_set():  # set after the last step: save nothing
                self.cancelled.emit(job.id)
                return
            save_job_result(result, job)
        except Exception as e:  # noqa: BLE001 - one job's failure never wedges the queue
            self.failed.emit(job.id, one_sentence(e))
            return
        self.finished.emit(job.id, result)

    def _ensure_engine(self) -> EngineLike:
        if self._engine is None:
            self._engine = self._factory(self._settings)
        return self._engine

    def _forget(self, job_id: int) -> None:
        with self._lock:
            self._cancels.pop(job_id, None)


class LocalBackend(Backend):
    """The engine on a worker thread of this process: owns the QThread and the worker on it;
    start once, stop once."""

    _startRequested = Signal(str)
    _runRequested = Signal(object)
    _configureRequested = Signal(object)
    _noisingRequested = Signal(int, object)

    def __init__(
        self,
        settings: EngineSettings | None = None,
        engine_factory: EngineFactory | None = None,
        parent: QObject | None = None,
    ) -> None:
        super().__init__(parent)
        self.worker = EngineWorker(settings, engine_factory)
        self._thread = QThread()
        self._thread.setObjectName("studio-engine")
        self.worker.moveToThread(self._thread)
        self._startRequested.connect(self.worker.start)
        self._runRequested.connect(self.worker.run)
        self._configureRequested.connect(self.worker.configure)
        self._noisingRequested.connect(self.worker.noising)
        self.worker.noised.connect(self.noised)
        for name in JobSignals.NAMES:
            getattr(self.worker, name).connect(getattr(self, name))
        self._started = False

    @property
    def is_running(self) -> bool:
        return self._thread.isRunning()

    def start(self, preload_model: str = "") -> None:
        """Start the thread; it imports the engine and preloads `preload_model` if given."""
        if self._started:
            return
        self._started = True
        self._thread.start()
        self._startRequested.emit(preload_model)

    def submit(self, job: Job) -> None:
        if not self._started:
            self.start()
        self.worker.accept(job.id)  # before the queued run: a cancel from now on is kept
        self._runRequested.emit(job)

    def configure(self, settings: EngineSettings) -> None:
        self._configureRequested.emit(settings)

    def show_noising(self, token: int, request: GenerationRequest) -> None:
        if not self._started:
            self.start()
        self.worker.latest_noising = token  # one int written: read on the worker thread
        self._noisingRequested.emit(token, request)

    def cancel(self, job_id: int) -> None:
        self.worker.cancel(job_id)

    def stop(self, timeout_ms: int = 2000) -> bool:
        """Cancel everything and end the thread; False if it did not end in time."""
        self.worker.stop()
        if not self._thread.isRunning():
            return True
        self._thread.quit()
        ended = self._thread.wait(timeout_ms)
        if not ended:
            log.warning("the engine thread did not stop within %d ms", timeout_ms)
        return ended
