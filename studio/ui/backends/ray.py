"""The Ray backend: the studio's queue on the engines of a Ray cluster, behind the same seam
as the local worker — the same signals, the same cancel within a step, and each result
saved here with its metadata by the local backend's own saving before it is called done.

Nothing of Ray is imported until `start()`, which connects (or starts a cluster of this
machine for the address "local") on a thread of its own, so the window never waits on the
network. The pool (`studio.remote.pool`) reports from one thread per running job; every
report becomes a queued signal, delivered on the UI thread.
"""

from __future__ import annotations

import logging
import threading
from typing import TYPE_CHECKING, Any

from PySide6.QtCore import QObject

from studio.core.errors import one_sentence
from studio.core.jobs import GenerationResult, Job, StepProgress
from studio.core.request import GenerationRequest
from studio.core.saving import save_job_result
from studio.core.settings import EngineSettings
from studio.ui.backends.base import UNKNOWN_FRACTION, Backend

if TYPE_CHECKING:
    from studio.remote.pool import EnginePool

log = logging.getLogger(__name__)


class RayBackend(Backend):
    """Jobs on a Ray cluster's engine actors (see the module's docstring)."""

    def __init__(
        self,
        address: str = "auto",
        settings: EngineSettings | None = None,
        parent: QObject | None = None,
        **pool_options: Any,
    ) -> None:
        """`address`: `ray://host:10001`, `auto` (the cluster this machine is part of),
        `host:6379`, or `local` (a cluster of this machine alone); `pool_options` go to
        `EnginePool` (engines, cpus_per_engine, channel)."""
        super().__init__(parent)
        self.address = address
        self._settings = settings or EngineSettings()
        self._options = pool_options
        self._jobs: dict[int, Job] = {}  # submitted and not yet ended
        self._lock = threading.Lock()
        self._pool: EnginePool | None = None
        self._connecting: threading.Thread | None = None
        self._release = threading.Event()  # set by stop(): the connecting thread may end
        self._noising_token = 0  # the noising view asked for last: only it is answered
        self._noising: set[threading.Thread] = set()
        self._running = False

    @property
    def is_running(self) -> bool:
        return self._running

    @property
    def capacity(self) -> int:
        """One job per engine once the cluster is connected (one before)."""
        return max(1, len(self._pool.engines)) if self._pool is not None else 1

    @property
    def pool(self) -> EnginePool | None:
        return self._pool

    def start(self, preload_model: str = "") -> None:
        """Connect and start the engines on a thread; engineReady says how it went."""
        if self._pool is not None:
            return
        from studio.remote.pool import EnginePool

        self._running = True
        self._pool = EnginePool(_Relay(self), self.address, self._settings, **self._options)
        self._connecting = threading.Thread(
            target=self._connect, args=(preload_model,), name="studio-ray-connect", daemon=True
        )
        self._connecting.start()

    def submit(self, job: Job) -> None:
        if self._pool is None:
            self.start()
        assert self._pool is not None
        with self._lock:
            self._jobs[job.id] = job
        self._pool.submit(job.id, job.request)

    def cancel(self, job_id: int) -> None:
        if self._pool is not None:
            self._pool.cancel(job_id)

    def show_noising(self, token: int, request: GenerationRequest) -> None:
        """The noising view, made by an engine of the cluster (on a thread: the answer is
        `noised`, for the latest token only)."""
        self._noising_token = token
        if self._pool is None or not self._running:
            self.noised.emit(token, None)
            return
        thread = threading.Thread(
            target=self._make_noising, args=(token, request), name="studio-ray-noising"
        )
        with self._lock:
            self._noising.add(thread)
        thread.start()

    def _make_noising(self, token: int, request: GenerationRequest) -> None:
        try:
            picture = self._pool.noising_view(request) if self._pool is not None else None
            if token == self._noising_token and self._running:
                self.noised.emit(token, picture)
        finally:
            with self._lock:
                self._noising.discard(threading.current_thread())

    def configure(self, settings: EngineSettings) -> None:
        self._settings = settings
        if self._pool is not None:
            self._pool.configure(settings)

    def stop(self, timeout_ms: int = 2000) -> bool:
        """Cancel everything and let every thread of this backend end (Ray too, if this
        backend started or joined it)."""
        self._running = False
        if self._pool is None:
            return True
        seconds = timeout_ms / 1000
        ended = self._pool.stop(seconds)
        with self._lock:
            noising = list(self._noising)
        for thread in noising:  # ends with Ray's answer, or its end
            thread.join(seconds)
        self._release.set()  # the connecting thread ends Ray, if it started it, and ends
        if self._connecting is not None:
            self._connecting.join(seconds)
        return ended and not (self._connecting and self._connecting.is_alive())

    # -- the pool's reports, on its threads ---------------------------------------------------

    def _connect(self, preload_model: str) -> None:
        from studio.remote.pool import ClusterError

        where = f"Connecting to the Ray cluster ({self.address})…"
        self.statusChanged.emit(where, UNKNOWN_FRACTION)
        assert self._pool is not None
        try:
            summary = self._pool.start(preload_model)
        except ClusterError as e:
            if not self._release.is_set():
                self.engineReady.emit(str(e))
            self._pool.shutdown_ray()
            return
        if not self._release.is_set():
            self.engineReady.emit(f"Ready · {summary}")
        # A cluster started here is Ray's processes, started by this thread; Linux ends them
        # when the thread that started them ends (their parent-death signal), and a process
        # whose cluster is gone is ended by Ray within a minute. So this thread lives until
        # stop(), and ends Ray before it ends itself.
        self._release.wait()
        self._pool.shutdown_ray()

    def _take(self, job_id: int) -> Job | None:
        with self._lock:
            return self._jobs.pop(job_id, None)


class _Relay:
    """The pool's listener: each report a signal of the backend (queued to the UI thread);
    a finished job is saved here first, on the pool's thread."""

    def __init__(self, backend: RayBackend) -> None:
        self._backend = backend

    def placed(self, job_id: int, where: str) -> None:
        self._backend.placed.emit(job_id, where)

    def status(self, message: str, fraction: float | None) -> None:
        self._backend.statusChanged.emit(
            message, UNKNOWN_FRACTION if fraction is None else fraction
        )

    def step(self, job_id: int, progress: StepProgress) -> None:
        self._backend.stepped.emit(job_id, progress)

    def finished(self, job_id: int, result: GenerationResult) -> None:
        job = self._backend._take(job_id)
        if job is None:
            return
        try:
            save_job_result(result, job)  # on disk before anyone hears it is done
        except Exception as e:  # noqa: BLE001 - the job fails with a sentence instead
            self._backend.failed.emit(job_id, one_sentence(e))
            return
        self._backend.finished.emit(job_id, result)

    def failed(self, job_id: int, message: str) -> None:
        self._backend._take(job_id)
        self._backend.failed.emit(job_id, message)

    def cancelled(self, job_id: int) -> None:
        self._backend._take(job_id)
        self._backend.cancelled.emit(job_id)
