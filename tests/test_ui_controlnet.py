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
    # its type, for a union ControlNet: the Canny map's, until another is chosen
    assert control.control_type == "canny"
    panel.control_type.setCurrentIndex(panel.control_type.findData("depth"))
    assert window.build_request().controls[0].control_type == "depth"
    # an empty layer is one sentence before anything runs
    window.canvas.clear_control()
    assert "control layer is empty" in panel.state.text()
    assert window.generate() is None
    assert "no control image" in window.status.text()


def test_a_drawn_control_layer_steers_a_real_job(  # noqa: ANN001
    qtbot, make_window, shared_engine_factory, tiny_sd, tmp_path, out_dir
) -> None:
    """Through the window and the engine thread: the scribble changes the picture, and at
    strength 0 the picture is the plain one."""
    from diffusers import AutoencoderKL, ControlNetModel, UNet2DConditionModel

    from tests.engine.test_controlnets import _loud

    unet = UNet2DConditionModel.from_pretrained(tiny_sd, subfolder="unet")
    vae_blocks = len(AutoencoderKL.load_config(tiny_sd, subfolder="vae")["block_out_channels"])
    # the control image is brought down to the latents' size: as many stages as the VAE has
    network = ControlNetModel.from_unet(
        unet, conditioning_embedding_out_channels=(8, 16, 16, 16)[:vae_blocks]
    )
    _loud(network)
    network.save_pretrained(tmp_path / "controlnet")
    controlnet = str(tmp_path / "controlnet")
    window = make_window(engine_factory=shared_engine_factory)
    window.start_engine(preload=False)
    window.draft.edit({"model": str(tiny_sd), "steps": 2, "width": 32, "height": 32, "seed": 9})
    window.prompt_panel.set_prompts("a red circle", "")
    picture = Image.new("RGB", (32, 32), (30, 60, 200))
    ImageDraw.Draw(picture).ellipse((8, 8, 24, 24), fill=(250, 250, 250))
    panel = window.controlnet
    panel.model.insertItem(0, "tiny", controlnet)
    panel.model.setCurrentIndex(0)

    def run() -> np.ndarray:
        controller = window.controller
        outcome: list = []  # a failure ends the wait at once, with its sentence
        controller.jobFinished.connect(lambda _id, result: outcome.append(result))
        controller.jobFailed.connect(lambda _id, message: outcome.append(message))
        window.generate()
        qtbot.waitUntil(lambda: bool(outcome), timeout=60000)
        assert not isinstance(outcome[0], str), outcome[0]
        return np.asarray(outcome[0].images[0], np.int16)

    window.canvas.set_image(picture)
    plain = run()  # ControlNet off
    window.canvas.set_image(picture)
    panel.preprocessor.setCurrentIndex(panel.preprocessor.findData("canny"))
    panel.use_canvas_picture()
    steered = run()
    assert np.abs(steered - plain).mean() > 0.5
    window.canvas.set_image(picture)
    panel.scale.setValue(0.0)
    assert np.abs(run() - plain).max() <= 1


def test_a_fresh_install_scribbles_a_circle_and_gets_it_there(  # noqa: ANN001
    qtbot, make_window, shared_engine_factory, out_dir
) -> None:
    """The embedded model and its embedded ControlNet, through the window and the engine
    thread: a circle drawn with the brush on the control layer at the left, then at the
    right, puts the prompt's circle there (the same seed)."""
    import math

    from studio.tiny.evaluate_controlnet import centre, object_mask

    window = make_window(engine_factory=shared_engine_factory)
    window.start_engine(preload=False)
    window.draft.edit({"steps": 8, "width": 64, "height": 64, "seed": 7})
    window.prompt_panel.set_prompts("a large red circle on a blue background", "")
    panel, canvas = window.controlnet, window.canvas
    assert panel.model_spec() == "studio-tiny-controlnet"  # listed first for studio-tiny
    panel.enabled.setChecked(True)
    panel.draw.setChecked(True)

    def scribble_and_run(x: float) -> tuple[float, float]:
        canvas.set_image(Image.new("RGB", (64, 64), (30, 60, 200)))
        canvas.clear_control()
        canvas.set_brush_size(2)
        ring = [(x + 12 * math.cos(a / 12 * math.pi), 32 + 12 * math.sin(a / 12 * math.pi))
                for a in range(25)]  # fmt: skip
        viewport = canvas.viewport()
        points = [canvas.image_to_widget(px, py).toPoint() for px, py in ring]
        qtbot.mousePress(viewport, Qt.MouseButton.LeftButton, pos=points[0])
        for point in points[1:]:
            qtbot.mouseMove(viewport, point)
        qtbot.mouseRelease(viewport, Qt.MouseButton.LeftButton, pos=points[-1])
        assert not canvas.control_is_empty()
        outcome: list = []
        window.controller.jobFinished.connect(lambda _id, result: outcome.append(result))
        window.controller.jobFailed.connect(lambda _id, message: outcome.append(message))
        assert window.generate() is not None, window.status.text()
        qtbot.waitUntil(lambda: bool(outcome), timeout=60000)
        assert not isinstance(outcome[0], str), outcome[0]
        found = centre(object_mask(outcome[0].images[0]))
        assert found is not None
        return found

    left, right = scribble_and_run(16), scribble_and_run(48)
    assert left[0] < 24 and right[0] > 40, (left, right)


def test_a_model_without_controlnets_turns_the_section_off_and_says_why(  # noqa: ANN001
    qtbot, make_window, tmp_path
) -> None:
    """On Flux.2 Klein or Chroma the section stayed on, and studio-tiny's own ControlNet
    followed the artist to every other model: both only failed at Generate."""
    from tests.engine.tiny_families import build

    klein, flux = (str(build(name, tmp_path / name)) for name in ("flux2_klein", "flux"))
    backend = ScriptedBackend()
    window = make_window(backend=backend)
    panel = window.controlnet
    window.canvas.set_image(_picture())
    panel.use_canvas_picture()  # on, with studio-tiny's ControlNet
    assert panel.enabled.isChecked() and panel.model_spec() == "studio-tiny-controlnet"
    assert panel.text() == "ControlNet (on)"

    window.draft.edit({"model": klein})
    says = "The studio runs no ControlNets on Flux.2 Klein models: generate without them."
    assert not panel.enabled.isEnabled() and panel.enabled.toolTip() == says
    assert panel.state.text() == says and panel.text() == "ControlNet"
    assert window.build_request().controls == ()  # nothing the window does not show

    window.draft.edit({"model": flux})  # a family with ControlNets: on again, its own list
    assert panel.enabled.isEnabled() and panel.enabled.isChecked()
    assert panel.model_spec() == ""  # not studio-tiny's: the job asks for one
    window.draft.edit({"model": "studio-tiny"})
    assert panel.model_spec() == "studio-tiny-controlnet"


def test_a_mode_the_family_has_no_controlnet_for_turns_the_section_off(  # noqa: ANN001
    qtbot, make_window, tmp_path
) -> None:
    """SD 3 runs ControlNets in Text→Image and Inpaint but diffusers has no image→image
    ControlNet pipeline for it: the section stayed on there, and only Generate refused."""
    from studio.core.request import Mode
    from tests.engine.tiny_families import build

    sd3 = str(build("sd3", tmp_path / "sd3"))
    window = make_window(backend=ScriptedBackend())
    panel = window.controlnet
    window.canvas.set_image(_picture())
    window.draft.edit({"model": sd3})
    panel.use_canvas_picture()
    assert panel.enabled.isEnabled() and panel.enabled.isChecked()

    window.set_mode(Mode.IMAGE_TO_IMAGE)
    says = (
        "SD 3.x models have no ControlNet pipeline for Image→Image: generate without "
        "ControlNets, or in another mode."
    )
    assert not panel.enabled.isEnabled() and panel.enabled.toolTip() == says
    assert panel.state.text() == says and panel.text() == "ControlNet"
    assert window.build_request().controls == ()

    window.set_mode(Mode.INPAINT)  # SD 3 has an inpainting ControlNet pipeline: on again
    assert panel.enabled.isEnabled() and panel.enabled.isChecked()
    assert panel.state.text() != says
