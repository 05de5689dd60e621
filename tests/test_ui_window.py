"""The studio window end to end: each mode through the real window and the real engine
thread (studio-tiny when shipped, else a random tiny pipeline), cancel, close, errors."""

from __future__ import annotations

import errno
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import pytest
from PIL import Image
from PySide6.QtCore import QPoint, Qt
from PySide6.QtGui import QKeySequence

from studio.core.request import Mode
from studio.metadata import read_parameters
from studio.ui.main_window import MainWindow

PROMPT = "a small red circle at the top left on a blue background"


@pytest.fixture
def window(make_window, ui_models, shared_engine_factory):  # noqa: ANN001
    window = make_window(engine_factory=shared_engine_factory)
    window.draft.edit({"model": ui_models.generator})
    window.draft.edit({"upscale_model": ui_models.upscaler})
    window.start_engine(preload=False)
    size = ui_models.size
    window.draft.edit({"steps": 2, "width": size, "height": size, "seed": 42})
    window.prompt_panel.set_prompts(PROMPT, "")
    return window


def _use(window: MainWindow, path: Path, mode: Mode) -> None:
    """Open an image and pick its use in the banner, as an artist does."""
    assert window.load_image(path)
    labels = window.banner.actions_shown()
    window.banner.buttons[labels.index(mode.label)].click()
    assert window.mode() is mode


def _input_image(tmp_path: Path, size: int, colour=(200, 40, 40)) -> Path:  # noqa: ANN001
    path = tmp_path / "input.png"
    image = Image.new("RGB", (size, size), (30, 60, 200))
    image.paste(colour, (size // 4, size // 4, size // 2, size // 2))
    image.save(path)
    return path


def _generate(qtbot, window: MainWindow, timeout: int = 60000):  # noqa: ANN001, ANN202
    with qtbot.waitSignal(window.controller.jobFinished, timeout=timeout) as blocker:
        qtbot.mouseClick(window.generate_button, Qt.MouseButton.LeftButton)
    return blocker.args[1]


def _pngs(folder: Path) -> list[Path]:
    return sorted(folder.glob("*.png")) if folder.is_dir() else []


def test_the_ui_thread_never_imports_torch() -> None:
    code = (
        "import sys, time; started = time.perf_counter()\n"
        "from PySide6.QtWidgets import QApplication\n"
        "app = QApplication([])\n"
        "from studio.ui.main_window import MainWindow\n"
        "from studio.ui.settings import Settings\n"
        "import tempfile, pathlib\n"
        "w = MainWindow(Settings(pathlib.Path(tempfile.mkdtemp()) / 's.ini'))\n"
        "w.show(); app.processEvents()\n"
        "print(round(time.perf_counter() - started, 2))\n"
        "assert 'torch' not in sys.modules and 'diffusers' not in sys.modules\n"
        "w.close()\n"
    )
    result = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=60, check=False
    )
    assert result.returncode == 0, result.stderr
    assert float(result.stdout.split()[-1]) < 5  # about 1 s on a desktop; CI is slower


def test_text_to_image_end_to_end(qtbot, window, out_dir, ui_models):  # noqa: ANN001
    assert window.windowTitle() == "Latent Studio"
    outcome = _generate(qtbot, window)
    size = ui_models.size
    assert window.canvas.image().size == (size, size)
    files = _pngs(out_dir)
    assert files == outcome.paths and window.gallery.model.paths() == files
    params = read_parameters(files[0])
    assert params.prompt == PROMPT and params.seed == 42 and params.request["mode"] == "txt2img"
    assert window.timeline.frame_count() == 3  # two steps and the result
    assert not window.controller.is_busy and not window.cancel_button.isEnabled()
    assert window.status.text().startswith("Done")


def test_image_to_image_end_to_end(qtbot, window, out_dir, ui_models, tmp_path):  # noqa: ANN001
    size = ui_models.size
    _use(window, _input_image(tmp_path, size), Mode.IMAGE_TO_IMAGE)
    window.draft.edit({"strength": 0.5, "steps": 4})
    outcome = _generate(qtbot, window)
    assert outcome.request.mode is Mode.IMAGE_TO_IMAGE
    assert window.canvas.image().size == (size, size)
    assert read_parameters(_pngs(out_dir)[0]).request["strength"] == 0.5


def test_inpaint_uses_the_mask_painted_in_the_window(qtbot, window, out_dir, ui_models, tmp_path):  # noqa: ANN001
    size = ui_models.size
    _use(window, _input_image(tmp_path, size), Mode.INPAINT)
    window.draft.edit({"width": size, "height": size})
    original = np.asarray(window.canvas.image()).copy()
    window.draft.edit({"mask_blur": 0, "strength": 1.0})
    window.mask_bar.brush_size.setValue(max(2, size // 8))
    # Paint a stroke along the top-left quarter with the mouse, as an artist would.
    canvas = window.canvas
    start = canvas.image_to_widget(size * 0.1, size * 0.1).toPoint()
    end = canvas.image_to_widget(size * 0.35, size * 0.2).toPoint()
    qtbot.mousePress(canvas.viewport(), Qt.MouseButton.LeftButton, pos=start)
    for t in np.linspace(0, 1, 8):
        point = QPoint(
            int(start.x() + t * (end.x() - start.x())), int(start.y() + t * (end.y() - start.y()))
        )
        qtbot.mouseMove(canvas.viewport(), point)
    qtbot.mouseRelease(canvas.viewport(), Qt.MouseButton.LeftButton, pos=end)
    mask = np.asarray(canvas.mask())
    assert mask[: size // 2, : size // 2].any() and not mask[size // 2 :, :].any()

    outcome = _generate(qtbot, window)
    result = np.asarray(outcome.images[0])
    assert outcome.request.mode is Mode.INPAINT
    # Outside the painted area (and with no feather) the picture is untouched.
    assert (result[size // 2 :, :] == original[size // 2 :, :]).all()
    assert (result[mask > 0] != original[mask > 0]).any()
    assert not canvas.mask_is_empty()  # the mask stays for another try
    assert read_parameters(_pngs(out_dir)[0]).request["mode"] == "inpaint"
    # The result is shown untinted: the overlay hides until the artist asks for it (M).
    shown = canvas.viewport().grab().toImage()
    middle = canvas.image_to_widget(size * 0.2, size * 0.15).toPoint()
    y, x = int(size * 0.15), int(size * 0.2)
    pixel = shown.pixelColor(middle)
    assert mask[y, x] and abs(pixel.red() - int(result[y, x, 0])) <= 2
    assert not window.mask_bar.show_button.isChecked()
    canvas.setFocus()
    qtbot.keyClick(canvas, Qt.Key.Key_M)
    assert canvas.mask_shown() and window.mask_bar.show_button.isChecked()
    tinted = canvas.viewport().grab().toImage().pixelColor(middle)
    assert tinted != pixel
    # the next job repaints the same area
    assert (np.asarray(window.build_request().mask) == mask).all()


def test_upscale_end_to_end(qtbot, window, out_dir, ui_models, tmp_path):  # noqa: ANN001
    low = ui_models.size // 2
    _use(window, _input_image(tmp_path, low), Mode.UPSCALE)
    assert window.generate_button.text() == "Upscale"
    outcome = _generate(qtbot, window)
    assert window.canvas.image().size == (low * 4, low * 4)
    assert read_parameters(_pngs(out_dir)[0]).request["mode"] == "upscale"
    assert outcome.request.upscaler.value == "x4"


def test_the_upscale_mode_shows_the_model_that_will_run(make_window):  # noqa: ANN001
    window = make_window()
    window.set_mode(Mode.UPSCALE)
    assert window.upscaler_picker.isVisible() and not window.model_picker.isVisible()
    # the hires fix enlarges, then runs the generator over the picture: its picker shows
    window.draft.edit({"upscale_method": "hires"})
    assert window.model_picker.isVisible() and not window.upscaler_picker.isVisible()
    assert window.model_picker.combo.currentData() == window.draft.freeze().model
    window.draft.edit({"upscale_method": "x4"})
    assert window.upscaler_picker.isVisible() and not window.model_picker.isVisible()


def test_the_window_keeps_to_900_pixels_after_a_job(qtbot, window):  # noqa: ANN001
    """README: at 900×600 the canvas keeps its room. The timeline's controls, shown after
    the first job, made the window 1000 pixels wide at least."""
    _generate(qtbot, window)
    assert window.timeline.continue_button.isVisible()
    window.resize(900, 600)
    qtbot.waitUntil(lambda: window.width() <= 900 and window.height() <= 600, timeout=2000)
    assert window.timeline.slider.width() >= 150


def test_cancel_saves_nothing_and_the_next_job_runs(qtbot, window, out_dir):  # noqa: ANN001
    window.draft.edit({"steps": 150})
    steps: list[int] = []
    window.controller.progress.connect(lambda _job, p: steps.append(p.step))
    qtbot.mouseClick(window.generate_button, Qt.MouseButton.LeftButton)
    qtbot.waitUntil(lambda: bool(steps), timeout=60000)
    with qtbot.waitSignal(window.controller.jobCancelled, timeout=1000):
        qtbot.keyClick(window, Qt.Key.Key_Escape)
    assert not window.controller.is_busy and not window.cancel_button.isEnabled()
    assert not window.status.progress.isVisible()
    window.draft.edit({"steps": 2})
    outcome = _generate(qtbot, window)
    assert _pngs(out_dir) == outcome.paths and len(outcome.paths) == 1
    assert read_parameters(outcome.paths[0]).steps == 2


def test_closing_during_a_generation_ends_everything_quickly(qtbot, window, out_dir):  # noqa: ANN001
    window.draft.edit({"steps": 500})
    steps: list[int] = []
    window.controller.progress.connect(lambda _job, p: steps.append(p.step))
    window.generate()
    qtbot.waitUntil(lambda: bool(steps), timeout=60000)
    started = time.perf_counter()
    window.close()
    assert time.perf_counter() - started < 2.0
    assert not window.controller.engine_running
    assert _pngs(out_dir) == []


def test_ctrl_enter_generates_from_the_prompt_box(qtbot, window):  # noqa: ANN001
    window.prompt_panel.prompt_edit.setFocus()
    with qtbot.waitSignal(window.controller.jobFinished, timeout=60000):
        qtbot.keyClick(
            window.prompt_panel.prompt_edit, Qt.Key.Key_Return, Qt.KeyboardModifier.ControlModifier
        )
    assert window.prompt_panel.prompt() == PROMPT  # no newline was typed


def test_a_bad_request_is_one_sentence_in_the_window(qtbot, make_window):  # noqa: ANN001
    window = make_window()
    window.prompt_panel.set_prompts("", "")
    assert window.generate() is None
    assert window.banner.kind == "error"
    assert window.banner.text() == "The prompt is empty: describe the image you want."
    window.set_mode(Mode.INPAINT)
    window.prompt_panel.set_prompts("a red circle", "")
    window.generate()
    assert window.banner.text() == "Inpaint needs an input image: open, paste or drop one."
    assert not window.controller.engine_running  # nothing was sent


def test_a_model_error_is_shown_and_the_window_stays_usable(qtbot, make_window, tmp_path):  # noqa: ANN001
    window = make_window()
    broken = tmp_path / "broken-model"
    broken.mkdir()
    (broken / "model_index.json").write_text("{not json", encoding="utf-8")
    window.draft.edit({"model": str(broken)})
    window.prompt_panel.set_prompts("a red circle", "")
    window.draft.edit({"steps": 1, "width": 32, "height": 32})
    with qtbot.waitSignal(window.controller.jobFailed, timeout=60000) as blocker:
        window.generate()
    message = blocker.args[1]
    assert window.banner.kind == "error" and window.banner.text() == message
    assert "Traceback" not in message and message.count("\n") == 0
    assert not window.controller.is_busy


def test_broken_image_files_get_one_sentence(qtbot, make_window, interop_dir):  # noqa: ANN001
    window = make_window()
    outcomes = {}
    for path in sorted((interop_dir / "bad_images").iterdir()):
        loaded = window.load_image(path)
        # either a picture (a 1×1 one is still one) offered for use, or one sentence why not
        assert window.banner.kind == ("info" if loaded else "error"), path.name
        text = window.banner.text()
        assert path.name in text and "\n" not in text and "Traceback" not in text
        outcomes[path.name] = loaded
    assert outcomes["empty_file.png"] is False  # 0 bytes: nothing to open
    assert window.canvas.image() is None  # nothing was put on the canvas unasked


def test_main_shows_the_window_and_exits_cleanly(qtbot, tmp_path):  # noqa: ANN001
    from PySide6.QtCore import QTimer
    from PySide6.QtWidgets import QApplication

    import studio.engine.generate  # noqa: F401 - torch already loaded, as in a running studio
    from studio.ui.app import main

    seen: list[str] = []

    def close_it() -> None:
        for widget in QApplication.topLevelWidgets():
            if isinstance(widget, MainWindow):
                seen.append(widget.windowTitle())
                widget.close()

    QTimer.singleShot(300, close_it)
    assert main(["--no-preload", "--settings", str(tmp_path / "studio.ini")]) == 0
    assert seen == ["Latent Studio"]
    assert (tmp_path / "studio.ini").is_file()  # the layout and parameters were saved


def test_ctrl_v_offers_the_clipboards_image(qtbot, make_window) -> None:  # noqa: ANN001
    from PySide6.QtGui import QColor, QImage
    from PySide6.QtWidgets import QApplication

    window = make_window()
    picture = QImage(7, 5, QImage.Format.Format_RGB32)
    picture.fill(QColor(40, 50, 60))
    QApplication.clipboard().setImage(picture)
    window.activateWindow()  # window-wide shortcuts act in the active window
    qtbot.waitUntil(window.isActiveWindow, timeout=2000)
    window.canvas.setFocus()
    try:
        qtbot.keyClick(window.canvas, Qt.Key.Key_V, Qt.KeyboardModifier.ControlModifier)
    finally:
        QApplication.clipboard().clear()
    assert "A pasted image (7×5)" in window.banner.text()
    window.banner.buttons[window.banner.actions_shown().index("Inpaint")].click()
    assert window.mode() is Mode.INPAINT
    assert window.canvas.image().getpixel((0, 0)) == (40, 50, 60)


def test_the_canvas_shows_each_result_not_a_step_preview(qtbot, window) -> None:  # noqa: ANN001
    """From the second job on, refilling the timeline moved its strip's current row, which
    chose a frame: the canvas showed an early step's blurry preview over the result while the
    timeline said "Result"."""
    window.draft.edit({"steps": 4})
    for seed in (1, 2):
        window.draft.edit({"seed": seed})
        result = _generate(qtbot, window)
        qtbot.wait(50)
        assert not window.canvas.has_preview(), f"job {seed}: a step's preview hides the result"
        assert window.timeline.label.text() == "Result"
        shown = np.asarray(window.canvas.image())
        assert np.array_equal(shown, np.asarray(result.images[0]))


def test_a_job_running_when_the_output_folder_changes_says_where_it_saved(
    qtbot, window, out_dir, tmp_path
):  # noqa: ANN001
    """The running job keeps the folder it started with; the gallery already names the new
    one, so "saved NAME" alone sent the artist looking in the wrong folder."""
    with qtbot.waitSignal(window.controller.jobFinished, timeout=60000) as blocker:
        window.generate()
        window.controller.set_output_dir(tmp_path / "elsewhere")
    saved = blocker.args[1].paths[0]
    assert saved.parent == out_dir
    assert window.status.text().endswith(f"saved {saved.name} in {out_dir}")
    _generate(qtbot, window)  # the next job saves in the new folder, said as before
    assert " in " not in window.status.text().split("saved")[-1]


@pytest.mark.parametrize("target", [Mode.IMAGE_TO_IMAGE, Mode.UPSCALE])
def test_send_to_after_a_job_shows_the_image_sent_not_a_leftover_preview(
    qtbot, window, tmp_path, ui_models, target
):  # noqa: ANN001
    size = ui_models.size
    _use(window, _input_image(tmp_path, size), Mode.IMAGE_TO_IMAGE)
    window.draft.edit({"strength": 0.6, "steps": 4, "width": size, "height": size})
    result = _generate(qtbot, window)
    window.timeline.select(0)  # scrubbing the timeline shows a step's preview
    assert window.canvas.has_preview()
    sent = result.paths[0]
    window.gallery.select(sent)
    window.gallery.buttons["img2img" if target is Mode.IMAGE_TO_IMAGE else "upscale"].click()
    qtbot.wait(100)  # any late signal has had its chance
    assert window.mode() is target and not window.canvas.has_preview()
    shown = np.asarray(window.canvas.image().convert("RGB"))
    assert (shown == np.asarray(Image.open(sent).convert("RGB"))).all()
    assert window.timeline.frame_count() == 0  # the timeline of another picture is gone


@pytest.mark.parametrize("suffix", [".webp", ".gif"])
def test_the_timeline_exports_a_jobs_steps_as_an_animation(qtbot, window, tmp_path, suffix):  # noqa: ANN001
    _generate(qtbot, window)
    assert window.timeline.export_button.isEnabled()
    written = window.jobs.export_steps(tmp_path / f"steps{suffix}")
    with Image.open(written) as animation:
        assert animation.n_frames == 3  # two steps, then the result held
        assert animation.info.get("loop") == 0
    assert window.status.text() == f"Saved the steps as steps{suffix}."
    # a folder that is not there is one sentence, not the system's error with a temporary name
    assert window.jobs.export_steps(tmp_path / "gone" / f"steps{suffix}") is None
    assert window.banner.text() == f"steps{suffix} could not be saved (no such file or directory)."


def test_images_are_saved_in_the_format_chosen_in_settings(qtbot, window, out_dir):  # noqa: ANN001
    from studio.core.formats import SaveFormat
    from studio.ui.dialogs import StudioSettings

    chosen = StudioSettings(out_dir, window.engine_settings(), "dark", SaveFormat("jpeg", 80))
    window.apply_settings(chosen)
    result = _generate(qtbot, window)
    assert [p.suffix for p in result.paths] == [".jpg"]
    assert read_parameters(result.paths[0]).prompt == PROMPT
    assert window.settings.save_format() == SaveFormat("jpeg", 80)  # kept for next time


def test_a_picture_that_cannot_be_saved_stays_on_the_canvas_to_export(
    qtbot, window, out_dir, tmp_path
):  # noqa: ANN001
    """The folder the job saves in became a file (or a full disk, a lost mount): the job
    used to fail and its picture was gone. It ends with the picture on the canvas, its
    steps in the timeline to export, and one sentence of where it could not go."""
    window.controller.set_output_dir(tmp_path / "taken")
    (tmp_path / "taken").write_bytes(b"not a folder")
    result = _generate(qtbot, window)
    assert result.paths == [] and result.images
    shown = np.asarray(window.canvas.image().convert("RGB"))
    assert (shown == np.asarray(result.images[0].convert("RGB"))).all()
    assert window.timeline.frame_count() == 3 and window.timeline.export_button.isEnabled()
    assert window.banner.kind == "error" and window.banner.text() == (
        f"The image could not be saved in {tmp_path / 'taken'} (that is a file, not a folder): "
        "it is on the canvas, and File → Save image as… saves it elsewhere."
    )
    assert window.status.text().endswith("· not saved")
    window.grab().save("/tmp/unsaved_window.png")
    elsewhere = window.jobs.save_result_as(tmp_path / "kept.webp")  # as the dialog does
    assert elsewhere == tmp_path / "kept.webp" and read_parameters(elsewhere).seed == 42
    with Image.open(elsewhere) as saved:
        assert saved.size == result.images[0].size
    assert window.status.text() == "Saved kept.webp."
    assert window.save_as_action.shortcut() == QKeySequence(QKeySequence.StandardKey.SaveAs)


def test_settings_refuse_a_file_as_the_output_folder(  # noqa: ANN001
    qtbot, window, out_dir, tmp_path, monkeypatch
):
    from studio.ui.dialogs import StudioSettings

    taken = tmp_path / "t1.png"
    taken.write_bytes(b"a picture")
    window.apply_settings(StudioSettings(taken, window.engine_settings(), "dark"))
    assert window.controller.output_dir == out_dir and window.settings.output_dir() == out_dir
    assert window.banner.text() == (
        f"The output folder '{taken}' is a file, not a folder: images are still saved in "
        f"'{out_dir}'."
    )
    # nor a folder it cannot write into: said when chosen, not after the first image
    locked = tmp_path / "locked"
    real = tempfile.mkstemp

    def refused(*args, **kwargs):  # noqa: ANN002, ANN003, ANN202 - read-only, even for root
        if Path(kwargs.get("dir", "")) == locked:
            raise PermissionError(errno.EACCES, os.strerror(errno.EACCES))
        return real(*args, **kwargs)

    monkeypatch.setattr(tempfile, "mkstemp", refused)
    window.apply_settings(StudioSettings(locked, window.engine_settings(), "dark"))
    assert window.controller.output_dir == out_dir
    assert window.banner.text() == (
        f"The output folder '{locked}' cannot be written into (permission denied): images are "
        f"still saved in '{out_dir}'."
    )


def test_save_image_as_saves_the_batch_picture_shown(qtbot, window, tmp_path):  # noqa: ANN001
    window.draft.edit({"batch_size": 2})
    result = _generate(qtbot, window)
    window.gallery.select(result.paths[1])  # the canvas shows the second picture
    saved = window.jobs.save_result_as(tmp_path / "second.png")
    assert saved is not None and read_parameters(saved).seed == result.seeds[1]
    with Image.open(saved) as picture, Image.open(result.paths[1]) as shown:
        assert np.array_equal(np.asarray(picture.convert("RGB")), np.asarray(shown.convert("RGB")))
