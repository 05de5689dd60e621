"""Pixel work around the pipelines: resizing, mask feathering, inpaint crops and overlays."""

from __future__ import annotations

import logging
import warnings
from pathlib import Path

import numpy as np
from PIL import Image, ImageFilter, ImageOps

from studio.core.errors import BadInput
from studio.core.files import is_folder, is_regular_file
from studio.core.text import printable

Box = tuple[int, int, int, int]

MAX_PIXELS = 64_000_000  # 8000×8000: far beyond what a diffusion model takes as input

# The image files the studio opens, lists in the gallery and accepts dropped: one list.
IMAGE_SUFFIXES: tuple[str, ...] = (
    ".png",
    ".jpg",
    ".jpeg",
    ".webp",
    ".bmp",
    ".gif",
    ".tif",
    ".tiff",
)


def is_image_name(name: str | Path) -> bool:
    return Path(name).suffix.lower() in IMAGE_SUFFIXES


def file_dialog_filter() -> str:
    """The Open dialog's filter, from the same list."""
    patterns = " ".join(f"*{suffix}" for suffix in IMAGE_SUFFIXES)
    return f"Images ({patterns});;All files (*)"


UNKNOWN_MODEL_SIDE = 1024  # the largest native size of the families the studio runs
# The thinnest picture a generation is made at: SDXL's and Flux's training buckets end near
# 1:4, and a thinner job of the model's area has sides no model draws well (a 3×5000 strip
# on a 64-pixel model gave 8×2616, five times its area). Thinner inputs are stretched to it.
MOST_ASPECT = 4.0


def input_size(
    size: tuple[int, int], native_side: int | None, step: int | None = None
) -> tuple[int, int]:
    """The generation size for an input image: its shape at the model's native area (a
    512×400 photo on a 64-pixel model becomes 72×56, not a 512×400 job that gives noise),
    or its own size up to a megapixel when the model's size is not known; never thinner
    than 1:4; each side in the model's steps (`Family.size_step`: 16 for the transformer
    families, whose size note would otherwise be about a size the studio chose itself)."""
    from studio.core.request import SIDE_STEP, snap_side

    width, height = max(1, size[0]), max(1, size[1])
    if native_side:
        area = float(native_side) ** 2
    else:  # a model of unknown size: the image's own, but never more than a megapixel
        area = min(float(width * height), float(UNKNOWN_MODEL_SIDE) ** 2)
    aspect = min(max(width / height, 1 / MOST_ASPECT), MOST_ASPECT)
    step = step or SIDE_STEP
    return snap_side((area * aspect) ** 0.5, step), snap_side((area / aspect) ** 0.5, step)


PORTRAIT_RATIOS: tuple[tuple[int, int], ...] = ((2, 3), (3, 4), (9, 16))


def sizes_at_area(native: tuple[int, int]) -> list[tuple[int, int]]:
    """A model's own size, then portrait and landscape sizes of the common aspect ratios
    at its area and no more pixels, each side a multiple of 64 (8 for a model under 512
    pixels), as SDXL's training buckets are (832×1216 and 1216×832 for 1024×1024)."""
    width, height = native
    area = width * height
    step = 64 if min(native) >= 512 else 8
    sizes = [(width, height)]
    for across, down in PORTRAIT_RATIOS:
        w = max(step, round((area * across / down) ** 0.5 / step) * step)
        h = max(step, area // w // step * step)
        for size in ((w, h), (h, w)):
            if size not in sizes:
                sizes.append(size)
    return sizes


# How far from a model's native area a size may go before the artist is told: 1.5× each
# side (SDXL's 1024 at 1536, studio-tiny's 64 at 96) and 0.63× each side.
TOO_LARGE_AREA, TOO_SMALL_AREA = 2.25, 0.4


def size_note(size: tuple[int, int], native: tuple[int, int] | None, model: str) -> str:
    """One sentence when `size` is far from the model's native size, else ""."""
    if not native or min(native) <= 0:
        return ""
    width, height = size
    ratio = (width * height) / (native[0] * native[1])
    drawn_at = f"{model} draws at {native[0]}×{native[1]}"
    if ratio > TOO_LARGE_AREA:
        return (
            f"{drawn_at}: at {width}×{height} expect repeated or broken shapes, and each step "
            f"takes about {ratio:.0f}× as long."
        )
    if ratio < TOO_SMALL_AREA:
        return f"{drawn_at}: {width}×{height} is too few pixels for it and gives noise."
    return ""


def fit(image: Image.Image, width: int, height: int) -> Image.Image:
    """RGB at exactly width×height (stretching, as A1111's "just resize")."""
    image = image.convert("RGB")
    if image.size != (width, height):
        image = image.resize((width, height), Image.Resampling.LANCZOS)
    return image


STRETCH_TOLERANCE = 0.05  # shapes this close are a side's rounding to the model's steps


def stretch_note(size: tuple[int, int], width: int, height: int) -> str:
    """A sentence when `fit` stretches a picture of `size` to width×height out of its shape
    (a 10:1 strip made at 1:4, the most a job takes; another size given); "" otherwise."""
    given_w, given_h = max(1, size[0]), max(1, size[1])
    change = (width / height) / (given_w / given_h)
    if abs(change - 1) <= STRETCH_TOLERANCE:
        return ""
    return (
        f"The input picture ({given_w}×{given_h}) is stretched to {width}×{height}: its shape "
        "is not the job's."
    )


def pad_to_multiple(image: Image.Image, multiple: int) -> Image.Image:
    """The picture with its right and bottom edges repeated up to sides that are multiples
    of `multiple` (a network that cuts its input down to them then loses nothing of it)."""
    extra = [(-side) % max(1, multiple) for side in image.size]
    if not any(extra):
        return image
    pixels = np.asarray(image)
    padding = [(0, extra[1]), (0, extra[0])] + [(0, 0)] * (pixels.ndim - 2)
    return Image.fromarray(np.pad(pixels, padding, mode="edge"))


def feathered(mask: Image.Image, blur: int) -> Image.Image:
    mask = mask.convert("L")
    return mask.filter(ImageFilter.GaussianBlur(blur)) if blur > 0 else mask


def mask_crop_box(mask: Image.Image, padding: int, aspect: float) -> Box:
    """The masked area plus padding, widened to the output's aspect ratio, inside the image.

    This is "inpaint only the masked area": a small region is cut out, worked on at the
    full output resolution, and pasted back, so small details get all the pixels.
    """
    width, height = mask.size
    bbox = mask.convert("L").getbbox()  # of the feathered mask: the soft edge is repainted too
    if bbox is None:
        return (0, 0, width, height)
    left, top, right, bottom = bbox
    left, top = max(0, left - padding), max(0, top - padding)
    right, bottom = min(width, right + padding), min(height, bottom + padding)

    box_w, box_h = right - left, bottom - top
    if box_w / box_h < aspect:
        box_w = min(width, round(box_h * aspect))
    else:
        box_h = min(height, round(box_w / aspect))
    cx, cy = (left + right) / 2, (top + bottom) / 2
    left = int(min(max(0, cx - box_w / 2), width - box_w))
    top = int(min(max(0, cy - box_h / 2), height - box_h))
    return (left, top, left + box_w, top + box_h)


def overlay(original: Image.Image, painted: Image.Image, soft_mask: Image.Image) -> Image.Image:
    """The painted pixels where the mask is, the original pixels everywhere else."""
    painted = painted.convert("RGB")
    if painted.size != original.size:
        painted = painted.resize(original.size, Image.Resampling.LANCZOS)
    return Image.composite(painted, original.convert("RGB"), soft_mask)


def paste_into(
    original: Image.Image, painted: Image.Image, box: Box, soft_mask: Image.Image
) -> Image.Image:
    """Paste a result made for `box` back into the whole picture through the soft mask."""
    size = (box[2] - box[0], box[3] - box[1])
    patch = painted.convert("RGB").resize(size, Image.Resampling.LANCZOS)
    canvas = original.convert("RGB").copy()
    full_patch = canvas.copy()
    full_patch.paste(patch, box[:2])
    return Image.composite(full_patch, canvas, soft_mask)


# Modes the rest of the studio (and Pillow's convert to RGB or L) handles as they are.
_PLAIN_MODES = ("1", "L", "P", "RGB", "RGBA", "LA", "PA")
_DEEP_MODES = ("I;16", "I;16B", "I;16L", "I;16N", "I", "F")  # more than 8 bits a channel


def _in_plain_mode(image: Image.Image, name: str) -> Image.Image:
    """Every mode Pillow opens, as one the studio works in: deep greyscale (16-bit, 32-bit,
    float) scaled to 8 bits with its tones kept (a plain conversion clips 16-bit values to
    white), other colour spaces (CMYK, YCbCr, LAB, HSV) as RGB; anything else refused."""
    if image.mode in _PLAIN_MODES:
        return image
    if image.mode in _DEEP_MODES:
        values = np.asarray(image, dtype=np.float64)
        finite = values[np.isfinite(values)]
        top = float(finite.max()) if finite.size else 0.0
        if image.mode == "F" and top <= 1.0:
            scale = 255.0  # floats in [0, 1]
        elif image.mode == "F" and top <= 255.0:
            scale = 1.0
        else:
            scale = 255.0 / (65535.0 if top <= 65535 else top)
        eight = np.clip(np.nan_to_num(values) * scale + 0.5, 0, 255).astype(np.uint8)
        return Image.fromarray(eight, "L")
    try:
        return image.convert("RGBA" if image.mode in ("RGBa", "La") else "RGB")
    except (ValueError, OSError):
        raise ImageLoadError(
            f"'{name}' is in a colour mode the studio cannot use ({image.mode}): save it as an "
            "RGB or greyscale image."
        ) from None


class ImageLoadError(BadInput):
    """An image file that cannot be used; str() is one sentence for the user."""


def open_image(path: str | Path) -> Image.Image:
    """Open and fully decode an image file, turning every failure into one sentence."""
    path = Path(path)
    name = printable(path.name)
    if not path.exists():
        raise ImageLoadError(f"'{name}' does not exist.")
    if is_folder(path):
        raise ImageLoadError(f"'{printable(str(path))}' is a folder, not an image file.")
    if not is_regular_file(path):  # a pipe or device that would block the read
        raise ImageLoadError(f"'{name}' is not an image file (not a regular file).")
    if path.stat().st_size == 0:
        raise ImageLoadError(f"'{name}' is empty (0 bytes), so it holds no image.")
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # a damaged file's warnings are not the user's
            image = Image.open(path)
        with image:
            if image.width == 0 or image.height == 0:
                raise ImageLoadError(f"'{name}' holds an image with no pixels.")
            if image.width * image.height > MAX_PIXELS:  # from the header, before decoding
                raise ImageLoadError(
                    f"'{name}' is {image.width}×{image.height}: larger than the studio opens "
                    f"({MAX_PIXELS // 1_000_000} million pixels at most)."
                )
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                image.load()  # decode now, so a truncated file fails here and not later
            upright = ImageOps.exif_transpose(image)  # phone photos stand up; also a copy
            info = dict(image.info)  # keep text chunks: they carry parameters
            upright = _in_plain_mode(upright, name)
            upright.info = info
            return upright
    except ImageLoadError:
        raise
    except Image.DecompressionBombError:
        raise ImageLoadError(f"'{name}' is too large to open safely.") from None
    except MemoryError:
        raise ImageLoadError(f"'{name}' is too large to open in the memory there is.") from None
    except Exception as e:  # noqa: BLE001 - a damaged file may trip any decoder, in any way
        logging.getLogger(__name__).info("%s could not be opened: %r", name, e)
        reason = (
            "it is truncated or damaged"
            if "truncat" in str(e).lower()
            else ("it is not an image format the studio can read or it is damaged")
        )
        raise ImageLoadError(f"'{name}' cannot be opened: {reason}.") from None
