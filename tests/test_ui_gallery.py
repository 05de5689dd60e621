"""The gallery: it lists the output folder (so it survives a restart), shows parameters,
and sends, restores or deletes images; the timeline scrubs the last job's steps."""

from __future__ import annotations

import os
import time
from pathlib import Path

from PIL import Image
from PySide6.QtCore import Qt

from studio.core.request import GenerationRequest, Mode
from studio.core.saving import save_image
from studio.ui.gallery import THUMB_SIZE
from studio.ui.thumbnail_delegate import selection_colour


def _fill(folder: Path, count: int) -> list[Path]:
    """count saved images, oldest first, with distinct modification times."""
    paths = []
    for index in range(count):
        request = GenerationRequest(prompt=f"picture {index}", steps=5 + index, width=40, height=24)
        image = Image.new("RGB", (40, 24), (index * 60, 80, 120))
        path = save_image(image, request, 100 + index, folder, stem=f"image-{index}")
        stamp = time.time() - 100 + index
        os.utime(path, (stamp, stamp))
        paths.append(path)
    return paths


def _listed(qtbot, window):  # noqa: ANN001, ANN202
    """The window's gallery once its folder is read (off the UI thread)."""
    gallery = window.gallery
    qtbot.waitUntil(lambda: not gallery.model.is_listing(), timeout=5000)
    return gallery


def test_the_gallery_lists_the_output_folder_newest_first(qtbot, make_window, out_dir):  # noqa: ANN001
    paths = _fill(out_dir, 3)
    (out_dir / ".partial-123.png").write_bytes(b"half")  # a save in progress is not listed
    window = make_window()
    gallery = _listed(qtbot, window)
    assert gallery.model.paths() == paths[::-1]
    qtbot.waitUntil(lambda: all(str(p) in gallery.model.cache for p in paths), timeout=5000)
    assert "3 images" in gallery.count_label.text()


def test_selecting_shows_the_image_and_its_parameters(qtbot, make_window, out_dir):  # noqa: ANN001
    paths = _fill(out_dir, 2)
    window = make_window()
    _listed(qtbot, window).select(paths[0])
    assert "picture 0" in window.gallery.params.text.toPlainText()
    assert "Steps: 5" in window.gallery.params.text.toPlainText()
    assert window.canvas.image().size == (40, 24)  # Text→Image: the canvas is a viewer
    assert window.gallery.buttons["restore"].isEnabled()
    window.gallery.buttons["restore"].click()
    assert window.prompt_panel.prompt() == "picture 0"
    assert window.guidance.seed.value() == 100


def test_selecting_a_file_that_is_gone_does_not_show_another_picture(qtbot, make_window, out_dir):  # noqa: ANN001
    """Deleted outside the studio, or unreadable: the viewer canvas empties (the panel says
    why) instead of keeping the last picture as if it were this one."""
    paths = _fill(out_dir, 2)
    window = make_window()
    gallery = _listed(qtbot, window)
    gallery.select(paths[1])
    assert window.canvas.image() is not None
    paths[0].unlink()
    gallery.select(paths[0])
    assert window.canvas.image() is None and window.timeline.frame_count() == 0
    qtbot.waitUntil(lambda: "does not exist" in gallery.params.text.toPlainText(), timeout=5000)


def test_the_selected_thumbnail_is_framed_and_nothing_else_lights_up(  # noqa: ANN001
    qtbot, make_window, out_dir
):
    paths = _fill(out_dir, 1)
    window = make_window()
    gallery = _listed(qtbot, window)
    qtbot.waitUntil(lambda: str(paths[0]) in gallery.model.cache, timeout=5000)
    gallery.select(paths[0])
    view = gallery.view
    cell = view.visualRect(gallery.model.index(0, 0))
    shot = view.viewport().grab(cell).toImage()
    highlight = selection_colour(view.palette()).rgb()
    lit = {
        (x, y) for y in range(shot.height()) for x in range(shot.width())
        if shot.pixelColor(x, y).rgb() == highlight
    }  # fmt: skip
    # a frame three pixels wide just around the cell's square, centred in its cell, and
    # nothing else lit (Qt's own delegate lit a bar under the picture)
    xs, ys = [x for x, _ in lit], [y for _, y in lit]
    width, height = max(xs) - min(xs) + 1, max(ys) - min(ys) + 1
    assert (width, height) == (THUMB_SIZE + 6, THUMB_SIZE + 6)
    assert abs((min(xs) + max(xs)) / 2 - cell.width() / 2) <= 2
    assert abs((min(ys) + max(ys)) / 2 - cell.height() / 2) <= 2
    assert len(lit) <= 2 * (width + height) * 3  # a frame, not a filled block


def test_send_to_inpaint_sets_the_canvas_mode_and_size(qtbot, make_window, out_dir):  # noqa: ANN001
    paths = _fill(out_dir, 1)
    window = make_window()
    _listed(qtbot, window).select(paths[0])
    window.gallery.buttons["inpaint"].click()
    assert window.mode() is Mode.INPAINT
    assert window.canvas.image().size == (40, 24)
    assert window.canvas.mask_editing() and window.mask_bar.isVisible()
    assert window.guidance.size() == (80, 48)  # the image's shape at the model's 64×64 area
    # Selecting another image now does not replace the input being painted on.
    other = _fill(out_dir / "more", 1)[0]
    window.gallery.add([other])
    assert window.canvas.image().size == (40, 24)


def test_send_to_a_mode_the_model_has_not_says_so_and_changes_nothing(  # noqa: ANN001
    qtbot, make_window, out_dir
):
    paths = _fill(out_dir, 1)
    window = make_window()
    _listed(qtbot, window).select(paths[0])
    window.gallery.sendRequested.emit(paths[0], Mode.EDIT)  # the context menu's Send to Edit
    assert window.mode() is Mode.TEXT_TO_IMAGE
    assert window.status.text() == "SD 1.x models have no Edit mode."


def test_an_upscale_is_guided_by_the_prompt_the_picture_carries(  # noqa: ANN001
    qtbot, make_window, out_dir
):
    """As `studio upscale` is: the same file upscales alike from the window and the command
    line. Its LoRA tags are the generator's, left out; a prompt written is kept."""
    request = GenerationRequest(prompt="a red circle <lora:ink:0.5>", width=40, height=24)
    path = save_image(Image.new("RGB", (40, 24)), request, 1, out_dir, stem="carried")
    window = make_window()
    window.prompt_panel.set_prompts("", "")
    _listed(qtbot, window).select(path)
    window.gallery.buttons["upscale"].click()
    assert window.mode() is Mode.UPSCALE and window.draft["prompt"] == "a red circle"
    assert window.status.text() == (
        "carried.png is the input of Upscale (the prompt it carries guides the upscale)."
    )
    window.set_mode(Mode.TEXT_TO_IMAGE)
    window.prompt_panel.set_prompts("a blue square", "")
    window.intake.open_file(path)  # opened, then "Upscale" on the banner
    window.banner.buttons[window.banner.actions_shown().index("Upscale")].click()
    assert window.mode() is Mode.UPSCALE and window.draft["prompt"] == "a blue square"


def test_delete_moves_the_file_to_the_trash(qtbot, make_window, out_dir, tmp_path):  # noqa: ANN001
    paths = _fill(out_dir, 2)
    window = make_window()
    _listed(qtbot, window).select(paths[1])
    window.gallery.buttons["delete"].click()
    assert not paths[1].exists() and paths[0].exists()
    assert window.gallery.model.paths() == [paths[0]]
    trash = Path(os.environ["XDG_DATA_HOME"]) / "Trash" / "files"
    assert (trash / paths[1].name).is_file()
    assert window.gallery.selected_path() == paths[0]


def test_a_finished_job_lands_in_the_gallery_and_the_timeline(  # noqa: ANN001
    qtbot, make_window, out_dir, ui_models, shared_engine_factory
):
    _fill(out_dir, 1)
    window = make_window(engine_factory=shared_engine_factory)
    window.draft.edit({"model": ui_models.generator})
    window.prompt_panel.set_prompts("a red circle", "")
    size = ui_models.size
    window.draft.edit({"steps": 3, "width": size, "height": size})
    window.start_engine(preload=False)
    with qtbot.waitSignal(window.controller.jobFinished, timeout=60000) as blocker:
        qtbot.mouseClick(window.generate_button, Qt.MouseButton.LeftButton)
    outcome = blocker.args[1]
    assert window.gallery.model.paths()[0] == outcome.paths[0]
    assert window.gallery.selected_path() == outcome.paths[0]
    timeline = window.timeline
    assert timeline.frame_count() == 4 and timeline.current() == 3
    timeline.select(0)
    assert window.canvas.has_preview() and timeline.label.text() == "Step 1/3 · continues at once"
    timeline.select(3)
    assert not window.canvas.has_preview() and timeline.label.text() == "Result"


def test_a_file_made_while_the_folder_is_read_is_not_missed(  # noqa: ANN001
    qtbot, make_window, out_dir, monkeypatch
):
    """The window came back (a sync) while an earlier reading of the folder was under way
    (the window's own activation as it showed, in CI): that reading predates the change and
    the second was dropped, so the new file never showed. It is read again once done."""
    import threading

    from studio.ui import gallery_listing

    paths = _fill(out_dir, 2)
    window = make_window()
    gallery = _listed(qtbot, window)
    read, carry_on = threading.Event(), threading.Event()
    scan = gallery_listing.scan_images

    def stale_scan(folder, stop):  # noqa: ANN001, ANN202 - read, then held back
        found = scan(folder, stop)
        read.set()
        carry_on.wait(5)
        return found

    monkeypatch.setattr(gallery_listing, "scan_images", stale_scan)
    gallery.sync()  # (waits for a reading the window's own activation may have started)
    qtbot.waitUntil(read.is_set, timeout=5000)  # the folder is read; its answer on its way
    monkeypatch.setattr(gallery_listing, "scan_images", scan)
    request = GenerationRequest(prompt="made elsewhere", width=40, height=24)
    made = save_image(Image.new("RGB", (40, 24), "red"), request, 9, out_dir, stem="cli")
    gallery.sync()  # the window is active again
    carry_on.set()
    qtbot.waitUntil(lambda: gallery.model.paths() == [made, paths[1], paths[0]], timeout=5000)


def test_the_gallery_follows_files_added_and_removed_outside_the_studio(
    qtbot, make_window, out_dir, monkeypatch
):  # noqa: ANN001
    """Made on the command line or deleted in a file manager while the window is open: when
    the window is active again the gallery shows the folder as it is, keeping the rows and
    the selection of the images still there (helper-34's find: it never changed)."""
    from PySide6.QtCore import QEvent
    from PySide6.QtWidgets import QApplication

    paths = _fill(out_dir, 3)
    window = make_window()
    gallery = _listed(qtbot, window)
    gallery.select(paths[1])
    paths[0].unlink()
    request = GenerationRequest(prompt="made elsewhere", width=40, height=24)
    made = save_image(Image.new("RGB", (40, 24), "red"), request, 9, out_dir, stem="cli")
    monkeypatch.setattr(window, "isActiveWindow", lambda: True)
    QApplication.sendEvent(window, QEvent(QEvent.Type.ActivationChange))
    qtbot.waitUntil(lambda: gallery.model.paths() == [made, paths[2], paths[1]], timeout=5000)
    assert gallery.selected_path() == paths[1] and "3 images" in gallery.count_label.text()
