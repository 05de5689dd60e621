"""Live mode: every change makes a new few-step picture beside the canvas; the stale job in
flight is cancelled and never shown; nothing is saved; the canvas keeps the input."""

from __future__ import annotations

import numpy as np
import pytest
from PIL import Image
from PySide6.QtCore import Qt

from studio.core.request import Mode
from studio.ui.live_mode import LIVE_STEPS
from tests.pictures import yellow_square_on_blue as _input


@pytest.fixture
def window(engine_window):  # noqa: ANN001, ANN201
    return engine_window("a small red circle at the top left", seed=11, steps=20)


def test_live_pictures_follow_every_change_and_only_the_newest_shows(
    qtbot, window, out_dir
) -> None:  # noqa: ANN001
    live, view = window.live, window.live_view
    cancelled: list[int] = []
    window.controller.jobCancelled.connect(cancelled.append)
    shown: list[int] = []
    live.shown.connect(shown.append)
    with qtbot.waitSignal(live.shown, timeout=60000) as first:
        qtbot.mouseClick(window.live_button, Qt.MouseButton.LeftButton)
    assert view.isVisible() and view.shown is not None
    record = window.controller.job(first.args[0])
    assert record.live and record.request.steps == LIVE_STEPS and record.request.seed == 11

    # a burst of edits while a picture is being made: the last one wins, the rest never show
    prompts = ["a green ring", "a yellow star", "a purple square in the centre"]
    with qtbot.waitSignal(live.shown, timeout=60000) as last:
        for prompt in prompts:
            window.prompt_panel.set_prompts(prompt, "")
            qtbot.wait(5)
    assert window.controller.job(last.args[0]).request.prompt == prompts[-1]
    assert shown == [first.args[0], last.args[0]]  # nothing stale was shown in between
    assert cancelled  # the replaced ones were stopped, not left to run

    # a stroke on the mask in inpaint: a new picture; the canvas keeps its input image
    window.canvas.set_image(_input())
    window.set_mode(Mode.INPAINT)
    window.canvas.set_mask(Image.new("L", (64, 64), 255))
    with qtbot.waitSignal(live.shown, timeout=60000) as stroke:
        window.canvas.maskChanged.emit()
    assert window.controller.job(stroke.args[0]).request.mode is Mode.INPAINT
    assert np.array_equal(np.asarray(window.canvas.image().convert("RGB")), np.asarray(_input()))

    assert not out_dir.is_dir() or not list(out_dir.iterdir())  # live pictures are not saved
    qtbot.mouseClick(window.live_button, Qt.MouseButton.LeftButton)  # off
    assert not view.isVisible()
    jobs_before = len(window.controller.queued_jobs)
    window.prompt_panel.set_prompts("a blue circle", "")
    qtbot.wait(50)
    assert len(window.controller.queued_jobs) == jobs_before and not window.controller.is_busy
