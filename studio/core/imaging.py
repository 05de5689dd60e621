"""Pixel work around the pipelines: resizing, mask feathering, inpaint crops and overlays."""

from __future__ import annotations

from pathlib import Path

from PIL import Image, ImageFilter, ImageOps

from studio.core.errors import BadInput

Box = tuple[int, int, int, int]

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


def input_size(size: tuple[int, int], native_side: int | None) -> tuple[int, int]:
    """The generation size for an input image: its shape at the model's native area (a
    512×400 photo on a 64-pixel model becomes 72×56, not a 512×400 job that gives noise),
    or its own size, within the allowed sizes, when the model's size is not known."""
    from studio.core.request import MAX_SIDE, snap_to_8

    width, height = max(1, size[0]), max(1, size[1])
    if native_side:
        scale = native_side / (width * height) ** 0.5
    else:
        scale = min(1.0, MAX_SIDE / max(width, height))
    return snap_to_8(width * scale), snap_to_8(height * scale)


def fit(image: Image.Image, width: int, height: int) -> Image.Image:
    """RGB at exactly width×height (stretching, as A1111's "just resize")."""
    image = image.convert("RGB")
    if image.size != (width, height):
        image = image.resize((width, height), Image.Resampling.LANCZOS)
    return image


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


class ImageLoadError(BadInput):
    """An image file that cannot be used; str() is one sentence for the user."""


def open_image(path: str | Path) -> Image.Image:
    """Open and fully decode an image file, turning every failure into one sentence."""
    path = Path(path)
    name = path.name
    if not path.is_file():
        raise ImageLoadError(f"'{name}' does not exist or is not a file.")
    if path.stat().st_size == 0:
        raise ImageLoadError(f"'{name}' is empty (0 bytes), so it holds no image.")
    try:
        with Image.open(path) as image:
            image.load()  # decode now, so a truncated file fails here and not later
            if image.width == 0 or image.height == 0:
                raise ImageLoadError(f"'{name}' holds an image with no pixels.")
            upright = ImageOps.exif_transpose(image)  # phone photos stand up; also a copy
            upright.info = dict(image.info)  # keep text chunks: they carry parameters
            return upright
    except ImageLoadError:
        raise
    except Image.DecompressionBombError:
        raise ImageLoadError(f"'{name}' is too large to open safely.") from None
    except (OSError, ValueError, SyntaxError, EOFError) as e:
        reason = (
            "it is truncated or damaged"
            if "truncat" in str(e).lower()
            else ("it is not an image format the studio can read or it is damaged")
        )
        raise ImageLoadError(f"'{name}' cannot be opened: {reason}.") from None
