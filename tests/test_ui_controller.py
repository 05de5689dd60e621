"""The job lifecycle through the controller and the engine thread (krita-ai-diffusion's
mock-backend idea): ids, queue, throttled progress, cancel without stale leaks, shutdown."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from studio.core.jobs import GenerationResult, JobState, StepProgress
from studio.core.request import GenerationRequest
from studio.core.settings import EngineSettings
from studio.metadata import read_parameters
from studio.ui.controller import JobController
from studio.ui.status_bar import describe_progress


@dataclass
class FakeRun:
    """What one call of FakeEngine.run did: the prompt, the steps it made, how it ended."""

    prompt: str
    steps: int = 0
    cancelled: bool = False


class FakeEngine:
    """Steps on a timer and paints a flat colour. Cancel works as the real engine's does:
    the job's own `cancel` flag is checked before every step (the real one checks it before
    every UNet call), so a flag set before the run starts stops it before its first step."""

    step_time = 0.01

    def __init__(self, settings: EngineSettings) -> None:
        self.settings = settings
        self.runs: list[FakeRun] = []

    def before_steps(self) -> None:
        """Called once a run has started, before its first step; subclasses hold it here."""

    def run(
        self,
        request: GenerationRequest,
        reporter,  # noqa: ANN001
        cancel: threading.Event | None = None,
    ) -> GenerationResult:
        request.validate()
        cancel = cancel or threading.Event()
        record = FakeRun(request.prompt)
        self.runs.append(record)
        seed = request.seed if request.seed >= 0 else 1234
        request = request.replace(seed=seed)
        seeds = [seed + i for i in range(request.batch_size)]
        self.before_steps()
        started = time.perf_counter()
        for step in range(1, request.steps + 1):
            if cancel.is_set():
                record.cancelled = True
                return GenerationResult([], request, seeds, cancelled=True)
            if self.step_time:
                time.sleep(self.step_time)  # the step's work, not a synchronisation
            preview = np.full((8, 8, 3), step % 256, np.uint8)
            reporter.step(
                StepProgress(
                    "generate", step, request.steps, time.perf_counter() - started, preview
                )
            )
            record.steps = step
        images = [Image.new("RGB", (request.width, request.height), (200, 0, 0)) for _ in seeds]
        return GenerationResult(images, request, seeds)


class SlowEngine(FakeEngine):
    step_time = 0.05


class FloodEngine(FakeEngine):
    step_time = 0.0


def _request(**changes) -> GenerationRequest:  # noqa: ANN003
    base = GenerationRequest(prompt="a red circle", steps=4, width=16, height=16, seed=7)
    return base.replace(**changes)


@pytest.fixture
def engines() -> list[FakeEngine]:
    """Every engine the controllers of a test built, in order."""
    return []


@pytest.fixture
def make_controller(tmp_path: Path, qtbot, engines):  # noqa: ANN001
    made: list[JobController] = []

    def make(engine: Callable[[EngineSettings], FakeEngine] = FakeEngine) -> JobController:
        def factory(settings: EngineSettings) -> FakeEngine:
            engines.append(engine(settings))
            return engines[-1]

        controller = JobController(tmp_path / "out", EngineSettings(), engine_factory=factory)
        controller.start_engine()
        made.append(controller)
        return controller

    yield make
    for controller in made:
        assert controller.shutdown(2000)
        controller.deleteLater()


def _pngs(folder: Path) -> list[Path]:
    return sorted(folder.glob("*.png")) if folder.is_dir() else []


def test_a_job_runs_and_its_file_is_saved_before_done(make_controller, qtbot, tmp_path):  # noqa: ANN001
    controller = make_controller()
    seen_on_disk: list[bool] = []
    controller.jobFinished.connect(
        lambda i, o: seen_on_disk.append(all(p.is_file() for p in o.paths))
    )
    with qtbot.waitSignal(controller.jobFinished, timeout=5000) as blocker:
        job_id = controller.submit(_request(batch_size=2))
    finished_id, outcome = blocker.args
    assert finished_id == job_id
    assert seen_on_disk == [True]
    assert len(outcome.paths) == 2 and _pngs(tmp_path / "out") == sorted(outcome.paths)
    params = read_parameters(outcome.paths[1])
    assert params.prompt == "a red circle" and params.seed == 8
    record = controller.job(job_id)
    assert record.state is JobState.DONE and len(record.frames) == 4
    assert not controller.is_busy


def test_jobs_queue_and_run_in_order(make_controller, qtbot):  # noqa: ANN001
    controller = make_controller()
    finished: list[int] = []
    controller.jobFinished.connect(lambda i, o: finished.append(i))
    ids = [controller.submit(_request(seed=s)) for s in (1, 2, 3)]
    assert controller.current_job == ids[0] and controller.queued_jobs == ids[1:]
    qtbot.waitUntil(lambda: len(finished) == 3, timeout=5000)
    assert finished == ids


def test_cancel_mid_run_stops_it_saves_nothing_and_the_next_job_runs(
    make_controller, engines, qtbot, tmp_path
):  # noqa: ANN001
    controller = make_controller(SlowEngine)
    progress_ids: list[int] = []
    finished: list[int] = []
    controller.progress.connect(lambda i, p: progress_ids.append(i))
    controller.jobFinished.connect(lambda i, o: finished.append(i))
    first = controller.submit(_request(prompt="first", steps=40))
    qtbot.waitUntil(lambda: first in progress_ids, timeout=5000)
    with qtbot.waitSignal(controller.jobCancelled, timeout=1000):
        assert controller.cancel()
    assert controller.job(first).state is JobState.CANCELLED
    assert controller.job(first).result is None
    assert not controller.is_busy  # idle at once, without waiting for the engine
    progress_ids.clear()
    second = controller.submit(_request(prompt="second", steps=3))
    qtbot.waitUntil(lambda: finished == [second], timeout=5000)
    assert set(progress_ids) == {second}  # nothing from the cancelled job leaked through
    files = _pngs(tmp_path / "out")
    assert len(files) == 1 and read_parameters(files[0]).prompt == "second"
    # The cancelled run stopped mid-way instead of finishing its 40 steps unseen.
    cancelled_run, second_run = engines[0].runs
    assert cancelled_run.prompt == "first" and cancelled_run.cancelled
    assert 1 <= cancelled_run.steps < 40
    assert second_run == FakeRun("second", steps=3, cancelled=False)


def test_cancelled_before_its_run_it_never_runs(make_controller, engines, qtbot, tmp_path):  # noqa: ANN001
    # The engine's construction holds the worker thread, so both jobs are accepted by the
    # worker, with their runs queued behind it, when the first one is cancelled.
    gate = threading.Event()

    def held_engine(settings: EngineSettings) -> FakeEngine:
        assert gate.wait(5)
        return FakeEngine(settings)

    controller = make_controller(held_engine)
    finished: list[int] = []
    controller.jobFinished.connect(lambda i, o: finished.append(i))
    first = controller.submit(_request(prompt="first"))
    assert controller.current_job == first  # sent to the worker, which has not run it yet
    with qtbot.waitSignal(controller.jobCancelled, timeout=1000):
        assert controller.cancel(first)
    second = controller.submit(_request(prompt="second"))
    gate.set()
    qtbot.waitUntil(lambda: finished == [second], timeout=5000)
    assert controller.job(first).state is JobState.CANCELLED
    assert controller.job(first).result is None
    assert controller.job(second).state is JobState.DONE
    files = _pngs(tmp_path / "out")
    assert len(files) == 1 and read_parameters(files[0]).prompt == "second"
    assert [run.prompt for run in engines[0].runs] == ["second"]  # the first never started


class HeldAtStartEngine(FakeEngine):
    """Holds each run after it has started and before its first step, until `go` is set:
    a cancel then lands while the engine is starting the job."""

    def __init__(self, settings: EngineSettings) -> None:
        super().__init__(settings)
        self.started = threading.Event()
        self.go = threading.Event()

    def before_steps(self) -> None:
        self.started.set()
        assert self.go.wait(5)


def test_a_cancel_as_the_run_starts_is_kept(make_controller, engines, qtbot, tmp_path):  # noqa: ANN001
    controller = make_controller(HeldAtStartEngine)
    finished: list[int] = []
    controller.jobFinished.connect(lambda i, o: finished.append(i))
    first = controller.submit(_request(prompt="first"))
    qtbot.waitUntil(lambda: bool(engines) and engines[0].started.is_set(), timeout=5000)
    engine = engines[0]
    assert controller.cancel(first)
    engine.go.set()
    second = controller.submit(_request(prompt="second"))
    qtbot.waitUntil(lambda: finished == [second], timeout=5000)
    assert engine.runs[0] == FakeRun("first", steps=0, cancelled=True)  # not one step
    files = _pngs(tmp_path / "out")
    assert len(files) == 1 and read_parameters(files[0]).prompt == "second"


def test_cancel_before_the_engine_starts_the_job(make_controller, qtbot, tmp_path):  # noqa: ANN001
    controller = make_controller(SlowEngine)
    cancelled: list[int] = []
    controller.jobCancelled.connect(cancelled.append)
    first = controller.submit(_request(steps=10))
    queued = controller.submit(_request(steps=10))
    controller.cancel(queued)
    controller.cancel(first)
    assert cancelled == [queued, first]
    with qtbot.waitSignal(controller.jobFinished, timeout=5000) as blocker:
        last = controller.submit(_request(steps=2))
    assert blocker.args[0] == last
    assert len(_pngs(tmp_path / "out")) == 1


def test_a_bad_request_fails_with_one_sentence_and_the_queue_goes_on(make_controller, qtbot):  # noqa: ANN001
    controller = make_controller()
    failures: list[str] = []
    controller.jobFailed.connect(lambda i, m: failures.append(m))
    controller.submit(_request(prompt=""))
    with qtbot.waitSignal(controller.jobFinished, timeout=5000):
        controller.submit(_request())
    assert failures == ["The prompt is empty: describe the image you want."]


@pytest.mark.parametrize(
    ("error", "words"),
    [
        (
            MemoryError(),
            "There was not enough memory to finish the job: try a smaller size or batch.",
        ),
        (KeyError("boom"), "The job failed unexpectedly (KeyError); see the log."),
    ],
)
def test_an_unexpected_error_while_saving_fails_that_job_and_the_next_runs(
    make_controller, qtbot, monkeypatch, error, words
):  # noqa: ANN001
    """A MemoryError in the PNG encoder used to escape the worker: no message, and the
    controller stayed busy for ever with the next job queued."""
    import studio.core.saving as saving

    real = saving.save_image
    calls: list[int] = []

    def failing_once(*args, **kwargs):  # noqa: ANN002, ANN003, ANN202
        calls.append(1)
        if len(calls) == 1:
            raise error
        return real(*args, **kwargs)

    monkeypatch.setattr(saving, "save_image", failing_once)
    controller = make_controller()
    failures: list[str] = []
    controller.jobFailed.connect(lambda i, m: failures.append(m))
    first = controller.submit(_request(prompt="first"))
    with qtbot.waitSignal(controller.jobFinished, timeout=5000) as blocker:
        second = controller.submit(_request(prompt="second"))
    assert failures == [words] and blocker.args[0] == second
    assert controller.job(first).state is JobState.FAILED and not controller.is_busy


def test_progress_is_throttled(make_controller, qtbot):  # noqa: ANN001
    controller = make_controller(FloodEngine)
    emitted: list[int] = []
    controller.progress.connect(lambda i, p: emitted.append(p.step))
    started = time.perf_counter()
    with qtbot.waitSignal(controller.jobFinished, timeout=10000) as blocker:
        job = controller.submit(_request(steps=400))
    elapsed = time.perf_counter() - started
    assert emitted[-1] == 400  # the final step is always delivered
    assert len(emitted) <= elapsed / 0.033 + 3 < 400
    assert len(controller.job(blocker.args[0]).frames) == 400 and job == blocker.args[0]


def test_shutdown_during_a_job_ends_the_thread_quickly(tmp_path, qtbot):  # noqa: ANN001
    controller = JobController(tmp_path / "out", engine_factory=SlowEngine)
    controller.start_engine()
    steps: list[int] = []
    controller.progress.connect(lambda i, p: steps.append(p.step))
    controller.submit(_request(steps=200))
    qtbot.waitUntil(lambda: bool(steps), timeout=5000)
    started = time.perf_counter()
    assert controller.shutdown(2000)
    assert time.perf_counter() - started < 2.0
    assert not controller.engine_running
    assert _pngs(tmp_path / "out") == []
    controller.deleteLater()


def test_describe_progress() -> None:
    progress = StepProgress("generate", 12, 25, 12 / 9.8, None)
    assert describe_progress(progress) == "Step 12/25 · 9.8 it/s · 1.3 s left"
    slow = StepProgress("upscale", 1, 4, 2.0, None)
    assert describe_progress(slow) == "Upscaling · Step 1/4 · 2.0 s/it · 6.0 s left"


def test_the_real_engine_runs_a_job_on_its_thread(tmp_path, qtbot, tiny_sd):  # noqa: ANN001
    controller = JobController(tmp_path / "out")
    statuses: list[str] = []
    controller.engineStatus.connect(lambda m, f: statuses.append(m))
    try:
        with qtbot.waitSignal(controller.engineReady, timeout=60000) as ready:
            controller.start_engine(str(tiny_sd))
        assert ready.args == ["Ready"]
        assert any(m.startswith("Loading") for m in statuses)
        request = _request(model=str(tiny_sd), width=32, height=32, steps=6)
        with qtbot.waitSignal(controller.jobFinished, timeout=30000) as blocker:
            job_id = controller.submit(request)
        outcome = blocker.args[1]
        assert outcome.images[0].size == (32, 32)
        assert read_parameters(outcome.paths[0]).request["model"] == str(tiny_sd)
        # the engine hands the window its steps in batches (30 frames a second): every
        # step still reaches the timeline, in order, with its own preview
        frames = controller.job(job_id).frames
        assert [frame.step for frame in frames] == [1, 2, 3, 4, 5, 6]
        assert all(frame.preview is not None for frame in frames)
        assert not np.array_equal(frames[1].preview, frames[4].preview)
    finally:
        assert controller.shutdown(2000)
        controller.deleteLater()


def test_the_window_takes_steps_at_its_repaint_rate() -> None:
    """The reporters of a window's jobs (here and on a Ray cluster) ask for steps at the rate
    the controller repaints at, so a tiny model's fast steps are previewed in batches."""
    from studio.core.jobs import FRAMES_PER_SECOND, frame_interval_of
    from studio.remote.actor import _QueueReporter
    from studio.ui.backends.local import _SignalReporter
    from studio.ui.controller import PROGRESS_INTERVAL_MS

    for reporter in (_SignalReporter, _QueueReporter):
        assert frame_interval_of(reporter) == 1 / FRAMES_PER_SECOND
    assert PROGRESS_INTERVAL_MS == 1000 // FRAMES_PER_SECOND
    assert frame_interval_of(object()) == 0.0  # anyone else: each step as it ends
