"""An inpainting checkpoint (a 9-channel UNet) picked in the window: Inpaint is its only mode,
the others are off and say why, and the picker names it an inpainting model."""

from __future__ import annotations

from pathlib import Path

from studio.core import catalog
from studio.core.request import Mode
from tests.sparse_files import sparse_safetensors


def _sd1_header(path: Path, unet_inputs: int) -> Path:
    """A sparse SD 1.x checkpoint: the tensor names and shapes the studio reads, no weights."""
    shapes = {
        "model.diffusion_model.input_blocks.0.0.weight": [320, unet_inputs, 3, 3],
        "cond_stage_model.transformer.text_model.final_layer_norm.weight": [768],
        "first_stage_model.encoder.conv_in.weight": [128, 3, 3, 3],
    }
    return sparse_safetensors(path, shapes)


def test_an_inpainting_checkpoint_offers_inpaint_alone(qtbot, tmp_path: Path) -> None:  # noqa: ANN001
    from studio.ui.panels.mode_bar import ModeBar

    inpainting = _sd1_header(tmp_path / "sd-v1-5-inpainting.safetensors", 9)
    regular = _sd1_header(tmp_path / "sd-v1-5.safetensors", 4)
    family = catalog.model_family(str(inpainting))
    assert family.name == "sd1" and family.label == "SD 1.x inpainting"
    assert family.modes == ("inpaint",)
    assert catalog.model_defaults(str(inpainting))["width"] == 512  # still SD 1.x's

    bar = ModeBar()
    qtbot.addWidget(bar)
    bar.show_family(family)
    assert bar.buttons[Mode.INPAINT].isEnabled() and bar.buttons[Mode.UPSCALE].isEnabled()
    for mode in (Mode.TEXT_TO_IMAGE, Mode.IMAGE_TO_IMAGE, Mode.EDIT):
        assert not bar.buttons[mode].isEnabled()
    tip = bar.buttons[Mode.TEXT_TO_IMAGE].toolTip()
    assert tip == f"SD 1.x inpainting models have no {Mode.TEXT_TO_IMAGE.label} mode."
    bar.show_family(catalog.model_family(str(regular)))  # the regular model: every mode
    assert bar.buttons[Mode.TEXT_TO_IMAGE].isEnabled()
