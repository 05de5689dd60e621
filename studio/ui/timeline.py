"""The denoising timeline: after a job, scrub through the preview of every step.

The frames are the step previews the controller kept for the job (small, latent-sized
arrays), shown as a filmstrip with a slider; the last position is the finished image.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from PySide6.QtCore import QSize, Qt, Signal
from PySide6.QtGui import QIcon, QImage, QPixmap
from PySide6.QtWidgets import (
    QHBoxLayout,
    QListView,
    QListWidget,
    QListWidgetItem,
    QSizePolicy,
    QSlider,
    QSpinBox,
    QToolButton,
    QVBoxLayout,
    QWidget,
)
from superqt import QElidingLabel

from studio.ui.qt_images import array_to_qimage
from studio.ui.thumbnail_delegate import KeptRole, ThumbnailDelegate

THUMB = 44
SLIDER_MIN_WIDTH = 160


def _thumbnail(image: QImage) -> QIcon:
    scaled = image.scaled(
        THUMB,
        THUMB,
        Qt.AspectRatioMode.KeepAspectRatio,
        Qt.TransformationMode.FastTransformation,  # previews are tiny: keep them crisp
    )
    return QIcon(QPixmap.fromImage(scaled))


class Timeline(QWidget):
    """Emits `frameChosen(index)`; index == frame_count() - 1 is the finished image."""

    frameChosen = Signal(int)
    exportRequested = Signal()  # the artist asked to save the steps as an animation
    continueRequested = Signal(int)  # continue the job from this frame's step (a branch)

    def __init__(self, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.strip = QListWidget()
        self.strip.setViewMode(QListView.ViewMode.IconMode)
        self.strip.setFlow(QListView.Flow.LeftToRight)
        self.strip.setWrapping(False)
        self.strip.setMovement(QListView.Movement.Static)
        self.strip.setIconSize(QSize(THUMB, THUMB))
        self.strip.setSpacing(2)
        self.strip.setItemDelegate(ThumbnailDelegate(self.strip))
        self.strip.setFixedHeight(THUMB + 26)
        self.strip.setHorizontalScrollBarPolicy(Qt.ScrollBarPolicy.ScrollBarAsNeeded)
        self.strip.setVerticalScrollBarPolicy(Qt.ScrollBarPolicy.ScrollBarAlwaysOff)
        self.slider = QSlider(Qt.Orientation.Horizontal)
        self.slider.setToolTip("Scrub through the denoising steps of the last job")
        # The slider never collapses (it is how one scrubs); the label gives way, elided.
        self.slider.setMinimumWidth(SLIDER_MIN_WIDTH)
        self.label = QElidingLabel("Timeline: generate an image to scrub through its steps")
        self.label.setObjectName("hint")
        self.label.setMinimumWidth(60)
        self.label.setSizePolicy(QSizePolicy.Policy.Ignored, QSizePolicy.Policy.Preferred)

        self.export_button = QToolButton()
        self.export_button.setText("Export…")
        self.export_button.setToolTip("Save the steps as an animated WebP or GIF, to share")
        self.export_button.clicked.connect(self.exportRequested)
        self.continue_button = QToolButton()
        self.continue_button.setText("Continue from here")
        self.continue_button.setToolTip(
            "A new job that shares this job's steps up to the chosen one and runs the rest with "
            "what you changed since: the prompt, the guidance, LoRA weights, ControlNet scales, "
            "or a sampler of the same kind (Euler, Euler a, LMS; or DPM++ 2M and its SDE "
            "variants, UniPC, DDIM, DDPM). With nothing changed it makes the same picture."
        )
        self.continue_button.clicked.connect(lambda: self.continueRequested.emit(self.current()))
        self.vary = QSpinBox()
        self.vary.setRange(0, 100)
        self.vary.setSuffix(" % vary")
        self.vary.setToolTip(
            "Continue from here with this share of the noise left at the step replaced by "
            "fresh noise: a variation of the same picture (0: the noise is the parent's)"
        )

        # the label on a line of its own: what a step is and whether a branch from it
        # continues at once is the one thing here worth reading, and beside the slider and
        # the branch controls it was cut to "Step 3/6 · co…"
        # The vary amount sits on that line too: beside the slider and "Continue from here"
        # it made the row 420 px at least, and a 900-px window 1000 px wide after a job.
        top = QHBoxLayout()
        top.addWidget(self.label, 1)
        top.addWidget(self.vary)
        top.addWidget(self.export_button)
        row = QHBoxLayout()
        row.addWidget(self.slider, 1)
        row.addWidget(self.continue_button)
        layout = QVBoxLayout(self)
        layout.setContentsMargins(0, 0, 0, 0)
        layout.setSpacing(2)
        layout.addLayout(top)
        layout.addLayout(row)
        layout.addWidget(self.strip)

        self._labels: list[str] = []
        self._generate_steps: list[int | None] = []  # per frame: a step one can branch from
        self._steps_kept: int | None = None
        self.slider.valueChanged.connect(self._on_slider)
        self.strip.currentRowChanged.connect(self._on_strip)
        self.clear()

    def frame_count(self) -> int:
        return len(self._labels)

    def current(self) -> int:
        return self.slider.value()

    def clear(self, message: str = "") -> None:
        self._labels = []
        self._generate_steps = []
        self.strip.blockSignals(True)  # emptying the strip moves its current row: no choice
        self.strip.clear()
        self.strip.blockSignals(False)
        self.slider.blockSignals(True)
        self.slider.setRange(0, 0)
        self.slider.blockSignals(False)
        self.slider.setEnabled(False)
        self.export_button.setEnabled(False)
        self.continue_button.setEnabled(False)
        self.continue_button.setVisible(False)  # no job's steps: the label needs the room
        self.vary.setVisible(False)
        self.strip.setVisible(False)
        self.label.setText(message or "Timeline: generate an image to scrub through its steps")

    def set_frames(
        self,
        frames: Sequence[Any],
        result: QImage | None,
        shared: int = 0,
        steps_kept: int | None = None,
    ) -> None:
        """frames: StepProgress objects with a preview; the result comes last. `shared`: how
        many of the first frames are a branch's parent's; `steps_kept`: see set_steps_kept."""
        # Rebuilding the strip moves its current row; that is no frame the artist chose (it
        # put the first steps' preview over the result on the canvas).
        self.strip.blockSignals(True)
        self.strip.clear()
        self._labels = []
        self._generate_steps = []
        for number, progress in enumerate(frames):
            stage = {"upscale": "Upscale ", "hires": "Hires "}.get(progress.stage, "")
            label = f"{stage}{progress.step}/{progress.total}"
            if number < shared:
                label += " · parent"
            self._add(array_to_qimage(progress.preview), label)
            generate = progress.stage == "generate" and progress.step < progress.total
            self._generate_steps.append(progress.step if generate else None)
        if result is not None:
            self._add(result, "Result")
        last = max(0, len(self._labels) - 1)
        self.slider.blockSignals(True)
        self.slider.setRange(0, last)
        self.slider.setValue(last)
        self.slider.blockSignals(False)
        self.slider.setEnabled(len(self._labels) > 1)
        self.export_button.setEnabled(len(self._labels) > 1)
        self.continue_button.setVisible(bool(self._labels))
        self.vary.setVisible(bool(self._labels))
        self.strip.setVisible(bool(self._labels))
        self.strip.setCurrentRow(last)
        self.strip.blockSignals(False)
        self.set_steps_kept(steps_kept)

    def set_steps_kept(self, steps_kept: int | None) -> None:
        """How many of the job's first steps the engine still keeps (None: not known, or
        the job keeps none to say). A branch from one of them continues at once, and its
        frame is underlined; from a later one, the steps up to it are computed again."""
        self._steps_kept = steps_kept
        for row, step in enumerate(self._generate_steps):
            item = self.strip.item(row)
            kept = steps_kept is not None and step is not None and step <= steps_kept
            item.setData(KeptRole, kept)
            item.setToolTip(self._labels[row] + self._continuing(row))
        self.strip.viewport().update()
        self._update_label(self.current())

    def _continuing(self, row: int) -> str:
        """What continuing from the frame `row` costs, when that is known."""
        step = self._generate_steps[row] if row < len(self._generate_steps) else None
        if step is None or self._steps_kept is None:
            return ""
        if step <= self._steps_kept:
            return " · continues at once"
        return " · no longer kept: its steps are computed again first"

    def select(self, index: int) -> None:
        self.slider.setValue(index)

    def set_can_continue(self, can: bool) -> None:
        """Whether the chosen frame is a step a branch can continue from."""
        self.continue_button.setEnabled(can)
        self.vary.setEnabled(can)

    def _add(self, image: QImage, label: str) -> None:
        item = QListWidgetItem(_thumbnail(image), "")
        item.setToolTip(label)
        self.strip.addItem(item)
        self._labels.append(label)

    def _on_slider(self, index: int) -> None:
        self.strip.blockSignals(True)
        self.strip.setCurrentRow(index)
        self.strip.blockSignals(False)
        self.strip.scrollToItem(self.strip.item(index))
        self._update_label(index)
        self.frameChosen.emit(index)

    def _on_strip(self, row: int) -> None:
        if row >= 0:
            self.slider.setValue(row)

    def _update_label(self, index: int) -> None:
        if not self._labels:
            return
        label = self._labels[index]
        text = f"Step {label}{self._continuing(index)}" if label != "Result" else "Result"
        self.label.setText(text)
