"""Conversions between PIL images, numpy previews and QImage, done on the UI thread.

Every conversion copies: a QImage built over a Python buffer would point at memory that
Python may free while Qt still paints from it.
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


def pil_to_qimage(image: Image.Image) -> QImage:
    if image.mode not in ("RGB", "RGBA"):
        image = image.convert("RGBA" if "A" in image.getbands() else "RGB")
    return array_to_qimage(np.asarray(image))


def qimage_to_pil(qimage: QImage) -> Image.Image:
    converted = qimage.convertToFormat(QImage.Format.Format_RGBA8888)
    width, height = converted.width(), converted.height()
    data = bytes(converted.constBits())[: converted.bytesPerLine() * height]
    image = Image.frombuffer("RGBA", (width, height), data, "raw", "RGBA", converted.bytesPerLine())
    return image.convert("RGB") if not qimage.hasAlphaChannel() else image.copy()


def qimage_to_png_bytes(qimage: QImage) -> bytes:
    buffer = QBuffer()
    buffer.open(QIODevice.OpenModeFlag.WriteOnly)
    qimage.save(buffer, "PNG")
    return bytes(buffer.data())
