"""`studio bench --ray`: the queue on a Ray cluster of this machine.

Throughput: 16 small jobs on one engine actor with one CPU, then on two with one CPU each
(each engine warmed up first: its model loaded); the ratio of jobs per second. On a machine
with two cores shared with anything else, the second engine competes for them.

Preview latency: how long each step's report (its preview inside) takes from the engine's
step callback to the thread that hands it to the window, on the cluster (an actor's stream,
across processes) against this machine (the engine on a worker thread, a queue between
threads, as the local backend's queued signal); the added latency is the difference.
"""

from __future__ import annotations

import queue
import statistics
import threading
import time
from typing import Any

from studio.core.jobs import GenerationResult, StepProgress
from studio.core.request import GenerationRequest

JOBS = 16


def bench_request(steps: int, seed: int) -> GenerationRequest:
    return GenerationRequest(
        prompt="a small red circle at the top left on a blue background",
        model="studio-tiny",
        width=64,
        height=64,
        steps=steps,
        seed=seed,
    )


class _Counter:
    """A pool listener that counts endings."""

    def __init__(self) -> None:
        self.ended = 0
        self.failures: list[str] = []
        self.places: set[str] = set()
        self._lock = threading.Lock()
        self.all_done = threading.Event()
        self.expected = 0
        self.started: dict[int, float] = {}
        self.busy_s = 0.0  # the time jobs were running, added up over jobs

    def placed(self, job_id: int, where: str) -> None:
        self.places.add(where)
        self.started[job_id] = time.perf_counter()

    def status(self, message: str, fraction: float | None) -> None:
        pass

    def step(self, job_id: int, progress: StepProgress) -> None:
        pass

    def finished(self, job_id: int, result: GenerationResult) -> None:
        self._end(job_id)

    def failed(self, job_id: int, message: str) -> None:
        self.failures.append(message)
        self._end(job_id)

    def cancelled(self, job_id: int) -> None:
        self._end(job_id)

    def _end(self, job_id: int) -> None:
        with self._lock:
            if job_id > 0:  # a measured job, not a warm-up
                self.busy_s += time.perf_counter() - self.started.get(job_id, 0.0)
            self.ended += 1
            if self.ended >= self.expected:
                self.all_done.set()

    def wait_for(self, count: int) -> None:
        with self._lock:
            self.expected = count
            if self.ended >= count:
                self.all_done.set()
        self.all_done.wait()
        self.all_done.clear()


def _percentiles(values: list[float]) -> dict[str, float]:
    ordered = sorted(values)
    if not ordered:
        return {"p50": float("nan"), "p99": float("nan")}
    p99 = ordered[min(len(ordered) - 1, round(0.99 * (len(ordered) - 1)))]
    return {"p50": statistics.median(ordered) * 1000, "p99": p99 * 1000}


def _on_engines(engines: int, steps: int, jobs: int) -> dict[str, Any]:
    """Jobs per second on `engines` engines of one CPU, each warmed up; step delays."""
    from studio.remote.pool import EnginePool

    counter = _Counter()
    pool = EnginePool(counter, "auto", engines=engines, cpus_per_engine=1, prefix=f"bench{engines}")
    try:
        pool.start()
        for index in range(engines):  # one job per engine: every engine holds the model
            pool.submit(-1 - index, bench_request(steps, 1000 + index))
        counter.wait_for(engines)
        pool.step_delays.clear()
        started = time.perf_counter()
        for index in range(jobs):
            pool.submit(index + 1, bench_request(steps, index))
        counter.wait_for(engines + jobs)
        seconds = time.perf_counter() - started
        delays = list(pool.step_delays)
    finally:
        pool.stop(timeout=30, kill=True)  # their CPUs free for the next measurement
    if counter.failures:
        raise RuntimeError(counter.failures[0])
    return {
        "jobs_per_s": jobs / seconds,
        "seconds": seconds,
        "delays": delays,
        "concurrency": counter.busy_s / seconds,  # jobs running at once, on average
    }


def _local_delays(steps: int, jobs: int) -> list[float]:
    """Step delays on this machine: the engine on a worker thread, a queue to this one."""
    import torch

    from studio.core.settings import EngineSettings
    from studio.engine.generate import Engine

    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    reports: queue.Queue[tuple[StepProgress, float] | None] = queue.Queue()

    class Reporter:
        def status(self, message: str, fraction: float | None) -> None:
            pass

        def step(self, progress: StepProgress) -> None:
            reports.put((progress, time.time()))

    engine = Engine(EngineSettings())

    def work() -> None:
        for index in range(jobs + 1):  # the first loads the model
            engine.run(bench_request(steps, index), Reporter())
            reports.put(None)

    worker = threading.Thread(target=work, name="bench-local-engine")
    worker.start()
    delays: list[float] = []
    ended = 0
    while ended < jobs + 1:
        item = reports.get()
        if item is None:
            ended += 1
        elif ended > 0:
            delays.append(time.time() - item[1])
    worker.join()
    torch.set_num_threads(threads)
    return delays


def run_ray_bench(quick: bool = False, steps: int = 8, jobs: int = JOBS) -> dict[str, Any]:
    """The figures of the module's docstring, on a Ray cluster started here (2 CPUs)."""
    from studio.remote.pool import NAMESPACE, import_ray

    ray = import_ray()
    ray.init(
        address="local",
        num_cpus=2,
        include_dashboard=False,
        namespace=NAMESPACE,
        log_to_driver=False,
        logging_level="ERROR",
    )
    try:
        one = _on_engines(1, steps, jobs)
        two = _on_engines(2, steps, jobs)
    finally:
        ray.shutdown()
    local = _local_delays(steps, 4 if quick else jobs)
    remote = _percentiles(one["delays"] + two["delays"])
    here = _percentiles(local)
    return {
        "jobs": jobs,
        "steps": steps,
        "size": 64,
        "jobs_per_s_one_engine": one["jobs_per_s"],
        "jobs_per_s_two_engines": two["jobs_per_s"],
        "throughput_ratio": two["jobs_per_s"] / one["jobs_per_s"],
        # jobs running at once on average: 2.0 when the queue keeps both engines busy
        "concurrency_two_engines": two["concurrency"],
        "seconds_per_job_one_engine": one["seconds"] / jobs,
        "seconds_per_job_two_engines": 2 * two["seconds"] / jobs,
        "preview_ms_ray": remote,
        "preview_ms_local": here,
        "preview_added_ms": {k: remote[k] - here[k] for k in ("p50", "p99")},
    }
