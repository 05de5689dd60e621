"""The ControlNet section and the canvas's control layer: painted with the mask's brush but
apart from the mask (its own undo, its own visibility), made from a picture by a built-in
preprocessor, and sent with the job when on."""

from __future__ import annotations

import numpy as np
from PIL import Image, ImageDraw
from PySide6.QtCore import QPoint, Qt

from studio.core.request import Mode
from tests.scripted_backend import ScriptedBackend


def _picture() -> Image.Image:
    image = Image.new("RGB", (64, 64), (30, 60, 200))
    ImageDraw.Draw(image).rectangle((16, 16, 47, 47), fill=(250, 250, 250))
    return image


def test_drawing_the_control_layer_leaves_the_mask_alone(qtbot, make_window) -> None:  # noqa: ANN001
    window = make_window(backend=ScriptedBackend())
    canvas = window.canvas
    canvas.set_image(_picture())
    window.set_mode(Mode.INPAINT)
    window.controlnet.draw.setChecked(True)  # strokes go to the control layer now
    centre = canvas.image_to_widget(32, 32).toPoint()
    qtbot.mouseClick(canvas.viewport(), Qt.MouseButton.LeftButton, pos=centre)
    assert not canvas.control_is_empty() and canvas.mask_is_empty()
    line = np.asarray(canvas.control_image())
    assert line.shape == (64, 64, 3) and line[32, 32].tolist() == [255, 255, 255]
    assert canvas._control_overlay.isVisible()
    window.controlnet.show_layer.setChecked(False)
    assert not canvas._control_overlay.isVisible() and not canvas.control_is_empty()
    canvas.undo()  # the control layer's own history
    assert canvas.control_is_empty()
    # back to the mask: the same brush paints the mask again
    window.controlnet.draw.setChecked(False)
    qtbot.mouseClick(canvas.viewport(), Qt.MouseButton.LeftButton, pos=QPoint(centre))
    assert not canvas.mask_is_empty() and canvas.control_is_empty()


def test_a_control_image_from_the_picture_goes_with_the_job(qtbot, make_window) -> None:  # noqa: ANN001
    backend = ScriptedBackend()
    window = make_window(backend=backend)
    panel = window.controlnet
    window.canvas.set_image(_picture())
    window.prompt_panel.set_prompts("a white square", "")
    assert window.build_request().controls == ()  # off until asked for
    panel.preprocessor.setCurrentIndex(panel.preprocessor.findData("canny"))
    panel.use_canvas_picture()
    assert panel.enabled.isChecked()
    edges = np.asarray(window.canvas.control_image())[:, :, 0]
    # the square's outline, and nothing inside it or far outside
    assert edges[15, 30] == edges[47, 30] == 255 and edges[30, 30] == 0 and edges[2, 2] == 0
    panel.scale.setValue(0.6)
    panel.range.setValue((0.1, 0.8))
    panel.model.insertItem(0, "my-controlnet", "/models/my-controlnet")
    panel.model.setCurrentIndex(0)
    assert window.generate() is not None
    (control,) = backend.submitted[-1].request.controls
    assert (control.model, control.scale, control.start, control.end) == (
        "/models/my-controlnet",
        0.6,
        0.1,
        0.8,
    )
    assert np.array_equal(np.asarray(control.image)[:, :, 0], edges)
    # an empty layer is one sentence before anything runs
    window.canvas.clear_control()
    assert "control layer is empty" in panel.state.text()
    assert window.generate() is None
    assert "no control image" in window.status.text()
