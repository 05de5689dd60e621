"""The procedural scenes studio-tiny is trained on: deterministic, truthful, well captioned."""

from __future__ import annotations

import random

import numpy as np
import pytest

from studio.tiny import data, vocabulary
from studio.tiny.scenes import caption, draw_scene, render_seed, sample_scene
from studio.tiny.vocabulary import COLOURS, POSITION_PHRASES, SHAPES


def test_same_seed_same_render_and_caption() -> None:
    a, b = render_seed(123), render_seed(123)
    assert a.image.tobytes() == b.image.tobytes()
    assert a.caption == b.caption
    assert a.objects == b.objects
    assert render_seed(124).image.tobytes() != a.image.tobytes()


@pytest.mark.parametrize("size", [32, 64, 128, (96, 48)])
def test_any_resolution(size: int | tuple[int, int]) -> None:
    r = render_seed(7, size)
    expected = (size, size) if isinstance(size, int) else size
    assert r.image.size == expected
    for obj in r.objects:
        x0, y0, x1, y1 = obj.box
        assert 0 <= x0 < x1 <= expected[0] and 0 <= y0 < y1 <= expected[1]


def _near(px: np.ndarray, rgb: tuple[int, int, int], tol: float = 45.0) -> np.ndarray:
    return np.linalg.norm(px - np.array(rgb, dtype=np.float32), axis=-1) < tol


@pytest.mark.parametrize("seed", range(20))
def test_ground_truth_boxes_hold_the_objects_colour(seed: int) -> None:
    rng = random.Random(seed)
    scene = sample_scene(rng)
    r = render_seed(seed, 64)
    assert [o.colour for o in r.objects] == [o.colour for o in scene.objects]
    px = np.asarray(r.image, dtype=np.float32)
    outside = np.ones(px.shape[:2], dtype=bool)
    for truth in r.objects:
        x0, y0, x1, y1 = truth.box
        outside[y0:y1, x0:x1] = False
    for truth, obj in zip(r.objects, scene.objects, strict=True):
        x0, y0, x1, y1 = truth.box
        inside = _near(px[y0:y1, x0:x1], obj.rgb)
        # A star covers about a third of its box; anti-aliased edges take a little more.
        assert inside.mean() > 0.2, (truth, inside.mean())
        assert _near(px, obj.rgb)[outside].mean() < 0.02


def test_two_object_scenes_keep_objects_apart_and_distinct() -> None:
    rng = random.Random(3)
    for _ in range(50):
        scene = sample_scene(rng, 2)
        a, b = scene.objects
        assert a.colour != b.colour
        assert scene.background.colour not in (a.colour, b.colour)
        assert a.position != b.position


def test_full_caption_names_every_attribute() -> None:
    rng = random.Random(11)
    for _ in range(30):
        scene = sample_scene(rng)
        text = caption(scene, full=True)
        assert scene.background.colour in text and "background" in text
        for obj in scene.objects:
            assert f"{obj.size} {obj.colour} {obj.shape}" in text
            assert POSITION_PHRASES[obj.position] in text


def test_captions_come_in_several_phrasings() -> None:
    texts = [render_seed(s).caption for s in range(300)]
    assert any(", " in t for t in texts)  # "blue background, red circle, top left"
    assert any(" and " in t for t in texts)  # "a red circle and a green square"
    assert any(t.startswith("a ") and " on a " in t for t in texts)
    for t in texts:
        assert any(shape in t for shape in SHAPES)


def test_vocabulary_covers_the_issue_and_describes_itself() -> None:
    assert {"circle", "square", "triangle", "star", "ring"} <= set(SHAPES)
    colours = {"red", "green", "blue", "yellow", "purple", "orange", "white", "black"}
    assert colours <= set(COLOURS)
    text = vocabulary.describe()
    for word in [*SHAPES, *COLOURS, "small", "large", "top left", "striped", "gradient"]:
        assert word in text
    assert vocabulary.as_dict()["examples"]


def test_textured_backgrounds_keep_their_colour_dominant() -> None:
    rng = random.Random(5)
    seen = set()
    while len(seen) < 2:
        scene = sample_scene(rng, 1)
        if scene.background.texture == "plain":
            continue
        seen.add(scene.background.texture)
        px = np.asarray(draw_scene(scene, 64), dtype=np.float32)
        assert _near(px, scene.background.rgb, tol=30).mean() > 0.4


def test_pair_targets_name_what_every_caption_says() -> None:
    """The text encoder's auxiliary target must be readable from any phrasing."""
    rng = random.Random(5)
    scenes = [sample_scene(rng) for _ in range(60)]
    targets = data.pair_targets(scenes)
    for scene, row in zip(scenes, targets, strict=True):
        named = [data.PAIRS[i] for i in row.nonzero().flatten().tolist()]
        assert len(named) == len(scene.objects)
        for _ in range(5):
            text = caption(scene, rng)
            assert all(f"{colour} {shape}" in text for colour, shape in named), text
