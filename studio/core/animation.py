"""A job's denoising steps as an animated picture (WebP or GIF), to share: each step's
preview, stretched to the picture's size as the window shows it, then the result held."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import numpy as np
from PIL import Image

from studio.core.errors import BadInput
from studio.core.saving import write_atomically
from studio.core.text import printable

STEP_MS = 120  # each step's frame
RESULT_MS = 1500  # the result, held at the end before the animation loops
ANIMATION_SUFFIXES = (".webp", ".gif")


def write_animation(previews: Sequence[np.ndarray], result: Image.Image, path: Path) -> Path:
    """Write the previews (h, w, 3 uint8) and the result as a looping animation; the suffix
    of `path` (.webp or .gif) chooses the format. The file appears whole or not at all."""
    kind = {".webp": "WEBP", ".gif": "GIF"}.get(path.suffix.lower())
    if kind is None:
        raise BadInput(
            f"'{printable(path.name)}' is not a name for an animation: end it in .webp or .gif."
        )
    size = result.size
    frames = [
        Image.fromarray(preview).convert("RGB").resize(size, Image.Resampling.BILINEAR)
        for preview in previews
    ]
    frames.append(result.convert("RGB"))
    durations = [STEP_MS] * (len(frames) - 1) + [RESULT_MS]

    def write(handle: object) -> None:
        frames[0].save(
            handle,
            format=kind,
            save_all=True,
            append_images=frames[1:],
            duration=durations,
            loop=0,
            **({"lossless": False, "quality": 90} if kind == "WEBP" else {}),
        )

    return write_atomically(path, write)
