"""Generation parameters inside image files: write the studio's own, read everyone's.

Writing: every image the studio saves carries AUTOMATIC1111-style parameters (the format
the whole ecosystem reads) and a ``studio`` record holding the complete request as JSON,
so that dropping the file back restores everything exactly.

Reading: files written by the studio, AUTOMATIC1111 (PNG text, JPEG/WebP EXIF, "stealth"
alpha/RGB bits), ComfyUI, InvokeAI (1.x to 3.x+), Fooocus and NovelAI are recognised and
normalised into one :class:`ImageParameters`. Anything that goes wrong while reading a
file becomes a :class:`MetadataError` with one sentence fit to show to the user.

One module per tool's format (``a1111``, ``comfyui``, ``invokeai``, ``fooocus``,
``novelai``, ``studio_chunk``), one for the containers (``containers``: PNG text, EXIF,
stealth bits), and ``reader`` putting them together. Pure Python and Pillow: importable
without Qt or torch (an import contract holds it).
"""

from __future__ import annotations

from studio.metadata.a1111 import format_a1111, parse_a1111
from studio.metadata.parameters import SOURCES, ImageParameters, MetadataError
from studio.metadata.reader import read_parameters, read_parameters_from_image
from studio.metadata.samplers import normalise_sampler
from studio.metadata.studio_chunk import exif_and_xmp, png_info

__all__ = [
    "SOURCES",
    "ImageParameters",
    "MetadataError",
    "exif_and_xmp",
    "format_a1111",
    "normalise_sampler",
    "parse_a1111",
    "png_info",
    "read_parameters",
    "read_parameters_from_image",
]
