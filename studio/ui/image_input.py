"""What a drop or a paste brings: the one rule for the window, its docks and the canvas.

A local image file wins over raw pixels, because the file carries the generation
parameters; the file types are `core.imaging.IMAGE_SUFFIXES`.
"""

from __future__ import annotations

from pathlib import Path

from PySide6.QtCore import QMimeData
from PySide6.QtGui import QImage, QPixmap

from studio.core.imaging import IMAGE_SUFFIXES, is_image_name
from studio.core.models_folder import WEIGHT_SUFFIXES
from studio.core.text import printable


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


def takes_drop(mime: QMimeData | None) -> bool:
    """Whether a drag is taken: an image file or image data, and any other local file too,
    so that dropping it says why it is not opened instead of showing a refusing cursor."""
    if mime is None:
        return False
    return mime.hasImage() or any(url.isLocalFile() for url in mime.urls())


def refusal(mime: QMimeData | None) -> str:
    """The sentence for a drop of local files none of which is an image ("" otherwise): a
    model file says where models go, anything else which images the studio opens."""
    if mime is None or dropped_image_path(mime) is not None:
        return ""
    files = [Path(url.toLocalFile()) for url in mime.urls() if url.isLocalFile()]
    if not files:
        return ""
    name = printable(files[0].name or str(files[0]))
    if files[0].suffix.lower() in WEIGHT_SUFFIXES:
        return (
            f"'{name}' is a model file, not an image: put it in your models folder (Settings) "
            "or choose Add model… in the model picker."
        )
    kinds = ", ".join(s.lstrip(".").upper() for s in IMAGE_SUFFIXES if s not in (".jpeg", ".tiff"))
    return f"'{name}' is not an image the studio opens ({kinds})."
