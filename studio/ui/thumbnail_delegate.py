"""How the gallery and the timeline draw a thumbnail: the picture alone, centred in its
cell, the selected one framed in the highlight colour.

Qt's icon-mode delegate instead highlights the (empty) text line under the picture: a bar
whose size depends on the cell, up to a block as tall as a third of the thumbnail.
"""

from __future__ import annotations

from PySide6.QtCore import QModelIndex, QPersistentModelIndex, QRect, QSize, Qt
from PySide6.QtGui import QIcon, QPainter, QPalette, QPixmap
from PySide6.QtWidgets import QStyle, QStyledItemDelegate, QStyleOptionViewItem

FRAME = 2  # pixels of highlight around the selected picture
_MARGIN = FRAME + 2


class ThumbnailDelegate(QStyledItemDelegate):
    def paint(
        self,
        painter: QPainter,
        option: QStyleOptionViewItem,
        index: QModelIndex | QPersistentModelIndex,
    ) -> None:
        pixmap = _pixmap(index, option.decorationSize)
        if pixmap.isNull():
            return
        target = picture_rect(pixmap.size(), option)
        painter.save()
        if option.state & QStyle.StateFlag.State_Selected:
            # the frame: a block of highlight whose middle the picture then covers
            outer = target.adjusted(-FRAME, -FRAME, FRAME, FRAME)
            painter.fillRect(outer, option.palette.color(QPalette.ColorRole.Highlight))
        painter.setRenderHint(QPainter.RenderHint.SmoothPixmapTransform)
        painter.drawPixmap(target, pixmap)
        painter.restore()

    def sizeHint(
        self, option: QStyleOptionViewItem, index: QModelIndex | QPersistentModelIndex
    ) -> QSize:
        return option.decorationSize + QSize(2 * _MARGIN, 2 * _MARGIN)


def picture_rect(size: QSize, option: QStyleOptionViewItem) -> QRect:
    """Where a picture of `size` goes: its own size (never enlarged), fitted into the icon
    size, centred in the cell."""
    room = option.decorationSize
    if size.width() > room.width() or size.height() > room.height():
        size = size.scaled(room, Qt.AspectRatioMode.KeepAspectRatio)
    target = QRect(0, 0, size.width(), size.height())
    target.moveCenter(option.rect.center())
    return target


def _pixmap(index: QModelIndex | QPersistentModelIndex, size: QSize) -> QPixmap:
    decoration = index.data(Qt.ItemDataRole.DecorationRole)
    if isinstance(decoration, QIcon):
        return decoration.pixmap(size)
    return decoration if isinstance(decoration, QPixmap) else QPixmap()
