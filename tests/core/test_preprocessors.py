"""The model-free preprocessors: Canny's edges and line art by a difference of Gaussians."""

from __future__ import annotations

import numpy as np
import pytest
from PIL import Image, ImageDraw

from studio.core import preprocessors


def _square(size: int = 64) -> Image.Image:
    picture = Image.new("RGB", (size, size), (30, 60, 200))
    ImageDraw.Draw(picture).rectangle((16, 16, 47, 47), fill=(240, 220, 40))
    return picture


def test_canny_on_a_drawn_square_gives_its_edges() -> None:
    edges = np.asarray(preprocessors.canny(_square()).convert("L")) > 127
    found = np.argwhere(edges)
    assert found.size
    # every edge pixel lies on the square's outline (within a pixel), none inside or outside
    on_outline = (
        (np.abs(found[:, 0] - 16) <= 1)
        | (np.abs(found[:, 0] - 47) <= 1)
        | (np.abs(found[:, 1] - 16) <= 1)
        | (np.abs(found[:, 1] - 47) <= 1)
    )
    inside_square = (found >= 15).all(axis=1) & (found <= 48).all(axis=1)
    assert on_outline.all() and inside_square.all()
    # and the outline is closed: each of the four sides is found along most of its length
    for row in (slice(15, 18), slice(46, 49)):
        assert edges[row, 18:46].any(axis=0).mean() > 0.9
        assert edges[18:46, row].any(axis=1).mean() > 0.9
    # white lines on black, as canny ControlNets were trained on
    assert edges.mean() < 0.2


def test_lineart_finds_the_dark_strokes_of_a_drawing_white_on_black() -> None:
    drawing = Image.new("RGB", (64, 64), "white")
    ImageDraw.Draw(drawing).line((8, 50, 56, 14), fill="black", width=2)
    ImageDraw.Draw(drawing).ellipse((10, 10, 30, 30), outline=(90, 90, 90), width=1)
    lines = np.asarray(preprocessors.lineart(drawing).convert("L"), np.float32)
    ink = np.asarray(drawing.convert("L")) < 160
    assert lines[ink].mean() > 100  # the strokes are bright
    far = np.ones_like(ink)
    far[4:60, 4:60] = False  # the paper's border, away from every stroke
    assert lines[far].max() < 10  # the paper is black
    # the faint pencil circle comes out too, not only the bold ink
    pencil = np.asarray(drawing.convert("L")) == 90
    assert lines[pencil].mean() > 60


def test_run_fits_the_image_to_the_job_and_refuses_unknown_names() -> None:
    out = preprocessors.run("canny", _square(128), 64, 48)
    assert out.size == (64, 48) and out.mode == "RGB"
    same = preprocessors.run("none", _square(), 64, 64)
    assert np.array_equal(np.asarray(same), np.asarray(_square()))
    with pytest.raises(ValueError, match="Unknown preprocessor 'depth'"):
        preprocessors.run("depth", _square(), 64, 64)


def test_a_union_type_name_reads_back_as_the_first_type_written_under_it() -> None:
    """The names read back are the written names' table read backwards: a type added to
    UNION_TYPE_NAMES alone reads back too, and a group's name gives its first type."""
    from studio.core.preprocessors import UNION_TYPE_NAMES, UNION_TYPES_READ, union_types_read

    assert union_types_read({**UNION_TYPE_NAMES, "recolor": "Recolor"})["recolor"] == "recolor"
    assert union_types_read(UNION_TYPE_NAMES) == UNION_TYPES_READ
    assert UNION_TYPES_READ["hard edge"] == "canny"
    assert UNION_TYPES_READ["soft edge"] == "softedge"


@pytest.mark.parametrize("kind", list(preprocessors.UNION_TYPE_NAMES))
def test_every_union_type_written_is_restored_exactly(kind: str) -> None:
    from studio.core.request import Control
    from studio.core.restore import controls_of
    from studio.core.saving import control_field

    control = Control("xinsir/controlnet-union-sdxl-1.0", Image.new("RGB", (8, 8)))
    written = control_field(control, kind)
    assert controls_of({"ControlNet 0": written})[0]["control_type"] == kind
