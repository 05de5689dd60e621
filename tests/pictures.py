"""Pictures the tests draw: the input studio-tiny knows (a yellow square on blue) and a
mask over part of it."""

from __future__ import annotations

from PIL import Image, ImageDraw


def yellow_square_on_blue(size: int = 64) -> Image.Image:
    image = Image.new("RGB", (size, size), (30, 60, 200))
    third = size * 5 // 16
    ImageDraw.Draw(image).rectangle(
        (third, third, size - 1 - third, size - 1 - third), fill=(240, 220, 30)
    )
    return image


def box_mask(box: tuple[int, int, int, int] = (8, 8, 55, 55), size: int = 64) -> Image.Image:
    """White (repaint) inside `box`, black elsewhere."""
    mask = Image.new("L", (size, size), 0)
    ImageDraw.Draw(mask).rectangle(box, fill=255)
    return mask
