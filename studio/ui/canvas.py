"""The image canvas: view a picture, watch the denoising preview, paint the inpainting mask.

`ImageCanvas` is a QGraphicsView whose scene is in image pixels (scene (x, y) is image
pixel coordinate (x, y)), so zoom and pan are just the view's transform and scroll bars.
The mask itself lives in `mask_layer.MaskLayer` (numpy, Qt-free); this module only draws
it and turns mouse and pen input into strokes.

Embedding::

    canvas = ImageCanvas()
    canvas.imageDropped.connect(intake.open_file)   # a dropped file's path: ui/intake.py
    canvas.imagePasted.connect(intake.take_pixels)  # dropped image data, as a QImage
    canvas.dropRefused.connect(show_error)          # files dropped, none an image: why
    canvas.set_image(pil_image)
    canvas.set_mask_editing(mode == "inpaint")
    request = replace(request, mask=canvas.mask())
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
from PIL import Image
from PySide6.QtCore import QEvent, QKeyCombination, QMimeData, QPoint, QPointF, QRectF, Qt, Signal
from PySide6.QtGui import (
    QBrush,
    QColor,
    QDragEnterEvent,
    QDragLeaveEvent,
    QDragMoveEvent,
    QDropEvent,
    QFocusEvent,
    QFont,
    QImage,
    QKeyEvent,
    QKeySequence,
    QMouseEvent,
    QPainter,
    QPen,
    QPixmap,
    QPointingDevice,
    QResizeEvent,
    QTabletEvent,
    QTransform,
    QWheelEvent,
)
from PySide6.QtWidgets import (
    QFrame,
    QGraphicsItem,
    QGraphicsScene,
    QGraphicsView,
    QStyleOptionGraphicsItem,
    QWidget,
)

from studio.core.mask_layer import Box, MaskLayer
from studio.ui.image_input import dropped_image_path, dropped_pixels, refusal, takes_drop
from studio.ui.qt_images import pil_to_qimage, qimage_to_pil, wrap_rgb_array

__all__ = ["EMPTY_HINT", "ImageCanvas"]

EMPTY_HINT = "Open, paste or drop an image — or generate one"
TOOLS = ("brush", "eraser")

MIN_BRUSH = 1
# Brushes are sized for the picture: a new picture starts at an eighth of its shorter
# side (a dab that covers an object, not half the picture), and the largest brush
# covers that side. A new size of picture keeps the brush's share of it.
DEFAULT_BRUSH_SHARE = 1 / 8
NO_IMAGE_SIDE = 64  # the embedded model's size, until a picture arrives
BRUSH_STEP = 1.1  # [ and ] change the size by about 10%
MIN_PRESSURE = 0.1  # the lightest pen touch still paints a tenth of the brush
MIN_ZOOM, MAX_ZOOM = 1 / 64, 64.0
ZOOM_STEP = 1.25  # per key press or wheel notch
FIT_MARGIN = 4  # screen pixels kept free around a fitted picture

MASK_COLOR = QColor(255, 32, 128)  # magenta-red stands out on most pictures
MASK_OPACITY = 0.45  # the overlay's default; the mask bar's slider changes it
# The ControlNet layer's lines (a scribble, edges, line art) in a colour masks never have
CONTROL_COLOR = QColor(40, 230, 255)
CONTROL_OPACITY = 0.9
BACKGROUND = QColor(30, 30, 32)
CHECKER_LIGHT, CHECKER_DARK = QColor(70, 70, 74), QColor(52, 52, 56)
HINT_COLOR = QColor(150, 150, 156)


# Scene items ------------------------------------------------------------------------


class PictureItem(QGraphicsItem):
    """A pixmap drawn into a rectangle of the scene.

    Shrunk pictures are drawn from halved copies (mipmaps), which smooth scaling then
    finishes, so zooming far out shows no moiré. Enlarged pictures keep crisp pixels
    unless `always_smooth` (for low-resolution previews, which should look soft).
    """

    def __init__(self, always_smooth: bool = False) -> None:
        super().__init__()
        self._always_smooth = always_smooth
        self._levels: list[QPixmap] = []
        self._rect = QRectF()
        self._buffer: object = None

    def set_pixmap(self, pixmap: QPixmap | None, rect: QRectF, buffer: object = None) -> None:
        """Show `pixmap` stretched to `rect`; `buffer` is kept for as long as it is shown."""
        self.prepareGeometryChange()
        self._levels = [] if pixmap is None or pixmap.isNull() else [pixmap]
        self._rect = QRectF(rect) if self._levels else QRectF()
        self._buffer = buffer
        self.update()

    def pixmap(self) -> QPixmap | None:
        return self._levels[0] if self._levels else None

    def boundingRect(self) -> QRectF:
        return self._rect

    def paint(
        self, painter: QPainter, option: QStyleOptionGraphicsItem, widget: QWidget | None = None
    ) -> None:
        if not self._levels:
            return
        # Device pixels per picture pixel: on a HiDPI screen 100% zoom already enlarges.
        screen_per_scene = option.levelOfDetailFromTransform(painter.worldTransform())
        screen_per_scene *= painter.device().devicePixelRatioF()
        scale = screen_per_scene * self._rect.width() / self._levels[0].width()
        smooth = self._always_smooth or scale < 1
        painter.setRenderHint(QPainter.RenderHint.SmoothPixmapTransform, smooth)
        pixmap = self._level(scale)
        painter.drawPixmap(self._rect, pixmap, QRectF(pixmap.rect()))

    def _level(self, scale: float) -> QPixmap:
        """The smallest mipmap still at least as large as the picture on screen."""
        level = 0
        while scale * 2 ** (level + 1) <= 1:
            if level + 1 == len(self._levels):
                previous = self._levels[-1]
                if min(previous.width(), previous.height()) < 2:
                    break
                half = previous.toImage().scaled(
                    previous.width() // 2,
                    previous.height() // 2,
                    Qt.AspectRatioMode.IgnoreAspectRatio,
                    Qt.TransformationMode.SmoothTransformation,
                )
                self._levels.append(QPixmap.fromImage(half))
            level += 1
        return self._levels[level]


def overlay_lut(color: QColor, opacity: float) -> np.ndarray:
    """Premultiplied ARGB32 colour for each mask value 0..255 (0 is fully transparent)."""
    alpha = np.round(np.arange(256) * opacity).astype(np.uint32)
    channels = [(c * alpha + 127) // 255 for c in (color.red(), color.green(), color.blue())]
    return (alpha << 24) | (channels[0] << 16) | (channels[1] << 8) | channels[2]


class MaskOverlayItem(QGraphicsItem):
    """The mask as a translucent colour over the picture.

    It keeps an ARGB image beside the mask and recolours only the box a stroke touched,
    so painting costs the size of the brush, not of the picture.
    """

    def __init__(self, color: QColor = MASK_COLOR, opacity: float = MASK_OPACITY) -> None:
        super().__init__()
        self._mask: np.ndarray | None = None
        self._pixels = np.zeros((0, 0), dtype=np.uint32)
        self._image = QImage()
        self.color, self.opacity_value = QColor(color), opacity
        self._lut = overlay_lut(color, opacity)

    def set_mask(self, mask: np.ndarray | None) -> None:
        self.prepareGeometryChange()
        self._mask = mask
        if mask is None:
            self._pixels = np.zeros((0, 0), dtype=np.uint32)
            self._image = QImage()
            return
        height, width = mask.shape
        self._pixels = np.zeros((height, width), dtype=np.uint32)
        self._image = QImage(
            self._pixels.data, width, height, width * 4, QImage.Format.Format_ARGB32_Premultiplied
        )
        self.refresh()

    def set_color(self, color: QColor, opacity: float) -> None:
        self.color, self.opacity_value = QColor(color), opacity
        self._lut = overlay_lut(color, opacity)
        self.refresh()

    def refresh(self, box: Box | None = None) -> None:
        """Recolour `box` (the whole mask if None) after the mask changed there."""
        if self._mask is None:
            return
        left, top, right, bottom = box or (0, 0, self._mask.shape[1], self._mask.shape[0])
        self._pixels[top:bottom, left:right] = self._lut[self._mask[top:bottom, left:right]]
        self.update(QRectF(left, top, right - left, bottom - top))

    def boundingRect(self) -> QRectF:
        return QRectF(0, 0, self._image.width(), self._image.height())

    def paint(
        self, painter: QPainter, option: QStyleOptionGraphicsItem, widget: QWidget | None = None
    ) -> None:
        if self._image.isNull():
            return
        smooth = option.levelOfDetailFromTransform(painter.worldTransform()) < 1
        painter.setRenderHint(QPainter.RenderHint.SmoothPixmapTransform, smooth)
        painter.drawImage(self.boundingRect(), self._image)


class BrushCursorItem(QGraphicsItem):
    """The brush outline at its true size: a white ring on a dark ring, visible anywhere."""

    def __init__(self) -> None:
        super().__init__()
        self._radius = NO_IMAGE_SIDE * DEFAULT_BRUSH_SHARE / 2
        self._pad = 6.0  # scene units covering the cosmetic pens and the centre cross
        self.setZValue(10)
        self.setAcceptedMouseButtons(Qt.MouseButton.NoButton)

    def set_radius(self, radius: float) -> None:
        self.prepareGeometryChange()
        self._radius = radius

    def set_zoom(self, zoom: float) -> None:
        self.prepareGeometryChange()
        self._pad = 6.0 / zoom

    def boundingRect(self) -> QRectF:
        extent = self._radius + self._pad
        return QRectF(-extent, -extent, 2 * extent, 2 * extent)

    def paint(
        self, painter: QPainter, option: QStyleOptionGraphicsItem, widget: QWidget | None = None
    ) -> None:
        painter.setRenderHint(QPainter.RenderHint.Antialiasing, True)
        painter.setBrush(Qt.BrushStyle.NoBrush)
        for color, width in ((QColor(0, 0, 0, 160), 3.0), (QColor(255, 255, 255, 230), 1.0)):
            pen = QPen(color, width)
            pen.setCosmetic(True)
            painter.setPen(pen)
            painter.drawEllipse(QPointF(0, 0), self._radius, self._radius)


# The canvas -------------------------------------------------------------------------


class ImageCanvas(QGraphicsView):
    """Shows the current image or a live preview; paints the inpainting mask.

    Mouse: wheel or Ctrl+wheel zooms under the pointer, Shift+wheel sizes the brush,
    middle drag or Space+drag pans (any left drag pans while not painting), double-click
    fits. Keys (canvas focused): + - F 1 (100%), B brush, E eraser, [ ] brush size,
    M shows or hides the mask, Ctrl+Z undo, Ctrl+Shift+Z / Ctrl+Y redo, Esc cancels a
    stroke (pasting is the window's).
    """

    maskChanged = Signal()  # after each stroke, clear, invert, undo, redo, set_mask, reset
    imageDropped = Signal(str)  # an image file dropped: the window decides
    imagePasted = Signal(QImage)  # image data dropped
    dropRefused = Signal(str)  # files dropped, none an image: the sentence why
    zoomChanged = Signal(float)  # 1.0 = 100%
    brushSizeChanged = Signal(int)
    brushRangeChanged = Signal(int, int)  # the smallest and largest brush for the picture
    toolChanged = Signal(str)
    maskShownChanged = Signal(bool)
    controlChanged = Signal()  # the ControlNet layer: a stroke, a loaded map, clear, undo

    def __init__(self, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self._scene = QGraphicsScene(self)
        self.setScene(self._scene)
        self._image: Image.Image | None = None
        self._image_has_alpha = False
        self._layer: MaskLayer | None = None
        # The ControlNet layer: white lines on black, painted like the mask, its own undo
        self._control: MaskLayer | None = None
        self._drawing_control = False
        self._control_shown = True
        self._editing = False
        self._tool = "brush"
        self._brush_max = NO_IMAGE_SIDE
        self._brush_share = DEFAULT_BRUSH_SHARE  # of the picture's shorter side
        self._brush_size = round(NO_IMAGE_SIDE * DEFAULT_BRUSH_SHARE)
        self._mask_shown = True
        self._brush_wheel = 0  # wheel angle not yet turned into a brush step
        self._fit_mode = True
        self._space_held = False
        self._pan_last: QPointF | None = None
        self._content = QRectF()

        self._picture = PictureItem()
        self._preview = PictureItem(always_smooth=True)
        self._overlay = MaskOverlayItem()
        self._control_overlay = MaskOverlayItem(CONTROL_COLOR, CONTROL_OPACITY)
        self._cursor = BrushCursorItem()
        items = (self._picture, self._preview, self._overlay, self._control_overlay, self._cursor)
        for z, item in enumerate(items):
            item.setZValue(z)
            self._scene.addItem(item)
        self._preview.hide()
        self._overlay.hide()
        self._control_overlay.hide()
        self._cursor.hide()

        self.setFrameShape(QFrame.Shape.NoFrame)
        self.setInteractive(False)  # the view handles all input; items are passive
        self.setTransformationAnchor(QGraphicsView.ViewportAnchor.NoAnchor)
        self.setResizeAnchor(QGraphicsView.ViewportAnchor.NoAnchor)
        self.setFocusPolicy(Qt.FocusPolicy.StrongFocus)
        self.setAcceptDrops(True)
        self.viewport().setAcceptDrops(True)
        self.viewport().setMouseTracking(True)
        self._checker = self._make_checker()
        self._update_pointer()

    # Image and preview ---------------------------------------------------------------

    def set_image(self, image: Image.Image | QImage | None) -> None:
        """Show `image` (replacing any preview). The mask survives only a same-size image."""
        if isinstance(image, QImage):
            image = None if image.isNull() else qimage_to_pil(image)
        old_size = self._image.size if self._image is not None else None
        self._image = image.copy() if image is not None else None
        self._hide_preview()
        if image is None:
            self._picture.set_pixmap(None, QRectF())
            self._image_has_alpha = False
            self._set_layer(None)
            self._set_control(None)
            self._set_content(QRectF())
            return
        qimage = pil_to_qimage(image)
        self._image_has_alpha = qimage.hasAlphaChannel()
        rect = QRectF(0, 0, image.width, image.height)
        self._picture.set_pixmap(QPixmap.fromImage(qimage), rect)
        if image.size != old_size:
            self._set_layer(MaskLayer(*image.size))
            self._set_control(MaskLayer(*image.size))
            self._fit_brush(min(image.size))
        self._set_content(rect)

    def image(self) -> Image.Image | None:
        return self._image.copy() if self._image is not None else None

    def has_image(self) -> bool:
        return self._image is not None

    def show_preview(self, array: np.ndarray, size: tuple[int, int] | None = None) -> None:
        """Show an (h, w, 3) uint8 preview, smoothly filling the picture's rectangle.

        The rectangle is `size` (width, height; pass the request's size when it differs
        from the image shown), else the previous preview's, else the current image's, else
        the preview's own; the preview keeps its aspect. Until `set_image` or
        `clear_preview`, the preview replaces the picture and the mask overlay, and the
        brush is off. Runs every denoising step: one wrap and one pixmap upload.
        """
        array = np.ascontiguousarray(array)
        if array.dtype != np.uint8 or array.ndim != 3 or array.shape[2] != 3:
            raise ValueError(f"A preview must be (h, w, 3) uint8, not {array.shape} {array.dtype}.")
        height, width = array.shape[:2]
        if size is not None:
            target = QRectF(0, 0, *size)
        elif self._preview.isVisible():
            target = QRectF(self._content)
        elif self._image is not None:
            target = QRectF(0, 0, *self._image.size)
        else:
            target = QRectF(0, 0, width, height)
        scale = min(target.width() / width, target.height() / height)
        rect = QRectF(0, 0, width * scale, height * scale)
        rect.moveCenter(target.center())
        pixmap = QPixmap.fromImage(wrap_rgb_array(array))
        self._preview.set_pixmap(pixmap, rect, buffer=array)
        if not self._preview.isVisible():
            self._end_stroke()
            self._cursor.hide()
            self._preview.show()
            self._picture.hide()
            self._update_layers()
        self._set_content(target)

    def clear_preview(self) -> None:
        """Back to the current image (or the empty hint)."""
        self._hide_preview()
        self._set_content(self._image_rect())

    def has_preview(self) -> bool:
        return self._preview.isVisible()

    def _hide_preview(self) -> None:
        self._preview.set_pixmap(None, QRectF())
        self._preview.hide()
        self._picture.show()
        self._update_layers()

    def _image_rect(self) -> QRectF:
        return QRectF(0, 0, *self._image.size) if self._image is not None else QRectF()

    # Mask ----------------------------------------------------------------------------

    def mask(self) -> Image.Image | None:
        """Mode "L", the image's size: 255 where painted (to repaint), 0 elsewhere."""
        return self._layer.to_image() if self._layer is not None else None

    def mask_is_empty(self) -> bool:
        return self._layer is None or self._layer.is_empty()

    def set_mask(self, mask: Image.Image | None) -> None:
        """Replace the mask (one undo step); resized to the image if needed; None clears."""
        if self._layer is None:
            raise ValueError("There is no image to put a mask on.")
        if mask is None:
            self._edited(self._layer.clear())
            return
        mask = mask.convert("L")
        if mask.size != self._layer.size:
            mask = mask.resize(self._layer.size, Image.Resampling.NEAREST)
        self._edited(self._layer.replace(np.asarray(mask)))

    def clear_mask(self) -> None:
        if self._layer is not None:
            self._edited(self._layer.clear())

    def invert_mask(self) -> None:
        if self._layer is not None:
            self._edited(self._layer.invert())

    def undo(self) -> None:
        """Undo the last edit of the layer being painted (the mask, or the ControlNet's)."""
        if self._paint is not None:
            self._edited(self._paint.undo(), self._paint)

    def redo(self) -> None:
        if self._paint is not None:
            self._edited(self._paint.redo(), self._paint)

    def can_undo(self) -> bool:
        return self._paint is not None and self._paint.history.can_undo()

    def can_redo(self) -> bool:
        return self._paint is not None and self._paint.history.can_redo()

    # ControlNet layer ----------------------------------------------------------------

    def control_image(self) -> Image.Image | None:
        """The control image (RGB, the picture's size: white lines on black), or None when
        the layer is empty."""
        if self._control is None or self._control.is_empty():
            return None
        return Image.fromarray(self._control.array.copy()).convert("RGB")

    def set_control_image(self, image: Image.Image | None) -> None:
        """Replace the ControlNet layer (one undo step) with a map of lines (its brightness,
        resized to the picture); None clears it."""
        if self._control is None:
            raise ValueError("There is no image to put a control image on.")
        if image is None:
            self._edited(self._control.clear(), self._control)
            return
        grey = image.convert("L")
        if grey.size != self._control.size:
            grey = grey.resize(self._control.size, Image.Resampling.BILINEAR)
        self._edited(self._control.replace(np.asarray(grey)), self._control)
        self.set_control_shown(True)

    def clear_control(self) -> None:
        if self._control is not None:
            self._edited(self._control.clear(), self._control)

    def control_is_empty(self) -> bool:
        return self._control is None or self._control.is_empty()

    def set_control_drawing(self, enabled: bool) -> None:
        """Paint the ControlNet layer (a scribble) instead of the mask; the same brush."""
        self._end_stroke()
        self._drawing_control = enabled
        if enabled:
            self.set_control_shown(True)
        elif not self._editing:
            self._cursor.hide()
        self._update_layers()

    def control_drawing(self) -> bool:
        return self._drawing_control

    def control_shown(self) -> bool:
        return self._control_shown

    def set_control_shown(self, shown: bool) -> None:
        if shown != self._control_shown:
            self._control_shown = shown
            self._update_layers()

    @property
    def _paint(self) -> MaskLayer | None:
        """The layer strokes go to: the ControlNet's while drawing it, else the mask."""
        return self._control if self._drawing_control else self._layer

    def _overlay_of(self, layer: MaskLayer | None) -> MaskOverlayItem:
        return self._control_overlay if layer is self._control else self._overlay

    def _set_control(self, layer: MaskLayer | None) -> None:
        had = self._control is not None
        self._control = layer
        self._control_overlay.set_mask(layer.array if layer is not None else None)
        if had or layer is not None:
            self.controlChanged.emit()

    def set_mask_color(self, color: QColor, opacity: float = MASK_OPACITY) -> None:
        self._overlay.set_color(color, opacity)

    def mask_opacity(self) -> float:
        return self._overlay.opacity_value

    def set_mask_opacity(self, opacity: float) -> None:
        """How strongly the mask tints the picture (0 to 1); the mask itself is unchanged."""
        self._overlay.set_color(self._overlay.color, max(0.0, min(1.0, opacity)))

    def mask_shown(self) -> bool:
        return self._mask_shown

    def set_mask_shown(self, shown: bool) -> None:
        """Show or hide the mask overlay (M): hidden, the mask still applies to the next
        job; painting shows it again, so a stroke is never invisible."""
        if shown != self._mask_shown:
            self._mask_shown = shown
            self._update_layers()
            self.maskShownChanged.emit(shown)

    def toggle_mask_shown(self) -> None:
        self.set_mask_shown(not self._mask_shown)

    # Brush ---------------------------------------------------------------------------

    def set_mask_editing(self, enabled: bool) -> None:
        """Inpaint mode: show the mask and paint it with the left button; else drags pan."""
        self._end_stroke()
        self._editing = enabled
        if not self._painting():
            self._cursor.hide()
        self._update_layers()

    def mask_editing(self) -> bool:
        return self._editing

    @property
    def tool(self) -> str:
        return self._tool

    def set_tool(self, tool: str) -> None:
        if tool not in TOOLS:
            raise ValueError(f"Unknown tool {tool!r}; choose one of {', '.join(TOOLS)}.")
        if tool != self._tool:
            self._tool = tool
            self.toolChanged.emit(tool)

    @property
    def brush_size(self) -> int:
        """Brush diameter in image pixels."""
        return self._brush_size

    @brush_size.setter
    def brush_size(self, size: int) -> None:
        self.set_brush_size(size)

    def brush_range(self) -> tuple[int, int]:
        """The smallest and largest brush diameters for the current picture."""
        return MIN_BRUSH, self._brush_max

    def set_brush_size(self, size: int) -> None:
        size = max(MIN_BRUSH, min(self._brush_max, int(round(size))))
        self._brush_share = size / self._brush_max
        if size != self._brush_size:
            self._brush_size = size
            self._cursor.set_radius(size / 2)
            self.brushSizeChanged.emit(size)

    def _fit_brush(self, side: int) -> None:
        """A picture of another size: the range follows it, the brush keeps its share."""
        share = self._brush_share
        self._brush_max = max(MIN_BRUSH, side)
        self.brushRangeChanged.emit(MIN_BRUSH, self._brush_max)
        self.set_brush_size(max(MIN_BRUSH, round(share * self._brush_max)))
        self._brush_share = share  # rounding a tiny brush must not shrink it for good

    def step_brush_size(self, steps: int) -> None:
        """Grow (steps > 0) or shrink by about 10% a step, and always by at least a pixel."""
        size = self._brush_size * BRUSH_STEP**steps
        if steps > 0:
            self.set_brush_size(max(round(size), self._brush_size + steps))
        elif steps < 0:
            self.set_brush_size(min(round(size), self._brush_size + steps))

    # Zoom and coordinates ------------------------------------------------------------

    def zoom(self) -> float:
        """Screen pixels per image pixel."""
        return self.transform().m11()

    def set_zoom(self, zoom: float, anchor: QPointF | None = None) -> None:
        """Zoom keeping the image point under `anchor` (viewport pixels; default the centre)."""
        self._fit_mode = False
        self._apply_zoom(zoom, anchor)

    def zoom_in(self) -> None:
        self.set_zoom(self.zoom() * ZOOM_STEP)

    def zoom_out(self) -> None:
        self.set_zoom(self.zoom() / ZOOM_STEP)

    def fit_to_view(self) -> None:
        """Show the whole picture as large as the view allows; kept through resizes."""
        self._fit_mode = True
        if self._content.isEmpty():
            return
        room = self.maximumViewportSize()
        zoom = min(
            (room.width() - 2 * FIT_MARGIN) / self._content.width(),
            (room.height() - 2 * FIT_MARGIN) / self._content.height(),
        )
        self._apply_zoom(zoom, None)
        self.centerOn(self._content.center())

    def image_to_widget(self, x: float, y: float) -> QPointF:
        """Viewport position of image point (x, y); pixel (i, j)'s centre is (i+.5, j+.5)."""
        return self.viewportTransform().map(QPointF(x, y))

    def widget_to_image(self, pos: QPointF | QPoint) -> QPointF:
        return self.viewportTransform().inverted()[0].map(QPointF(pos))

    # Clipboard and drops -------------------------------------------------------------

    def dragEnterEvent(self, event: QDragEnterEvent) -> None:
        self._judge_drag(event)

    def dragMoveEvent(self, event: QDragMoveEvent) -> None:
        self._judge_drag(event)

    def dragLeaveEvent(self, event: QDragLeaveEvent) -> None:
        event.accept()

    def dropEvent(self, event: QDropEvent) -> None:
        if self._take_mime(event.mimeData()):
            event.acceptProposedAction()
        else:
            event.ignore()

    def _judge_drag(self, event: QDragMoveEvent) -> None:
        if takes_drop(event.mimeData()):
            event.acceptProposedAction()
        else:
            event.ignore()

    def _take_mime(self, mime: QMimeData) -> bool:
        path = dropped_image_path(mime)
        if path is not None:
            self.imageDropped.emit(str(path))
            return True
        image = dropped_pixels(mime)
        if image is not None:
            self.imagePasted.emit(image)
            return True
        refused = refusal(mime)
        if refused:
            self.dropRefused.emit(refused)
        return bool(refused)

    # Input ---------------------------------------------------------------------------

    def event(self, event: QEvent) -> bool:
        # Claim our keys before window-wide shortcuts (e.g. an Edit menu's Ctrl+Z) do.
        if event.type() == QEvent.Type.ShortcutOverride and (
            self._key_action(event) is not None or event.key() == Qt.Key.Key_Space
        ):
            event.accept()
            return True
        return super().event(event)

    def keyPressEvent(self, event: QKeyEvent) -> None:
        if event.key() == Qt.Key.Key_Space and not event.modifiers():
            if not event.isAutoRepeat():
                self._space_held = True
                self._cursor.hide()
                self._update_pointer()
            return
        action = self._key_action(event)
        if action is None:
            super().keyPressEvent(event)  # arrows and page keys scroll
        else:
            action()

    def keyReleaseEvent(self, event: QKeyEvent) -> None:
        if event.key() == Qt.Key.Key_Space and not event.isAutoRepeat():
            self._space_held = False
            self._update_pointer()
            return
        super().keyReleaseEvent(event)

    def focusOutEvent(self, event: QFocusEvent) -> None:
        self._space_held = False  # the release may go to another window
        self._update_pointer()
        super().focusOutEvent(event)

    def _key_action(self, event: QKeyEvent) -> Callable[[], None] | None:
        ctrl = Qt.KeyboardModifier.ControlModifier
        combo = event.keyCombination()
        if self._painting():
            if event.matches(QKeySequence.StandardKey.Undo):
                return self.undo
            redo_keys = (
                QKeyCombination(ctrl | Qt.KeyboardModifier.ShiftModifier, Qt.Key.Key_Z),
                QKeyCombination(ctrl, Qt.Key.Key_Y),
            )
            if event.matches(QKeySequence.StandardKey.Redo) or combo in redo_keys:
                return self.redo
        modifiers = event.modifiers() & ~Qt.KeyboardModifier.KeypadModifier
        if modifiers & ~Qt.KeyboardModifier.ShiftModifier:
            return None
        actions: dict[int, Callable[[], None]] = {
            Qt.Key.Key_B: lambda: self.set_tool("brush"),
            Qt.Key.Key_E: lambda: self.set_tool("eraser"),
            Qt.Key.Key_BracketLeft: lambda: self.step_brush_size(-1),
            Qt.Key.Key_BracketRight: lambda: self.step_brush_size(1),
            Qt.Key.Key_Plus: self.zoom_in,
            Qt.Key.Key_Equal: self.zoom_in,
            Qt.Key.Key_Minus: self.zoom_out,
            Qt.Key.Key_F: self.fit_to_view,
            Qt.Key.Key_1: lambda: self.set_zoom(1.0),
        }
        if self._editing:
            actions[Qt.Key.Key_M] = self.toggle_mask_shown
        if self._in_stroke():
            actions[Qt.Key.Key_Escape] = self._cancel_stroke
        return actions.get(event.key())  # Qt.Key is an IntEnum: plain ints find it

    def mousePressEvent(self, event: QMouseEvent) -> None:
        button = event.button()
        left = button == Qt.MouseButton.LeftButton
        if button == Qt.MouseButton.MiddleButton or (
            left and (self._space_held or not self._can_paint())
        ):
            self._pan_last = event.position()
            self._cursor.hide()
            self._update_pointer()
        elif left:
            self._begin_stroke(event.position(), 1.0, self._tool == "eraser")
        else:
            super().mousePressEvent(event)
            return
        event.accept()

    def mouseDoubleClickEvent(self, event: QMouseEvent) -> None:
        # While painting, a quick second click is another dab, not a request to fit.
        if event.button() == Qt.MouseButton.LeftButton and self._can_paint():
            self.mousePressEvent(event)
        elif event.button() in (Qt.MouseButton.LeftButton, Qt.MouseButton.MiddleButton):
            self.fit_to_view()
            event.accept()
        else:
            super().mouseDoubleClickEvent(event)

    def mouseMoveEvent(self, event: QMouseEvent) -> None:
        pos = event.position()
        if self._pan_last is not None:
            self._pan_by(pos - self._pan_last)
            self._pan_last = pos
        elif self._in_stroke():
            if event.buttons() & Qt.MouseButton.LeftButton:
                self._continue_stroke(pos, 1.0)
            else:  # the release went elsewhere (a popup, another window)
                self._end_stroke()
        self._move_cursor(pos)
        event.accept()

    def mouseReleaseEvent(self, event: QMouseEvent) -> None:
        button = event.button()
        if self._pan_last is not None and button in (
            Qt.MouseButton.LeftButton,
            Qt.MouseButton.MiddleButton,
        ):
            self._pan_last = None
            self._update_pointer()
            self._move_cursor(event.position())
        elif button == Qt.MouseButton.LeftButton:
            self._end_stroke()
        else:
            super().mouseReleaseEvent(event)
            return
        event.accept()

    def wheelEvent(self, event: QWheelEvent) -> None:
        delta = event.angleDelta().y() or event.angleDelta().x()  # Shift turns some to x
        if not delta:
            event.ignore()
            return
        if event.modifiers() & Qt.KeyboardModifier.ShiftModifier and self._painting():
            self._brush_wheel += delta
            steps = int(self._brush_wheel / 120)  # whole notches; touchpads send slivers
            self._brush_wheel -= steps * 120
            self.step_brush_size(steps)
        else:
            self.set_zoom(self.zoom() * ZOOM_STEP ** (delta / 120), event.position())
        event.accept()

    def viewportEvent(self, event: QEvent) -> bool:
        kind = event.type()
        if kind in (QEvent.Type.TabletPress, QEvent.Type.TabletMove, QEvent.Type.TabletRelease):
            if self._tablet_event(event):
                return True
        elif kind == QEvent.Type.Leave:
            self._cursor.hide()
        return super().viewportEvent(event)

    def _tablet_event(self, event: QTabletEvent) -> bool:
        """Pen strokes with pressure; unaccepted pen events come back as mouse events."""
        if not self._can_paint() or self._space_held or self._pan_last is not None:
            return False
        kind, pos, pressure = event.type(), event.position(), event.pressure()
        if kind == QEvent.Type.TabletPress:
            if event.button() != Qt.MouseButton.LeftButton:
                return False
            eraser_end = event.pointerType() == QPointingDevice.PointerType.Eraser
            self._begin_stroke(pos, pressure, eraser_end or self._tool == "eraser")
        elif kind == QEvent.Type.TabletMove:
            if self._in_stroke():
                self._continue_stroke(pos, pressure)
            self._move_cursor(pos)
        elif self._in_stroke():
            self._end_stroke()
        else:
            return False
        event.accept()
        return True

    # Strokes -------------------------------------------------------------------------

    def _painting(self) -> bool:
        """Whether the left button paints: the mask in Inpaint, or the ControlNet layer."""
        return self._editing or self._drawing_control

    def _can_paint(self) -> bool:
        return self._painting() and self._paint is not None and not self._preview.isVisible()

    def _in_stroke(self) -> bool:
        return any(layer is not None and layer.in_stroke for layer in (self._layer, self._control))

    def _begin_stroke(self, pos: QPointF, pressure: float, erase: bool) -> None:
        self._end_stroke()  # a stroke left open (mouse and pen at once) stays undoable
        if self._drawing_control:
            self.set_control_shown(True)
        else:
            self.set_mask_shown(True)
        self._paint.begin_stroke(erase)
        self._continue_stroke(pos, pressure)

    def _continue_stroke(self, pos: QPointF, pressure: float) -> None:
        point = self.widget_to_image(pos)
        radius = self._brush_size / 2 * max(pressure, MIN_PRESSURE)
        layer = self._paint
        box = layer.stroke_to(point.x(), point.y(), radius)
        if box is not None:
            self._overlay_of(layer).refresh(box)

    def _end_stroke(self) -> None:
        for layer in (self._layer, self._control):
            if layer is not None and layer.in_stroke:
                self._edited(layer.end_stroke(), layer)

    def _cancel_stroke(self) -> None:
        for layer in (self._layer, self._control):
            if layer is not None and layer.in_stroke:
                box = layer.cancel_stroke()
                if box is not None:
                    self._overlay_of(layer).refresh(box)

    def _edited(self, box: Box | None, layer: MaskLayer | None = None) -> None:
        layer = layer or self._layer
        if box is None:
            return
        self._overlay_of(layer).refresh(box)
        if layer is self._control and layer is not None:
            self.controlChanged.emit()
            return
        if self._editing:
            self.set_mask_shown(True)  # an edit one cannot see is a surprise
        self.maskChanged.emit()

    def _set_layer(self, layer: MaskLayer | None) -> None:
        had_mask = self._layer is not None
        self._layer = layer
        self._overlay.set_mask(layer.array if layer is not None else None)
        if had_mask or layer is not None:
            self.maskChanged.emit()

    # View state ----------------------------------------------------------------------

    def _set_content(self, rect: QRectF) -> None:
        """The picture's rectangle changed; a new size (or no picture) starts fitted."""
        resized = rect.size() != self._content.size()
        self._content = QRectF(rect)
        self.setSceneRect(rect if not rect.isEmpty() else QRectF(0, 0, 1, 1))
        if resized:
            self.fit_to_view()
        self.viewport().update()

    def _apply_zoom(self, zoom: float, anchor: QPointF | None) -> None:
        zoom = max(MIN_ZOOM, min(MAX_ZOOM, zoom))
        old = self.zoom()
        if anchor is None:
            anchor = QPointF(self.viewport().rect().center())
        fixed = self.widget_to_image(anchor)
        self.setTransform(QTransform.fromScale(zoom, zoom))
        drift = self.image_to_widget(fixed.x(), fixed.y()) - anchor
        self._pan_by(-drift)
        self._cursor.set_zoom(zoom)
        if zoom != old:
            self.zoomChanged.emit(zoom)

    def _pan_by(self, delta: QPointF) -> None:
        horizontal, vertical = self.horizontalScrollBar(), self.verticalScrollBar()
        horizontal.setValue(horizontal.value() - round(delta.x()))
        vertical.setValue(vertical.value() - round(delta.y()))

    def resizeEvent(self, event: QResizeEvent) -> None:
        super().resizeEvent(event)
        if self._fit_mode:
            self.fit_to_view()

    def _move_cursor(self, pos: QPointF) -> None:
        if self._can_paint() and not self._space_held and self._pan_last is None:
            self._cursor.setPos(self.widget_to_image(pos))
            self._cursor.show()
        else:
            self._cursor.hide()

    def _update_layers(self) -> None:
        previewing = self._preview.isVisible()
        self._overlay.setVisible(self._editing and self._mask_shown and not previewing)
        self._control_overlay.setVisible(self._control_shown and not previewing)
        self._update_pointer()

    def _update_pointer(self) -> None:
        if self._pan_last is not None:
            shape = Qt.CursorShape.ClosedHandCursor
        elif self._space_held:
            shape = Qt.CursorShape.OpenHandCursor
        elif self._can_paint():
            shape = Qt.CursorShape.CrossCursor
        else:
            shape = Qt.CursorShape.ArrowCursor
        self.viewport().setCursor(shape)

    # Painting the view ---------------------------------------------------------------

    @staticmethod
    def _make_checker() -> QPixmap:
        checker = QPixmap(16, 16)
        checker.fill(CHECKER_DARK)
        painter = QPainter(checker)
        painter.fillRect(0, 0, 8, 8, CHECKER_LIGHT)
        painter.fillRect(8, 8, 8, 8, CHECKER_LIGHT)
        painter.end()
        return checker

    def drawBackground(self, painter: QPainter, rect: QRectF) -> None:
        painter.fillRect(rect, BACKGROUND)
        if self._image_has_alpha:  # transparency shows as a checkerboard of fixed screen size
            brush = QBrush(self._checker)
            brush.setTransform(QTransform.fromScale(1 / self.zoom(), 1 / self.zoom()))
            painter.fillRect(rect.intersected(self._content), brush)

    def drawForeground(self, painter: QPainter, rect: QRectF) -> None:
        if not self._content.isEmpty():
            return
        painter.save()
        painter.resetTransform()
        font = QFont(painter.font())
        font.setPointSizeF(font.pointSizeF() * 1.2)
        painter.setFont(font)
        painter.setPen(HINT_COLOR)
        painter.drawText(
            self.viewport().rect().adjusted(16, 16, -16, -16),
            Qt.AlignmentFlag.AlignCenter | Qt.TextFlag.TextWordWrap,
            EMPTY_HINT,
        )
        painter.restore()
