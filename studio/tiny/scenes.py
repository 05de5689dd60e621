"""Procedural scenes for studio-tiny: one or two shapes on a background, with captions.

Everything is drawn with Pillow from a seed, at any resolution, and every render comes
with its ground truth (shape, colour and pixel box of each object) so training and
evaluation need no other data.
"""

from __future__ import annotations

import math
import random
from collections.abc import Sequence
from dataclasses import dataclass

from PIL import Image, ImageDraw

from studio.tiny.vocabulary import COLOURS, POSITION_PHRASES, POSITIONS, SHAPES, SIZES, TEXTURES

# Two objects sit at positions at least this far apart on the 3x3 grid, so they never overlap.
_MIN_GRID_DISTANCE = 2
_JITTER_POS = 0.04
_JITTER_RGB = 12
_TEXTURE_MIX = 0.25  # how far a texture's second tone moves from the base colour

# Shapes the renderer can draw that studio-tiny was never trained on: the embedded LoRAs
# teach them (studio/tiny/train_lora.py). They appear only where a caller asks for them by
# `shapes=`; by default every sampler draws from the vocabulary's SHAPES, as in training.
EXTRA_SHAPES: tuple[str, ...] = ("heart",)


@dataclass(frozen=True)
class SceneObject:
    shape: str
    colour: str
    size: str
    position: str
    rgb: tuple[int, int, int]
    centre: tuple[float, float]  # fractions of width and height
    extent: float  # side as a fraction of the image side


@dataclass(frozen=True)
class Background:
    colour: str
    texture: str
    rgb: tuple[int, int, int]
    variant: int  # stripe direction or gradient direction


@dataclass(frozen=True)
class Scene:
    background: Background
    objects: tuple[SceneObject, ...]


@dataclass(frozen=True)
class ObjectTruth:
    shape: str
    colour: str
    size: str
    position: str
    box: tuple[int, int, int, int]  # x0, y0, x1, y1 in pixels, exclusive end


@dataclass(frozen=True)
class Render:
    image: Image.Image
    objects: tuple[ObjectTruth, ...]
    background: Background
    caption: str


def _jitter(rgb: tuple[int, int, int], rng: random.Random) -> tuple[int, int, int]:
    return tuple(min(255, max(0, c + rng.randint(-_JITTER_RGB, _JITTER_RGB))) for c in rgb)  # type: ignore[return-value]


def texture_tone(rgb: tuple[int, int, int]) -> tuple[int, int, int]:
    """The second tone of a striped or gradient background: the colour moved towards white
    (towards black for very light colours), staying nearest to its own palette colour."""
    target = 0 if sum(rgb) > 600 else 255
    return tuple(round(c + (target - c) * _TEXTURE_MIX) for c in rgb)  # type: ignore[return-value]


def _grid(position: str) -> tuple[int, int]:
    x, y = POSITIONS[position]
    return round((x - 0.2) / 0.3), round((y - 0.2) / 0.3)


def _far_apart(a: str, b: str) -> bool:
    (ax, ay), (bx, by) = _grid(a), _grid(b)
    return max(abs(ax - bx), abs(ay - by)) >= _MIN_GRID_DISTANCE


def sample_object(
    rng: random.Random,
    position: str,
    exclude_colours: set[str],
    size: str | None = None,
    shapes: Sequence[str] = SHAPES,
) -> SceneObject:
    colour = rng.choice([c for c in COLOURS if c not in exclude_colours])
    size = size or rng.choice(list(SIZES))
    cx, cy = POSITIONS[position]
    return SceneObject(
        shape=rng.choice(shapes),
        colour=colour,
        size=size,
        position=position,
        rgb=_jitter(COLOURS[colour], rng),
        centre=(
            cx + rng.uniform(-_JITTER_POS, _JITTER_POS),
            cy + rng.uniform(-_JITTER_POS, _JITTER_POS),
        ),
        extent=rng.uniform(*SIZES[size]),
    )


def sample_scene(
    rng: random.Random, n_objects: int | None = None, shapes: Sequence[str] = SHAPES
) -> Scene:
    """A random scene; two objects 40% of the time unless `n_objects` is given. Shapes are
    drawn from `shapes` (the training vocabulary unless asked; the random draws are the same
    for any list of the same length, so the default scenes never change)."""
    if n_objects is None:
        n_objects = 2 if rng.random() < 0.4 else 1
    bg_colour = rng.choice(list(COLOURS))
    texture = rng.choices(TEXTURES, weights=(0.6, 0.2, 0.2))[0]
    background = Background(bg_colour, texture, _jitter(COLOURS[bg_colour], rng), rng.randrange(4))
    # The centre has no partner far enough away, so two-object scenes avoid it.
    positions = [p for p in POSITIONS if n_objects == 1 or p != "centre"]
    first = rng.choice(positions)
    objects = [sample_object(rng, first, {bg_colour}, shapes=shapes)]
    if n_objects == 2:
        second = rng.choice([p for p in positions if _far_apart(first, p)])
        objects.append(sample_object(rng, second, {bg_colour, objects[0].colour}, shapes=shapes))
    return Scene(background, tuple(objects))


def _shape_points(shape: str, cx: float, cy: float, r: float) -> list[tuple[float, float]]:
    if shape == "triangle":
        # Equilateral, pointing up, centred on its bounding box.
        h = r * math.sqrt(3)
        return [(cx, cy - h / 2 - r * 0.04), (cx + r, cy + h / 2), (cx - r, cy + h / 2)]
    if shape == "star":
        pts = []
        for i in range(10):
            rad = r if i % 2 == 0 else r * 0.45
            a = -math.pi / 2 + i * math.pi / 5
            pts.append((cx + rad * math.cos(a), cy + rad * math.sin(a) + r * 0.1))
        return pts
    if shape == "heart":
        # The classic parametric heart (x = 16 sin^3 t, y = 13 cos t - 5 cos 2t - ...),
        # 32 units wide and 29 high, scaled to the object's extent and centred on its box:
        # two round lobes with a notch at the top, a point at the bottom.
        pts = []
        for i in range(96):
            a = 2 * math.pi * i / 96
            x = 16 * math.sin(a) ** 3
            y = 13 * math.cos(a) - 5 * math.cos(2 * a) - 2 * math.cos(3 * a) - math.cos(4 * a)
            pts.append((cx + r * x / 16, cy - r * (y + 2.6) / 16))
        return pts
    raise ValueError(shape)


def _draw_background(draw: ImageDraw.ImageDraw, bg: Background, w: int, h: int) -> None:
    tone = texture_tone(bg.rgb)
    if bg.texture == "plain":
        draw.rectangle((0, 0, w, h), fill=bg.rgb)
    elif bg.texture == "striped":
        # Base colour takes 60% of each period so it stays the dominant colour.
        draw.rectangle((0, 0, w, h), fill=bg.rgb)
        period = max(w, h) / 6
        horizontal = bg.variant % 2 == 0
        n = int(max(w, h) / period) + 2
        for i in range(n):
            a = i * period + period * 0.6
            b = (i + 1) * period
            box = (0, a, w, b) if horizontal else (a, 0, b, h)
            draw.rectangle(box, fill=tone)
    else:
        steps = h if bg.variant % 2 == 0 else w
        for i in range(steps):
            t = i / max(1, steps - 1)
            if bg.variant >= 2:
                t = 1 - t
            t *= 0.8  # keep most of the gradient close to the base colour
            rgb = tuple(round(c + (d - c) * t) for c, d in zip(bg.rgb, tone, strict=True))
            box = (0, i, w, i) if bg.variant % 2 == 0 else (i, 0, i, h)
            draw.line(box, fill=rgb)


def _draw_object(draw: ImageDraw.ImageDraw, obj: SceneObject, w: int, h: int, bg: tuple) -> None:
    side = obj.extent * min(w, h)
    r = side / 2
    cx, cy = obj.centre[0] * w, obj.centre[1] * h
    box = (cx - r, cy - r, cx + r, cy + r)
    if obj.shape == "circle":
        draw.ellipse(box, fill=obj.rgb)
    elif obj.shape == "square":
        s = r * 0.9  # a square looks bigger than a circle of the same extent
        draw.rectangle((cx - s, cy - s, cx + s, cy + s), fill=obj.rgb)
    elif obj.shape == "ring":
        draw.ellipse(box, fill=obj.rgb)
        hole = r * 0.5
        # The hole shows the background, textured or not.
        draw.ellipse((cx - hole, cy - hole, cx + hole, cy + hole), fill=bg)
    else:
        draw.polygon(_shape_points(obj.shape, cx, cy, r), fill=obj.rgb)


def _object_box(obj: SceneObject, w: int, h: int) -> tuple[int, int, int, int]:
    r = obj.extent * min(w, h) / 2
    if obj.shape == "square":
        r *= 0.9
    cx, cy = obj.centre[0] * w, obj.centre[1] * h
    x0, y0 = max(0, math.floor(cx - r)), max(0, math.floor(cy - r))
    return x0, y0, min(w, math.ceil(cx + r)), min(h, math.ceil(cy + r))


def draw_scene(scene: Scene, size: int | tuple[int, int] = 64) -> Image.Image:
    """Render `scene` at `size` pixels, anti-aliased by supersampling."""
    w, h = (size, size) if isinstance(size, int) else size
    ss = max(1, min(4, 256 // max(w, h)))
    img = Image.new("RGB", (w * ss, h * ss))
    draw = ImageDraw.Draw(img)
    _draw_background(draw, scene.background, w * ss, h * ss)
    for obj in scene.objects:
        # A ring's hole shows the local background; with textures, approximate with base colour.
        _draw_object(draw, obj, w * ss, h * ss, scene.background.rgb)
    if ss > 1:
        img = img.resize((w, h), Image.Resampling.BOX)
    return img


def ground_truth(scene: Scene, size: int | tuple[int, int] = 64) -> tuple[ObjectTruth, ...]:
    w, h = (size, size) if isinstance(size, int) else size
    return tuple(
        ObjectTruth(o.shape, o.colour, o.size, o.position, _object_box(o, w, h))
        for o in scene.objects
    )


def _article(word: str) -> str:
    return "an" if word[0] in "aeiou" else "a"


def _bg_words(bg: Background) -> str:
    return bg.colour if bg.texture == "plain" else f"{bg.colour} {bg.texture}"


def caption(scene: Scene, rng: random.Random | None = None, full: bool = False) -> str:
    """A caption for `scene` in one of several phrasings.

    With `full`, the sentence phrasing naming every attribute (what evaluation prompts use);
    otherwise attributes are dropped at random and a tag-list phrasing is used half the time,
    so the model learns to fill in what the prompt leaves open.
    """
    rng = rng or random.Random(0)
    with_size = full or rng.random() < 0.7
    with_pos = full or rng.random() < 0.8
    with_bg = full or rng.random() < 0.8
    tags = not full and rng.random() < 0.4
    centre_word = "center" if not full and rng.random() < 0.2 else "centre"

    def pos_words(o: SceneObject, phrase: bool) -> str:
        text = POSITION_PHRASES[o.position] if phrase else o.position
        return text.replace("centre", centre_word)

    if tags:
        parts = [f"{_bg_words(scene.background)} background"] if with_bg else []
        for o in scene.objects:
            words = f"{o.size} {o.colour} {o.shape}" if with_size else f"{o.colour} {o.shape}"
            parts.append(words)
            if with_pos:
                parts.append(pos_words(o, phrase=False))
        return ", ".join(parts)

    phrases = []
    for o in scene.objects:
        words = f"{o.size} {o.colour} {o.shape}" if with_size else f"{o.colour} {o.shape}"
        text = f"{_article(words)} {words}"
        if with_pos:
            text += " " + pos_words(o, phrase=True)
        phrases.append(text)
    text = " and ".join(phrases)
    if with_bg:
        bg = _bg_words(scene.background)
        text += f" on {_article(bg)} {bg} background"
    return text


def render(scene: Scene, size: int | tuple[int, int] = 64, caption_text: str = "") -> Render:
    return Render(
        draw_scene(scene, size), ground_truth(scene, size), scene.background, caption_text
    )


def render_seed(
    seed: int, size: int | tuple[int, int] = 64, n_objects: int | None = None, full: bool = False
) -> Render:
    """The scene for `seed`, rendered at `size`, with a caption drawn from the same seed."""
    rng = random.Random(seed)
    scene = sample_scene(rng, n_objects)
    return render(scene, size, caption(scene, rng, full=full))
