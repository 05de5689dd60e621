"""The studio's queue on a Ray cluster: one local cluster on the CPU for the module (two
engine actors, one CPU each, studio-tiny), the Ray backend behind the window's seam.

What an artist would notice: the same picture as on this machine, saved with the same
metadata; jobs spread over both engines, each job's previews in step order; cancel within
a step; an engine killed mid-job costs a retry, not the picture; the window's whole cycle;
a cluster that cannot be used is one sentence.
"""

from __future__ import annotations

import sys
import time
from pathlib import Path

import numpy as np
import pytest

from studio.core.jobs import Job
from studio.core.request import GenerationRequest
from studio.metadata import read_parameters
from tests.conftest import embedded_model_available

PROMPT = "a small red circle at the top left on a blue background"
SIZE = 64

needs_tiny = pytest.mark.skipif(
    not embedded_model_available("studio-tiny"), reason="studio-tiny is not shipped here"
)


def _request(steps: int = 4, seed: int = 5, prompt: str = PROMPT) -> GenerationRequest:
    return GenerationRequest(prompt=prompt, width=SIZE, height=SIZE, steps=steps, seed=seed)


@pytest.fixture(scope="module")
def cluster():  # noqa: ANN201
    """One local Ray cluster for the module: two CPUs, no dashboard; ended at the end."""
    ray = pytest.importorskip("ray")
    if not embedded_model_available("studio-tiny"):
        pytest.skip("studio-tiny is not shipped here")
    ray.init(
        address="local",  # a cluster of this test process, whatever else runs here
        num_cpus=2,
        include_dashboard=False,
        namespace="latent-studio",
        log_to_driver=False,
        logging_level="ERROR",
    )
    yield ray
    ray.shutdown()


class _Recorder:
    """Everything a backend says, by job."""

    def __init__(self, backend) -> None:  # noqa: ANN001
        self.placed: dict[int, list[str]] = {}
        self.steps: dict[int, list[int]] = {}
        self.ended: dict[int, tuple[str, object]] = {}
        self.ready: list[str] = []
        backend.placed.connect(lambda j, w: self.placed.setdefault(j, []).append(w))
        backend.stepped.connect(lambda j, p: self.steps.setdefault(j, []).append(p.step))
        backend.finished.connect(lambda j, r: self.ended.setdefault(j, ("finished", r)))
        backend.failed.connect(lambda j, m: self.ended.setdefault(j, ("failed", m)))
        backend.cancelled.connect(lambda j: self.ended.setdefault(j, ("cancelled", None)))
        backend.engineReady.connect(self.ready.append)


@pytest.fixture
def ray_backend(cluster, qtbot):  # noqa: ANN001, ANN201, ARG001
    """The Ray backend on the module's cluster, started; stopped with every thread ended."""
    from studio.ui.backends.ray import RayBackend

    backend = RayBackend("auto", engines=2, cpus_per_engine=1)
    recorder = _Recorder(backend)
    with qtbot.waitSignal(backend.engineReady, timeout=120_000):
        backend.start()
    assert recorder.ready[-1].startswith("Ready"), recorder.ready
    yield backend, recorder
    assert backend.stop(10_000)
    backend.deleteLater()


def _job(job_id: int, folder: Path, **kwargs) -> Job:  # noqa: ANN003
    return Job(job_id, _request(**kwargs), folder)


@needs_tiny
def test_the_cluster_paints_the_same_pixels_as_this_machine(
    qtbot, ray_backend, tmp_path: Path, one_thread
) -> None:  # noqa: ANN001, ARG001
    from studio.core.saving import save_result
    from studio.engine.generate import Engine

    backend, seen = ray_backend
    backend.submit(_job(1, tmp_path / "ray"))
    qtbot.waitUntil(lambda: 1 in seen.ended, timeout=120_000)
    kind, result = seen.ended[1]
    assert kind == "finished", result
    assert seen.placed[1][0].startswith("studio-engine-")
    local = Engine().run(_request())
    assert np.array_equal(np.asarray(result.images[0]), np.asarray(local.images[0]))
    # saved here, with the metadata a local job's file has
    local_paths = save_result(local, tmp_path / "local")
    ray_params = read_parameters(result.paths[0])
    local_params = read_parameters(local_paths[0])
    assert result.paths[0].parent == tmp_path / "ray"
    assert ray_params.to_json_dict() == local_params.to_json_dict() and ray_params.seed == 5

    # Ray Client (ray://) cannot stream: there the events are polled, and are the same
    from studio.ui.backends.ray import RayBackend

    polled = RayBackend("auto", engines=2, cpus_per_engine=1, channel="poll")
    polling = _Recorder(polled)
    with qtbot.waitSignal(polled.engineReady, timeout=60_000):
        polled.start()
    polled.submit(_job(2, tmp_path / "poll"))
    qtbot.waitUntil(lambda: 2 in polling.ended, timeout=60_000)
    assert polled.stop(10_000)
    polled.deleteLater()
    kind, by_poll = polling.ended[2]
    assert kind == "finished" and polling.steps[2] == [1, 2, 3, 4]
    assert np.array_equal(np.asarray(by_poll.images[0]), np.asarray(local.images[0]))


@needs_tiny
def test_four_jobs_spread_over_both_engines_with_previews_in_step_order(
    qtbot, ray_backend, tmp_path: Path
) -> None:  # noqa: ANN001
    backend, seen = ray_backend
    for job_id in range(1, 5):
        backend.submit(_job(job_id, tmp_path, steps=5, seed=job_id))
    qtbot.waitUntil(lambda: len(seen.ended) == 4, timeout=120_000)
    assert {kind for kind, _ in seen.ended.values()} == {"finished"}
    engines = {places[0].split(" (")[0] for places in seen.placed.values()}
    assert engines == {"studio-engine-0", "studio-engine-1"}
    for job_id in range(1, 5):
        assert seen.steps[job_id] == [1, 2, 3, 4, 5], seen.steps
    assert len(list(tmp_path.glob("*.png"))) == 4


@needs_tiny
def test_cancel_reaches_the_running_step(qtbot, ray_backend, tmp_path: Path) -> None:  # noqa: ANN001
    backend, seen = ray_backend
    backend.submit(_job(7, tmp_path, steps=400))
    qtbot.waitUntil(lambda: len(seen.steps.get(7, [])) >= 2, timeout=120_000)
    asked = time.perf_counter()
    backend.cancel(7)
    steps_then = seen.steps[7][-1]
    qtbot.waitUntil(lambda: 7 in seen.ended, timeout=10_000)
    assert seen.ended[7][0] == "cancelled"
    assert time.perf_counter() - asked < 2.0
    assert seen.steps[7][-1] <= steps_then + 3  # the step under way, and those in flight
    assert list(tmp_path.glob("*.png")) == []  # nothing saved


@needs_tiny
def test_two_windows_sharing_the_engines_never_mix_their_jobs(
    qtbot, ray_backend, tmp_path: Path
) -> None:  # noqa: ANN001
    """Every window numbers its jobs from 1: the engines must tell them apart (a cancel
    of one window's job 5 reaches it, though another window's job 5 ran there before)."""
    from studio.ui.backends.ray import RayBackend

    backend, seen = ray_backend
    backend.submit(_job(5, tmp_path / "first", steps=2))
    qtbot.waitUntil(lambda: 5 in seen.ended, timeout=60_000)
    other = RayBackend("auto", engines=2, cpus_per_engine=1)
    heard = _Recorder(other)
    with qtbot.waitSignal(other.engineReady, timeout=60_000):
        other.start()
    other.submit(_job(5, tmp_path / "second", steps=400))
    qtbot.waitUntil(lambda: len(heard.steps.get(5, [])) >= 2, timeout=60_000)
    other.cancel(5)
    qtbot.waitUntil(lambda: 5 in heard.ended, timeout=10_000)
    assert heard.ended[5][0] == "cancelled" and heard.steps[5][-1] < 100
    assert other.stop(10_000)
    other.deleteLater()


@needs_tiny
def test_an_engine_killed_mid_job_costs_one_retry_not_the_picture(
    qtbot, cluster, ray_backend, tmp_path: Path
) -> None:  # noqa: ANN001
    backend, seen = ray_backend
    backend.submit(_job(9, tmp_path, steps=60, seed=11))
    qtbot.waitUntil(lambda: len(seen.steps.get(9, [])) >= 2, timeout=120_000)
    first = seen.placed[9][0].split(" (")[0]
    cluster.kill(cluster.get_actor(first, namespace="latent-studio"), no_restart=False)
    qtbot.waitUntil(lambda: 9 in seen.ended, timeout=120_000)
    kind, result = seen.ended[9]
    assert kind == "finished", result
    assert len(seen.placed[9]) == 2 and not seen.placed[9][1].startswith(first + " (")
    assert result.paths and result.paths[0].is_file() and result.seeds == [11]


_LOCAL_CLUSTER_SCRIPT = """
import sys
from PySide6.QtCore import QCoreApplication, QTimer
from studio.core.jobs import Job
from studio.core.request import GenerationRequest
from studio.ui.backends.ray import RayBackend

app = QCoreApplication([])
backend = RayBackend("local", engines=1, cpus_per_engine=1)
said = []
backend.engineReady.connect(lambda text: said.append(text))
backend.engineReady.connect(lambda _: QTimer.singleShot(1500, submit))  # its thread has ended
def submit():
    request = GenerationRequest(prompt="a red circle", width=64, height=64, steps=2, seed=1)
    backend.submit(Job(1, request, __import__("pathlib").Path(sys.argv[1])))
backend.finished.connect(lambda *_: (said.append("finished"), app.quit()))
backend.failed.connect(lambda _j, m: (said.append(m), app.quit()))
QTimer.singleShot(90_000, app.quit)
backend.start()
app.exec()
print(said, backend.stop(10_000))
"""


@needs_tiny
def test_a_cluster_started_by_the_window_outlives_the_thread_that_started_it(
    tmp_path: Path,
) -> None:
    """Settings → Backend → Ray cluster at "local": Ray's processes are started on the
    backend's connecting thread, and Linux ends a child when the thread that started it
    ends; the cluster must still run the job that comes after."""
    import subprocess

    pytest.importorskip("ray")
    done = subprocess.run(
        [sys.executable, "-c", _LOCAL_CLUSTER_SCRIPT, str(tmp_path)],
        capture_output=True,
        text=True,
        timeout=150,
        check=False,
    )
    last = done.stdout.strip().splitlines()[-1] if done.stdout.strip() else done.stderr[-2000:]
    assert "'finished'] True" in last, last
    assert len(list(tmp_path.glob("*.png"))) == 1


def test_a_cluster_that_cannot_be_used_is_one_sentence() -> None:
    from studio.remote.pool import explain

    cases = {
        ConnectionError("Could not find any running Ray instance. Please specify"): "ray start",
        ConnectionError("ray client connection timeout"): "No Ray cluster answered at",
        RuntimeError(
            "Version mismatch: The cluster was started with:\n Ray: 2.40.0 Python: 3.10.2"
        ): "other versions of Ray or Python",
        RuntimeError("ModuleNotFoundError: No module named 'studio'"): "Latent Studio installed",
    }
    for error, words in cases.items():
        sentence = explain(error, "ray://studio-box:10001")
        assert words in sentence and sentence.count(". ") == 0 and sentence.endswith("."), sentence


@needs_tiny
def test_a_cluster_running_another_studio_version_is_one_sentence(
    qtbot, cluster, monkeypatch: pytest.MonkeyPatch
) -> None:  # noqa: ANN001, ARG001
    from studio.remote import pool
    from studio.ui.backends.ray import RayBackend

    monkeypatch.setattr(pool, "studio_version", lambda: "9.9.9")  # this machine's, upgraded
    backend = RayBackend("auto", engines=2, cpus_per_engine=1)
    failures: list[str] = []
    backend.failed.connect(lambda _job, message: failures.append(message))
    with qtbot.waitSignal(backend.engineReady, timeout=60_000) as ready:
        backend.start()
    sentence = ready.args[0]
    assert "runs Latent Studio" in sentence and "this machine 9.9.9" in sentence, sentence
    assert sentence.endswith(".") and "\n" not in sentence
    backend.submit(Job(1, _request(), Path("unused")))  # a job then fails with the sentence
    assert failures == [sentence]
    assert backend.stop(5000)
    backend.deleteLater()


def test_one_engine_per_gpu_or_per_few_cpus() -> None:
    from studio.remote.pool import plan

    assert plan({"GPU": 4.0, "CPU": 64.0}, None, 4) == (4, {"num_gpus": 1, "num_cpus": 1})
    assert plan({"CPU": 16.0}, None, 4) == (4, {"num_cpus": 4})
    assert plan({"CPU": 2.0}, None, 4) == (1, {"num_cpus": 2})  # a small machine: one engine
    assert plan({"CPU": 2.0}, 2, 1) == (2, {"num_cpus": 1})  # as many as asked for


def test_placing_prefers_an_engine_that_holds_the_jobs_model() -> None:
    from studio.remote.pool import EngineRecord, PoolJob, choose_engine

    engines = [EngineRecord("e0", None, model="sdxl"), EngineRecord("e1", None, model="tiny")]
    job = PoolJob(1, GenerationRequest(model="tiny"))
    assert choose_engine(job, engines).name == "e1"
    engines[1].job = PoolJob(2, GenerationRequest(model="tiny"))  # busy: the other one
    assert choose_engine(job, engines).name == "e0"
    job.excluded.add("e0")  # it died running this job: not again while another lives
    assert choose_engine(job, engines) is None


@needs_tiny
def test_an_engine_keeps_its_model_after_a_job_that_fails_on_its_input() -> None:
    """The actor records the model its engine holds after every job: a job refused for its
    input leaves the loaded model there (the pool keeps placing its jobs here), a model that
    fails to load leaves none. Run on the actor class itself, no Ray worker."""
    from studio.core.request import Mode
    from studio.core.settings import EngineSettings
    from studio.remote.actor import EngineActor

    actor, settings = EngineActor("e0"), EngineSettings()
    good = _request(steps=2)
    assert list(actor.run("1", good, settings))[-1][0] == "done"
    assert actor.loaded_model() == good.model
    failed = list(actor.run("2", good.replace(mode=Mode.IMAGE_TO_IMAGE), settings))[-1]
    assert failed[0] == "error" and failed[3] == good.model == actor.loaded_model()
    unloadable = list(actor.run("3", good.replace(model="no-such-model"), settings))[-1]
    assert unloadable[0] == "error" and unloadable[3] == "" == actor.loaded_model()


def test_the_pool_keeps_placing_a_models_jobs_where_a_job_failed_after_loading_it() -> None:
    from studio.remote.pool import EnginePool, EngineRecord, PoolJob

    pool = EnginePool(listener=None)
    engine = EngineRecord("e0", None, model="tiny")
    for still_loaded in ("tiny", ""):
        pool._events = lambda job, engine, m=still_loaded: iter([("error", "Bad.", True, m)])
        assert pool._follow(PoolJob(1, GenerationRequest(model="tiny")), engine)[0] == "failed"
        assert engine.model == still_loaded


def test_the_studio_imports_no_ray_until_the_ray_backend_starts(tmp_path: Path) -> None:
    import subprocess

    code = (
        "import sys\n"
        "from studio.ui.backends.ray import RayBackend\n"
        "from studio.ui.main_window import MainWindow\n"
        "import studio.cli\n"
        "b = RayBackend('auto')\n"
        "assert 'ray' not in sys.modules, 'ray imported'\n"
    )
    done = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=120, check=False
    )
    assert done.returncode == 0, done.stderr[-2000:]


# -- the window --------------------------------------------------------------------------------


def test_settings_offer_this_machine_by_default_and_a_ray_cluster_with_an_address(
    qtbot, tmp_path: Path
) -> None:  # noqa: ANN001
    from studio.core.settings import EngineSettings
    from studio.ui.dialogs import SettingsDialog, StudioSettings
    from studio.ui.settings import Settings

    settings = Settings(tmp_path / "studio.ini")
    assert (settings.backend(), settings.ray_address()) == ("local", "auto")
    dialog = SettingsDialog(StudioSettings(tmp_path, EngineSettings(), "dark"))
    qtbot.addWidget(dialog)
    assert dialog.backend.currentText() == "This machine" and not dialog.ray_address.isEnabled()
    dialog.backend.setCurrentIndex(dialog.backend.findData("ray"))
    assert dialog.ray_address.isEnabled()
    dialog.ray_address.setText("  ray://studio-box:10001 ")
    chosen = dialog.values()
    assert (chosen.backend, chosen.ray_address) == ("ray", "ray://studio-box:10001")
    dialog.show()
    qtbot.waitExposed(dialog)
    dialog.grab().save(str(Path("/tmp") / "ray_settings_dialog.png"))
    settings.set_backend(chosen.backend, chosen.ray_address)
    again = Settings(tmp_path / "studio.ini")
    assert (again.backend(), again.ray_address()) == ("ray", "ray://studio-box:10001")


@needs_tiny
def test_the_window_runs_its_whole_cycle_on_the_cluster(
    qtbot, cluster, make_window, tmp_path: Path, out_dir: Path
) -> None:  # noqa: ANN001, ARG001
    from PySide6.QtCore import Qt

    from studio.ui.backends.ray import RayBackend
    from studio.ui.settings import Settings

    Settings(tmp_path / "studio.ini").set_backend("ray", "auto")  # Settings → Backend
    assert isinstance(make_window().controller.backend, RayBackend)  # (not started)
    # the module's cluster has two CPUs: by default one engine of two, here two of one
    window = make_window(backend=RayBackend("auto", engines=2, cpus_per_engine=1))
    window.draft.edit({"model": "studio-tiny"})
    with qtbot.waitSignal(window.controller.engineReady, timeout=120_000) as ready:
        window.start_engine(preload=True)  # each engine starts loading the model
    assert ready.args[0].startswith("Ready"), ready.args
    pool = window.controller.backend.pool
    assert {engine.model for engine in pool.engines} == {"studio-tiny"}
    window.draft.edit({"steps": 3, "width": SIZE, "height": SIZE})
    window.draft.edit({"seed": 42})
    window.prompt_panel.set_prompts(PROMPT, "")
    places: list[str] = []
    window.controller.jobPlaced.connect(lambda _job, where: places.append(window.status.text()))
    previews: list[bool] = []

    def on_progress(*_: object) -> None:
        if not previews:  # the window mid-job: where it runs, the step's preview
            places.append(window.status.text())
            window.grab().save("/tmp/ray_window_running.png")
        previews.append(window.canvas.has_preview())

    window.controller.progress.connect(on_progress)
    with qtbot.waitSignal(window.controller.jobFinished, timeout=120_000) as done:
        qtbot.mouseClick(window.generate_button, Qt.MouseButton.LeftButton)
    assert len(places) == 2, places  # when placed, and still at its first step
    assert all(p.startswith("Generating on studio-engine-") for p in places), places
    assert previews and all(previews)  # every step reached the canvas
    files = sorted(out_dir.glob("*.png"))
    assert files == done.args[1].paths and window.gallery.model.paths() == files
    assert window.canvas.image().size == (SIZE, SIZE) and read_parameters(files[0]).seed == 42
    assert window.timeline.frame_count() == 4  # three steps and the result
    window.grab().save("/tmp/ray_window.png")

    # two at once, one on each engine: the queue's title says where
    window.draft.edit({"steps": 200})
    both = [window.generate(), window.generate()]
    qtbot.waitUntil(lambda: window.controller.running_jobs == both, timeout=10_000)
    qtbot.waitUntil(lambda: all(map(window.controller.place_of, both)), timeout=60_000)
    said = window.queue.running.text()  # the queue's line over its waiting jobs
    assert said == "2 running: studio-engine-0, studio-engine-1" or said == (
        "2 running: studio-engine-1, studio-engine-0"
    )
    assert window.queue.isVisible() and not window.queue.list.isVisible()
    window.grab().save("/tmp/ray_window_two_running.png")
    for job in both:
        window.controller.cancel(job)
    assert not window.queue.isVisible()

    window.draft.edit({"steps": 400})
    steps: list[int] = []
    window.controller.progress.connect(lambda _job, p: steps.append(p.step))
    window.generate()
    qtbot.waitUntil(lambda: bool(steps), timeout=60_000)
    with qtbot.waitSignal(window.controller.jobCancelled, timeout=2000):
        qtbot.keyClick(window, Qt.Key.Key_Escape)
    assert not window.controller.is_busy and window.status.text() == "Cancelled."
    qtbot.wait(300)
    assert sorted(out_dir.glob("*.png")) == files  # nothing more saved


def test_choosing_the_cluster_in_settings_moves_the_next_jobs_there(
    qtbot, cluster, make_window
) -> None:  # noqa: ANN001, ARG001
    from dataclasses import replace

    from studio.ui.backends.ray import RayBackend
    from tests.scripted_backend import ScriptedBackend

    window = make_window(backend=ScriptedBackend())
    current = window.settings
    chosen = replace(window_values(window), backend="ray", ray_address="auto")
    with qtbot.waitSignal(window.controller.engineReady, timeout=120_000) as ready:
        window.apply_settings(chosen)
    assert isinstance(window.controller.backend, RayBackend)
    assert ready.args[0].startswith("Ready") and current.backend() == "ray"
    assert window.status.text().startswith("Ready")


def window_values(window):  # noqa: ANN001, ANN201
    from studio.ui.dialogs import StudioSettings

    s = window.settings
    return StudioSettings(window.controller.output_dir, s.engine_settings(), s.theme())


# -- the command line --------------------------------------------------------------------------


@needs_tiny
def test_studio_generate_runs_on_the_cluster_and_saves_here(
    cluster, tmp_path: Path, capsys
) -> None:  # noqa: ANN001, ARG001
    from studio.cli import main

    out = tmp_path / "out.png"
    args = ["generate", PROMPT, "--steps", "3", "--width", "64", "--height", "64"]
    assert main([*args, "--seed", "8", "--out", str(out), "--backend", "ray"]) == 0
    assert capsys.readouterr().out.strip() == str(out)
    assert read_parameters(out).seed == 8 and read_parameters(out).steps == 3
    with pytest.raises(SystemExit) as bad:
        main([*args, "--backend", "nowhere"])
    assert bad.value.code == 2
    assert "is not a place to run" in capsys.readouterr().err


# -- the queue on several engines ---------------------------------------------------------------


def test_the_queue_runs_as_many_jobs_at_once_as_the_backend_has_engines(
    qtbot, tmp_path: Path
) -> None:  # noqa: ANN001
    from studio.core.jobs import JobState
    from studio.ui.controller import JobController
    from tests.scripted_backend import ScriptedBackend

    class TwoEngines(ScriptedBackend):
        capacity = 2

    backend = TwoEngines()
    controller = JobController(tmp_path, backend=backend)
    shown: list[int] = []
    controller.progress.connect(lambda job, _p: shown.append(job))
    first, second, third = (controller.submit(_request(prompt=p)) for p in ("1", "2", "3"))
    assert [job.id for job in backend.submitted] == [first, second]  # two at once
    assert controller.running_jobs == [first, second] and controller.queued_jobs == [third]
    backend.step(backend.submitted[0], 1)  # the older job's step: its timeline, not the canvas
    backend.step(backend.submitted[1], 1)
    qtbot.waitUntil(lambda: bool(shown), timeout=1000)
    assert set(shown) == {second}
    assert len(controller.job(first).frames) == 1
    backend.finish(backend.submitted[0])  # the older one ends first: the third starts
    assert controller.job(first).state is JobState.DONE
    assert [job.id for job in backend.submitted] == [first, second, third]
    assert controller.current_job == third and controller.is_busy
    assert controller.cancel(second) and controller.running_jobs == [third]
    backend.finish(backend.submitted[2])
    assert not controller.is_busy and controller.job(third).state is JobState.DONE
    assert controller.shutdown()
    controller.deleteLater()


@needs_tiny
def test_the_windows_queue_spreads_over_the_clusters_engines(
    qtbot, cluster, tmp_path: Path
) -> None:  # noqa: ANN001, ARG001
    from studio.ui.backends.ray import RayBackend
    from studio.ui.controller import JobController

    backend = RayBackend("auto", engines=2, cpus_per_engine=1)
    controller = JobController(tmp_path, backend=backend)
    places: dict[int, str] = {}
    controller.jobPlaced.connect(lambda job, where: places.setdefault(job, where))
    most = [0]
    controller.jobStarted.connect(
        lambda _job: most.__setitem__(0, max(most[0], len(controller.running_jobs)))
    )
    finished: list[int] = []
    controller.jobFinished.connect(lambda job, _r: finished.append(job))
    with qtbot.waitSignal(controller.engineReady, timeout=60_000):
        controller.start_engine()
    jobs = [controller.submit(_request(steps=6, seed=s)) for s in range(4)]
    qtbot.waitUntil(lambda: len(finished) == 4, timeout=120_000)
    assert sorted(finished) == jobs and most[0] == 2  # two ran at once
    assert {where.split(" (")[0] for where in places.values()} == {
        "studio-engine-0",
        "studio-engine-1",
    }
    assert len(list(tmp_path.glob("*.png"))) == 4
    assert controller.shutdown(10_000)
    controller.deleteLater()


@needs_tiny
def test_a_batchs_images_spread_over_the_engines_and_come_back_as_one_result(
    qtbot, ray_backend, tmp_path: Path, one_thread
) -> None:  # noqa: ANN001, ARG001
    from studio.engine.generate import Engine

    backend, seen = ray_backend
    previews: list[tuple[int, tuple[int, ...]]] = []
    backend.stepped.connect(lambda _j, p: previews.append((p.step, p.preview.shape)))
    job = Job(3, _request(steps=4, seed=21).replace(batch_size=2), tmp_path)
    backend.submit(job)
    qtbot.waitUntil(lambda: 3 in seen.ended, timeout=120_000)
    kind, result = seen.ended[3]
    assert kind == "finished", result
    assert result.seeds == [21, 22] and len(result.paths) == 2
    assert "and others (2 images)" in seen.placed[3][0]
    assert [step for step, _ in previews] == [1, 2, 3, 4]  # as far as both have come
    assert all(shape[1] == 2 * shape[0] for _, shape in previews)  # side by side
    engine = Engine()
    for image, seed in zip(result.images, result.seeds, strict=True):
        alone = engine.run(_request(seed=seed)).images[0]  # image k is seed + k run alone
        assert np.array_equal(np.asarray(image), np.asarray(alone))
    assert [read_parameters(p).seed for p in result.paths] == [21, 22]


@needs_tiny
def test_the_noising_view_comes_from_the_cluster_as_it_would_here(
    qtbot, ray_backend, one_thread
) -> None:  # noqa: ANN001, ARG001
    from PIL import Image

    from studio.core.request import Mode
    from studio.engine.generate import Engine

    backend, _seen = ray_backend
    picture = Image.new("RGB", (SIZE, SIZE), (30, 60, 200))
    picture.paste((200, 40, 40), (16, 16, 40, 40))
    request = _request(seed=9).replace(mode=Mode.IMAGE_TO_IMAGE, init_image=picture, strength=0.6)
    with qtbot.waitSignal(backend.noised, timeout=60_000) as answer:
        backend.show_noising(3, request)
    token, view = answer.args
    assert token == 3 and view is not None and view.ndim == 3 and view.dtype == np.uint8
    assert np.array_equal(view, Engine().noising_view(request))


# last: a model that fails to load drops the engine's model, which the others reload
@needs_tiny
def test_a_job_that_fails_on_an_engine_is_the_engines_one_sentence(
    qtbot, ray_backend, tmp_path: Path
) -> None:  # noqa: ANN001
    from studio.engine.generate import Engine

    backend, seen = ray_backend
    request = _request().replace(model="no-such-model")
    backend.submit(Job(11, request, tmp_path))
    qtbot.waitUntil(lambda: 11 in seen.ended, timeout=60_000)
    kind, message = seen.ended[11]
    try:
        Engine().run(request)
    except Exception as e:  # noqa: BLE001
        here = str(e)
    assert kind == "failed" and message == here  # the sentence this machine would say
    assert list(tmp_path.glob("*")) == []


def test_connecting_to_a_cluster_nothing_answers_at_says_so_at_once(monkeypatch) -> None:  # noqa: ANN001
    """Ray retries an address nothing listens at for minutes: the window sat on
    "Connecting to the Ray cluster…" all that time. `connect` (the window's and the command
    line's way in) checks the address before Ray is asked. A stand-in Ray: the module's real
    cluster may be running, and must not be touched."""
    import socket

    from studio.remote import pool

    class NoRay:
        def is_initialized(self) -> bool:
            return False

        def init(self, **options: object) -> None:
            raise AssertionError("Ray was asked to connect")

    monkeypatch.setattr(pool, "import_ray", lambda: NoRay())
    with socket.socket() as free:  # a port nothing listens on
        free.bind(("127.0.0.1", 0))
        port = free.getsockname()[1]
    started = time.monotonic()
    with pytest.raises(pool.ClusterError) as said:
        pool.connect(f"127.0.0.1:{port}")
    assert time.monotonic() - started < 10
    assert str(said.value) == (
        f"No Ray cluster answers at 127.0.0.1:{port} (connection refused): start one "
        "there ('ray start --head'), or check the address."
    )


def test_an_engine_that_dies_as_the_pool_starts_is_asked_again(monkeypatch) -> None:  # noqa: ANN001
    """Ray starting an engine again (its worker lost) as the pool asks where it runs: asked
    again, not "the cluster could not be used" (CI saw it once in five runs)."""
    from types import SimpleNamespace

    ray = pytest.importorskip("ray")
    from studio.remote import pool

    asked: list[int] = []

    def get(refs, timeout):  # noqa: ANN001, ANN202, ARG001
        asked.append(len(refs))
        if len(asked) == 1:
            raise ray.exceptions.RayActorError()
        return [{"node": "n1", "name": "e-0"}]

    engine = SimpleNamespace(where=SimpleNamespace(remote=lambda: "ref"))
    monkeypatch.setattr(pool.time, "sleep", lambda _s: None)
    fake = SimpleNamespace(get=get, exceptions=ray.exceptions)
    assert pool._places(fake, [engine]) == [{"node": "n1", "name": "e-0"}] and asked == [1, 1]
    asked.clear()
    always = SimpleNamespace(
        get=lambda refs, timeout: (_ for _ in ()).throw(ray.exceptions.RayActorError()),
        exceptions=ray.exceptions,
    )
    with pytest.raises(ray.exceptions.RayActorError):
        pool._places(always, [engine])
