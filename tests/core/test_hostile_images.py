"""Every image Pillow opens is either converted with its tones kept or refused with one
sentence; damaged files of every format give a sentence, never a library's exception."""

from __future__ import annotations

import io
import os
import random
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from studio.core.imaging import ImageLoadError, fit, open_image
from studio.core.request import GenerationRequest, Mode


def test_a_16_bit_greyscale_png_keeps_its_tones(tmp_path: Path) -> None:
    ramp = np.linspace(0, 65535, 64, dtype=np.uint16)[None, :].repeat(8, axis=0)
    Image.fromarray(ramp).save(tmp_path / "deep.png")
    assert Image.open(tmp_path / "deep.png").mode.startswith("I")  # really 16-bit on disk
    rgb = np.asarray(fit(open_image(tmp_path / "deep.png"), 64, 8))[..., 0].astype(int)
    # a plain conversion clips every value over 255 to white: this ramp would be white
    assert rgb[0, 0] == 0 and rgb[0, -1] == 255 and 120 <= rgb[0, 32] <= 135
    assert (np.diff(rgb[0]) >= 0).all()


@pytest.mark.parametrize(
    ("mode", "value"),
    [("LAB", (60, 20, -20)), ("CMYK", (0, 200, 200, 0)), ("YCbCr", (90, 100, 160)), ("F", 0.5)],
)
def test_other_colour_spaces_open_as_rgb_or_grey_and_work_as_masks(
    tmp_path: Path, mode: str, value: object
) -> None:
    path = tmp_path / "picture.tif"
    Image.new(mode, (16, 16), value).save(path)
    image = open_image(path)
    assert image.mode in ("RGB", "L")
    mask = image.convert("L")  # the command line's --mask does this; LAB used to raise
    request = GenerationRequest(
        mode=Mode.INPAINT, prompt="x", init_image=Image.new("RGB", (16, 16)), mask=mask
    )
    assert all("mask" not in p or "empty" in p for p in request.problems())


@pytest.mark.parametrize("fmt", ["PNG", "JPEG", "WEBP", "GIF", "TIFF", "BMP"])
def test_damaged_files_of_every_format_give_one_sentence(tmp_path: Path, fmt: str) -> None:
    picture = Image.new("RGB", (32, 24), (10, 200, 30))
    buffer = io.BytesIO()
    picture.save(buffer, fmt)
    whole = buffer.getvalue()
    rng = random.Random(fmt)
    for index in range(150):  # random damage: flipped, cut and inserted bytes
        data = bytearray(whole)
        for _ in range(rng.randint(1, 8)):
            at = rng.randrange(len(data))
            roll = rng.random()
            if roll < 0.5:
                data[at] = rng.randrange(256)
            elif roll < 0.75:
                del data[at : at + rng.randint(1, 16)]
            else:
                data[at:at] = rng.randbytes(rng.randint(1, 16))
        path = tmp_path / f"{index}.{fmt.lower()}"
        path.write_bytes(bytes(data))
        try:
            image = open_image(path)
        except ImageLoadError as e:
            assert path.name in str(e) and "\n" not in str(e)
        else:
            assert image.width > 0 and image.mode in ("1", "L", "P", "RGB", "RGBA", "LA", "PA")


def test_what_is_not_a_regular_file_is_refused_without_reading_it(tmp_path: Path) -> None:
    os.mkfifo(tmp_path / "pipe.png")  # opening it to read would wait forever
    with pytest.raises(ImageLoadError, match="not a regular file"):
        open_image(tmp_path / "pipe.png")
    with pytest.raises(ImageLoadError, match="does not exist"):
        open_image(tmp_path / "missing.png")
    (tmp_path / "folder.png").mkdir()
    with pytest.raises(ImageLoadError) as refused:  # named in full: "/tmp" read as 'tmp'
        open_image(tmp_path / "folder.png")
    assert str(refused.value) == f"'{tmp_path / 'folder.png'}' is a folder, not an image file."


def test_an_image_too_small_or_too_large_to_upscale_is_one_sentence() -> None:
    tiny = GenerationRequest(mode=Mode.UPSCALE, init_image=Image.new("RGB", (1, 1)))
    assert tiny.problems() == ["The image to upscale is 1×1: it needs at least 8 pixels a side."]
    large = GenerationRequest(mode=Mode.UPSCALE, init_image=Image.new("RGB", (2048, 8)))
    assert "at most 1024 pixels a side" in large.problems()[0]
