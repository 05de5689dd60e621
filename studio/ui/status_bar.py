"""The window's status line: one message (the engine's, a job's, an error), and while a job
runs its step, speed and time left with a progress bar."""

from __future__ import annotations

from PySide6.QtCore import Qt
from PySide6.QtWidgets import QLabel, QProgressBar, QStatusBar
from superqt import QElidingLabel

from studio.core.jobs import StepProgress
from studio.core.text import printable


def describe_progress(progress: StepProgress) -> str:
    """'Step 12/25 · 9.8 it/s · 1.2 s left' (with the stage when it is not the main one)."""
    stage = {"upscale": "Upscaling · ", "hires": "Hires fix · "}.get(progress.stage, "")
    rate = progress.steps_per_second
    speed = f"{rate:.1f} it/s" if rate >= 1 or rate == 0 else f"{1 / rate:.1f} s/it"
    return (
        f"{stage}Step {progress.step}/{progress.total} · {speed} · "
        f"{progress.seconds_left:.1f} s left"
    )


class StatusLine:
    """Fills a QStatusBar with the message, the step text and the progress bar."""

    def __init__(self, bar: QStatusBar) -> None:
        self.message = QElidingLabel("Starting…")
        self.message.setMinimumWidth(220)
        self.step = QLabel()
        # Fixed sizes: a step's text changes 30 times a second, and a label that resized
        # with it would lay out (and repaint) the whole window each time, taking the UI
        # thread and the GIL from the engine (measured: 40 steps in 6 s instead of 1 s).
        widest = "Hires fix · Step 1000/1000 · 99.9 it/s · 9999.9 s left"
        self.step.setFixedWidth(self.step.fontMetrics().horizontalAdvance(widest) + 8)
        self.step.setAlignment(Qt.AlignmentFlag.AlignRight | Qt.AlignmentFlag.AlignVCenter)
        self.progress = QProgressBar()
        self.progress.setFixedWidth(220)
        self.progress.setTextVisible(False)
        # hidden but holding its place: showing it must not lay out the window either
        policy = self.progress.sizePolicy()
        policy.setRetainSizeWhenHidden(True)
        self.progress.setSizePolicy(policy)
        self.progress.setVisible(False)
        bar.addWidget(self.message, 1)
        bar.addPermanentWidget(self.step)
        bar.addPermanentWidget(self.progress)

    def say(self, text: str, error: bool = False) -> None:
        self.message.setText(printable(text))
        self.message.setObjectName("errorStatus" if error else "")
        self.message.style().unpolish(self.message)  # the stylesheet colours errors
        self.message.style().polish(self.message)

    def text(self) -> str:
        return self.message.text()

    def started(self) -> None:
        self.step.setText("")
        self.progress.setRange(0, 100)
        self.progress.setValue(0)
        self.progress.setVisible(True)

    def stepped(self, progress: StepProgress) -> None:
        self.step.setText(describe_progress(progress))
        self.progress.setRange(0, progress.total)
        self.progress.setValue(progress.step)

    def fraction(self, value: float | None) -> None:
        """An engine task's progress (a download, a load): a bar while it is under way."""
        self.progress.setVisible(value is not None and value < 1.0)
        if value is not None:
            self.progress.setRange(0, 1000)
            self.progress.setValue(int(value * 1000))

    def finished(self) -> None:
        self.step.setText("")
        self.progress.setVisible(False)
