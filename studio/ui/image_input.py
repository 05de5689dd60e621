"""What a drop or a paste brings: the one rule for the window, its docks and the canvas.

A local image file wins over raw pixels, because the file carries the generation
parameters; the file types are `core.imaging.IMAGE_SUFFIXES`.
"""

from __future__ import annotations

from pathlib import Path

from PySide6.QtCore import QMimeData
from PySide6.QtGui import QImage, QPixmap

from studio.core.imaging import is_image_name


def dropped_image_path(mime: QMimeData | None) -> Path | None:
    """The first local image file among the URLs, if any."""
    if mime is None or not mime.hasUrls():
        return None
    for url in mime.urls():
        if url.isLocalFile() and is_image_name(url.toLocalFile()):
            return Path(url.toLocalFile())
    return None


def dropped_pixels(mime: QMimeData | None) -> QImage | None:
    """Raw image data (a picture copied from a browser or another program), if any."""
    if mime is None or not mime.hasImage():
        return None
    data = mime.imageData()
    image = data.toImage() if isinstance(data, QPixmap) else QImage(data)
    return None if image.isNull() else image
