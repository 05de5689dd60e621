"""Writing finished images: metadata inside, atomically, with names that sort by time."""

from __future__ import annotations

import os
import re
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import BinaryIO

from PIL import Image

from studio import metadata
from studio.core.request import GenerationRequest


def parameters_of(
    request: GenerationRequest, seed: int, image: Image.Image
) -> metadata.ImageParameters:
    """The normalised parameters of one image of a job (its own seed, its real size)."""
    extras: dict[str, str] = {}
    if request.cfg_rescale:
        extras["CFG rescale"] = f"{request.cfg_rescale:g}"
    if request.dynamic_thresholding:
        extras["Dynamic thresholding"] = (
            f"{request.threshold_percentile:g}% / {request.threshold_max:g}"
        )
    if request.upscaler is not None:
        extras["Upscaler"] = request.upscaler.value
    if request.mode.value != "txt2img":
        extras["Mode"] = request.mode.value
    uses_strength = request.mode.value in ("img2img", "inpaint")
    # A1111's Size is the generation size; an upscaled result records its own size apart.
    width, height = request.width, request.height
    if request.mode.value == "upscale" and request.init_image is not None:
        width, height = request.init_image.size
    if image.size != (width, height):
        extras["Output size"] = f"{image.width}x{image.height}"
    return metadata.ImageParameters(
        source="studio",
        prompt=request.prompt,
        negative_prompt=request.negative_prompt,
        seed=seed,
        steps=request.steps,
        cfg_scale=request.cfg_scale,
        sampler=request.scheduler,
        width=width,
        height=height,
        model=request.model,
        strength=request.strength if uses_strength else None,
        extras=extras,
    )


def save_image(
    image: Image.Image,
    request: GenerationRequest,
    seed: int,
    folder: Path,
    stem: str | None = None,
    overwrite: bool = False,
) -> Path:
    """Save a PNG with its parameters; the file appears whole or not at all.

    Without `overwrite`, an existing name gets a -1, -2… suffix instead of being replaced.
    """
    folder.mkdir(parents=True, exist_ok=True)
    stem = stem or default_stem(request, seed)
    # The request recorded is the one that regenerates exactly this image: its own seed, batch 1.
    own_request = request.replace(seed=seed, batch_size=1)
    info = metadata.png_info(parameters_of(request, seed, image), own_request.to_dict())
    target = folder / f"{stem}.png"
    if not overwrite:
        target = _unique(target)
    write_atomically(target, lambda handle: image.save(handle, format="PNG", pnginfo=info))
    return target


def write_atomically(target: Path, write: Callable[[BinaryIO], object]) -> None:
    """Write a file that appears whole or not at all: into a temporary file beside it,
    renamed over it once complete."""
    fd, tmp_name = tempfile.mkstemp(prefix=".partial-", suffix=target.suffix, dir=target.parent)
    try:
        with os.fdopen(fd, "wb") as handle:
            write(handle)
            handle.flush()
            os.fsync(handle.fileno())
        os.chmod(tmp_name, 0o666 & ~_UMASK)  # mkstemp makes it owner-only; others may read
        os.replace(tmp_name, target)
    except BaseException:
        Path(tmp_name).unlink(missing_ok=True)
        raise


def _read_umask() -> int:
    # os.umask can only be read by setting it, which is process-wide: do it once, at import
    # (before the worker and thumbnail threads exist), never while other threads make files.
    current = os.umask(0)
    os.umask(current)
    return current


_UMASK = _read_umask()


def default_stem(request: GenerationRequest, seed: int) -> str:
    words = re.sub(r"[^\w]+", "-", request.prompt.lower()).strip("-")[:40].rstrip("-")
    stamp = time.strftime("%Y%m%d-%H%M%S")
    return f"{stamp}-{seed}-{words or request.mode.value}"


def _unique(path: Path) -> Path:
    if not path.exists():
        return path
    for n in range(1, 10_000):
        candidate = path.with_name(f"{path.stem}-{n}{path.suffix}")
        if not candidate.exists():
            return candidate
    raise FileExistsError(path)
