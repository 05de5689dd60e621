"""The engines of a Ray cluster as one queue: connect, start the engine actors, place each
job on one, bring its events back, retry a job whose engine died, cancel within a step.

`EnginePool` is Qt-free and reports to a listener (the window's `RayBackend`, the command
line's waiter) from its own threads: one per running job, each ending with its job.

Placing: jobs leave in the order they came, each to an idle engine that already holds the
job's model if there is one, else to an empty one, else to any idle one; jobs wait while
every engine is busy. A batch is spread too: each of its images (which has its own seed,
the batch's seed + k) is a job of one image, and they come back as one result, their
previews side by side. A job whose engine dies (its node lost, killed for memory) runs again
once, on another engine where there is one; a second loss fails it with one sentence.

Steps travel back on a Ray streaming generator (`num_returns="streaming"`). Ray Client
(`ray://`) cannot stream, so there the pool long-polls the engine for the same events.
"""

from __future__ import annotations

import contextlib
import itertools
import logging
import os
import threading
import time
import uuid
from collections import deque
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any, Protocol

from studio.core.errors import UserError
from studio.core.jobs import GenerationResult, StepProgress
from studio.core.request import GenerationRequest, batch_seeds, resolve_seed
from studio.core.settings import EngineSettings
from studio.core.text import printable
from studio.remote.actor import TERMINAL, EngineActor, Event, decode_result, studio_version

log = logging.getLogger(__name__)

NAMESPACE = "latent-studio"
ENGINE_PREFIX = "studio-engine"
DEFAULT_CPUS_PER_ENGINE = 4  # on a cluster without GPUs: one engine per this many CPUs
MAX_CONCURRENCY = 4  # a running job, its cancel, a poll and a question at once
START_ATTEMPTS = 3  # asking the engines where they run, when one dies as it is asked
MAX_RESTARTS = 2  # Ray starts a dead engine again (its model loads again on its next job)
START_TIMEOUT_S = 300.0  # engines start a Python, import torch and the engine
ATTEMPTS = 2  # a job whose engine died runs once more


class ClusterError(UserError):
    """The cluster cannot be used; str() is one sentence saying why and what to do."""


class Listener(Protocol):
    """Where a pool's reports go; called on the pool's threads."""

    def placed(self, job_id: int, where: str) -> None: ...

    def status(self, message: str, fraction: float | None) -> None: ...

    def step(self, job_id: int, progress: StepProgress) -> None: ...

    def finished(self, job_id: int, result: GenerationResult) -> None: ...

    def failed(self, job_id: int, message: str) -> None: ...

    def cancelled(self, job_id: int) -> None: ...


# -- connecting ------------------------------------------------------------------------------


def import_ray() -> Any:
    try:
        import ray
    except ImportError:
        raise ClusterError(
            "Ray is not installed here: pip install 'latent-studio[ray]' to use a cluster."
        ) from None
    return ray


def is_local(address: str) -> bool:
    """Whether the address asks for a cluster of this process alone ("ray", "local")."""
    return address.strip().lower() in ("", "ray", "local")


def _places(ray: Any, handles: list[Any]) -> list[dict[str, Any]]:
    """Where each engine runs (its node, its model). An engine that died as it was asked
    (Ray starting it again: its worker lost, or stopped by the node's memory monitor) is
    asked again, a second later, before the cluster is said to be unusable (CI saw "The
    actor died unexpectedly before finishing this task" once in five runs)."""
    for attempt in range(START_ATTEMPTS):
        try:
            return ray.get([h.where.remote() for h in handles], timeout=START_TIMEOUT_S)
        except ray.exceptions.RayActorError as e:
            if attempt == START_ATTEMPTS - 1:
                raise
            log.warning("an engine died as it started (%s): asking again", e)
            time.sleep(1.0)
    raise AssertionError("unreachable")


def connect(address: str, local_cpus: int | None = None) -> bool:
    """Connect this process to the Ray cluster at `address` (`ray://host:10001`, `auto`,
    `host:6379`), or start one here for `ray`/`local`; True when this call started or joined
    Ray and so must end it. No dashboard, unless the cluster was started with one."""
    ray = import_ray()
    if ray.is_initialized():
        return False
    options: dict[str, Any] = {
        "namespace": NAMESPACE,
        "log_to_driver": False,
        "logging_level": logging.WARNING,
    }
    check_answers(address)
    try:
        if is_local(address):
            # "local": a new cluster of this process even where another runs on this machine
            ray.init(address="local", num_cpus=local_cpus, include_dashboard=False, **options)
        else:
            ray.init(address=address.strip(), **options)
    except Exception as e:  # noqa: BLE001 - every way of failing to connect is one sentence
        raise ClusterError(explain(e, address)) from None
    return True


def check_answers(address: str, seconds: float = 5.0) -> None:
    """ClusterError at once when nothing answers at a cluster's address (`host:port`,
    `ray://host:port`): Ray itself would retry it for minutes, writing its own log lines to
    the terminal, and the window would say "Connecting…" all that time."""
    import socket
    from urllib.parse import urlsplit

    if is_local(address) or address.strip().lower() == "auto":
        return
    try:
        parts = urlsplit(address if "://" in address else f"ray://{address}")
        host, port = parts.hostname, parts.port or 10001
    except ValueError:
        return  # Ray says what is wrong with it
    if not host:
        return
    try:
        socket.create_connection((host, port), timeout=seconds).close()
    except OSError as e:
        reason = (e.strerror or str(e) or e.__class__.__name__).lower()
        raise ClusterError(
            f"No Ray cluster answers at {printable(address.strip())} ({reason}): start one "
            "there ('ray start --head'), or check the address."
        ) from None


def explain(error: BaseException, address: str) -> str:
    """One sentence for a cluster that cannot be used: not reachable, without the studio,
    or running other versions."""
    import platform

    text = str(error)
    lowered = text.lower()
    shown = address.strip() or "this machine"
    if isinstance(error, UserError):
        return str(error)
    if "no module named 'studio" in lowered or 'no module named "studio' in lowered:
        return (
            f"The Ray cluster at {shown} does not have Latent Studio installed: run pip "
            "install 'latent-studio[ray]' on each of its nodes."
        )
    if "version mismatch" in lowered or "was started with" in lowered:
        here = f"Ray {import_ray().__version__}, Python {platform.python_version()}"
        return (
            f"The Ray cluster at {shown} runs other versions of Ray or Python than this "
            f"machine ({here}): install the same on both."
        )
    if "requires pip package `ray[client]`" in lowered:
        return "Connecting by ray:// needs Ray's client here: pip install 'ray[client]'."
    if "could not find any running ray instance" in lowered:
        return (
            "No Ray cluster runs on this machine: start one with 'ray start --head', or give "
            "a cluster's address (ray://host:10001)."
        )
    if isinstance(error, (ConnectionError, TimeoutError)) or "connect" in lowered:
        token = " (and, for a cluster with token authentication, RAY_AUTH_MODE=token here)"
        return (
            f"No Ray cluster answered at {shown}: check the address, that 'ray start --head' "
            f"runs there and that its port is open{token if '://' in shown else ''}."
        )
    if error.__class__.__name__ == "GetTimeoutError":
        return (
            f"The Ray cluster at {shown} started no engine within {START_TIMEOUT_S:.0f} s: "
            "it may have no free GPU or CPUs for one."
        )
    first = text.strip().splitlines()[0] if text.strip() else error.__class__.__name__
    return f"The Ray cluster at {shown} could not be used ({first[:160]})."


def plan(
    resources: dict[str, float], engines: int | None, cpus_per_engine: int
) -> tuple[int, dict[str, float]]:
    """How many engines, each asking for what: one per GPU, or one per `cpus_per_engine`
    CPUs on a cluster without GPUs; `engines` overrides the count."""
    gpus = int(resources.get("GPU", 0))
    if gpus:
        return engines or gpus, {"num_gpus": 1, "num_cpus": 1}
    cpus = max(1, int(resources.get("CPU", 1)))
    per = max(1, min(cpus_per_engine, cpus))  # a small cluster still gets one engine
    count = engines or max(1, cpus // per)
    return count, {"num_cpus": per}


# -- placing ---------------------------------------------------------------------------------


@dataclass(eq=False)
class EngineRecord:
    """The pool's view of one engine actor."""

    name: str
    handle: Any
    node: str = ""
    model: str = ""  # the model it holds, known from its last finished job
    job: PoolJob | None = None
    deaths: int = 0

    @property
    def where(self) -> str:
        return f"{self.name} ({self.node})" if self.node else self.name


@dataclass(eq=False)
class PoolJob:
    id: int
    request: GenerationRequest
    attempts: int = 0
    excluded: set[str] = field(default_factory=set)  # engines that died running it
    cancelled: bool = False
    engine: EngineRecord | None = None
    batch: Batch | None = None  # the batch this image of it belongs to
    index: int = 0  # which image of the batch
    key: str = ""  # how its engine knows this attempt: unique across pools and retries


def choose_engine(job: PoolJob, engines: list[EngineRecord]) -> EngineRecord | None:
    """The idle engine for a job: one holding its model, else an empty one, else any; never
    one that died running it while another engine lives."""
    idle = [e for e in engines if e.job is None]
    allowed = [e for e in idle if e.name not in job.excluded]
    if not allowed and all(e.name in job.excluded for e in engines):
        allowed = idle  # a pool of one engine: its restarted self
    for wanted in (
        lambda e: e.model == job.request.model,
        lambda e: not e.model,
        lambda e: True,
    ):
        for engine in allowed:
            if wanted(engine):
                return engine
    return None


class EnginePool:
    """The engine actors of one cluster, fed from one queue (see the module's docstring)."""

    def __init__(
        self,
        listener: Listener,
        address: str = "auto",
        settings: EngineSettings | None = None,
        engines: int | None = None,
        cpus_per_engine: int = DEFAULT_CPUS_PER_ENGINE,
        channel: str | None = None,
        prefix: str = ENGINE_PREFIX,
    ) -> None:
        """`engines`: how many (default: one per GPU, or per `cpus_per_engine` CPUs);
        `channel`: "stream" or "poll" (default: stream, except over Ray Client)."""
        self._listener = listener
        self.address = address
        self._settings = settings or EngineSettings()
        self._count = engines
        self._cpus = cpus_per_engine
        self._channel = channel
        self._prefix = prefix
        self._lock = threading.Lock()
        self._engines: list[EngineRecord] = []
        self._pending: deque[PoolJob] = deque()
        self._running: dict[int, PoolJob] = {}
        self._threads: set[threading.Thread] = set()
        self._batches: dict[int, Batch] = {}  # a batch's job id -> its images' jobs
        self._part_ids = itertools.count(1 << 40)  # ids of a batch's images, never a job's
        self._token = uuid.uuid4().hex[:12]  # this pool's jobs among all a cluster runs
        self._ready = False
        self._broken = ""  # why the cluster cannot be used, once start() failed
        self._stopping = False
        self._owns_ray = False
        self.step_delays: deque[float] = deque(maxlen=10_000)  # seconds each step travelled

    # -- commands ---------------------------------------------------------------------------

    def start(self, preload_model: str = "") -> str:
        """Connect and start the engines (blocks: seconds to minutes); returns a summary.
        Raises ClusterError with the sentence to show; jobs waiting fail with it. With
        `preload_model` every engine starts loading it (the first jobs wait for it there)."""
        try:
            summary = self._start()
        except Exception as e:  # noqa: BLE001
            self._fail_everything(explain(e, self.address))
            raise ClusterError(self._broken) from None
        with self._lock:
            self._ready = True
            engines = list(self._engines) if preload_model else []
            for engine in engines:
                engine.model = preload_model  # jobs for it are placed there first
            started = self._dispatch_locked()
        for engine in engines:
            engine.handle.preload.remote(preload_model, self._settings)
        self._start_threads(started)
        return summary

    def submit(self, job_id: int, request: GenerationRequest) -> None:
        """Run a request on the cluster after the jobs before it; a batch's images each on
        an engine of their own where there are several."""
        with self._lock:
            broken = self._broken or ("The cluster's queue is closed." if self._stopping else "")
            if not broken:
                self._pending.extend(self._jobs_for(job_id, request))
                started = self._dispatch_locked()
        if broken:
            self._listener.failed(job_id, broken)
            return
        self._start_threads(started)

    def cancel(self, job_id: int) -> None:
        """Stop a running job within one step; a waiting one ends unrun at once."""
        with self._lock:
            batch = self._batches.get(job_id)
        if batch is not None:
            batch.cancelled = True
            for part in batch.part_ids:
                self.cancel(part)
            return
        handle = None
        with self._lock:
            waiting = next((j for j in self._pending if j.id == job_id), None)
            if waiting is not None:
                self._pending.remove(waiting)
            running = self._running.get(job_id)
            if running is not None and running.engine is not None:
                running.cancelled = True
                handle, key = running.engine.handle, running.key
        if waiting is not None:
            self._to(waiting).cancelled(job_id)
        if handle is not None:
            self._tell_cancel(handle, key)

    def configure(self, settings: EngineSettings) -> None:
        """Settings for the jobs placed from now on (each job carries its settings)."""
        with self._lock:
            self._settings = settings

    def stop(self, timeout: float = 2.0, kill: bool = False) -> bool:
        """Cancel everything and wait for the job threads; end Ray if this pool started it,
        and with `kill` its engines too. False when a job thread did not end in time."""
        with self._lock:
            self._stopping = True
            waiting = list(self._pending)
            self._pending.clear()
            running = [(j.key, j.engine.handle) for j in self._running.values() if j.engine]
            for job in self._running.values():
                job.cancelled = True
            threads = list(self._threads)
            engines = list(self._engines)
        for job in waiting:
            self._to(job).cancelled(job.id)
        for key, handle in running:
            self._tell_cancel(handle, key)
        deadline = time.monotonic() + timeout
        for thread in threads:
            thread.join(max(0.0, deadline - time.monotonic()))
        ended = not any(t.is_alive() for t in threads)
        ray = _ray_if_imported()
        if kill and ray is not None and ray.is_initialized():
            for engine in engines:
                with contextlib.suppress(Exception):  # already gone
                    ray.kill(engine.handle, no_restart=True)
        self.shutdown_ray()
        return ended

    def shutdown_ray(self) -> None:
        """End this process's Ray if this pool started or joined it (idempotent)."""
        ray = _ray_if_imported()
        if self._owns_ray and ray is not None and ray.is_initialized():
            ray.shutdown()

    def noising_view(self, request: GenerationRequest, timeout: float = 120.0) -> Any:
        """The noising view of a request from an engine (an idle one holding its model
        first), or None; blocks while that engine finishes its job."""
        with self._lock:
            if not self._ready or not self._engines or self._stopping:
                return None
            engine = min(self._engines, key=lambda e: (e.job is not None, e.model != request.model))
            settings = self._settings
        ray = import_ray()
        try:
            return ray.get(engine.handle.noising_view.remote(request, settings), timeout=timeout)
        except Exception as e:  # noqa: BLE001 - the view is a nicety: nothing shown
            log.info("no noising view from %s: %s", engine.name, e)
            return None

    # -- queries ----------------------------------------------------------------------------

    @property
    def engines(self) -> list[EngineRecord]:
        with self._lock:
            return list(self._engines)

    @property
    def channel(self) -> str:
        return self._channel or "stream"

    # -- internals ----------------------------------------------------------------------------

    def _start(self) -> str:
        ray = import_ray()
        self._owns_ray = connect(self.address, local_cpus=self._count and self._count * self._cpus)
        if self._channel is None:
            self._channel = "poll" if ray.util.client.ray.is_connected() else "stream"
        count, resources = plan(ray.cluster_resources(), self._count, self._cpus)
        threads = int(resources.get("num_cpus", 1)) if "num_gpus" not in resources else None
        remote = ray.remote(EngineActor)
        handles = []
        for index in range(count):
            name = f"{self._prefix}-{index}"
            handles.append(
                remote.options(
                    name=name,
                    namespace=NAMESPACE,
                    get_if_exists=True,
                    max_concurrency=MAX_CONCURRENCY,
                    max_restarts=MAX_RESTARTS,
                    **resources,
                ).remote(name, threads)
            )
        wheres = _places(ray, handles)
        ours = studio_version()
        for where in wheres:
            if where["studio"] != ours:
                raise ClusterError(
                    f"The Ray cluster's node {where['node']} runs Latent Studio "
                    f"{where['studio']}, this machine {ours}: install the same version on both."
                )
        with self._lock:
            self._engines = [
                EngineRecord(w["name"], h, w["node"], w.get("model", ""))
                for h, w in zip(handles, wheres, strict=True)
            ]
        nodes = sorted({w["node"] for w in wheres})
        kind = "GPU" if "num_gpus" in resources else f"{resources['num_cpus']:g} CPU"
        return (
            f"{count} engine{'s' if count != 1 else ''} ({kind} each) on "
            f"{len(nodes)} node{'s' if len(nodes) != 1 else ''} of the Ray cluster"
        )

    def _fail_everything(self, sentence: str) -> None:
        with self._lock:
            self._broken = sentence
            waiting = list(self._pending)
            self._pending.clear()
        for job in waiting:
            self._to(job).failed(job.id, sentence)

    def _dispatch_locked(self) -> list[threading.Thread]:
        """Place waiting jobs on idle engines; the threads to start once the lock is free."""
        started: list[threading.Thread] = []
        if not self._ready or self._stopping:
            return started
        for job in list(self._pending):
            engine = choose_engine(job, self._engines)
            if engine is None:
                if all(e.job is not None for e in self._engines):
                    break  # every engine is busy
                continue  # this one waits for another engine; a later job may fit
            self._pending.remove(job)
            job.attempts += 1
            job.key = f"{self._token}:{job.id}:{job.attempts}"
            job.engine, engine.job = engine, job
            self._running[job.id] = job
            thread = threading.Thread(
                target=self._drive,
                args=(job, engine),
                name=f"studio-ray-job-{job.id}",
                daemon=True,
            )
            self._threads.add(thread)
            started.append(thread)
        return started

    @staticmethod
    def _start_threads(threads: list[threading.Thread]) -> None:
        for thread in threads:
            thread.start()

    def _drive(self, job: PoolJob, engine: EngineRecord) -> None:
        """Follow one job on one engine to its end, on the job's own thread."""
        ray = import_ray()
        lost: BaseException | None = None
        outcome: tuple[str, Any]
        try:
            self._to(job).placed(job.id, engine.where)
            outcome = self._follow(job, engine)
        except ray.exceptions.RayActorError as e:
            lost = e
            outcome = ("lost", e)
        except Exception as e:  # noqa: BLE001 - one job's failure never wedges the queue
            log.warning("job %d on %s: %s", job.id, engine.name, e)
            outcome = ("failed", explain(e, self.address))
        retry = False
        with self._lock:
            engine.job = None
            self._running.pop(job.id, None)
            self._threads.discard(threading.current_thread())
            if lost is not None:
                engine.model = ""  # a restarted engine loads its model again
                engine.deaths += 1
                if engine.deaths > MAX_RESTARTS and engine in self._engines:
                    self._engines.remove(engine)
                log.warning("engine %s died running job %d: %s", engine.name, job.id, lost)
                if job.cancelled or self._stopping:
                    outcome = ("cancelled", None)
                elif job.attempts < ATTEMPTS and self._engines:
                    job.excluded.add(engine.name)
                    job.engine = None
                    self._pending.appendleft(job)
                    retry = True
                else:
                    times = "twice" if job.attempts > 1 else "and no engine is left to retry"
                    outcome = (
                        "failed",
                        f"The Ray cluster lost the job {times} ({engine.name} stopped: its "
                        "node lost, or out of memory).",
                    )
            started = self._dispatch_locked()
            none_left = not self._engines and not self._stopping
        self._start_threads(started)
        if none_left:  # the jobs waiting would wait for ever
            self._fail_everything("Every engine of the Ray cluster has stopped.")
        if retry:
            self._to(job).status(
                f"{engine.name} stopped; running the job again on another engine.", None
            )
            return
        kind, value = outcome
        to = self._to(job)
        if kind == "finished":
            to.finished(job.id, value)
        elif kind == "cancelled":
            to.cancelled(job.id)
        else:
            to.failed(job.id, value)

    def _follow(self, job: PoolJob, engine: EngineRecord) -> tuple[str, Any]:
        for event in self._events(job, engine):
            kind = event[0]
            if kind == "step":
                self.step_delays.append(time.time() - event[2])
                if not job.cancelled:
                    self._to(job).step(job.id, event[1])
            elif kind == "status":
                self._to(job).status(f"{event[1]} ({engine.name})", event[2])
            elif kind == "done":
                engine.model = job.request.model
                if job.cancelled:  # cancelled after its last step: nothing is saved
                    return ("cancelled", None)
                return ("finished", decode_result(event[1]))
            elif kind == "cancelled":
                return ("cancelled", None)
            elif kind == "error":
                engine.model = event[3]  # a failed load left none; bad input kept it
                return ("failed", event[1])
        return ("failed", f"{engine.name} ended the job without a result.")

    def _events(self, job: PoolJob, engine: EngineRecord) -> Iterator[Event]:
        ray = import_ray()
        with self._lock:
            settings = self._settings
        if self.channel == "stream":
            stream = engine.handle.run.options(num_returns="streaming").remote(
                job.key, job.request, settings
            )
            for ref in stream:
                yield ray.get(ref)
            return
        ray.get(engine.handle.begin.remote(job.key, job.request, settings))
        while True:
            for event in ray.get(engine.handle.poll.remote(job.key, 0.5)):
                yield event
                if event[0] in TERMINAL:
                    return

    def _to(self, job: PoolJob) -> Listener:
        """Who hears of a job: the pool's listener, or the batch it is an image of."""
        return job.batch if job.batch is not None else self._listener

    def _jobs_for(self, job_id: int, request: GenerationRequest) -> list[PoolJob]:
        """The job, or with several engines one job per image of a batch (under the lock)."""
        if request.batch_size < 2 or len(self._engines) < 2:
            return [PoolJob(job_id, request)]
        request = request.replace(seed=resolve_seed(request.seed))
        seeds = batch_seeds(request.seed, request.batch_size)
        batch = Batch(job_id, request, seeds, self._listener, self)
        parts = []
        for index, seed in enumerate(seeds):
            part = PoolJob(next(self._part_ids), request.replace(seed=seed, batch_size=1))
            part.batch, part.index = batch, index
            batch.part_ids.append(part.id)
            parts.append(part)
        self._batches[job_id] = batch
        return parts

    def _forget_batch(self, batch: Batch) -> None:
        with self._lock:
            self._batches.pop(batch.id, None)

    @staticmethod
    def _tell_cancel(handle: Any, key: str) -> None:
        try:
            handle.cancel.remote(key)
        except Exception as e:  # noqa: BLE001 - a dead engine runs nothing to cancel
            log.info("could not cancel job %s: %s", key, e)


_STAGES = ("generate", "hires", "upscale")


class Batch:
    """The images of one batch on several engines, heard as one job: previews side by side
    as far as the slowest image has come, one result with every image in seed order, the
    first failure or the cancel ending it all. Implements `Listener` for its images' jobs."""

    def __init__(
        self,
        job_id: int,
        request: GenerationRequest,
        seeds: list[int],
        listener: Listener,
        pool: EnginePool,
    ) -> None:
        self.id = job_id
        self.request = request  # its seed resolved
        self.seeds = seeds
        self.part_ids: list[int] = []
        self.cancelled = False
        self._listener = listener
        self._pool = pool
        self._lock = threading.Lock()
        self._places: list[str] = []
        self._latest: dict[int, StepProgress] = {}
        self._shown = (-1, 0)  # (stage, step) last reported
        self._results: dict[int, GenerationResult] = {}
        self._over = False

    def _index(self, part_id: int) -> int:
        return self.part_ids.index(part_id)

    def placed(self, job_id: int, where: str) -> None:
        with self._lock:
            first = not self._places
            if where not in self._places:
                self._places.append(where)
        if first:
            count = len(self.part_ids)
            self._listener.placed(self.id, f"{where} and others ({count} images)")

    def status(self, message: str, fraction: float | None) -> None:
        self._listener.status(message, fraction)

    def step(self, job_id: int, progress: StepProgress) -> None:
        with self._lock:
            self._latest[self._index(job_id)] = progress
            if self._over or len(self._latest) < len(self.part_ids):
                return
            reports = [self._latest[i] for i in range(len(self.part_ids))]
            stages = {r.stage for r in reports}
            if len(stages) != 1:
                return  # an image is a stage ahead: wait for the others
            stage = _STAGES.index(reports[0].stage) if reports[0].stage in _STAGES else 0
            shown = (stage, min(r.step for r in reports))
            if shown <= self._shown:
                return
            self._shown = shown
        import numpy as np

        previews = [r.preview for r in reports]
        preview = None
        if all(p is not None for p in previews) and len({p.shape[0] for p in previews}) == 1:
            preview = np.concatenate(previews, axis=1)  # the batch side by side
        slowest = min(reports, key=lambda r: r.step)
        self._listener.step(
            self.id,
            StepProgress(
                slowest.stage,
                slowest.step,
                slowest.total,
                max(r.elapsed for r in reports),
                preview,
            ),
        )

    def finished(self, job_id: int, result: GenerationResult) -> None:
        with self._lock:
            self._results[self._index(job_id)] = result
            if self._over or len(self._results) < len(self.part_ids):
                return
            self._over = True
            parts = [self._results[i] for i in range(len(self.part_ids))]
        self._pool._forget_batch(self)
        first = parts[0]
        timings = {k: max(p.timings.get(k, 0.0) for p in parts) for k in first.timings}
        merged = GenerationResult(
            [image for part in parts for image in part.images],
            self.request.replace(scheduler=first.request.scheduler),
            list(self.seeds),
            timings,
            stages=list(first.stages),
        )
        self._listener.finished(self.id, merged)

    def failed(self, job_id: int, message: str) -> None:
        if self._end():
            for part in self.part_ids:  # the other images are of no use now
                if part != job_id:
                    self._pool.cancel(part)
            self._listener.failed(self.id, message)

    def cancelled(self, job_id: int) -> None:
        if self._end():
            self._listener.cancelled(self.id)

    def _end(self) -> bool:
        """The first ending of an image ends the batch: True once, for that one."""
        with self._lock:
            if self._over:
                return False
            self._over = True
        self._pool._forget_batch(self)
        return True


def _ray_if_imported() -> Any:
    import sys

    return sys.modules.get("ray")


# -- one request, for the command line ---------------------------------------------------------


class _Waiter:
    """A listener for one job: relays its reports and keeps its ending."""

    def __init__(self, reporter: Any) -> None:
        self._reporter = reporter
        self.done = threading.Event()
        self.result: GenerationResult | None = None
        self.error = ""
        self.where = ""

    def placed(self, job_id: int, where: str) -> None:
        self.where = where
        self._reporter.status(f"Running on {where}", None)

    def status(self, message: str, fraction: float | None) -> None:
        self._reporter.status(message, fraction)

    def step(self, job_id: int, progress: StepProgress) -> None:
        self._reporter.step(progress)

    def finished(self, job_id: int, result: GenerationResult) -> None:
        self.result = result
        self.done.set()

    def failed(self, job_id: int, message: str) -> None:
        self.error = message
        self.done.set()

    def cancelled(self, job_id: int) -> None:
        self.done.set()


def run_on_cluster(
    address: str,
    request: GenerationRequest,
    reporter: Any,
    settings: EngineSettings | None = None,
) -> GenerationResult:
    """Run one request on a cluster (`ray` alone: a cluster of this machine for this call)
    and return its result, images decoded; raises ClusterError with one sentence."""
    waiter = _Waiter(reporter)
    options: dict[str, Any] = {}
    if is_local(address):  # one engine with every core, as this machine runs a job itself
        options = {"engines": 1, "cpus_per_engine": os.cpu_count() or 1}
    pool = EnginePool(waiter, address, settings, **options)
    try:
        if is_local(address):
            reporter.status("Starting a Ray cluster on this machine…", None)
        pool.start()
        pool.submit(1, request)
        while not waiter.done.wait(0.2):
            pass
    except KeyboardInterrupt:
        pool.cancel(1)
        waiter.done.wait(10)
        raise
    finally:
        pool.stop(timeout=10)
    if waiter.result is None:
        if waiter.error:
            raise ClusterError(waiter.error)
        return GenerationResult([], request, [], cancelled=True)
    return waiter.result
