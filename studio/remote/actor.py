"""An engine on a Ray worker: owns one `Engine` and its loaded model, runs one job at a
time, and sends back every report of a job as it happens.

`EngineActor` is a plain class; `studio.remote.pool` makes it a threaded Ray actor
(max_concurrency > 1), so `cancel()` runs while `run()` is busy and sets the job's own
`threading.Event`, which the engine checks before every denoising step — the same cancel as
the local worker's. A cancel that arrives before its job does is kept: the job then ends
unrun.

Jobs are known here by a key the pool makes unique (its own token, the job's id and its
attempt), so that two windows sharing a cluster's engines, or a job's retry, never meet.
A job's reports are events, plain tuples that pickle small:
    ("status", message, fraction or None)
    ("step", StepProgress, the time it was reported)      the preview travels inside
    ("done", {"images": [PNG bytes], "request", "seeds", "timings", "stages"})
    ("cancelled",)
    ("error", one sentence, whether it is the user's to act on, the model still loaded or "")
`run()` yields them (a Ray streaming generator); `start()` and `poll()` hand the same events
over to a client that cannot stream (Ray Client, `ray://`).
"""

from __future__ import annotations

import io
import logging
import os
import queue
import socket
import threading
import time
from collections import deque
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

from studio.core.errors import UserError
from studio.core.jobs import FRAMES_PER_SECOND, GenerationResult, StepProgress
from studio.core.request import GenerationRequest
from studio.core.settings import EngineSettings, needs_reload

log = logging.getLogger(__name__)

Event = tuple[Any, ...]
TERMINAL = ("done", "cancelled", "error")
_REMEMBERED = 256  # ids of ended jobs kept, so that a late cancel creates nothing


def studio_version() -> str:
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version("latent-studio")
    except PackageNotFoundError:  # run from a checkout that was never installed
        return "unknown"


@dataclass
class _RemoteJob:
    key: str
    cancel: threading.Event = field(default_factory=threading.Event)
    events: queue.Queue[Event] = field(default_factory=queue.Queue)


class _QueueReporter:
    """The engine's reporter for one job: every report becomes an event, stamped. Its
    steps go to a window: the engine may send them in batches, as to a local one."""

    frame_interval = 1 / FRAMES_PER_SECOND

    def __init__(self, job: _RemoteJob) -> None:
        self._job = job

    def status(self, message: str, fraction: float | None) -> None:
        self._job.events.put(("status", message, fraction))

    def step(self, progress: StepProgress) -> None:
        self._job.events.put(("step", progress, time.time()))


class EngineActor:
    """One engine on one worker of the cluster (see the module's docstring)."""

    def __init__(self, name: str, threads: int | None = None) -> None:
        self.name = name
        self._threads = threads
        self._settings = EngineSettings()
        self._engine: Any = None
        self._model = ""  # the generator the engine holds, once a job has loaded it
        self._run_lock = threading.Lock()  # one job at a time on this engine
        self._lock = threading.Lock()
        self._jobs: dict[str, _RemoteJob] = {}
        self._ended: deque[str] = deque(maxlen=_REMEMBERED)

    # -- asked by the pool ------------------------------------------------------------------

    def where(self) -> dict[str, str]:
        """Who this engine is: its name, its node, and the versions it runs."""
        import platform

        import ray

        try:
            node = ray.util.get_node_ip_address()
        except Exception:  # noqa: BLE001 - a name is enough to tell engines apart
            node = socket.gethostname()
        return {
            "name": self.name,
            "node": node,
            "host": socket.gethostname(),
            "pid": str(os.getpid()),
            "studio": studio_version(),
            "ray": ray.__version__,
            "python": platform.python_version(),
            "model": self._model,
        }

    def run(
        self, key: str, request: GenerationRequest, settings: EngineSettings
    ) -> Iterator[Event]:
        """Run a job and yield its events as they happen, the last one an ending."""
        job = self._start(key, request, settings)
        while True:
            event = job.events.get()
            if event[0] in TERMINAL:
                self._forget(key)
                yield event
                return
            yield event

    def begin(self, key: str, request: GenerationRequest, settings: EngineSettings) -> None:
        """Start a job whose events the caller will `poll` (a client that cannot stream)."""
        self._start(key, request, settings)

    def _start(self, key: str, request: GenerationRequest, settings: EngineSettings) -> _RemoteJob:
        job = self._job(key)
        thread = threading.Thread(
            target=self._work, args=(job, request, settings), name=f"job-{key}", daemon=True
        )
        thread.start()
        return job

    def poll(self, key: str, timeout: float = 0.5) -> list[Event]:
        """The job's events since the last poll: waits up to `timeout` for the first one."""
        with self._lock:
            job = self._jobs.get(key)
        if job is None:
            return [("error", "The cluster's engine no longer knows this job.", True, self._model)]
        events: list[Event] = []
        try:
            events.append(job.events.get(timeout=timeout))
            while events[-1][0] not in TERMINAL:
                events.append(job.events.get_nowait())
        except queue.Empty:
            pass
        if events and events[-1][0] in TERMINAL:
            self._forget(key)
        return events

    def cancel(self, key: str) -> None:
        """Stop the job within one step, or make it end unrun if it has not started."""
        with self._lock:
            if key in self._ended:
                return
            job = self._jobs.setdefault(key, _RemoteJob(key))
        job.cancel.set()

    def loaded_model(self) -> str:
        return self._model

    def noising_view(self, request: GenerationRequest, settings: EngineSettings) -> Any:
        """What an image→image or inpaint request's denoising starts from (the engine's
        noising view: H×W×3 uint8), after the job running here; None if it cannot be made."""
        with self._run_lock:
            try:
                view = getattr(self._ensure_engine(settings), "noising_view", None)
                return view(request) if view is not None else None
            except Exception:  # noqa: BLE001 - a view that cannot be made shows nothing
                log.info("no noising view on %s", self.name, exc_info=True)
                return None

    def preload(self, spec: str, settings: EngineSettings) -> str:
        """Load a model before any job asks for it; one sentence if it cannot be."""
        with self._run_lock:
            try:
                from studio.core.request import Mode

                self._ensure_engine(settings).models.pipeline(spec, Mode.TEXT_TO_IMAGE)
            except Exception as e:  # noqa: BLE001 - the first job will say it again
                log.info("%s could not preload %s: %s", self.name, spec, e)
                return str(e)
            finally:
                self._model = self._held()
        return ""

    # -- on the job's thread ----------------------------------------------------------------

    def _job(self, key: str) -> _RemoteJob:
        with self._lock:
            return self._jobs.setdefault(key, _RemoteJob(key))

    def _forget(self, key: str) -> None:
        """The job's ending was handed over: a late cancel of it creates nothing."""
        with self._lock:
            self._jobs.pop(key, None)
            self._ended.append(key)

    def _work(self, job: _RemoteJob, request: GenerationRequest, settings: EngineSettings) -> None:
        with self._run_lock:
            ending = self._run(job, request, settings)
            # whatever the ending, the model is the one the engine holds: a job that failed
            # on its input or out of memory mid-run kept it, a load that failed left none
            self._model = self._held()
            if ending[0] == "error":  # the pool then knows which jobs to place here
                ending = (*ending, self._model)
            job.events.put(ending)

    def _run(self, job: _RemoteJob, request: GenerationRequest, settings: EngineSettings) -> Event:
        if job.cancel.is_set():
            return ("cancelled",)
        try:
            engine = self._ensure_engine(settings)
            result = engine.run(request, _QueueReporter(job), cancel=job.cancel)
            if result.cancelled or job.cancel.is_set():
                return ("cancelled",)
            return ("done", encode_result(result))
        except UserError as e:
            return ("error", str(e), True)
        except MemoryError:
            return ("error", f"{self.name} ran out of memory: try a smaller size or batch.", True)
        except Exception as e:  # noqa: BLE001 - a job's failure never wedges the engine
            log.exception("a job failed on %s", self.name)
            return (
                "error",
                f"The job failed unexpectedly on {self.name} ({e.__class__.__name__}); "
                "see the Ray worker's log.",
                False,
            )

    def _held(self) -> str:
        """The model the engine holds now, as its model manager knows it."""
        return self._engine.models.loaded if self._engine is not None else ""

    def _ensure_engine(self, settings: EngineSettings) -> Any:
        """The engine under `settings`: a change of device or placement loads anew."""
        if self._engine is not None and needs_reload(self._settings, settings):
            self._engine.models.unload()
            self._engine = None
            self._model = ""
        self._settings = settings
        if self._engine is None:
            import torch

            from studio.engine.generate import Engine

            if self._threads:
                torch.set_num_threads(self._threads)
            self._engine = Engine(settings)
        self._engine.settings = settings
        return self._engine


def encode_result(result: GenerationResult) -> dict[str, Any]:
    """A finished result as it travels back: each image as PNG bytes (lossless, small)."""
    images = []
    for image in result.images:
        buffer = io.BytesIO()
        image.save(buffer, format="PNG", compress_level=1)
        images.append(buffer.getvalue())
    return {
        "images": images,
        "request": result.request,
        "seeds": list(result.seeds),
        "timings": dict(result.timings),
        "stages": list(result.stages),
        "kept": result.kept,
    }


def decode_result(payload: dict[str, Any]) -> GenerationResult:
    """The result on this machine, ready to be saved as a local job's is."""
    from PIL import Image

    images = []
    for data in payload["images"]:
        with Image.open(io.BytesIO(data)) as image:
            images.append(image.copy())  # a plain image, as the engine's
    return GenerationResult(
        images,
        payload["request"],
        payload["seeds"],
        payload["timings"],
        stages=payload["stages"],
        kept=payload.get("kept"),
    )
