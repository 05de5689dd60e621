"""The engine on the real embedded model: what an artist would see in the pictures."""

from __future__ import annotations

import numpy as np
import pytest
from PIL import Image

from studio.core.catalog import ModelError, resolve
from studio.core.request import GenerationRequest, Mode

try:
    resolve("studio-tiny")
    HAVE_TINY = True
except ModelError:
    HAVE_TINY = False

pytestmark = pytest.mark.skipif(not HAVE_TINY, reason="the embedded model is not built yet")

RED, BLUE = np.array([220, 40, 40]), np.array([40, 60, 220])


def share_near(image: Image.Image, colour: np.ndarray, tolerance: float = 90) -> float:
    rgb = np.asarray(image.convert("RGB"), dtype=np.float32)
    return float((np.linalg.norm(rgb - colour, axis=-1) < tolerance).mean())


@pytest.fixture
def red_on_blue(engine) -> Image.Image:
    request = GenerationRequest(
        prompt="a large red circle in the centre on a blue background", steps=12, seed=3
    )
    return engine.run(request).images[0]


def test_image_to_image_follows_the_strength(engine, red_on_blue) -> None:
    def change(strength: float) -> float:
        request = GenerationRequest(
            mode=Mode.IMAGE_TO_IMAGE,
            prompt="a large green square on a yellow background",
            init_image=red_on_blue,
            strength=strength,
            steps=12,
            seed=5,
        )
        out = np.asarray(engine.run(request).images[0], dtype=np.float32)
        return float(np.abs(out - np.asarray(red_on_blue, dtype=np.float32)).mean())

    assert change(0.25) < change(0.95)


def test_inpainting_changes_the_mask_and_keeps_the_rest(engine, red_on_blue) -> None:
    mask = Image.new("L", red_on_blue.size, 0)
    mask.paste(255, (0, 0, 24, 24))
    request = GenerationRequest(
        mode=Mode.INPAINT,
        prompt="a small yellow square at the top left on a blue background",
        init_image=red_on_blue,
        mask=mask,
        mask_blur=2,
        strength=1.0,
        steps=12,
        seed=9,
    )
    out = np.asarray(engine.run(request).images[0], dtype=np.float32)
    before = np.asarray(red_on_blue, dtype=np.float32)
    inside = np.asarray(mask) > 0
    far_outside = np.ones_like(inside)
    far_outside[:30, :30] = False
    assert np.abs(out[inside] - before[inside]).mean() > 10
    assert np.abs(out[far_outside] - before[far_outside]).mean() < 2
