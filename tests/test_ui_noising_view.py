"""The noising view beside the strength slider, and the forward-process scrubber: what
image→image starts from, as the engine makes it, following the slider; stale answers are
never shown."""

from __future__ import annotations

import numpy as np
import pytest
from PySide6.QtCore import QObject, Signal

from studio.core.request import GenerationRequest, Mode
from studio.ui import noising_view
from studio.ui.noising_view import NoisingAsker
from tests.pictures import yellow_square_on_blue as _input

SHOWN_MS = 400  # the view's time on screen after the slider stops: the studio's 2.5 s, shorter


@pytest.fixture
def window(engine_window, monkeypatch):  # noqa: ANN001, ANN201
    monkeypatch.setattr(noising_view, "SHOWN_MS", SHOWN_MS)  # read as the view is made
    return engine_window("a yellow square", seed=5, steps=10)


def test_the_canvas_shows_what_the_strength_starts_from_while_it_moves(qtbot, window) -> None:  # noqa: ANN001
    view = window.noising
    window.canvas.set_image(_input())
    window.draft.edit({"strength": 0.3})  # text→image starts from pure noise: nothing shown
    qtbot.wait(200)
    assert not view.isVisible()
    window.set_mode(Mode.IMAGE_TO_IMAGE)
    with qtbot.waitSignal(view.asker.shown, timeout=60000) as low:
        window.draft.edit({"strength": 0.1})
    assert view.isVisible() and view.parent() is window.canvas
    assert view.pixmap() is not None and not view.pixmap().isNull()
    target = np.asarray(_input().resize(low.args[0].shape[1::-1]), dtype=np.float32)
    with qtbot.waitSignal(view.asker.shown, timeout=60000) as high:
        window.draft.edit({"strength": 0.95})
    near = np.abs(low.args[0].astype(np.float32) - target).mean()
    far = np.abs(high.args[0].astype(np.float32) - target).mean()
    assert near < far  # at 0.1 the square survives; at 0.95 little of it does
    assert "strength 0.95" in view.toolTip()
    qtbot.waitUntil(lambda: not view.isVisible(), timeout=SHOWN_MS + 3000)  # out of the way

    dialog = view.open_scrubber()  # any canvas image, in any mode
    assert dialog is not None
    with qtbot.waitSignal(dialog.asker.shown, timeout=60000):
        dialog.slider.setValue(30)
    assert "strength 0.3 starts here" in dialog.caption.text()
    dialog.close()


class _SlowBackend(QObject):
    """Answers when told to, in any order: a worker busy with an older ask."""

    noised = Signal(int, object)

    def __init__(self) -> None:
        super().__init__()
        self.asked: list[int] = []

    def show_noising(self, token: int, request: GenerationRequest) -> None:
        self.asked.append(token)


def test_only_the_latest_ask_is_shown(qtbot) -> None:  # noqa: ANN001
    backend = _SlowBackend()
    asker = NoisingAsker(lambda: backend)
    shown: list = []
    asker.shown.connect(shown.append)
    request = GenerationRequest(mode=Mode.IMAGE_TO_IMAGE, prompt="x", init_image=_input())
    for strength in (0.2, 0.4, 0.6):  # one burst: only the last position is asked for
        asker.ask(request.replace(strength=strength))
    qtbot.waitUntil(lambda: len(backend.asked) == 1)
    asker.ask(request.replace(strength=0.8))
    qtbot.waitUntil(lambda: len(backend.asked) == 2)
    first, second = backend.asked
    backend.noised.emit(second, np.ones((2, 2, 3), np.uint8))
    backend.noised.emit(first, np.zeros((2, 2, 3), np.uint8))  # late and stale: dropped
    assert len(shown) == 1 and shown[0].max() == 1


def test_a_job_started_right_after_the_slider_moved_is_not_covered_by_its_view(
    qtbot, window
) -> None:  # noqa: ANN001
    """The ask for the view waits behind the job on the engine's thread: its answer came
    after the result and covered its corner for seconds (helper-34's find)."""
    view = window.noising
    window.canvas.set_image(_input())
    window.set_mode(Mode.IMAGE_TO_IMAGE)
    started: list[int] = []
    window.controller.jobStarted.connect(started.append)
    late: list[object] = []  # pictures that came once the job had started
    view.asker.shown.connect(lambda picture: started and picture is not None and late.append(1))
    window.draft.edit({"strength": 0.9})  # the slider moved…
    qtbot.wait(noising_view.ASK_DELAY_MS + 30)  # …its ask has gone to the engine…
    with qtbot.waitSignal(window.controller.jobFinished, timeout=60000):
        window.generate()  # …and Generate at once
        assert window.controller.is_busy
        window.draft.edit({"strength": 0.5})  # moved while the job runs: nothing asked
    qtbot.wait(SHOWN_MS)
    assert started and not view.isVisible() and late == []
