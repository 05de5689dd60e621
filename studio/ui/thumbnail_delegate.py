"""How the gallery and the timeline draw a thumbnail: the picture alone, centred in its
cell, the selected one framed in the highlight colour.

Qt's icon-mode delegate instead highlights the (empty) text line under the picture: a bar
whose size depends on the cell, up to a block as tall as a third of the thumbnail.

The gallery's delegate (`cell` given) draws every cell alike: a square mat of `cell`
pixels with the picture fitted inside it (letterboxed, whatever its shape); the selected
cell is framed, ringed inside the frame in the highlighted-text colour (so a picture of
the highlight's own hue does not swallow the frame) and tinted. Colours come from the
palette at paint time, so a theme switched while the window is open is followed; the
selection colour is the palette's highlight, made darker or lighter when it stands out
too little from the background (a contrast ratio under 3:1, WCAG's least for a control's
state).
"""

from __future__ import annotations

from PySide6.QtCore import QModelIndex, QPersistentModelIndex, QRect, QSize, Qt
from PySide6.QtGui import QColor, QIcon, QPainter, QPalette, QPixmap
from PySide6.QtWidgets import QStyle, QStyledItemDelegate, QStyleOptionViewItem, QWidget

FRAME = 2  # pixels of highlight around the selected picture
ThumbnailRole = Qt.ItemDataRole.UserRole + 2  # (pixmap, rect of the picture on it) or None
KeptRole = Qt.ItemDataRole.UserRole + 3  # a timeline step whose state is kept: underlined
KEPT_LINE = 2  # pixels of the line under a kept step
_MARGIN = FRAME + 2
CELL_FRAME = 3  # the gallery's frame around the selected cell
MIN_CONTRAST = 3.0
_TINT = 0.35  # how much of the selection colour the selected cell's mat takes
_MAT = 0.07  # how far an empty mat stands from the background, toward the text colour


class ThumbnailDelegate(QStyledItemDelegate):
    def __init__(self, parent: QWidget | None = None, cell: int | None = None) -> None:
        super().__init__(parent)
        self.cell = cell  # the gallery's uniform square, or None: the picture's own size
        self._colours: tuple[int, QColor, QColor, QColor, QColor] | None = None

    def paint(
        self,
        painter: QPainter,
        option: QStyleOptionViewItem,
        index: QModelIndex | QPersistentModelIndex,
    ) -> None:
        if self.cell is not None:
            self._paint_cell(painter, option, index, self.cell)
            return
        pixmap = _pixmap(index, option.decorationSize)
        if pixmap.isNull():
            return
        target = picture_rect(pixmap.size(), option)
        painter.save()
        if option.state & QStyle.StateFlag.State_Selected:
            # the frame: a block of highlight whose middle the picture then covers
            outer = target.adjusted(-FRAME, -FRAME, FRAME, FRAME)
            painter.fillRect(outer, selection_colour(option.palette))
        painter.setRenderHint(QPainter.RenderHint.SmoothPixmapTransform)
        painter.drawPixmap(target, pixmap)
        if index.data(KeptRole):
            line = QRect(target.left(), target.bottom() + FRAME + 1, target.width(), KEPT_LINE)
            painter.fillRect(line, option.palette.color(QPalette.ColorRole.Link))
        painter.restore()

    def sizeHint(
        self, option: QStyleOptionViewItem, index: QModelIndex | QPersistentModelIndex
    ) -> QSize:
        if self.cell is not None:
            side = self.cell + 2 * (CELL_FRAME + 1)
            return QSize(side, side)
        return option.decorationSize + QSize(2 * _MARGIN, 2 * _MARGIN)

    def _paint_cell(
        self,
        painter: QPainter,
        option: QStyleOptionViewItem,
        index: QModelIndex | QPersistentModelIndex,
        cell: int,
    ) -> None:
        mat = mat_rect(cell, option.rect)
        empty, selection, tinted, ring = self._cell_colours(option.palette)
        selected = bool(option.state & QStyle.StateFlag.State_Selected)
        painter.save()
        if selected:
            outer = mat.adjusted(-CELL_FRAME, -CELL_FRAME, CELL_FRAME, CELL_FRAME)
            painter.fillRect(outer, selection)
        painter.fillRect(mat, tinted if selected else empty)
        found = index.data(ThumbnailRole)
        if isinstance(found, tuple):  # a page of thumbnails, and where the picture is on it
            pixmap, source = found
        else:
            pixmap = _pixmap(index, QSize(cell, cell))
            source = pixmap.rect()
        if not pixmap.isNull() and not source.isEmpty():
            target = fitted_rect(source.size(), mat)
            if target.size() != source.size():
                painter.setRenderHint(QPainter.RenderHint.SmoothPixmapTransform)
            painter.drawPixmap(target, pixmap, source)
        if selected:
            # a line of the colour made to stand on the highlight, between the frame and
            # the picture: a picture of the highlight's own hue does not swallow the frame
            painter.setPen(ring)
            painter.setBrush(Qt.BrushStyle.NoBrush)
            painter.drawRect(mat.adjusted(0, 0, -1, -1))
        painter.restore()

    def _cell_colours(self, palette: QPalette) -> tuple[QColor, QColor, QColor, QColor]:
        """The empty mat, the selection, the selected mat and the ring: worked out once
        per palette (a theme switch gives a new palette, hence new colours)."""
        key = palette.cacheKey()
        if self._colours is None or self._colours[0] != key:
            empty, selection = mat_colour(palette), selection_colour(palette)
            ring = palette.color(QPalette.ColorGroup.Active, QPalette.ColorRole.HighlightedText)
            self._colours = (key, empty, selection, _mix(empty, selection, _TINT), ring)
        return self._colours[1:]


def picture_rect(size: QSize, option: QStyleOptionViewItem) -> QRect:
    """Where a picture of `size` goes: its own size (never enlarged), fitted into the icon
    size, centred in the cell."""
    room = option.decorationSize
    if size.width() > room.width() or size.height() > room.height():
        size = size.scaled(room, Qt.AspectRatioMode.KeepAspectRatio)
    target = QRect(0, 0, size.width(), size.height())
    target.moveCenter(option.rect.center())
    return target


def mat_rect(cell: int, rect: QRect) -> QRect:
    """The square every gallery picture sits in, centred in its cell."""
    mat = QRect(0, 0, cell, cell)
    mat.moveCenter(rect.center())
    return mat


def fitted_rect(size: QSize, mat: QRect) -> QRect:
    """A picture of `size` made to fill `mat` along its longer side, centred (letterboxed)."""
    if size.isEmpty():
        return QRect()
    fitted = size.scaled(mat.size(), Qt.AspectRatioMode.KeepAspectRatio)
    target = QRect(0, 0, max(1, fitted.width()), max(1, fitted.height()))
    target.moveCenter(mat.center())
    return target


def contrast(a: QColor, b: QColor) -> float:
    """WCAG's contrast ratio of two colours, 1 (the same) to 21 (black on white)."""
    light, dark = sorted((_luminance(a), _luminance(b)), reverse=True)
    return (light + 0.05) / (dark + 0.05)


def selection_colour(palette: QPalette) -> QColor:
    """The palette's highlight (of the active window, so a selection stays as visible when
    the gallery has no focus), nudged away from the background until they contrast 3:1."""
    colour = QColor(palette.color(QPalette.ColorGroup.Active, QPalette.ColorRole.Highlight))
    background = palette.color(QPalette.ColorGroup.Active, QPalette.ColorRole.Base)
    toward = QColor("black") if _luminance(background) > 0.18 else QColor("white")
    for _ in range(10):
        if contrast(colour, background) >= MIN_CONTRAST:
            break
        colour = _mix(colour, toward, 0.15)
    return colour


def mat_colour(palette: QPalette) -> QColor:
    """The empty part of a cell: the background moved a little toward the text colour."""
    base = palette.color(QPalette.ColorGroup.Active, QPalette.ColorRole.Base)
    text = palette.color(QPalette.ColorGroup.Active, QPalette.ColorRole.Text)
    return _mix(base, text, _MAT)


def _mix(a: QColor, b: QColor, share: float) -> QColor:
    return QColor(
        round(a.red() + (b.red() - a.red()) * share),
        round(a.green() + (b.green() - a.green()) * share),
        round(a.blue() + (b.blue() - a.blue()) * share),
    )


def _luminance(colour: QColor) -> float:
    def channel(value: int) -> float:
        c = value / 255
        return c / 12.92 if c <= 0.04045 else ((c + 0.055) / 1.055) ** 2.4

    return (
        0.2126 * channel(colour.red())
        + 0.7152 * channel(colour.green())
        + 0.0722 * channel(colour.blue())
    )


def _pixmap(index: QModelIndex | QPersistentModelIndex, size: QSize) -> QPixmap:
    decoration = index.data(Qt.ItemDataRole.DecorationRole)
    if isinstance(decoration, QIcon):
        return decoration.pixmap(size)
    return decoration if isinstance(decoration, QPixmap) else QPixmap()
