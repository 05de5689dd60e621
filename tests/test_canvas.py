"""The image canvas: showing pictures and previews, zoom and pan, and painting the mask.

Strokes are driven by real mouse, wheel, key and tablet events on the viewport; the
expected pixels are computed from the canvas's own image→widget mapping at a known zoom.
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pytest
from PIL import Image, PngImagePlugin
from PySide6.QtCore import QEvent, QMimeData, QPoint, QPointF, Qt, QUrl
from PySide6.QtGui import (
    QColor,
    QDragEnterEvent,
    QDropEvent,
    QImage,
    QInputDevice,
    QPointingDevice,
    QTabletEvent,
    QWheelEvent,
)
from PySide6.QtWidgets import QApplication

from studio.core.imaging import ImageLoadError, open_image
from studio.core.mask_layer import MaskHistory, MaskLayer, stamp_segment
from studio.ui.canvas import HINT_COLOR, ImageCanvas

os.environ.setdefault("QT_QPA_PLATFORM", "offscreen")  # read when the QApplication starts
BAD_IMAGES = Path(__file__).resolve().parents[2] / "shared" / "interop" / "bad_images"
LEFT, MIDDLE = Qt.MouseButton.LeftButton, Qt.MouseButton.MiddleButton
CTRL, SHIFT = Qt.KeyboardModifier.ControlModifier, Qt.KeyboardModifier.ShiftModifier


# -- helpers ---------------------------------------------------------------------------


@pytest.fixture
def canvas(qtbot) -> ImageCanvas:
    widget = ImageCanvas()
    qtbot.addWidget(widget)
    widget.resize(400, 400)
    widget.show()
    qtbot.waitExposed(widget)
    return widget


@pytest.fixture
def painting(canvas: ImageCanvas) -> ImageCanvas:
    """A 100×100 black image at 200%, mask editing on, a 10-pixel brush."""
    canvas.set_image(Image.new("RGB", (100, 100)))
    canvas.set_mask_editing(True)
    canvas.set_brush_size(10)
    canvas.set_zoom(2.0)
    return canvas


def at(canvas: ImageCanvas, x: float, y: float) -> QPoint:
    """Viewport position of image point (x, y)."""
    return canvas.image_to_widget(x, y).toPoint()


def drag(qtbot, canvas: ImageCanvas, *points: tuple[float, float], button=LEFT) -> None:
    viewport = canvas.viewport()
    qtbot.mousePress(viewport, button, pos=at(canvas, *points[0]))
    for point in points[1:]:
        qtbot.mouseMove(viewport, at(canvas, *point))
    qtbot.mouseRelease(viewport, button, pos=at(canvas, *points[-1]))


def mask_array(canvas: ImageCanvas) -> np.ndarray:
    return np.asarray(canvas.mask())


def screen(canvas: ImageCanvas) -> QImage:
    return canvas.viewport().grab().toImage()


def color_at(canvas: ImageCanvas, x: float, y: float) -> tuple[int, int, int]:
    color = screen(canvas).pixelColor(at(canvas, x, y))
    return color.red(), color.green(), color.blue()


def counter(signal) -> list:
    calls: list = []
    signal.connect(lambda *args: calls.append(args))
    return calls


NO_MODIFIER = Qt.KeyboardModifier.NoModifier


def send_wheel(canvas: ImageCanvas, pos: QPoint, notches: float, modifiers=NO_MODIFIER) -> None:
    event = QWheelEvent(
        QPointF(pos),
        QPointF(canvas.viewport().mapToGlobal(pos)),
        QPoint(0, 0),
        QPoint(0, round(120 * notches)),
        Qt.MouseButton.NoButton,
        modifiers,
        Qt.ScrollPhase.NoScrollPhase,
        False,
    )
    QApplication.sendEvent(canvas.viewport(), event)


# -- showing pictures ------------------------------------------------------------------


def _hint_pixels(image: QImage) -> int:
    """Pixels of the hint's text colour in the middle band of the canvas."""
    hint = HINT_COLOR
    height = image.height()
    return sum(
        1
        for y in range(height * 2 // 5, height * 3 // 5)
        for x in range(0, image.width(), 2)
        if abs(image.pixelColor(x, y).red() - hint.red()) < 40
        and abs(image.pixelColor(x, y).green() - hint.green()) < 40
    )


def test_empty_canvas_shows_the_hint_and_has_no_image_and_no_mask(canvas: ImageCanvas) -> None:
    assert canvas.image() is None and canvas.mask() is None
    assert canvas.mask_is_empty()
    assert _hint_pixels(screen(canvas)) > 20  # "Open, paste or drop an image…" is painted
    canvas.set_image(Image.new("RGB", (30, 20), (10, 200, 30)))
    assert _hint_pixels(screen(canvas)) == 0  # and gone once there is a picture


def test_set_image_takes_pil_qimage_and_none(canvas: ImageCanvas) -> None:
    canvas.set_image(Image.new("RGB", (30, 20), (10, 200, 30)))
    assert canvas.image().size == (30, 20) and canvas.image().getpixel((5, 5)) == (10, 200, 30)
    qimage = QImage(8, 6, QImage.Format.Format_RGB32)
    qimage.fill(QColor(200, 20, 40))
    canvas.set_image(qimage)
    assert canvas.image().size == (8, 6) and canvas.image().getpixel((0, 0))[:3] == (200, 20, 40)
    canvas.set_image(None)
    assert canvas.image() is None and canvas.mask() is None


def test_zoomed_in_pixels_are_crisp_and_zoomed_out_pictures_smooth(canvas: ImageCanvas) -> None:
    canvas.set_image(Image.fromarray(np.array([[[0, 0, 0], [255, 255, 255]]], dtype=np.uint8)))
    canvas.set_zoom(64.0)
    assert color_at(canvas, 0.9, 0.5) == (0, 0, 0)  # nearest neighbour: no blend at the edge
    assert color_at(canvas, 1.1, 0.5) == (255, 255, 255)

    checker = (np.indices((200, 200)).sum(axis=0) % 2 * 255).astype(np.uint8)
    canvas.set_image(Image.fromarray(checker))
    canvas.set_zoom(0.3)  # a one-pixel checker must average to grey, with no moiré
    corner = at(canvas, 20, 20)
    region = screen(canvas).copy(corner.x(), corner.y(), 40, 40)
    values = np.array([region.pixelColor(x, y).red() for x in range(40) for y in range(40)])
    assert abs(values.mean() - 127.5) < 10 and values.std() < 10


def test_preview_fills_the_image_rectangle_then_set_image_replaces_it(canvas: ImageCanvas) -> None:
    canvas.set_image(Image.new("RGB", (64, 64), (128, 128, 128)))
    preview = np.zeros((16, 16, 3), dtype=np.uint8)
    preview[..., 0] = 255
    canvas.show_preview(preview)
    assert canvas.has_preview()
    for x, y in ((1, 1), (32, 32), (62, 62)):  # corners too: scaled to the whole image
        assert color_at(canvas, x, y) == (255, 0, 0)
    assert canvas.image().getpixel((0, 0)) == (128, 128, 128)

    canvas.set_image(Image.new("RGB", (64, 64), (0, 0, 255)))
    assert not canvas.has_preview()
    assert color_at(canvas, 32, 32) == (0, 0, 255)


def test_preview_without_image_uses_the_requested_size(canvas: ImageCanvas) -> None:
    canvas.show_preview(np.full((8, 8, 3), 200, dtype=np.uint8), size=(64, 64))
    assert color_at(canvas, 2, 2) == (200, 200, 200)
    assert color_at(canvas, 62, 62) == (200, 200, 200)
    zoom = canvas.zoom()
    canvas.show_preview(np.full((8, 8, 3), 50, dtype=np.uint8))  # the next step, same place
    assert canvas.zoom() == zoom and color_at(canvas, 62, 62) == (50, 50, 50)
    canvas.clear_preview()
    assert not canvas.has_preview() and canvas.image() is None
    with pytest.raises(ValueError):
        canvas.show_preview(np.zeros((8, 8), dtype=np.uint8))


# -- zoom and pan ----------------------------------------------------------------------


def test_zoom_keys_wheel_and_fit(qtbot, canvas: ImageCanvas) -> None:
    canvas.set_image(Image.new("RGB", (100, 50)))
    fit = canvas.zoom()
    assert fit == pytest.approx((400 - 8) / 100)
    zooms = counter(canvas.zoomChanged)
    qtbot.keyClick(canvas, Qt.Key.Key_Plus)
    assert canvas.zoom() == pytest.approx(fit * 1.25)
    qtbot.keyClick(canvas, Qt.Key.Key_Minus)
    qtbot.keyClick(canvas, Qt.Key.Key_1)
    assert canvas.zoom() == 1.0 and len(zooms) == 3

    canvas.set_zoom(8.0)  # larger than the view, so there is room to keep the anchor
    anchor = at(canvas, 40, 20)
    before = canvas.widget_to_image(anchor)
    send_wheel(canvas, anchor, 2)  # zooms in about the point under the pointer
    assert canvas.zoom() == pytest.approx(8 * 1.25**2)
    after = canvas.widget_to_image(anchor)
    assert abs(after.x() - before.x()) < 1 and abs(after.y() - before.y()) < 1

    qtbot.keyClick(canvas, Qt.Key.Key_F)
    assert canvas.zoom() == pytest.approx(fit)
    canvas.set_zoom(3.0)
    qtbot.mouseDClick(canvas.viewport(), LEFT, pos=QPoint(200, 200))
    assert canvas.zoom() == pytest.approx(fit)


def test_middle_drag_pans_without_painting(qtbot, painting: ImageCanvas) -> None:
    painting.set_zoom(8.0)
    scroll = painting.horizontalScrollBar().value()
    drag(qtbot, painting, (50, 50), (45, 50), button=MIDDLE)
    assert painting.horizontalScrollBar().value() == scroll + 40
    assert painting.mask_is_empty()


def test_space_drag_pans_without_painting(qtbot, painting: ImageCanvas) -> None:
    painting.set_zoom(8.0)
    scroll = painting.verticalScrollBar().value()
    qtbot.keyPress(painting, Qt.Key.Key_Space)
    drag(qtbot, painting, (50, 50), (50, 45))
    qtbot.keyRelease(painting, Qt.Key.Key_Space)
    assert painting.verticalScrollBar().value() == scroll + 40
    assert painting.mask_is_empty()


# -- painting the mask -----------------------------------------------------------------


def test_fast_brush_stroke_marks_a_gapless_band(qtbot, painting: ImageCanvas) -> None:
    changes = counter(painting.maskChanged)
    drag(qtbot, painting, (10.5, 50.5), (90.5, 50.5))  # one move event: 160 screen pixels
    mask = painting.mask()
    assert mask.mode == "L" and mask.size == (100, 100)
    m = np.asarray(mask)
    assert set(np.unique(m)) == {0, 255}
    assert (m[47:54, 10:91] == 255).all()  # the band, with no gap between the two events
    assert (m[:43] == 0).all() and (m[58:] == 0).all()  # brush radius 5 and no more
    assert (m[50, :3] == 0).all() and (m[50, 98:] == 0).all()
    assert m[50, 7] == 255 and m[50, 93] == 255  # round caps reach past the ends
    assert not painting.mask_is_empty() and len(changes) == 1  # one signal per stroke


def test_overlay_shows_the_mask_only_while_editing(qtbot, painting: ImageCanvas) -> None:
    drag(qtbot, painting, (40.5, 40.5), (60.5, 40.5))
    red, green, blue = color_at(painting, 50, 40)
    assert red > 80 and red > 2 * green and blue > green  # translucent magenta on black
    painting.set_mask_editing(False)
    assert color_at(painting, 50, 40) == (0, 0, 0)
    assert not painting.mask_is_empty()  # hidden, not lost


def test_brush_cursor_outlines_the_brush_at_the_current_zoom(qtbot, painting: ImageCanvas) -> None:
    painting.set_brush_size(40)  # radius 20 image pixels = 40 screen pixels at 200%
    qtbot.mouseMove(painting.viewport(), at(painting, 50, 50))
    image = screen(painting)
    centre = at(painting, 50, 50)
    assert image.pixelColor(centre + QPoint(40, 0)).lightness() > 100
    assert image.pixelColor(centre + QPoint(30, 0)).lightness() == 0
    assert image.pixelColor(centre).lightness() == 0


def test_eraser_removes_what_the_brush_painted(qtbot, painting: ImageCanvas) -> None:
    drag(qtbot, painting, (10.5, 50.5), (90.5, 50.5))
    qtbot.keyClick(painting, Qt.Key.Key_E)
    assert painting.tool == "eraser"
    drag(qtbot, painting, (50.5, 30.5), (50.5, 70.5))
    m = mask_array(painting)
    assert (m[40:61, 48:53] == 0).all() and (m[50, 10:40] == 255).all()
    qtbot.keyClick(painting, Qt.Key.Key_B)
    assert painting.tool == "brush"


def test_undo_and_redo_one_stroke_at_a_time(qtbot, painting: ImageCanvas) -> None:
    drag(qtbot, painting, (10.5, 20.5), (90.5, 20.5))
    first = mask_array(painting).copy()
    drag(qtbot, painting, (10.5, 70.5), (50.5, 70.5), (90.5, 70.5))  # two moves, one stroke
    both = mask_array(painting).copy()
    assert painting.can_undo() and not painting.can_redo()

    qtbot.keyClick(painting, Qt.Key.Key_Z, CTRL)
    assert (mask_array(painting) == first).all()
    qtbot.keyClick(painting, Qt.Key.Key_Z, CTRL)
    assert painting.mask_is_empty() and not painting.can_undo()
    qtbot.keyClick(painting, Qt.Key.Key_Z, CTRL | SHIFT)
    assert (mask_array(painting) == first).all()
    qtbot.keyClick(painting, Qt.Key.Key_Y, CTRL)
    assert (mask_array(painting) == both).all() and not painting.can_redo()


def test_invert_and_clear_are_undoable(painting: ImageCanvas) -> None:
    changes = counter(painting.maskChanged)
    painting.invert_mask()
    assert (mask_array(painting) == 255).all()
    painting.clear_mask()
    assert painting.mask_is_empty()
    painting.clear_mask()  # nothing to clear: no step, no signal
    painting.undo()
    assert (mask_array(painting) == 255).all() and len(changes) == 3


def test_escape_cancels_the_stroke_in_progress(qtbot, painting: ImageCanvas) -> None:
    viewport = painting.viewport()
    qtbot.mousePress(viewport, LEFT, pos=at(painting, 20, 20))
    qtbot.mouseMove(viewport, at(painting, 60, 20))
    assert not painting.mask_is_empty()
    qtbot.keyClick(painting, Qt.Key.Key_Escape)
    qtbot.mouseRelease(viewport, LEFT, pos=at(painting, 60, 20))
    assert painting.mask_is_empty() and not painting.can_undo()


def test_painting_is_ignored_when_mask_editing_is_off(qtbot, painting: ImageCanvas) -> None:
    painting.set_mask_editing(False)
    changes = counter(painting.maskChanged)
    drag(qtbot, painting, (10.5, 50.5), (90.5, 50.5))
    assert painting.mask_is_empty() and not changes
    qtbot.keyClick(painting, Qt.Key.Key_Z, CTRL)  # not claimed either


def test_brush_size_keys_wheel_and_limits(qtbot, painting: ImageCanvas) -> None:
    painting.set_brush_size(32)
    sizes = counter(painting.brushSizeChanged)
    qtbot.keyClick(painting, Qt.Key.Key_BracketRight)
    assert painting.brush_size == 35
    qtbot.keyClick(painting, Qt.Key.Key_BracketLeft)
    assert painting.brush_size == 32
    send_wheel(painting, QPoint(200, 200), 1, SHIFT)
    assert painting.brush_size == 35 and painting.zoom() == 2.0
    assert sizes == [(35,), (32,), (35,)]

    painting.brush_size = 10_000
    assert painting.brush_size == 100  # the picture's shorter side
    painting.set_brush_size(1)
    qtbot.keyClick(painting, Qt.Key.Key_BracketLeft)
    assert painting.brush_size == 1
    qtbot.keyClick(painting, Qt.Key.Key_BracketRight)
    assert painting.brush_size == 2  # small brushes still grow


@pytest.fixture
def pens(qapp) -> dict[str, QPointingDevice]:
    """A stylus's tip and its eraser end."""
    caps = QInputDevice.Capability.Position | QInputDevice.Capability.Pressure
    return {
        name: QPointingDevice("pen", 4242, QInputDevice.DeviceType.Stylus, kind, caps, 1, 3)
        for name, kind in (
            ("tip", QPointingDevice.PointerType.Pen),
            ("eraser", QPointingDevice.PointerType.Eraser),
        )
    }


def pen_stroke(canvas, pen: QPointingDevice, y: float, pressure: float) -> None:
    """Press at x=20.5, one move to x=80.5, release: as a tablet driver reports a stroke."""
    for kind, x in (
        (QEvent.Type.TabletPress, 20.5),
        (QEvent.Type.TabletMove, 80.5),
        (QEvent.Type.TabletRelease, 80.5),
    ):
        pos = at(canvas, x, y)
        buttons = Qt.MouseButton.NoButton if kind == QEvent.Type.TabletRelease else LEFT
        event = QTabletEvent(
            kind,
            pen,
            QPointF(pos),
            QPointF(canvas.viewport().mapToGlobal(pos)),
            pressure,
            0,
            0,
            0,
            0,
            0,
            NO_MODIFIER,
            LEFT,
            buttons,
        )
        QApplication.sendEvent(canvas.viewport(), event)
        assert event.isAccepted()  # else Qt would also replay it as a mouse event


def test_pen_pressure_scales_the_brush(painting: ImageCanvas, pens) -> None:
    painting.set_brush_size(40)
    pen_stroke(painting, pens["tip"], 25.5, 1.0)
    pen_stroke(painting, pens["tip"], 75.5, 0.25)
    column = mask_array(painting)[:, 50] == 255
    heavy, light = column[:50].sum(), column[50:].sum()
    assert 39 <= heavy <= 41 and 9 <= light <= 11
    pen_stroke(painting, pens["eraser"], 75.5, 1.0)  # the pen's eraser end erases
    column = mask_array(painting)[:, 50] == 255
    assert column[50:].sum() == 0 and column[:50].sum() == heavy
    assert painting.tool == "brush"


def test_a_new_image_size_resets_the_mask_the_same_size_keeps_it(
    qtbot, painting: ImageCanvas
) -> None:
    drag(qtbot, painting, (10.5, 50.5), (90.5, 50.5))
    painted = mask_array(painting).copy()
    painting.set_image(Image.new("RGB", (100, 100), (9, 9, 9)))  # e.g. the inpaint result
    assert (mask_array(painting) == painted).all() and painting.can_undo()

    changes = counter(painting.maskChanged)
    painting.set_image(Image.new("RGB", (64, 48)))
    assert painting.mask().size == (64, 48) and painting.mask_is_empty()
    assert not painting.can_undo() and changes


def test_set_mask_restores_a_mask(painting: ImageCanvas) -> None:
    restored = Image.new("L", (100, 100))
    restored.paste(200, (10, 10, 30, 30))
    painting.set_mask(restored)
    m = mask_array(painting)
    assert (m[10:30, 10:30] == 255).all() and m.sum() == 400 * 255
    painting.set_mask(Image.new("L", (50, 50), 255))  # another size is stretched to fit
    assert (mask_array(painting) == 255).all()
    painting.undo()
    assert (mask_array(painting) == m).all()
    painting.set_image(None)
    with pytest.raises(ValueError):
        painting.set_mask(restored)


# -- drops and paste -------------------------------------------------------------------


def drop(canvas: ImageCanvas, mime: QMimeData) -> bool:
    enter = QDragEnterEvent(QPoint(10, 10), Qt.DropAction.CopyAction, mime, LEFT, NO_MODIFIER)
    enter.setAccepted(False)
    QApplication.sendEvent(canvas.viewport(), enter)
    event = QDropEvent(QPointF(10, 10), Qt.DropAction.CopyAction, mime, LEFT, NO_MODIFIER)
    event.setAccepted(False)
    QApplication.sendEvent(canvas.viewport(), event)
    assert event.isAccepted() == enter.isAccepted()
    return event.isAccepted()


def test_dropping_an_image_file_emits_its_path(canvas: ImageCanvas, tmp_path: Path) -> None:
    path = tmp_path / "picture.webp"
    Image.new("RGB", (4, 4)).save(path)
    dropped = counter(canvas.imageDropped)
    mime = QMimeData()
    mime.setUrls([QUrl.fromLocalFile(str(tmp_path / "notes.txt")), QUrl.fromLocalFile(str(path))])
    assert drop(canvas, mime)
    assert dropped == [(str(path),)]

    # a file that is no image is taken too, to say why it does not open (not a refusing
    # cursor and nothing else)
    refused = counter(canvas.dropRefused)
    text_only = QMimeData()
    text_only.setUrls([QUrl.fromLocalFile(str(tmp_path / "notes.txt"))])
    assert drop(canvas, text_only) and len(dropped) == 1
    assert refused == [
        ("'notes.txt' is not an image the studio opens (PNG, JPG, WEBP, BMP, GIF, TIF).",)
    ]
    assert not drop(canvas, QMimeData())  # nothing to take


def test_dropping_image_data_emits_the_image(canvas: ImageCanvas) -> None:
    pasted = counter(canvas.imagePasted)
    picture = QImage(5, 3, QImage.Format.Format_RGB32)
    picture.fill(QColor(1, 2, 3))
    mime = QMimeData()
    mime.setImageData(picture)
    assert drop(canvas, mime)
    assert pasted[0][0].size() == picture.size()


# -- loading files ---------------------------------------------------------------------


def test_open_image_reads_pictures_with_their_metadata(tmp_path: Path) -> None:
    info = PngImagePlugin.PngInfo()
    info.add_text("parameters", "a red circle\nSteps: 20")
    Image.new("RGBA", (6, 4), (1, 2, 3, 4)).save(tmp_path / "good.png", pnginfo=info)
    image = open_image(tmp_path / "good.png")
    assert image.size == (6, 4) and image.getpixel((0, 0)) == (1, 2, 3, 4)
    assert image.info["parameters"].startswith("a red circle")


def test_open_image_refuses_broken_files_with_one_sentence(tmp_path: Path) -> None:
    Image.new("RGB", (64, 64), (200, 10, 10)).save(tmp_path / "whole.png")
    whole = (tmp_path / "whole.png").read_bytes()
    files = {
        "empty.png": b"",
        "truncated.png": whole[: len(whole) // 2],
        "notes.jpg": b"these are not pixels",
    }
    for name, data in files.items():
        (tmp_path / name).write_bytes(data)
    for name in [*files, "missing.png"]:
        with pytest.raises(ImageLoadError, match=name) as error:
            open_image(tmp_path / name)
        message = str(error.value)
        assert message.endswith(".") and "\n" not in message


def test_open_image_on_the_shared_bad_images() -> None:
    if not BAD_IMAGES.is_dir():
        pytest.skip("../shared/interop/bad_images is not here")
    for path in sorted(BAD_IMAGES.iterdir()):
        try:
            image = open_image(path)
        except ImageLoadError as error:
            assert path.name in str(error)
        else:  # tiny but valid pictures (1×1 pixel) are still pictures
            assert image.width > 0 and image.height > 0
    with pytest.raises(ImageLoadError, match="empty"):
        open_image(BAD_IMAGES / "empty_file.png")


# -- the mask model, without Qt --------------------------------------------------------


def test_stamp_segment_draws_round_capped_capsules() -> None:
    mask = np.zeros((20, 40), dtype=np.uint8)
    box = stamp_segment(mask, (5.0, 10.0, 3.0), (35.0, 10.0, 3.0), 255)
    assert box == (2, 7, 39, 14)
    assert (mask[10, 2:38] == 255).all() and mask[10, 1] == 0 and mask[10, 38] == 0
    assert mask[7, 20] == 255 and mask[6, 20] == 0 and mask[7, 2] == 0  # capped, not square
    assert stamp_segment(mask, (-50.0, -50.0, 3.0), (-40.0, -40.0, 3.0), 255) is None

    dot = np.zeros((4, 4), dtype=np.uint8)
    stamp_segment(dot, (2.0, 2.0, 0.0), (2.0, 2.0, 0.0), 255)  # a point on a pixel corner
    assert dot.sum() > 0


def test_history_keeps_the_last_fifty_strokes() -> None:
    layer = MaskLayer(10, 10)
    for i in range(60):
        layer.begin_stroke(erase=i % 2 == 1)
        layer.stroke_to(5, 5, 2)
        layer.end_stroke()
    undone = 0
    while layer.undo() is not None:
        undone += 1
    assert undone == 50


def test_history_has_a_byte_budget() -> None:
    layer = MaskLayer(100, 100)
    layer.history = MaskHistory(limit=50, max_bytes=3 * 2 * 100 * 100)
    for _ in range(5):
        layer.invert()
    assert len(layer.history) == 3


def test_mask_layer_hands_out_copies_and_checks_shapes() -> None:
    layer = MaskLayer(8, 8)
    image = layer.to_image()
    layer.invert()
    assert image.getextrema() == (0, 0)  # the handed-out mask does not follow later strokes
    with pytest.raises(ValueError, match="8×8"):
        layer.replace(np.zeros((4, 4), dtype=np.uint8))


def test_the_brush_is_sized_for_the_picture(qtbot, canvas: ImageCanvas) -> None:
    from studio.ui.panels.mask_bar import MaskBar

    bar = MaskBar(canvas)
    qtbot.addWidget(bar)
    canvas.set_image(Image.new("RGB", (64, 64)))
    # an eighth of the shorter side, not half the picture
    assert canvas.brush_size == 8 and canvas.brush_range() == (1, 64)
    assert (bar.brush_size.minimum(), bar.brush_size.maximum(), bar.brush_size.value()) == (
        1,
        64,
        8,
    )
    canvas.set_image(Image.new("RGB", (768, 512)))
    assert canvas.brush_size == 64 and bar.brush_size.maximum() == 512
    bar.brush_size.setValue(128)  # a quarter of the shorter side
    canvas.set_image(Image.new("RGB", (768, 512)))  # same size: the artist's brush stays
    assert canvas.brush_size == 128
    canvas.set_image(Image.new("RGB", (64, 96)))  # smaller picture: the same share of it
    assert canvas.brush_size == 16 and bar.brush_size.value() == 16
    canvas.set_image(Image.new("RGB", (8, 8)))
    canvas.set_image(Image.new("RGB", (64, 96)))
    assert canvas.brush_size == 16  # a tiny picture on the way does not shrink it for good


def test_the_brush_circle_matches_the_brush_at_any_zoom(qtbot, painting: ImageCanvas) -> None:
    painting.set_brush_size(20)
    for zoom in (0.5, 3.0):
        painting.set_zoom(zoom)
        qtbot.mouseMove(painting.viewport(), QPoint(1, 1))  # a move Qt cannot skip
        qtbot.mouseMove(painting.viewport(), at(painting, 50, 50))
        image = screen(painting)
        centre = at(painting, 50, 50)
        ring = round(10 * zoom)  # radius 10 image pixels on screen
        lit = [image.pixelColor(centre + QPoint(ring + d, 0)).lightness() for d in (-1, 0, 1)]
        assert max(lit) > 100, (zoom, lit)
        inside = image.pixelColor(centre + QPoint(ring // 2, 0)).lightness()
        assert inside == 0, zoom


def test_the_mask_can_be_hidden_and_tinted_and_still_applies(qtbot, painting: ImageCanvas) -> None:
    drag(qtbot, painting, (10.5, 50.5), (90.5, 50.5))
    tinted = color_at(painting, 50, 50)
    assert tinted[0] > 80
    shown = counter(painting.maskShownChanged)
    qtbot.keyClick(painting, Qt.Key.Key_M)
    assert color_at(painting, 50, 50) == (0, 0, 0) and shown == [(False,)]
    assert np.asarray(painting.mask())[50, 50] == 255  # hidden, still the mask
    drag(qtbot, painting, (50.5, 20.5), (50.5, 30.5))  # painting shows it again
    assert painting.mask_shown() and color_at(painting, 50, 50) == tinted
    painting.set_mask_opacity(0.9)
    assert color_at(painting, 50, 50)[0] > tinted[0]
    painting.set_mask_opacity(0.0)
    assert color_at(painting, 50, 50) == (0, 0, 0)


def test_the_mask_bar_shows_and_sets_the_mask_visibility_and_opacity(
    qtbot, painting: ImageCanvas
) -> None:
    from studio.ui.panels.mask_bar import MaskBar

    bar = MaskBar(painting)
    qtbot.addWidget(bar)
    assert bar.show_button.isChecked()
    bar.show_button.click()
    assert not painting.mask_shown()
    painting.set_mask_shown(True)
    assert bar.show_button.isChecked()
    bar.opacity.setValue(20)
    assert painting.mask_opacity() == pytest.approx(0.2)
