"""The window always opens: over a settings file of garbage, impossible values in the last
session, an output folder no path can be, a list of added models of the wrong shape. The
broken file is set aside (kept, never deleted), the studio starts from its defaults, and
says so once."""

from __future__ import annotations

import json
import os
from pathlib import Path

from PIL import Image

from studio.ui.gallery import list_images
from studio.ui.main_window import MainWindow
from studio.ui.settings import Settings


def _window(qtbot, path: Path) -> MainWindow:  # noqa: ANN001
    window = MainWindow(Settings(path))
    qtbot.addWidget(window)
    window.show()
    return window


def test_a_settings_file_of_garbage_is_set_aside(qtbot, tmp_path: Path) -> None:  # noqa: ANN001
    path = tmp_path / "studio.ini"
    path.write_bytes(b"\x00\xff[[[ not settings \x01" * 200)
    window = _window(qtbot, path)
    kept = list(tmp_path.glob("studio.ini.broken-*"))
    assert len(kept) == 1 and kept[0].read_bytes().startswith(b"\x00\xff")  # kept as it was
    assert window.banner.isVisible() and "studio.ini was damaged" in window.banner.text()
    assert window.draft["model"] == "studio-tiny" and window.draft["steps"] == 25  # defaults


def test_impossible_values_of_the_last_session_lose_only_themselves(qtbot, tmp_path: Path) -> None:  # noqa: ANN001
    path = tmp_path / "studio.ini"
    last = {"prompt": "a red ring", "steps": 10**9, "cfg_scale": "hot", "width": 96, "mode": "x"}
    settings = Settings(path)
    settings.set_last_request(last)
    settings._qs.setValue("studio/output_dir", "out\x00put")
    settings._qs.setValue("studio/theme", "purple")
    settings.sync()
    window = _window(qtbot, path)
    assert window.draft["prompt"] == "a red ring" and window.draft["width"] == 96
    assert window.draft["steps"] != 10**9 and window.draft["cfg_scale"] != "hot"
    text = window.banner.text()
    assert "Steps must be between 1 and 1000" in text and "CFG scale must be a number" in text
    assert "The output folder in the settings" in text
    assert "\x00" not in str(window.controller.output_dir)
    assert window.settings.theme() == "dark"


def test_a_list_of_added_models_of_the_wrong_shape(qtbot, tmp_path: Path) -> None:  # noqa: ANN001
    registry = Path(os.environ["LATENT_STUDIO_CONFIG"]) / "models.json"
    registry.parent.mkdir(parents=True, exist_ok=True)
    registry.write_text(json.dumps(["not", "a", "registry"]))
    window = _window(qtbot, tmp_path / "studio.ini")
    assert window.model_picker.combo.count() > 0  # the picker lists the embedded models
    assert not registry.exists() and len(list(registry.parent.glob("models.json.broken-*"))) == 1
    assert "models.json was damaged" in window.banner.text()


def test_the_gallery_lists_what_it_can_of_a_folder_sync_tools_touched(tmp_path: Path) -> None:
    for name in ("a.png", "b.png"):
        Image.new("RGB", (4, 4)).save(tmp_path / name)
    (tmp_path / "loop.png").symlink_to(tmp_path / "loop.png")  # a link in a loop
    (tmp_path / "gone.png").symlink_to(tmp_path / "deleted.png")  # a file deleted under it
    os.mkfifo(tmp_path / "pipe.png")
    (tmp_path / ".partial-1.png").write_bytes(b"")  # a save in progress
    assert sorted(p.name for p in list_images(tmp_path)) == ["a.png", "b.png"]
