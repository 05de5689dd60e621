"""Control maps of studio-tiny's scenes, as an artist would draw them on the control layer:
white lines on black, the objects' outlines scribbled by hand (wobbly, of any line width,
sometimes not closed), their filled silhouettes, or Canny's edges of the render (what the
control tab's Canny preprocessor makes from a picture). studio-tiny-controlnet is trained
on these (studio/tiny/train_controlnet.py); everything is drawn with Pillow from a seed.
"""

from __future__ import annotations

import math
import random

from PIL import Image, ImageDraw

from studio.tiny.scenes import Scene, SceneObject, _shape_points, draw_scene

SUPERSAMPLE = 4  # lines drawn at 4x and averaged down: soft, as a resized brush stroke is
KINDS = ("outline", "filled", "canny")
KIND_SHARES = (0.6, 0.15, 0.25)


def _outline(shape: str, cx: float, cy: float, r: float) -> list[list[tuple[float, float]]]:
    """The closed outlines of a shape (a ring has two), as lists of points."""
    if shape in ("circle", "ring"):
        circle = [
            (cx + r * math.cos(2 * math.pi * i / 48), cy + r * math.sin(2 * math.pi * i / 48))
            for i in range(48)
        ]
        if shape == "circle":
            return [circle]
        hole = [(cx + (x - cx) * 0.5, cy + (y - cy) * 0.5) for x, y in circle]
        return [circle, hole]
    if shape == "square":
        s = r * 0.9
        return [_densify([(cx - s, cy - s), (cx + s, cy - s), (cx + s, cy + s), (cx - s, cy + s)])]
    return [_densify(_shape_points(shape, cx, cy, r))]


def _densify(points: list[tuple[float, float]], per_side: int = 8) -> list[tuple[float, float]]:
    """Points along each side of a polygon, so a wobble bends its sides too."""
    out = []
    for (x0, y0), (x1, y1) in zip(points, points[1:] + points[:1], strict=True):
        out += [
            (x0 + (x1 - x0) * k / per_side, y0 + (y1 - y0) * k / per_side) for k in range(per_side)
        ]
    return out


def _wobble(
    points: list[tuple[float, float]], cx: float, cy: float, r: float, rng: random.Random
) -> list[tuple[float, float]]:
    """A hand's wobble: the distance from the centre bent by two slow waves, plus a little
    noise on every point."""
    n = len(points)
    waves = [(rng.randint(1, 4), rng.uniform(0, 2 * math.pi), rng.uniform(0, 0.08)) for _ in "ab"]
    out = []
    for i, (x, y) in enumerate(points):
        a = 2 * math.pi * i / n
        k = 1 + sum(amp * math.sin(f * a + phase) for f, phase, amp in waves)
        jx, jy = rng.gauss(0, 0.015 * r), rng.gauss(0, 0.015 * r)
        out.append((cx + (x - cx) * k + jx, cy + (y - cy) * k + jy))
    return out


def _draw_object(draw: ImageDraw.ImageDraw, obj: SceneObject, side: int, kind: str, rng) -> None:
    r = obj.extent * side / 2 * rng.uniform(0.9, 1.1)
    cx = (obj.centre[0] + rng.uniform(-0.025, 0.025)) * side
    cy = (obj.centre[1] + rng.uniform(-0.025, 0.025)) * side
    outlines = [_wobble(o, cx, cy, r, rng) for o in _outline(obj.shape, cx, cy, r)]
    if kind == "filled":
        draw.polygon(outlines[0], fill="white")
        for hole in outlines[1:]:
            draw.polygon(hole, fill="black")
        return
    width = max(1, round(rng.uniform(0.8, 3.0) * side / 64))  # 0.8-3 px at 64
    for points in outlines:
        start = rng.randrange(len(points))
        points = points[start:] + points[:start]
        if rng.random() < 0.25:  # a stroke that stops short of closing
            points = points[: round(len(points) * rng.uniform(0.8, 0.95))]
        else:
            points = points + points[:1]
        draw.line(points, fill="white", width=width, joint="curve")


def control_map(
    scene: Scene, size: int, rng: random.Random, kind: str | None = None
) -> Image.Image:
    """A control map of `scene` at `size` pixels (RGB, white on black): `kind` one of KINDS,
    drawn at random by KIND_SHARES when not given."""
    kind = kind or rng.choices(KINDS, weights=KIND_SHARES)[0]
    if kind == "canny":
        from studio.core.preprocessors import canny

        return canny(draw_scene(scene, size))
    side = size * SUPERSAMPLE
    image = Image.new("L", (side, side))
    draw = ImageDraw.Draw(image)
    for obj in scene.objects:
        _draw_object(draw, obj, side, kind, rng)
    return image.resize((size, size), Image.Resampling.BOX).convert("RGB")
