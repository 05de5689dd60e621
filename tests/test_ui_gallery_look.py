"""What the gallery looks like: every cell the same square with the picture letterboxed
in it, a selection that stands out in both themes (also after switching theme while the
window is open, when selecting and "Send to" keep working), and no empty gap above the
parameters of the selected image."""

from __future__ import annotations

import contextlib
import os
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from PIL import Image
from PySide6.QtCore import QRect
from PySide6.QtGui import QColor, QImage, QPalette
from PySide6.QtWidgets import QApplication

from studio.core.request import GenerationRequest, Mode
from studio.core.saving import save_image
from studio.ui.gallery import THUMB_SIZE, GalleryPanel
from studio.ui.theme import apply_theme
from studio.ui.thumbnail_delegate import contrast, selection_colour

# picture size -> colour; each a different shape
PICTURES = {
    (120, 40): (220, 40, 40),  # wide
    (30, 90): (40, 200, 60),  # tall
    (64, 64): (40, 60, 220),  # square and small
    (8, 8): (230, 210, 30),  # tiny
    (400, 100): (200, 40, 200),  # large and very wide
}


def _pictures(folder: Path) -> list[Path]:
    """The pictures of PICTURES, the first the newest (so the first row)."""
    folder.mkdir(parents=True, exist_ok=True)
    paths = []
    for number, (size, colour) in enumerate(PICTURES.items()):
        path = folder / f"picture-{number}.png"
        Image.new("RGB", size, colour).save(path)
        os.utime(path, (time.time() - number,) * 2)
        paths.append(path)
    return paths


@contextlib.contextmanager
def _look_restored() -> Iterator[QApplication]:
    """Themes applied inside are undone after: later tests see the look they had."""
    app = QApplication.instance()
    assert isinstance(app, QApplication)
    style, palette, sheet = app.style().name(), QPalette(app.palette()), app.styleSheet()
    try:
        yield app
    finally:
        app.setStyle(style)
        app.setPalette(palette)
        app.setStyleSheet(sheet)


@pytest.fixture
def panel(qtbot, tmp_path):  # noqa: ANN001, ANN201
    paths = _pictures(tmp_path / "outputs")
    panel = GalleryPanel(tmp_path / "outputs", thumbnail_cache=tmp_path / "thumbnails")
    qtbot.addWidget(panel)
    panel.resize(340, 560)
    panel.show()
    qtbot.waitExposed(panel)
    qtbot.waitUntil(lambda: not panel.model.is_listing(), timeout=5000)
    qtbot.waitUntil(lambda: all(str(p) in panel.model.cache for p in paths), timeout=5000)
    panel.paths = paths  # type: ignore[attr-defined]
    yield panel
    panel.shutdown()


def _box(image: QImage, rect: QRect, keep) -> QRect:  # noqa: ANN001
    """The bounding box, within rect, of the pixels for which keep(colour) holds."""
    xs, ys = [], []
    for y in range(rect.top(), rect.bottom() + 1):
        for x in range(rect.left(), rect.right() + 1):
            if keep(image.pixelColor(x, y)):
                xs.append(x)
                ys.append(y)
    if not xs:
        return QRect()
    return QRect(min(xs), min(ys), max(xs) - min(xs) + 1, max(ys) - min(ys) + 1)


def _near(a: QColor, b: tuple[int, int, int], tolerance: int = 40) -> bool:
    return max(abs(a.red() - b[0]), abs(a.green() - b[1]), abs(a.blue() - b[2])) <= tolerance


def _mat_left(cell: QRect) -> int:
    """The first column of a cell's square (the frame is the three columns before it)."""
    return cell.left() + (cell.width() - THUMB_SIZE) // 2


def _cells(panel: GalleryPanel) -> list[QRect]:
    return [panel.view.visualRect(panel.model.index(row)) for row in range(len(PICTURES))]


def test_every_cell_is_the_same_square_with_the_picture_letterboxed(panel, tmp_path):  # noqa: ANN001
    shot = panel.view.viewport().grab().toImage()
    shot.save(str(tmp_path / "cells.png"))
    mats = []
    for rect, (size, colour) in zip(_cells(panel), PICTURES.items(), strict=True):
        background = shot.pixelColor(rect.left(), rect.top())
        mat = _box(shot, rect, lambda c, b=background: c.rgb() != b.rgb())
        mats.append(mat.size())
        picture = _box(shot, rect, lambda c, want=colour: _near(c, want))
        # the picture fills the square along its longer side, centred, its shape kept
        longer = max(picture.width(), picture.height())
        assert longer == THUMB_SIZE, (size, picture)
        assert abs(picture.width() / picture.height() - size[0] / size[1]) < 0.12, (size, picture)
        assert abs(picture.center().x() - mat.center().x()) <= 1
        assert abs(picture.center().y() - mat.center().y()) <= 1
    assert set(mats) == {QRect(0, 0, THUMB_SIZE, THUMB_SIZE).size()}, mats


@pytest.mark.parametrize("theme", ["dark", "light"])
def test_the_selection_stands_out_in_both_themes(qtbot, panel, theme, tmp_path):  # noqa: ANN001
    with _look_restored() as app:
        apply_theme(app, theme)
        panel.select(panel.paths[2])  # the square picture: only the frame shows around it
        qtbot.wait(20)
        for focused in (True, False):  # as visible when the gallery has no focus
            if focused:
                panel.view.setFocus()
            else:
                panel.view.clearFocus()
            shot = panel.view.viewport().grab().toImage()
            shot.save(str(tmp_path / f"selection-{theme}-{focused}.png"))
            selected, other = _cells(panel)[2], _cells(panel)[1]
            background = panel.view.palette().color(QPalette.ColorRole.Base)
            mat_left = _mat_left(selected)
            frame = shot.pixelColor(mat_left - 2, selected.center().y())
            assert shot.pixelColor(selected.left(), selected.center().y()) == background
            assert frame == selection_colour(panel.view.palette())
            assert contrast(frame, background) >= 3.0, (theme, frame.name(), background.name())
            # a light line inside the frame parts it from a picture of the same blue
            ring = shot.pixelColor(mat_left, selected.center().y())
            picture = shot.pixelColor(mat_left + 3, selected.center().y())
            assert contrast(ring, frame) >= 3.0 and contrast(ring, picture) >= 3.0
            # an unselected cell has no frame
            assert shot.pixelColor(_mat_left(other) - 2, other.center().y()) == background


def test_no_gap_above_the_parameters(qtbot, panel):  # noqa: ANN001
    params = panel.params
    # nothing selected: the parameters box is at the top of its pane
    assert not params.preview.isVisible() and params.text.geometry().top() == 0
    panel.select(panel.paths[0])  # 120×40: a wide preview
    qtbot.wait(20)
    pixmap = params.preview.pixmap()
    assert params.preview.geometry().top() == 0
    assert params.preview.height() == pixmap.height() == round(pixmap.width() * 40 / 120)
    assert params.preview.picture_rect().height() == params.preview.height()  # no band
    spacing = params.layout().spacing()
    assert params.title.geometry().top() - params.preview.geometry().bottom() - 1 == spacing
    assert params.text.geometry().top() - params.title.geometry().bottom() - 1 == spacing


def _saved(folder: Path, count: int) -> list[Path]:
    paths = []
    for number in range(count):
        request = GenerationRequest(prompt=f"picture {number}", steps=5, width=48, height=32)
        image = Image.new("RGB", (48, 32), (number * 80, 90, 140))
        path = save_image(image, request, 10 + number, folder, stem=f"image-{number}")
        os.utime(path, (time.time() - 100 + number,) * 2)
        paths.append(path)
    return paths


def test_switching_theme_back_and_forth_keeps_selection_and_send_to(  # noqa: ANN001
    qtbot, make_window, out_dir, tmp_path
):
    paths = _saved(out_dir, 3)
    with _look_restored():
        window = make_window()
        gallery = window.gallery
        qtbot.waitUntil(lambda: not gallery.model.is_listing(), timeout=5000)
        targets = [("img2img", Mode.IMAGE_TO_IMAGE), ("upscale", Mode.UPSCALE)]
        targets += [("inpaint", Mode.INPAINT), ("img2img", Mode.IMAGE_TO_IMAGE)]
        for number, theme in enumerate(("light", "dark", "light", "dark")):
            window.set_theme(theme)
            window.set_mode(Mode.TEXT_TO_IMAGE)
            path = paths[number % len(paths)]
            gallery.select(path)
            assert gallery.selected_path() == path
            qtbot.waitUntil(lambda p=path: str(p) in gallery.model.cache, timeout=5000)
            view = gallery.view
            cell = view.visualRect(gallery.model.index_of(path))
            shot = view.viewport().grab().toImage()
            shot.save(str(tmp_path / f"switch-{number}-{theme}.png"))
            frame = shot.pixelColor(_mat_left(cell) - 2, cell.center().y())
            background = view.palette().color(QPalette.ColorRole.Base)
            assert frame == selection_colour(view.palette()), theme
            assert contrast(frame, background) >= 3.0, theme
            key, mode = targets[number]
            assert gallery.buttons[key].isEnabled()
            gallery.buttons[key].click()
            assert window.mode() is mode, (theme, key)
            assert window.canvas.image().size == (48, 32)
