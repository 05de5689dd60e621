"""Reading any file: which container, which tool, and one sentence when nothing can be read."""

from __future__ import annotations

import contextlib
import os
import re
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import IO, Any

from PIL import Image

from studio.core.files import is_regular_file
from studio.metadata.a1111 import PARAMETERS_KEY, from_loose_text, from_parameters, parse_a1111
from studio.metadata.comfyui import from_comfyui
from studio.metadata.containers import exif_chunks, stealth_text, text_chunks
from studio.metadata.invokeai import from_invokeai
from studio.metadata.novelai import from_novelai
from studio.metadata.parameters import (
    ImageParameters,
    MetadataError,
    Unreadable,
    load_json,
    stringify,
)
from studio.metadata.studio_chunk import STUDIO_KEY, from_studio, request_from_xmp


def from_exif(image: Image.Image) -> ImageParameters | None:
    try:
        chunks = exif_chunks(image)
    except Exception:
        return None  # a broken EXIF block is the same as none
    if "prompt" in chunks or "workflow" in chunks:
        return from_comfyui(chunks)
    request = request_from_xmp(image.info.get("xmp"))
    if request is not None and "UserComment" in chunks:  # a JPEG or WebP of the studio's
        with contextlib.suppress(Unreadable):
            found = from_studio({STUDIO_KEY: request, PARAMETERS_KEY: chunks["UserComment"]})
            if found is not None:
                return found
    return from_loose_text(chunks.get("UserComment"))


def from_stealth(image: Image.Image) -> ImageParameters | None:
    if image.mode not in ("RGBA", "RGB") or image.width < 1 or image.height < 1:
        return None
    for bands in ("A", "RGB") if image.mode == "RGBA" else ("RGB",):
        try:
            text = stealth_text(image, bands)
        except Exception:
            text = None  # damaged pixels or gzip data: nothing hidden here
        if text is None:
            continue
        # NovelAI hides its whole text-chunk dict as JSON the same way.
        data = load_json(text) if text.lstrip().startswith("{") else None
        if isinstance(data, dict):
            chunks = {str(k): stringify(v) for k, v in data.items()}
            with contextlib.suppress(Unreadable):
                found = from_text_chunks(chunks)
                if found is not None:
                    return found
        return parse_a1111(text)
    return None


_CHUNK_READERS: tuple[Callable[[Mapping[str, str]], ImageParameters | None], ...] = (
    from_studio,
    from_parameters,
    from_comfyui,
    from_invokeai,
    from_novelai,
)
# Text chunks that, when present, mean the image is not a stealth-pnginfo carrier.
_KNOWN_CHUNKS = frozenset(
    {
        STUDIO_KEY,
        PARAMETERS_KEY,
        "prompt",
        "workflow",
        "invokeai_metadata",
        "sd-metadata",
        "Dream",
        "Comment",
        "Description",
        "fooocus_scheme",
    }
)


def from_text_chunks(chunks: Mapping[str, str]) -> ImageParameters | None:
    """Try each tool's chunks in priority order; re-raise the first breakage seen."""
    failure: Unreadable | None = None
    for reader in _CHUNK_READERS:
        try:
            found = reader(chunks)
        except Unreadable as error:
            failure = failure or error
            continue
        if found is not None:
            return found
    if failure is not None:
        raise failure
    return None


def extract(image: Image.Image) -> tuple[ImageParameters | None, Unreadable | None, bool]:
    """(parameters, why recognised metadata was unreadable, pixel data decoded)."""
    chunks, decoded = text_chunks(image)
    failure: Unreadable | None = None
    try:
        found = from_text_chunks(chunks)
    except Unreadable as error:
        found, failure = None, error
    if found is None:
        found = from_exif(image) or from_loose_text(chunks.get("comment"))
    if found is None and decoded and not _KNOWN_CHUNKS & chunks.keys():
        found = from_stealth(image)
    return found, failure, decoded


def read_parameters_from_image(image: Image.Image) -> ImageParameters | None:
    """Parameters of an already-open image (pasted or dropped), or None if it has none."""
    try:
        return extract(image)[0]
    except Exception:
        return None


def _display_name(source: Any) -> str:
    """The file's name in quotes, safe to put inside a one-line sentence."""
    name = source if isinstance(source, (str, os.PathLike)) else getattr(source, "name", None)
    if not isinstance(name, (str, os.PathLike)):
        return "This file"
    text = re.sub(r"[\x00-\x1f\x7f]", "?", Path(name).name or str(name))
    return f"'{text}'"


def _open_stream(source: str | os.PathLike[str] | IO[bytes], name: str) -> IO[bytes]:
    if isinstance(source, (str, os.PathLike)):
        if os.path.exists(source) and not is_regular_file(Path(source)):
            # a named pipe or a device would block the read, or never end
            raise MetadataError(f"{name} is not an image file (a folder, a pipe or a device).")
        try:
            return open(source, "rb")  # noqa: SIM115 - closed by the caller
        except FileNotFoundError as error:
            raise MetadataError(f"{name} does not exist.") from error
        except OSError as error:
            reason = error.strerror or "access denied"
            raise MetadataError(f"{name} could not be opened ({reason.lower()}).") from error
    return source


def _is_empty(stream: IO[bytes]) -> bool:
    try:
        position = stream.tell()
        empty = not stream.read(1)
        stream.seek(position)
    except Exception:
        return False
    return empty


def _not_an_image(name: str, error: Exception) -> MetadataError:
    if isinstance(error, Image.UnidentifiedImageError):
        reason = "unknown or damaged format"
    elif isinstance(error, Image.DecompressionBombError):
        reason = "too many pixels"
    else:
        reason = "damaged data"
    return MetadataError(f"{name} is not an image file that can be read ({reason}).")


def _read_stream(stream: IO[bytes], name: str) -> ImageParameters:
    if _is_empty(stream):
        raise MetadataError(f"{name} is not an image file that can be read (empty file).")
    try:
        image = Image.open(stream)
    except Exception as error:
        raise _not_an_image(name, error) from error
    with image:
        try:
            found, failure, decoded = extract(image)
        except Exception as error:
            raise MetadataError(f"{name} could not be read (damaged data).") from error
    if found is not None:
        return found
    if failure is not None:
        raise MetadataError(
            f"{name} carries {failure.label} metadata that the studio cannot read "
            f"({failure.detail})."
        )
    if not decoded:
        raise MetadataError(
            f"{name} is damaged and carries no generation parameters that the studio could read."
        )
    raise MetadataError(f"{name} carries no generation parameters that the studio recognises.")


def read_parameters(source: str | os.PathLike[str] | IO[bytes]) -> ImageParameters:
    """Generation parameters of an image file (path or binary file object).

    Raises :class:`MetadataError`, and nothing else, when the file cannot be opened, is
    not an image, or carries no parameters the studio recognises.
    """
    name = _display_name(source)
    stream = _open_stream(source, name)
    try:
        return _read_stream(stream, name)
    except MetadataError:
        raise
    except Exception as error:  # last line of defence: the promise is MetadataError only
        raise MetadataError(f"{name} could not be read (unexpected data).") from error
    finally:
        if stream is not source:
            stream.close()
