"""Continue from here: the timeline's step k starts a branch with the panel's changes, its
timeline starts with the parent's first steps, and nothing changed makes the same picture."""

from __future__ import annotations

import numpy as np
import pytest
from PySide6.QtCore import Qt

from studio.core.request import Mode
from studio.core.restore import plan_restore
from studio.metadata import read_parameters

PROMPT = "a large yellow square in the centre on a blue background"
STEPS = 6


@pytest.fixture
def window(engine_window):  # noqa: ANN001, ANN201
    return engine_window(PROMPT, steps=STEPS, seed=42, scheduler="DPM++ 2M")


def _finish(qtbot, window, start) -> object:  # noqa: ANN001
    with qtbot.waitSignal(window.controller.jobFinished, timeout=60000) as blocker:
        start()
    return blocker.args[1]


def _pixels(result) -> np.ndarray:  # noqa: ANN001
    return np.asarray(result.images[0].convert("RGB"))


def test_continue_from_a_step_with_and_without_changes(qtbot, window) -> None:  # noqa: ANN001
    click = lambda button: qtbot.mouseClick(button, Qt.MouseButton.LeftButton)  # noqa: E731
    parent = _finish(qtbot, window, lambda: click(window.generate_button))
    timeline = window.timeline
    assert timeline.frame_count() == STEPS + 1  # every step, then the result
    assert not timeline.continue_button.isEnabled()  # the result: nothing to continue
    timeline.select(STEPS - 1)  # the last step: nothing left to run either
    assert not timeline.continue_button.isEnabled()
    timeline.select(2)  # step 3
    assert timeline.continue_button.isEnabled()
    parent_frames = [np.asarray(f.preview) for f in window.controller.job(1).timeline()]

    same = _finish(qtbot, window, lambda: click(timeline.continue_button))
    assert np.array_equal(_pixels(same), _pixels(parent))  # nothing changed: the same picture
    assert same.request.branch is not None and same.request.branch.at_step == 3

    window.jobs.show_timeline(window.controller.job(1))  # the parent's steps again
    timeline.select(2)
    timeline.vary.setValue(60)  # a variation: fresh noise for 60 % of what is left
    varied = _finish(qtbot, window, lambda: click(timeline.continue_button))
    assert varied.request.branch.vary == 0.6 and varied.request.branch.noise_seed is not None
    assert not np.array_equal(_pixels(varied), _pixels(parent))
    timeline.vary.setValue(0)

    # a new prompt from step 3 on, and a sampler a branch cannot change: kept, and said
    window.jobs.show_timeline(window.controller.job(1))
    timeline.select(2)
    window.prompt_panel.set_prompts("a small red circle at the top left", "")
    window.draft.edit({"scheduler": "Euler"})
    changed = _finish(qtbot, window, lambda: click(timeline.continue_button))
    assert window.banner.text() == "A branch keeps its parent's sampler: those changes wait."
    assert changed.request.scheduler == "DPM++ 2M"
    assert changed.request.prompt == "a small red circle at the top left"
    assert not np.array_equal(_pixels(changed), _pixels(parent))

    # its timeline: the parent's first two steps, marked, then its own from step 3
    record = window.controller.job(window.jobs.shown_job)
    frames = record.timeline()
    assert [f.step for f in frames] == list(range(1, STEPS + 1))
    assert len(record.shared) == 2
    assert all(np.array_equal(np.asarray(f.preview), parent_frames[i]) for i, f in
               enumerate(frames[:3]))  # fmt: skip
    assert timeline.frame_count() == STEPS + 1
    timeline.select(0)
    assert timeline.label.text() == "Step 1/6 · parent · continues at once"

    # the saved file records the branch; restoring it offers to make it again, the same
    saved = read_parameters(changed.paths[0])
    assert saved.request["branch"]["at_step"] == 3
    assert saved.request["branch"]["parent"]["prompt"] == PROMPT
    assert changed.paths[0].name.startswith(parent.paths[0].stem + "-step3")  # listed beside
    window.draft.edit({"prompt": "something else", "scheduler": "Euler"})
    window.intake.restore(plan_restore(saved), "branch.png")
    assert "continues another picture from its step 3" in window.banner.text()
    labels = window.banner.actions_shown()
    rebuilt = _finish(
        qtbot, window, lambda: window.banner.buttons[labels.index("Rebuild this branch")].click()
    )
    assert np.array_equal(_pixels(rebuilt), _pixels(changed))


def test_the_timeline_says_which_steps_continue_at_once(qtbot, window) -> None:  # noqa: ANN001
    import dataclasses

    from studio.ui.thumbnail_delegate import KeptRole

    click = lambda button: qtbot.mouseClick(button, Qt.MouseButton.LeftButton)  # noqa: E731
    timeline = window.timeline
    parent = _finish(qtbot, window, lambda: click(window.generate_button))
    parent_id = window.jobs.shown_job
    timeline.select(2)
    assert timeline.label.text() == "Step 3/6 · continues at once"
    assert timeline.strip.item(2).data(KeptRole) and not timeline.strip.item(STEPS).data(KeptRole)

    # a sampler of DPM++ 2M's kind takes over from the step, with no note
    window.draft.edit({"scheduler": "UniPC"})
    switched = _finish(qtbot, window, lambda: click(timeline.continue_button))
    assert switched.request.scheduler == "UniPC" and not window.banner.text()
    assert not np.array_equal(_pixels(switched), _pixels(parent))

    # no memory for steps: the next job pushes the parent's out, and its timeline says so
    settings = window.engine_settings()
    window.controller.configure(dataclasses.replace(settings, branch_memory_mb=0))
    try:
        window.draft.edit({"scheduler": "DPM++ 2M", "seed": 43})
        _finish(qtbot, window, lambda: click(window.generate_button))
        window.jobs.show_timeline(window.controller.job(parent_id))
        timeline.select(2)
        assert timeline.label.text() == (
            "Step 3/6 · no longer kept: its steps are computed again first"
        )
        assert not timeline.strip.item(2).data(KeptRole)
        window.draft.edit({"seed": 42})
        again = _finish(qtbot, window, lambda: click(timeline.continue_button))
        assert np.array_equal(_pixels(again), _pixels(parent))  # computed again, the same
    finally:
        window.controller.configure(settings)
    timeline.strip.grab().save("/tmp/timeline_kept.png")


def test_a_batch_or_a_cancelled_job_cannot_be_continued(qtbot, window) -> None:  # noqa: ANN001
    window.draft.edit({"batch_size": 2})
    with qtbot.waitSignal(window.controller.jobFinished, timeout=60000):
        window.generate()
    window.timeline.select(1)
    assert not window.timeline.continue_button.isEnabled()
    assert window.continue_from_step(1) is None
    assert "Continue from a step of a finished image" in window.banner.text()
    assert window.mode() is Mode.TEXT_TO_IMAGE
