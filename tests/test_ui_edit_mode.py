"""Edit mode in the window: the fifth mode, offered for the families that edit, with the
canvas image as input and reference images where the model takes several."""

from __future__ import annotations

import json
from pathlib import Path

from PIL import Image

from studio.core.request import Mode
from tests.scripted_backend import ScriptedBackend


def _model(tmp_path: Path, name: str, index: dict) -> str:
    """A model folder as the window sees it before loading: its model_index.json."""
    folder = tmp_path / name
    folder.mkdir()
    (folder / "model_index.json").write_text(json.dumps(index))
    return str(folder)


def test_edit_mode_takes_the_canvas_and_the_references(make_window, tmp_path) -> None:  # noqa: ANN001
    klein = _model(tmp_path, "klein", {"_class_name": "Flux2KleinPipeline", "is_distilled": True})
    kontext = _model(tmp_path, "kontext", {"_class_name": "FluxKontextPipeline"})
    backend = ScriptedBackend()
    window = make_window(backend=backend)
    buttons = window.mode_bar.buttons

    window.draft.edit({"model": klein})
    # Klein has text→image, inpaint and edit, but no image→image pipeline: said, not hidden
    assert buttons[Mode.EDIT].isEnabled() and buttons[Mode.INPAINT].isEnabled()
    assert not buttons[Mode.IMAGE_TO_IMAGE].isEnabled()
    assert "Flux.2 Klein models have no Image→Image" in buttons[Mode.IMAGE_TO_IMAGE].toolTip()

    window.set_mode(Mode.EDIT)
    assert window.references.isVisible() and "up to 3" in window.references.title.text()
    assert "what to change" in window.prompt_panel.prompt_edit.placeholderText()
    assert not window.guidance.strength.isVisible()  # every step runs
    canvas_image = Image.new("RGB", (64, 64), "blue")
    window.canvas.set_image(canvas_image)
    reference = Image.new("RGB", (32, 32), "green")
    assert window.references.add(reference, "hat.png")
    window.draft.edit({"prompt": "put the hat of image 2 on the square"})
    assert window.generate() is not None
    request = backend.submitted[-1].request
    assert request.mode is Mode.EDIT
    assert request.init_image is not None and request.init_image.getpixel((0, 0)) == (0, 0, 255)
    assert [r.getpixel((0, 0)) for r in request.references] == [(0, 128, 0)]

    # a model that edits one image: no references shown, none sent
    window.draft.edit({"model": kontext})
    assert buttons[Mode.EDIT].isEnabled() and not window.references.isVisible()
    # a model that does not edit: the mode says so
    window.draft.edit({"model": _model(tmp_path, "sd", {"_class_name": "StableDiffusionPipeline"})})
    assert not buttons[Mode.EDIT].isEnabled()
    assert "no Edit mode" in buttons[Mode.EDIT].toolTip()


def test_references_stop_at_the_models_limit(make_window, tmp_path) -> None:  # noqa: ANN001
    klein = _model(tmp_path, "klein", {"_class_name": "Flux2KleinPipeline", "is_distilled": True})
    window = make_window(backend=ScriptedBackend())
    window.draft.edit({"model": klein})
    window.set_mode(Mode.EDIT)
    strip = window.references
    for colour in ("red", "green", "blue"):
        assert strip.add(Image.new("RGB", (8, 8), colour), f"{colour}.png")
    assert not strip.add_button.isEnabled()
    assert not strip.add(Image.new("RGB", (8, 8), "white"), "fourth.png")
    assert "at most 3 reference images" in window.status.text()
    strip.list.setCurrentRow(0)
    strip.remove_selected()
    assert [i.getpixel((0, 0)) for i in strip.images()] == [(0, 128, 0), (0, 0, 255)]
    assert strip.add_button.isEnabled()
    # a file that is not an image: one sentence, nothing added
    bad = tmp_path / "notes.png"
    bad.write_text("not a picture")
    assert not strip.add_file(bad)
    assert len(strip.images()) == 2 and "notes.png" in window.status.text()
