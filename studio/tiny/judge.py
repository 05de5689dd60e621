"""Judge an image against a scene's ground truth without any diffusion model.

Colours come from pixel statistics (each pixel labelled with its nearest palette colour,
the background's texture tone counted as background); position from the centroid of the
object's colour mask; shape from a small CNN trained on masks of clean renders, extracted
the same way, so the judge sees real and generated images through the same eyes.
"""

from __future__ import annotations

import random
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image, ImageFilter

from studio.tiny.scenes import Scene, draw_scene, sample_scene, texture_tone
from studio.tiny.vocabulary import COLOURS, POSITIONS, SHAPES

SIZE = 64  # images are judged at this size
MASK = 32  # the shape classifier's input side
MIN_PIXELS = 30  # fewer pixels of a colour than this (at 64x64) means the object is absent
_NAMES = list(COLOURS)
_PALETTE = np.array([COLOURS[c] for c in _NAMES], dtype=np.float32)


@dataclass(frozen=True)
class ObjectVerdict:
    colour: bool
    shape: bool
    position: bool
    found_shape: str
    found_position: str


@dataclass(frozen=True)
class Verdict:
    background: bool
    found_background: str
    objects: tuple[ObjectVerdict, ...]


def _pixels(image: Image.Image) -> np.ndarray:
    image = image.convert("RGB")
    if image.size != (SIZE, SIZE):
        image = image.resize((SIZE, SIZE), Image.Resampling.BOX)
    return np.asarray(image, dtype=np.float32)


def background_colour(px: np.ndarray) -> str:
    """Nearest palette colour to the median of the border ring (objects cover less of it)."""
    ring = np.concatenate([px[:2].reshape(-1, 3), px[-2:].reshape(-1, 3)])
    ring = np.concatenate([ring, px[:, :2].reshape(-1, 3), px[:, -2:].reshape(-1, 3)])
    median = np.median(ring, axis=0)
    return _NAMES[int(np.argmin(((_PALETTE - median) ** 2).sum(1)))]


def label_map(px: np.ndarray, background: str) -> np.ndarray:
    """Per-pixel palette index; -1 where the pixel is nearest the background or its tone."""
    tone = np.array(texture_tone(COLOURS[background]), dtype=np.float32)
    refs = np.concatenate([_PALETTE, tone[None]])
    d = ((px[:, :, None, :] - refs[None, None]) ** 2).sum(-1)
    labels = d.argmin(-1)
    bg = _NAMES.index(background)
    labels[(labels == bg) | (labels == len(_NAMES))] = -1
    return labels


def mask_crop(mask: np.ndarray) -> torch.Tensor:
    """The mask's bounding box, resized to MASK x MASK, as the classifier's input."""
    ys, xs = np.nonzero(mask)
    crop = mask[ys.min() : ys.max() + 1, xs.min() : xs.max() + 1].astype(np.float32)
    t = torch.from_numpy(crop)[None, None]
    return F.interpolate(t, size=(MASK, MASK), mode="area")[0]


def nearest_position(mask: np.ndarray) -> str:
    ys, xs = np.nonzero(mask)
    cx, cy = xs.mean() / SIZE, ys.mean() / SIZE
    return min(POSITIONS, key=lambda p: (POSITIONS[p][0] - cx) ** 2 + (POSITIONS[p][1] - cy) ** 2)


class ShapeNet(torch.nn.Module):
    """Names the shape of a mask, one of `shapes` (the vocabulary's; a LoRA's evaluation adds
    the shapes it teaches, from `scenes.EXTRA_SHAPES`)."""

    def __init__(self, shapes: Sequence[str] = SHAPES) -> None:
        super().__init__()
        self.shapes = tuple(shapes)
        self.net = torch.nn.Sequential(
            torch.nn.Conv2d(1, 16, 3, padding=1),
            torch.nn.ReLU(),
            torch.nn.MaxPool2d(2),
            torch.nn.Conv2d(16, 32, 3, padding=1),
            torch.nn.ReLU(),
            torch.nn.MaxPool2d(2),
            torch.nn.Conv2d(32, 64, 3, padding=1),
            torch.nn.ReLU(),
            torch.nn.AdaptiveAvgPool2d(2),
            torch.nn.Flatten(),
            torch.nn.Linear(256, len(self.shapes)),
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net(x)


def _degrade(image: Image.Image, rng: random.Random) -> Image.Image:
    """Blur and noise like a small generative model's output, so the classifier is robust."""
    if rng.random() < 0.5:
        image = image.filter(ImageFilter.GaussianBlur(rng.uniform(0.3, 1.2)))
    arr = np.asarray(image, dtype=np.float32)
    arr = arr + np.random.default_rng(rng.randrange(1 << 30)).normal(
        0, rng.uniform(0, 12), arr.shape
    )
    return Image.fromarray(np.clip(arr, 0, 255).astype(np.uint8))


def _training_masks(
    n: int, seed: int, shapes: Sequence[str] = SHAPES
) -> tuple[torch.Tensor, torch.Tensor]:
    rng = random.Random(seed)
    xs, ys = [], []
    while len(xs) < n:
        scene = sample_scene(rng, shapes=shapes)
        px = _pixels(_degrade(draw_scene(scene, SIZE), rng))
        labels = label_map(px, background_colour(px))
        for obj in scene.objects:
            mask = labels == _NAMES.index(obj.colour)
            if mask.sum() >= MIN_PIXELS:
                xs.append(mask_crop(mask))
                ys.append(list(shapes).index(obj.shape))
    return torch.stack(xs), torch.tensor(ys)


def train_shape_classifier(
    n: int = 6000, steps: int = 600, seed: int = 7, shapes: Sequence[str] = SHAPES
) -> ShapeNet:
    """A few hundred steps on masks of clean (lightly degraded) renders; about a minute.
    `shapes` are the names it tells apart: the vocabulary's unless asked (to judge a LoRA's
    new shape, pass SHAPES + EXTRA_SHAPES)."""
    torch.manual_seed(seed)
    x, y = _training_masks(n, seed, shapes)
    net = ShapeNet(shapes)
    opt = torch.optim.Adam(net.parameters(), 2e-3)
    gen = torch.Generator().manual_seed(seed)
    for _ in range(steps):
        idx = torch.randint(0, len(x), (128,), generator=gen)
        loss = F.cross_entropy(net(x[idx]), y[idx])
        opt.zero_grad()
        loss.backward()
        opt.step()
    return net.eval()


class Judge:
    def __init__(self, shape_net: ShapeNet) -> None:
        self.shape_net = shape_net

    @torch.no_grad()
    def _shape(self, mask: np.ndarray) -> str:
        logits = self.shape_net(mask_crop(mask)[None])
        return self.shape_net.shapes[int(logits.argmax())]

    def __call__(self, image: Image.Image, scene: Scene) -> Verdict:
        px = _pixels(image)
        found_bg = background_colour(px)
        labels = label_map(px, found_bg)
        verdicts = []
        single = len(scene.objects) == 1
        for obj in scene.objects:
            mask = labels == _NAMES.index(obj.colour)
            colour_ok = bool(mask.sum() >= MIN_PIXELS)
            if single and not colour_ok:
                # A wrong colour still has a shape and place worth judging.
                others = labels >= 0
                if others.sum() >= MIN_PIXELS:
                    values, counts = np.unique(labels[others], return_counts=True)
                    mask = labels == values[counts.argmax()]
            if mask.sum() < MIN_PIXELS:
                verdicts.append(ObjectVerdict(False, False, False, "", ""))
                continue
            if single and colour_ok:
                # The object's colour must also be the main non-background colour.
                values, counts = np.unique(labels[labels >= 0], return_counts=True)
                colour_ok = _NAMES[int(values[counts.argmax()])] == obj.colour
            shape, position = self._shape(mask), nearest_position(mask)
            verdicts.append(
                ObjectVerdict(
                    colour_ok, shape == obj.shape, position == obj.position, shape, position
                )
            )
        bg_ok = found_bg == scene.background.colour
        return Verdict(bg_ok, found_bg, tuple(verdicts))
