"""Training data for studio-tiny: scenes pre-rendered into memory as uint8 tensors.

Rendering a 64x64 scene takes well under a millisecond, so a few tens of thousands are
drawn up front; the training loops then only index tensors.
"""

from __future__ import annotations

import random

import numpy as np
import torch
from PIL import Image

from studio.tiny.scenes import Scene, caption, draw_scene, sample_scene
from studio.tiny.vocabulary import COLOURS, SHAPES


def to_uint8(images: list[Image.Image]) -> torch.Tensor:
    """PIL RGB images of one size -> uint8 tensor [N, 3, H, W]."""
    return torch.from_numpy(np.stack([np.asarray(im) for im in images])).permute(0, 3, 1, 2)


def to_unit(images: torch.Tensor) -> torch.Tensor:
    """uint8 [N, 3, H, W] -> float in [-1, 1], as the VAE sees images."""
    return images.float() / 127.5 - 1.0


def render_scenes(n: int, size: int, seed: int) -> tuple[list[Scene], torch.Tensor]:
    rng = random.Random(seed)
    scenes = [sample_scene(rng) for _ in range(n)]
    return scenes, to_uint8([draw_scene(s, size) for s in scenes])


def caption_ids(scenes: list[Scene], tokenizer, per_scene: int, seed: int) -> torch.Tensor:
    """Token ids [N, per_scene, L]: several phrasings of each scene, so each step can pick one."""
    rng = random.Random(seed)
    texts = [caption(s, rng) for s in scenes for _ in range(per_scene)]
    ids = tokenizer(
        texts, padding="max_length", max_length=tokenizer.model_max_length, truncation=True
    ).input_ids
    return torch.tensor(ids, dtype=torch.long).view(len(scenes), per_scene, -1)


# The text encoder's auxiliary target: which (colour, shape) pairs a caption names. Every
# phrasing names both for every object, so the target is known from any caption.
PAIRS = [(c, s) for c in COLOURS for s in SHAPES]


def pair_targets(scenes: list[Scene]) -> torch.Tensor:
    """Multi-hot [N, len(PAIRS)]: the (colour, shape) of each object of each scene."""
    out = torch.zeros(len(scenes), len(PAIRS))
    for i, scene in enumerate(scenes):
        for o in scene.objects:
            out[i, PAIRS.index((o.colour, o.shape))] = 1.0
    return out


def upscale_pairs(n: int, low: int, seed: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Pairs (low-resolution render, 4x render) of the same scenes: uint8 [N,3,low,low] and
    [N,3,4*low,4*low]. The low one is what the renderer draws at that size, which is what
    the upscaler is given in the studio."""
    rng = random.Random(seed)
    scenes = [sample_scene(rng) for _ in range(n)]
    lows = to_uint8([draw_scene(s, low) for s in scenes])
    highs = to_uint8([draw_scene(s, low * 4) for s in scenes])
    return lows, highs


def random_crops(
    images: torch.Tensor, crop: int, generator: torch.Generator, align: int = 1
) -> torch.Tensor:
    """One random `crop`-sized window per image, at multiples of `align` pixels."""
    n, _, h, w = images.shape
    ys = torch.randint(0, (h - crop) // align + 1, (n,), generator=generator) * align
    xs = torch.randint(0, (w - crop) // align + 1, (n,), generator=generator) * align
    return torch.stack(
        [img[:, y : y + crop, x : x + crop] for img, y, x in zip(images, ys, xs, strict=True)]
    )
