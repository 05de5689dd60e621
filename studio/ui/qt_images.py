"""Conversions between PIL images, numpy previews and QImage: the one set the window uses.

Every conversion copies, except `wrap_rgb_array`: a QImage built over a Python buffer
points at memory that Python may free while Qt still paints from it, so whoever wraps
must keep the array alive as long as the QImage (the canvas's preview item does).
"""

from __future__ import annotations

import numpy as np
from PIL import Image
from PySide6.QtCore import QBuffer, QIODevice
from PySide6.QtGui import QImage


def array_to_qimage(array: np.ndarray) -> QImage:
    """A (h, w, 3) uint8 RGB array (a step preview) as a QImage."""
    array = np.ascontiguousarray(array, dtype=np.uint8)
    if array.ndim == 2:
        array = np.repeat(array[:, :, None], 3, axis=2)
    height, width = array.shape[:2]
    channels = array.shape[2]
    fmt = QImage.Format.Format_RGBA8888 if channels == 4 else QImage.Format.Format_RGB888
    return QImage(array.data, width, height, array.strides[0], fmt).copy()


def wrap_rgb_array(array: np.ndarray) -> QImage:
    """A QImage over a contiguous (h, w, 3) uint8 array, without copying: for the preview of
    every step. The caller keeps `array` alive while the QImage is in use."""
    height, width = array.shape[:2]
    return QImage(array.data, width, height, array.strides[0], QImage.Format.Format_RGB888)


def pil_to_qimage(image: Image.Image) -> QImage:
    """A QImage owning a copy of the pixels (RGBA if the picture has transparency)."""
    alpha = "A" in image.getbands() or image.mode in ("PA", "RGBa", "La")
    alpha = alpha or "transparency" in image.info
    if image.mode not in ("RGB", "RGBA") or (image.mode == "RGBA") != alpha:
        image = image.convert("RGBA" if alpha else "RGB")
    return array_to_qimage(np.asarray(image))


def qimage_to_pil(qimage: QImage) -> Image.Image:
    converted = qimage.convertToFormat(QImage.Format.Format_RGBA8888)
    width, height = converted.width(), converted.height()
    data = bytes(converted.constBits())[: converted.bytesPerLine() * height]
    stride = converted.bytesPerLine()
    image = Image.frombuffer("RGBA", (width, height), data, "raw", "RGBA", stride, 1)
    return image.convert("RGB") if not qimage.hasAlphaChannel() else image.copy()


def qimage_to_png_bytes(qimage: QImage) -> bytes:
    buffer = QBuffer()
    buffer.open(QIODevice.OpenModeFlag.WriteOnly)
    qimage.save(buffer, "PNG")
    return bytes(buffer.data())
