"""The jobs waiting behind the current one: what each will make, in the order they run.

Each can be cancelled (the cross, Delete) or moved (the arrows, Ctrl+Up / Ctrl+Down, or a
drag). The controller owns the queue; this list only shows it and asks for changes.
"""

from __future__ import annotations

from PySide6.QtCore import QModelIndex, QSize, Qt
from PySide6.QtGui import QKeyEvent
from PySide6.QtWidgets import (
    QAbstractItemView,
    QHBoxLayout,
    QLabel,
    QListWidget,
    QListWidgetItem,
    QToolButton,
    QVBoxLayout,
    QWidget,
)

from studio.core.request import GenerationRequest, Mode
from studio.core.text import printable
from studio.ui import icons
from studio.ui.controller import JobController

ROWS_SHOWN = 4  # taller queues scroll
PROMPT_CHARS = 48


def describe_job(request: GenerationRequest) -> str:
    """One line: the prompt (shortened), the mode and the size."""
    prompt = " ".join(printable(request.prompt).split()) or "(no prompt)"
    if len(prompt) > PROMPT_CHARS:
        prompt = prompt[: PROMPT_CHARS - 1] + "…"
    size = "" if request.mode is Mode.UPSCALE else f" · {request.width}×{request.height}"
    return f"{prompt} · {request.mode.label}{size}"


class _JobList(QListWidget):
    """Rows that can be dragged into another order; Delete and Ctrl+arrows act on one."""

    def __init__(self, queue: QueueView) -> None:
        super().__init__()
        self._queue = queue
        self.setDragDropMode(QAbstractItemView.DragDropMode.InternalMove)
        self.setDefaultDropAction(Qt.DropAction.MoveAction)
        self.setSelectionMode(QAbstractItemView.SelectionMode.SingleSelection)
        self.setUniformItemSizes(True)
        self.setHorizontalScrollBarPolicy(Qt.ScrollBarPolicy.ScrollBarAlwaysOff)  # elide
        self.setTextElideMode(Qt.TextElideMode.ElideMiddle)  # keeps mode and size in view
        self.model().rowsMoved.connect(self._on_rows_moved)

    def keyPressEvent(self, event: QKeyEvent) -> None:  # noqa: N802 - Qt API
        ctrl = event.modifiers() == Qt.KeyboardModifier.ControlModifier
        if event.key() in (Qt.Key.Key_Delete, Qt.Key.Key_Backspace):
            self._queue.cancel_selected()
        elif ctrl and event.key() == Qt.Key.Key_Up:
            self._queue.move_selected(-1)
        elif ctrl and event.key() == Qt.Key.Key_Down:
            self._queue.move_selected(+1)
        else:
            super().keyPressEvent(event)

    def _on_rows_moved(
        self, _parent: QModelIndex, start: int, _end: int, _to: QModelIndex, row: int
    ) -> None:
        # A drop: the list has moved the row already, and the controller follows (the
        # list is not rebuilt from inside its own model's signal).
        position = row if row < start else row - 1
        job_id = self.item(position).data(Qt.ItemDataRole.UserRole)
        self._queue.follow_drop(job_id, position)


class QueueView(QWidget):
    def __init__(self, controller: JobController, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.controller = controller
        self._dropping = False
        self.title = QLabel()
        self.title.setObjectName("hint")
        self.list = _JobList(self)
        self.list.setToolTip("Jobs waiting to run, next first: drag to reorder, Delete cancels")

        def tool(name: str, tip: str) -> QToolButton:
            button = QToolButton()
            icons.themed(button, name)
            button.setToolTip(tip)
            buttons.addWidget(button)
            return button

        buttons = QHBoxLayout()
        buttons.setContentsMargins(0, 0, 0, 0)
        buttons.addWidget(self.title, 1)
        self.up_button = tool("arrow-up", "Run earlier (Ctrl+Up)")
        self.down_button = tool("arrow-down", "Run later (Ctrl+Down)")
        self.cancel_button = tool("cross", "Cancel this waiting job (Delete)")
        self.up_button.clicked.connect(lambda: self.move_selected(-1))
        self.down_button.clicked.connect(lambda: self.move_selected(+1))
        self.cancel_button.clicked.connect(self.cancel_selected)
        self.list.currentRowChanged.connect(lambda _row: self._update_buttons())

        layout = QVBoxLayout(self)
        layout.setContentsMargins(0, 0, 0, 0)
        layout.setSpacing(2)
        self.running = QLabel()  # several jobs at once on a cluster: on which engines
        self.running.setObjectName("hint")
        layout.addWidget(self.running)
        layout.addLayout(buttons)
        layout.addWidget(self.list)
        controller.queueChanged.connect(self.refresh)
        # a cluster runs several jobs at once: the running line says on which engines (the
        # waiting list itself changes only with queueChanged, so it is not rebuilt here)
        for signal in (
            controller.jobPlaced,
            controller.busyChanged,
            controller.jobFinished,
            controller.jobFailed,
            controller.jobCancelled,
        ):
            signal.connect(lambda *_: self._update_running())
        self.refresh()

    def waiting(self) -> list[int]:
        """The job ids shown, in the order they will run."""
        return [
            self.list.item(row).data(Qt.ItemDataRole.UserRole) for row in range(self.list.count())
        ]

    def refresh(self) -> None:
        """Show the controller's queue, keeping the selected job selected."""
        if self._dropping:
            return
        selected = self._selected()
        queued = self.controller.queued_jobs
        self.list.blockSignals(True)
        self.list.clear()
        for job_id in queued:
            record = self.controller.job(job_id)
            if record is None:
                continue
            # numbered: two jobs of the same prompt and size are told apart to cancel one
            item = QListWidgetItem(f"#{job_id}  {describe_job(record.request)}")
            item.setData(Qt.ItemDataRole.UserRole, job_id)
            item.setToolTip(printable(record.request.prompt))
            item.setSizeHint(QSize(0, self._row_height()))
            self.list.addItem(item)
            if job_id == selected:
                self.list.setCurrentItem(item)
        self.list.blockSignals(False)
        count = len(queued)
        self.title.setText(f"{count} job{'s' if count != 1 else ''} waiting")
        rows = min(max(count, 1), ROWS_SHOWN)
        self.list.setFixedHeight(rows * self._row_height() + 2 * self.list.frameWidth())
        for widget in (self.title, self.up_button, self.down_button, self.cancel_button):
            widget.setVisible(count > 0)
        self.list.setVisible(count > 0)
        self._update_running()
        self._update_buttons()

    def _update_running(self) -> None:
        """The running line, and the panel shown while jobs wait or several run."""
        several = self._show_running()
        self.setVisible(self.list.count() > 0 or several)

    def _show_running(self) -> bool:
        """Jobs running at once on a cluster's engines: one line says on which (each job's
        prompt and place in its tooltip); True when it is shown."""
        running = self.controller.running_jobs
        places = [self.controller.place_of(job_id) for job_id in running]
        several = len(running) > 1 and all(places)
        self.running.setVisible(several)
        if several:
            engines = ", ".join(place.split(" (")[0] for place in places)
            self.running.setText(f"{len(running)} running: {engines}")
            records = [self.controller.job(job_id) for job_id in running]
            self.running.setToolTip(
                "\n".join(
                    f"{describe_job(r.request)}: {p}"
                    for r, p in zip(records, places, strict=True)
                    if r is not None
                )
            )
        return several

    def follow_drop(self, job_id: int, position: int) -> None:
        self._dropping = True
        try:
            self.controller.move(job_id, position)
        finally:
            self._dropping = False
        self._update_buttons()

    def cancel_selected(self) -> None:
        job_id = self._selected()
        if job_id is not None:
            row = self.list.currentRow()
            self.controller.cancel(job_id)
            self.list.setCurrentRow(min(row, self.list.count() - 1))

    def move_selected(self, offset: int) -> None:
        job_id = self._selected()
        if job_id is not None:
            self.controller.move(job_id, self.list.currentRow() + offset)

    def _row_height(self) -> int:
        return self.list.fontMetrics().height() + 6

    def _selected(self) -> int | None:
        item = self.list.currentItem()
        return item.data(Qt.ItemDataRole.UserRole) if item is not None else None

    def _update_buttons(self) -> None:
        row, count = self.list.currentRow(), self.list.count()
        self.cancel_button.setEnabled(row >= 0)
        self.up_button.setEnabled(row > 0)
        self.down_button.setEnabled(0 <= row < count - 1)
