"""The LoRA panel: what is found in the LoRA folders (family, trigger words, preview), a
search, and the active LoRAs in sync with the prompt's <lora:…> tags both ways."""

from __future__ import annotations

import base64
import io
import json
from pathlib import Path

import pytest
import torch
from PIL import Image
from safetensors.torch import save_file

from studio.core import loras
from studio.ui.dialogs import StudioSettings


def _lora(folder: Path, name: str, base: str, tags: dict[str, int], preview: str) -> None:
    metadata = {"ss_base_model_version": base, "ss_tag_frequency": json.dumps({"1_x": tags})}
    if preview == "metadata":  # ModelSpec's thumbnail, a data: URI in the file itself
        buffer = io.BytesIO()
        Image.new("RGB", (32, 32), "green").save(buffer, "PNG")
        encoded = base64.b64encode(buffer.getvalue()).decode()
        metadata["modelspec.thumbnail"] = f"data:image/png;base64,{encoded}"
    save_file(
        {"lora_unet_down_blocks_0_attentions_0_proj_in.lora_down.weight": torch.zeros(4, 8)},
        folder / f"{name}.safetensors",
        metadata=metadata,
    )
    if preview == "sibling":
        Image.new("RGB", (32, 32), "orange").save(folder / f"{name}.preview.png")


@pytest.fixture
def lora_dir(tmp_path: Path):
    folder = tmp_path / "Lora"
    folder.mkdir()
    _lora(folder, "detail_slider_v2", "sd_v1", {"detailed": 40, "intricate": 20}, "sibling")
    _lora(folder, "pixel-art-xl", "sdxl_base_v1-0", {"pixel art": 90}, "metadata")
    yield folder
    loras.use_lora_dir(None)


def _listed(window) -> list[str]:  # noqa: ANN001
    found = window.loras.found
    return [found.item(i).text() for i in range(found.count()) if not found.item(i).isHidden()]


def test_the_panel_lists_loras_and_keeps_the_prompt_in_sync(make_window, lora_dir) -> None:  # noqa: ANN001
    window = make_window()
    engine = window.settings.engine_settings()
    window.apply_settings(StudioSettings(lora_dir.parent, engine, "dark", lora_dir=lora_dir))
    panel = window.loras
    listed = _listed(window)
    assert listed[:2] == [
        "detail_slider_v2\nSD 1.x · detailed, intricate",
        "pixel-art-xl\nSDXL · pixel art",
    ]
    # a preview picture beside the file, or in its metadata
    assert not panel.found.item(0).icon().isNull() and not panel.found.item(1).icon().isNull()
    panel.search.setText("pixel")
    assert _listed(window) == ["pixel-art-xl\nSDXL · pixel art"]
    panel.search.clear()

    # adding writes the tag into the prompt; the slider moves the tag's weight in place
    window.prompt_panel.set_prompts("a cat, blue", "")
    panel.found.setCurrentRow(0)
    panel.add_button.click()
    assert window.draft["prompt"] == "a cat, blue <lora:detail_slider_v2:1>"
    panel.rows["detail_slider_v2"].slider.setValue(-0.5)
    assert window.draft["prompt"] == "a cat, blue <lora:detail_slider_v2:-0.5>"
    assert window.prompt_panel.prompt() == window.draft["prompt"]

    # a tag typed into the prompt shows as a row, at its weight; one not found says so
    window.prompt_panel.set_prompts("<lora:pixel-art-xl:0.7> a cat <lora:gone:1>", "")
    assert list(panel.rows) == ["pixel-art-xl", "gone"]
    assert panel.rows["pixel-art-xl"].slider.value() == pytest.approx(0.7)
    window.prompt_panel.set_prompts("<lora:pixel-art-xl:3.5> a cat <lora:gone:1>", "")
    assert panel.rows["pixel-art-xl"].slider.value() == pytest.approx(3.5)  # beyond ±2 too
    window.prompt_panel.set_prompts("<lora:pixel-art-xl:0.7> a cat <lora:gone:1>", "")
    assert panel.rows["gone"].label.objectName() == "warning"
    assert panel.text() == "LoRAs (1 active, 1 not found)"  # "2 active", though one runs
    panel.rows["gone"].remove.click()
    assert window.draft["prompt"] == "<lora:pixel-art-xl:0.7> a cat"
    assert list(panel.rows) == ["pixel-art-xl"]
    assert panel.text() == "LoRAs (1 active)"
    window.prompt_panel.set_prompts("a cat <lora:gone:1>", "")
    assert panel.text() == "LoRAs (1 not found)"


def test_the_panel_shows_the_family_a_loras_name_says_when_its_header_says_none(
    make_window,  # noqa: ANN001
    lora_dir,  # noqa: ANN001
) -> None:
    save_file({"a.lora_down.weight": torch.zeros(4, 8)}, lora_dir / "lcm-lora-sdxl.safetensors")
    window = make_window()
    engine = window.settings.engine_settings()
    window.apply_settings(StudioSettings(lora_dir.parent, engine, "dark", lora_dir=lora_dir))
    assert "lcm-lora-sdxl\nSDXL" in _listed(window)


def test_no_lora_folder_says_where_it_looked(make_window, monkeypatch) -> None:  # noqa: ANN001
    monkeypatch.setattr(loras, "EMBEDDED_LORAS_DIR", Path("/nonexistent"))
    window = make_window()
    window.loras.reload()
    assert window.loras.found.count() == 0
    assert "No LoRAs found" in window.loras.empty.text()


def test_a_tag_naming_no_lora_here_is_said_under_the_prompt(make_window, lora_dir) -> None:  # noqa: ANN001
    window = make_window()
    loras.use_lora_dir(lora_dir)  # after the window took its own (none) from its settings
    window.prompt_panel.set_prompts("a cat <lora:detail_slider_v2:0.5>", "")
    assert "No LoRA called" not in window.prompt_panel.vocabulary_note.text()
    window.prompt_panel.set_prompts("a cat <lora:detail_slider_v2:0.5> <lora:gone:1>", "")
    note = window.prompt_panel.vocabulary_note.text()
    assert "No LoRA called 'gone'" in note and "detail_slider_v2" not in note
    assert window.prompt_panel.vocabulary_note.isVisible()
