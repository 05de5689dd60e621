"""The file formats images are saved in."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class SaveFormat:
    """How images are written: PNG (lossless, the default), JPEG or WebP with a quality.
    Each carries the parameters the way AUTOMATIC1111 writes them for its format."""

    kind: str = "png"  # one of FORMATS
    quality: int = 95  # JPEG and WebP, 1 to 100
    extension: str | None = None  # the file name's ending, when not the kind's usual one

    @property
    def suffix(self) -> str:
        return self.extension or FORMATS[self.kind]

    @classmethod
    def for_suffix(cls, suffix: str, quality: int = 95) -> SaveFormat | None:
        """The format a file name's ending asks for (.jpeg stays .jpeg)."""
        kind = SUFFIX_KINDS.get(suffix.lower())
        return cls(kind, quality, suffix) if kind else None


FORMATS = {"png": ".png", "jpeg": ".jpg", "webp": ".webp"}
SUFFIX_KINDS = {".png": "png", ".jpg": "jpeg", ".jpeg": "jpeg", ".webp": "webp"}
PNG = SaveFormat()
