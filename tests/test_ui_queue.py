"""The queue is visible: waiting jobs can be cancelled one by one and reordered, and
closing the window with jobs waiting asks first."""

from __future__ import annotations

from PySide6.QtCore import QModelIndex, Qt
from PySide6.QtWidgets import QMessageBox

from studio.core.request import Mode
from tests.scripted_backend import ScriptedBackend


def _queue_three(window) -> list[int]:  # noqa: ANN001
    ids = []
    for prompt in ("first red circle", "second blue star", "third green ring"):
        window.prompt_panel.set_prompts(prompt, "")
        ids.append(window.generate())
    return ids


def _prompts(backend: ScriptedBackend) -> list[str]:
    return [job.request.prompt for job in backend.submitted]


def test_waiting_jobs_are_listed_and_can_be_reordered_and_cancelled(make_window, qtbot):  # noqa: ANN001
    backend = ScriptedBackend()
    window = make_window(backend=backend)
    queue = window.queue
    assert queue.isHidden()  # nothing waits
    first, second, third = _queue_three(window)
    assert _prompts(backend) == ["first red circle"]  # one runs, two wait
    assert queue.isVisible() and queue.title.text() == "2 jobs waiting"
    rows = [queue.list.item(r).text() for r in range(queue.list.count())]
    assert rows == [
        f"#{second}  second blue star · Text→Image · 64×64",
        f"#{third}  third green ring · Text→Image · 64×64",
    ]
    # the third should run next: select it, move it up
    queue.list.setCurrentRow(1)
    assert queue.up_button.isEnabled() and not queue.down_button.isEnabled()
    queue.up_button.click()
    assert window.controller.queued_jobs == [third, second] and queue.waiting() == [third, second]
    assert queue.list.currentRow() == 0  # the moved job stays selected
    # cancel the second with the keyboard
    queue.list.setCurrentRow(1)
    qtbot.keyClick(queue.list, Qt.Key.Key_Delete)
    assert window.controller.queued_jobs == [third] and queue.title.text() == "1 job waiting"
    backend.finish(backend.submitted[0])
    assert _prompts(backend) == ["first red circle", "third green ring"]
    assert queue.isHidden()
    backend.finish(backend.submitted[1])
    assert _prompts(backend) == ["first red circle", "third green ring"]  # the second never ran


def test_a_dragged_row_changes_the_order_the_jobs_run_in(make_window):  # noqa: ANN001
    backend = ScriptedBackend()
    window = make_window(backend=backend)
    window.set_mode(Mode.TEXT_TO_IMAGE)
    for prompt in ("a", "b red", "c blue", "d green"):
        window.prompt_panel.set_prompts(prompt, "")
        window.generate()
    queue = window.queue
    before = queue.waiting()
    # what a drop does: the list moves the last row to the top
    assert queue.list.model().moveRow(QModelIndex(), 2, QModelIndex(), 0)
    assert queue.waiting() == [before[2], before[0], before[1]]
    assert window.controller.queued_jobs == queue.waiting()
    for _ in range(3):
        backend.finish(backend.submitted[-1])
    assert _prompts(backend) == ["a", "d green", "b red", "c blue"]


def test_closing_with_jobs_waiting_asks_first(make_window, monkeypatch):  # noqa: ANN001
    backend = ScriptedBackend()
    window = make_window(backend=backend)
    del window.confirm_dropping_jobs  # the real question, not the tests' default
    _queue_three(window)
    asked: list[str] = []

    def answer(choice):  # noqa: ANN001, ANN202
        def question(_parent, _title, text, *_args):  # noqa: ANN001, ANN202
            asked.append(text)
            return choice

        return question

    monkeypatch.setattr(QMessageBox, "question", answer(QMessageBox.StandardButton.Cancel))
    window.close()
    assert window.isVisible() and len(window.controller.queued_jobs) == 2
    assert asked == ["2 jobs are waiting to run. Quit and drop them?"]
    monkeypatch.setattr(QMessageBox, "question", answer(QMessageBox.StandardButton.Discard))
    window.close()
    assert not window.isVisible()
