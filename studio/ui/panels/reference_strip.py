"""Edit mode's reference images: the pictures an instruction may refer to besides the canvas
image ("put the hat of image 2 on the cat"), for the families whose edit pipeline takes
several (Flux.2 Klein, Qwen-Image-Edit 2509). Added with a button or by a drop, removed with
Delete or the button; each shows as a thumbnail with its file name."""

from __future__ import annotations

from pathlib import Path

from PIL import Image
from PySide6.QtCore import QSize, Qt, Signal
from PySide6.QtGui import QDragEnterEvent, QDropEvent, QIcon, QKeySequence, QPixmap, QShortcut
from PySide6.QtWidgets import (
    QFileDialog,
    QHBoxLayout,
    QLabel,
    QListWidget,
    QListWidgetItem,
    QToolButton,
    QVBoxLayout,
    QWidget,
)

from studio.core.imaging import ImageLoadError, file_dialog_filter, open_image
from studio.core.text import printable
from studio.ui.image_input import dropped_image_path, dropped_pixels
from studio.ui.qt_images import pil_to_qimage, qimage_to_pil

THUMB = 48


class ReferenceStrip(QWidget):
    changed = Signal()
    problem = Signal(str)  # one sentence: a file that is not an image, one too many

    def __init__(self, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self._images: list[Image.Image] = []
        self._limit = 0
        self.setAcceptDrops(True)
        self.title = QLabel("Reference images")
        self.title.setObjectName("hint")
        self.add_button = QToolButton()
        self.add_button.setText("Add…")
        self.add_button.setToolTip("Add an image the instruction can refer to (or drop one here)")
        self.add_button.clicked.connect(self._add_from_dialog)
        self.remove_button = QToolButton()
        self.remove_button.setText("Remove")
        self.remove_button.setToolTip("Remove the selected reference image (Delete)")
        self.remove_button.clicked.connect(self.remove_selected)
        self.list = QListWidget()
        self.list.setViewMode(QListWidget.ViewMode.IconMode)
        self.list.setFlow(QListWidget.Flow.LeftToRight)
        self.list.setWrapping(False)
        self.list.setIconSize(QSize(THUMB, THUMB))
        self.list.setFixedHeight(THUMB + 34)
        self.list.setAcceptDrops(False)  # the strip takes the drop
        self.list.itemSelectionChanged.connect(self._update_buttons)
        QShortcut(QKeySequence.StandardKey.Delete, self.list, self.remove_selected)

        header = QHBoxLayout()
        header.setContentsMargins(0, 0, 0, 0)
        header.addWidget(self.title, 1)
        header.addWidget(self.add_button)
        header.addWidget(self.remove_button)
        layout = QVBoxLayout(self)
        layout.setContentsMargins(0, 0, 0, 0)
        layout.setSpacing(2)
        layout.addLayout(header)
        layout.addWidget(self.list)
        self._update_buttons()

    # -- what the job takes ---------------------------------------------------------------

    def images(self) -> tuple[Image.Image, ...]:
        return tuple(self._images)

    def set_limit(self, limit: int, family_label: str = "") -> None:
        """How many references the model takes; 0 hides the strip (the images are kept for a
        model that takes them)."""
        self._limit = limit
        if limit:
            self.title.setText(f"Reference images (up to {limit})")
            self.title.setToolTip(f"{family_label} edits with up to {limit} more images")
        self._update_buttons()

    @property
    def limit(self) -> int:
        return self._limit

    # -- adding and removing --------------------------------------------------------------

    def add(self, image: Image.Image, name: str) -> bool:
        if self._limit and len(self._images) >= self._limit:
            self.problem.emit(f"This model takes at most {self._limit} reference images.")
            return False
        image = image.convert("RGB")
        self._images.append(image)
        thumb = image.copy()
        thumb.thumbnail((THUMB, THUMB))
        item = QListWidgetItem(QIcon(QPixmap.fromImage(pil_to_qimage(thumb))), name)
        item.setToolTip(f"{name} · {image.width}×{image.height}")
        self.list.addItem(item)
        self._update_buttons()
        self.changed.emit()
        return True

    def add_file(self, path: str | Path) -> bool:
        try:
            image = open_image(path)
        except ImageLoadError as e:
            self.problem.emit(str(e))
            return False
        return self.add(image, printable(Path(path).name))

    def remove_selected(self) -> None:
        rows = sorted((self.list.row(i) for i in self.list.selectedItems()), reverse=True)
        for row in rows:
            self.list.takeItem(row)
            del self._images[row]
        if rows:
            self._update_buttons()
            self.changed.emit()

    def clear(self) -> None:
        self.list.clear()
        self._images.clear()
        self._update_buttons()
        self.changed.emit()

    def _add_from_dialog(self) -> None:
        path, _ = QFileDialog.getOpenFileName(
            self, "Add a reference image", "", file_dialog_filter()
        )
        if path:
            self.add_file(path)

    def _update_buttons(self) -> None:
        self.add_button.setEnabled(not self._limit or len(self._images) < self._limit)
        self.remove_button.setEnabled(bool(self.list.selectedItems()))

    # -- drops ----------------------------------------------------------------------------

    def dragEnterEvent(self, event: QDragEnterEvent) -> None:  # noqa: N802 - Qt API
        mime = event.mimeData()
        if dropped_image_path(mime) is not None or dropped_pixels(mime) is not None:
            event.acceptProposedAction()

    def dropEvent(self, event: QDropEvent) -> None:  # noqa: N802 - Qt API
        mime = event.mimeData()
        path = dropped_image_path(mime)
        if path is not None:
            self.add_file(path)
        elif (pixels := dropped_pixels(mime)) is not None:
            self.add(qimage_to_pil(pixels), "dropped image")
        else:
            return
        event.setDropAction(Qt.DropAction.CopyAction)
        event.accept()
