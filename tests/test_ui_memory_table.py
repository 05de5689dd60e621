"""Settings → Performance shows each family's GPU memory at its native size and where the
studio would place it on this machine's GPU (or says there is none)."""

from __future__ import annotations

from pathlib import Path

import pytest

from studio.core import memory_policy
from studio.core.settings import EngineSettings
from studio.ui.dialogs import SettingsDialog, StudioSettings
from studio.ui.settings import Settings


def _rows(dialog: SettingsDialog) -> dict[str, list[str]]:
    table = dialog.memory_table
    return {
        table.item(row, 0).text(): [table.item(row, c).text() for c in range(1, 4)]
        for row in range(table.rowCount())
    }


def _dialog(qtbot, tmp_path: Path, engine: EngineSettings | None = None) -> SettingsDialog:  # noqa: ANN001
    dialog = SettingsDialog(StudioSettings(tmp_path, engine or EngineSettings(), "dark"))
    qtbot.addWidget(dialog)
    return dialog


def test_without_a_gpu_the_table_shows_each_family_and_says_so(
    qtbot,  # noqa: ANN001
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(memory_policy, "detect_gpu", lambda: None)
    rows = _rows(_dialog(qtbot, tmp_path))
    assert len(rows) == len(memory_policy.FAMILY_MEMORY)
    assert rows["SD 1.x"] == ["float16", "3.0 GB", "–"]
    assert rows["Flux.1 dev"][:2] == ["bfloat16", "34.4 GB"]
    assert rows["Qwen-Image"][0] == "bfloat16"
    assert {here for _, _, here in rows.values()} == {"–"}


def test_with_a_gpu_each_family_shows_its_placement_and_fp8_brings_it_down(
    qtbot,  # noqa: ANN001
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    gpu = memory_policy.Gpu("NVIDIA GeForce RTX 4090", 23.99, 22.6)
    monkeypatch.setattr(memory_policy, "detect_gpu", lambda: gpu)
    dialog = _dialog(qtbot, tmp_path)
    assert "RTX 4090: 22.6 of 24.0 GB free" in dialog.memory_caption.text()
    rows = _rows(dialog)
    assert rows["SDXL"][2] == "All on the GPU"
    assert rows["SD 3.5 Large"][2] == "Model offload"
    assert rows["Flux.1 dev"][2] == "Group offload"
    dialog.fp8_weights.setChecked(True)  # the denoiser in fp8: Flux's transformer fits
    rows = _rows(dialog)
    assert rows["Flux.1 dev"][1:] == ["23.3 GB", "Model offload, fp8"]
    assert dialog.engine_settings().fp8_weights


def test_the_fp8_setting_persists(qtbot, tmp_path: Path) -> None:  # noqa: ANN001
    settings = Settings(tmp_path / "studio.ini")
    assert not settings.engine_settings().fp8_weights
    settings.set_engine_settings(EngineSettings(fp8_weights=True))
    assert Settings(tmp_path / "studio.ini").engine_settings().fp8_weights
    dialog = _dialog(qtbot, tmp_path, settings.engine_settings())
    assert dialog.fp8_weights.isChecked()
