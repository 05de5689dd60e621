"""A model's own defaults (size, steps, CFG, sampler) reach the window: on a first start,
and when the artist picks another model, but never over values restored from a file."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from studio.core import families
from studio.core.catalog import model_defaults
from studio.core.paths import EMBEDDED_MODELS_DIR
from studio.ui.settings import Settings

CARD = EMBEDDED_MODELS_DIR / "studio-tiny" / "studio.json"
needs_tiny = pytest.mark.skipif(not CARD.is_file(), reason="studio-tiny is not shipped")


def _card() -> dict:
    return json.loads(CARD.read_text(encoding="utf-8"))


def _native_side(folder: Path) -> int:
    folder = Path(folder)
    unet = json.loads((folder / "unet" / "config.json").read_text())
    vae = json.loads((folder / "vae" / "config.json").read_text())
    return unet["sample_size"] * 2 ** (len(vae["block_out_channels"]) - 1)


def _pick(picker, spec: str) -> None:  # noqa: ANN001
    """Choose `spec` in the combo as a user does (the activated signal, not set_model)."""
    index = picker.combo.findData(spec)
    assert index >= 0, spec
    picker.combo.setCurrentIndex(index)
    picker.combo.activated.emit(index)


@needs_tiny
def test_a_first_start_uses_the_embedded_models_card(make_window) -> None:  # noqa: ANN001
    card = _card()
    values = make_window().draft.values()
    assert values["steps"] == card["default_steps"]
    assert values["cfg_scale"] == card["default_cfg"]
    assert values["scheduler"] == card["default_scheduler"]
    assert [values["width"], values["height"]] == card["default_size"]


@needs_tiny
def test_picking_a_model_applies_its_defaults(make_window, tiny_sd: Path) -> None:  # noqa: ANN001
    window = make_window()
    window.draft.edit({"cfg_scale": 9.5, "steps": 7})
    window.draft.edit({"model": str(tiny_sd)})  # listed, as if added earlier
    _pick(window.model_picker, "studio-tiny")
    card = _card()
    values = window.draft.values()
    assert (values["cfg_scale"], values["steps"]) == (card["default_cfg"], card["default_steps"])
    assert "studio-tiny's defaults" in window.status.text()

    # A plain diffusers folder gets its family's defaults at the size its configs state.
    window.draft.edit({"cfg_scale": 6.5, "steps": 7})
    _pick(window.model_picker, str(tiny_sd))
    values = window.draft.values()
    side = _native_side(tiny_sd)
    assert (values["width"], values["height"]) == (side, side)
    sd1 = families.by_name("sd1").defaults()
    assert (values["cfg_scale"], values["steps"]) == (sd1["cfg_scale"], sd1["steps"]) != (6.5, 7)


@needs_tiny
def test_restored_values_are_not_replaced_by_defaults(qtbot, tmp_path: Path) -> None:  # noqa: ANN001
    from studio.ui.main_window import MainWindow

    settings = Settings(tmp_path / "studio.ini")
    settings.set_last_request({"model": "studio-tiny", "cfg_scale": 8.5, "steps": 12})
    settings.sync()
    window = MainWindow(Settings(tmp_path / "studio.ini"))
    qtbot.addWidget(window)
    values = window.draft.values()
    assert (values["cfg_scale"], values["steps"]) == (8.5, 12)


def test_model_defaults_without_a_card(tiny_sd: Path, tmp_path: Path) -> None:
    side = _native_side(tiny_sd)
    # the family's steps, CFG and sampler; the size its own configs state, not the family's
    expected = families.by_name("sd1").defaults() | {"width": side, "height": side}
    assert model_defaults(str(tiny_sd)) == expected
    assert model_defaults("no-such-model") == {}
    not_a_model = tmp_path / "empty"
    not_a_model.mkdir()
    assert model_defaults(str(not_a_model)) == {}


def test_the_negative_prompt_box_says_why_it_is_off(make_window, tmp_path: Path) -> None:  # noqa: ANN001
    """A negative prompt kept from an SDXL job hides the box's placeholder: on a model that
    takes none, the greyed text's tooltip says why, and Z-Image (CFG) takes one."""
    from tests.engine.tiny_families import build

    flux, z_image = (str(build(name, tmp_path / name)) for name in ("flux", "z_image"))
    window = make_window()
    box = window.prompt_panel.negative_edit
    window.prompt_panel.set_prompts("a red circle", "blurry, lowres")
    window.draft.edit({"model": flux})
    assert not box.isEnabled() and box.toPlainText() == "blurry, lowres"
    assert box.toolTip().startswith("Flux.1 dev takes no negative prompt")
    assert "not used" in box.toolTip()
    window.draft.edit({"model": z_image})
    assert (
        box.isEnabled() and box.toolTip() == "The negative prompt: what the image should not show."
    )


def test_the_size_presets_lead_with_the_models_own_sizes(make_window, tmp_path: Path) -> None:  # noqa: ANN001
    """Qwen-Image's 1328×1328 was in no preset: once changed, the model's own size could
    not be chosen back. The list now opens with the model's size and its area's aspect
    ratios (SDXL's training buckets for a 1024 model)."""
    from tests.engine.tiny_families import build

    window = make_window()
    panel = window.guidance
    menu = panel.presets.menu()

    def offered() -> dict[str, object]:
        menu.aboutToShow.emit()
        return {action.text(): action for action in menu.actions()}

    window.draft.edit({"model": str(build("qwen_image", tmp_path / "qwen"))})
    panel.set_size(512, 768)
    presets = offered()
    assert "Qwen-Image: its size, then others of its area" in presets
    presets["1328 × 1328 (its own)"].trigger()
    assert panel.size() == (1328, 1328)
    window.draft.edit({"model": str(build("flux", tmp_path / "flux"))})
    presets = offered()
    assert {"1024 × 1024 (its own)", "832 × 1216", "1216 × 832", "768 × 1344"} <= presets.keys()
    assert "1024 × 1024 (SDXL)" in presets  # the common sizes follow


def test_a_model_without_the_mode_in_use_leaves_it_and_says_so(  # noqa: ANN001
    make_window, tmp_path: Path
) -> None:
    """Flux.2 Klein picked in Image→Image left the window on that greyed mode (and Ctrl+2
    chose it again) until Generate refused: it now switches to a mode the model has."""
    from studio.core.request import Mode
    from tests.engine.tiny_families import build
    from tests.test_ui_inpainting_model import _sd1_header

    klein = str(build("flux2_klein", tmp_path / "klein"))
    inpainting = str(_sd1_header(tmp_path / "sd-v1-5-inpainting.safetensors", 9))
    window = make_window()
    window.set_mode(Mode.IMAGE_TO_IMAGE)
    window.draft.edit({"model": klein})
    assert window.draft.mode is Mode.TEXT_TO_IMAGE
    assert window.banner.text() == (
        "Flux.2 Klein models have no Image→Image mode: switched to Text→Image."
    )
    assert not window.mode_actions[Mode.IMAGE_TO_IMAGE].isEnabled()
    window.set_mode(Mode.IMAGE_TO_IMAGE)  # Ctrl+2 from before: refused in a sentence
    assert window.draft.mode is Mode.TEXT_TO_IMAGE
    assert window.status.text() == "Flux.2 Klein models have no Image→Image mode."
    window.set_mode(Mode.EDIT)
    assert window.draft.mode is Mode.EDIT
    window.draft.edit({"model": inpainting})  # Inpaint is all it has
    assert window.draft.mode is Mode.INPAINT and window.mode_bar.mode() is Mode.INPAINT
