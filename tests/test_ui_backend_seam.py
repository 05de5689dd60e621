"""The controller and the window talk to any backend through the seam (ui/backends/base.py):
here a scripted one, no thread and no engine, drives the whole job lifecycle — as
krita-ai-diffusion tests its jobs against a mock client."""

from __future__ import annotations

from pathlib import Path

from studio.core.jobs import JobState
from studio.core.request import GenerationRequest
from studio.core.settings import EngineSettings
from studio.ui.controller import JobController
from tests.scripted_backend import ScriptedBackend


def _request(prompt: str = "a red circle") -> GenerationRequest:
    return GenerationRequest(prompt=prompt, width=16, height=16, steps=3, seed=5)


def test_the_controller_runs_jobs_on_any_backend_one_at_a_time(qtbot, tmp_path: Path) -> None:
    backend = ScriptedBackend()
    controller = JobController(tmp_path, backend=backend)
    events: list[tuple[str, int]] = []
    for name in ("jobQueued", "jobStarted", "jobFinished", "jobCancelled"):
        getattr(controller, name).connect(lambda job, *_, n=name: events.append((n, job)))
    with qtbot.waitSignal(controller.engineReady):
        controller.start_engine()
    first, second = controller.submit(_request("first")), controller.submit(_request("second"))
    assert [job.id for job in backend.submitted] == [first]  # one at a time
    for step in (1, 2, 3):
        backend.step(backend.submitted[0], step)
    with qtbot.waitSignal(controller.progress, timeout=1000) as progress:
        pass  # the throttled flush delivers the latest step
    assert progress.args[1].step == 3
    result = backend.finish(backend.submitted[0])
    assert controller.job(first).state is JobState.DONE and result.paths[0].is_file()
    assert [job.id for job in backend.submitted] == [first, second]  # the next one went out
    assert len(controller.job(first).frames) == 3

    assert controller.cancel()  # the second, mid-run
    assert backend.cancelled_ids == [second]
    backend.step(backend.submitted[1], 1)  # late reports of a cancelled job are dropped
    backend.finish(backend.submitted[1])
    assert controller.job(second).state is JobState.CANCELLED
    assert controller.job(second).result is None and controller.job(second).frames == []
    assert events == [
        ("jobQueued", first),
        ("jobStarted", first),
        ("jobQueued", second),
        ("jobFinished", first),
        ("jobStarted", second),
        ("jobCancelled", second),
    ]
    controller.configure(EngineSettings(preview_method="vae"))
    assert backend.settings[-1].preview_method == "vae"
    assert controller.shutdown() and not backend.is_running
    controller.deleteLater()


def test_the_window_shows_a_backends_job_from_preview_to_gallery(
    qtbot, make_window, out_dir
) -> None:  # noqa: ANN001
    backend = ScriptedBackend()
    window = make_window(backend=backend)
    window.draft.edit({"prompt": "a red circle", "steps": 3, "seed": 5})
    job_id = window.generate()
    job = backend.submitted[-1]
    assert job.id == job_id and job.request.prompt == "a red circle"
    backend.step(job, 1)
    qtbot.waitUntil(window.canvas.has_preview, timeout=1000)
    backend.finish(job)
    assert not window.canvas.has_preview() and window.canvas.image().size == (64, 64)
    assert window.gallery.model.paths()[0].parent == out_dir
    assert window.timeline.frame_count() == 2  # the one step reported, and the result
    assert window.draft.last_seed == 5 and window.guidance.reuse_seed.isEnabled()
