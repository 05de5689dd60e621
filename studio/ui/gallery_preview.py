"""The selected image above its parameters: as tall as its picture and no taller (no empty
band above the parameters box), hidden when nothing is selected, and shrinking (the
picture scaled down with it) before the thumbnails above have to give up room."""

from __future__ import annotations

from PySide6.QtCore import QRect, QSize, Qt
from PySide6.QtGui import QImage, QPainter, QPaintEvent, QPixmap
from PySide6.QtWidgets import QSizePolicy, QWidget

PREVIEW_SIZE = 220  # the picture fits this square, at most
MIN_HEIGHT = 64  # the least it shrinks to


class GalleryPreview(QWidget):
    def __init__(self, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self._pixmap = QPixmap()
        self.setSizePolicy(QSizePolicy.Policy.Preferred, QSizePolicy.Policy.Maximum)
        self.hide()

    def set_image(self, image: QImage | None) -> None:
        """Show `image` fitted into PREVIEW_SIZE (small pictures enlarged crisply), or
        nothing (hidden)."""
        if image is None or image.isNull():
            self._pixmap = QPixmap()
            self.hide()
        else:
            scaled = image.scaled(
                PREVIEW_SIZE,
                PREVIEW_SIZE,
                Qt.AspectRatioMode.KeepAspectRatio,
                Qt.TransformationMode.FastTransformation
                if image.width() < PREVIEW_SIZE
                else Qt.TransformationMode.SmoothTransformation,
            )
            self._pixmap = QPixmap.fromImage(scaled)
            self.show()
        self.updateGeometry()
        self.update()

    def pixmap(self) -> QPixmap:
        return self._pixmap

    def picture_rect(self) -> QRect:
        """Where the picture is drawn: fitted into the widget, centred across, at the top."""
        if self._pixmap.isNull():
            return QRect()
        size = self._pixmap.size()
        if size.height() > self.height() or size.width() > self.width():
            size = size.scaled(self.size(), Qt.AspectRatioMode.KeepAspectRatio)
        return QRect((self.width() - size.width()) // 2, 0, size.width(), size.height())

    def sizeHint(self) -> QSize:  # noqa: N802 - Qt API
        return self._pixmap.size() if not self._pixmap.isNull() else QSize(0, 0)

    def minimumSizeHint(self) -> QSize:  # noqa: N802 - Qt API
        height = self._pixmap.height() if not self._pixmap.isNull() else 0
        return QSize(0, min(height, MIN_HEIGHT))

    def paintEvent(self, _event: QPaintEvent) -> None:  # noqa: N802 - Qt API
        if self._pixmap.isNull():
            return
        painter = QPainter(self)
        target = self.picture_rect()
        if target.size() != self._pixmap.size():
            painter.setRenderHint(QPainter.RenderHint.SmoothPixmapTransform)
        painter.drawPixmap(target, self._pixmap)
        painter.end()
