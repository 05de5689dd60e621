"""What the studio remembers between runs, and the panels' own rules."""

from __future__ import annotations

from PySide6.QtCore import Qt

from studio.engine.request import Mode
from studio.ui.panels.guidance_panel import GuidancePanel
from studio.ui.panels.prompt_panel import PromptPanel


def test_parameters_layout_and_theme_survive_a_restart(qtbot, make_window, out_dir):  # noqa: ANN001
    first = make_window()
    first.prompt_panel.set_prompts("a white ring on the left", "noise")
    first.guidance.set_values({"steps": 9, "cfg_scale": 4.5, "scheduler": "UniPC", "seed": 77})
    first.guidance.set_values({"width": 128, "height": 96, "dynamic_thresholding": True})
    first.set_mode(Mode.IMAGE_TO_IMAGE)
    first.set_theme("light")
    first.prompt_panel.remember("an older prompt", "")
    first.gallery_dock.hide()  # the layout of the docks is remembered
    first.close()

    second = make_window()
    assert second.prompt_panel.prompt() == "a white ring on the left"
    assert second.prompt_panel.negative_prompt() == "noise"
    g = second.guidance
    assert (g.steps.value(), g.scheduler.currentText(), g.size()) == (9, "UniPC", (128, 96))
    assert g.seed_locked() and g.seed.value() == 77
    assert g.dynamic_thresholding.isChecked()
    assert second.mode() is Mode.IMAGE_TO_IMAGE
    assert second.settings.theme() == "light" and second.theme_actions["light"].isChecked()
    assert second.prompt_panel.history()[0] == ("an older prompt", "")
    assert second.gallery_dock.isHidden() and not second.controls_dock.isHidden()
    second.set_theme("dark")


def test_settings_change_the_output_folder_and_previews(qtbot, make_window, tmp_path):  # noqa: ANN001
    window = make_window()
    folder = tmp_path / "elsewhere"
    window.apply_settings(folder, "none", 3, "dark")
    assert window.controller.output_dir == folder
    assert window.gallery.model.folder == folder
    settings = window.settings.engine_settings()
    assert (settings.preview_method, settings.preview_every) == ("none", 3)


def test_sizes_snap_to_multiples_of_8_and_swap(qtbot):  # noqa: ANN001
    panel = GuidancePanel()
    qtbot.addWidget(panel)
    panel.width_box.lineEdit().setText("100")
    panel.width_box.interpretText()
    assert panel.width_box.value() == 96
    panel.set_size(513, 770)
    assert panel.size() == (512, 768)
    panel.swap.click()
    assert panel.size() == (768, 512)
    panel.presets.menu().actions()[5].trigger()
    assert panel.size() == (1024, 1024)


def test_the_seed_is_random_unless_locked(qtbot):  # noqa: ANN001
    panel = GuidancePanel()
    qtbot.addWidget(panel)
    assert panel.values()["seed"] == -1
    panel.show_used_seed(31337)  # after a job, the seed used is shown...
    assert panel.seed.value() == 31337 and panel.values()["seed"] == -1
    panel.seed_lock.click()  # ...and locking keeps it
    assert panel.values()["seed"] == 31337
    panel.dice.click()
    assert panel.values()["seed"] != 31337


def test_strength_and_mode_specific_controls(qtbot):  # noqa: ANN001
    panel = GuidancePanel()
    qtbot.addWidget(panel)
    panel.show()
    assert not panel.strength.isVisible() and not panel.inpaint_box.isVisible()
    panel.set_mode(Mode.IMAGE_TO_IMAGE)
    assert panel.strength.isVisible()
    panel.set_mode(Mode.INPAINT)
    assert panel.strength.isVisible() and panel.inpaint_box.isVisible()
    panel.set_mode(Mode.UPSCALE)
    assert panel.values()["upscaler"] == "x4" and not panel.strength.isVisible()
    assert panel.upscale_model.isVisible()


def test_prompt_history_with_ctrl_up_and_down(qtbot):  # noqa: ANN001
    panel = PromptPanel()
    qtbot.addWidget(panel)
    panel.remember("first", "")
    panel.remember("second", "dark")
    edit = panel.prompt_edit
    qtbot.keyClick(edit, Qt.Key.Key_Up, Qt.KeyboardModifier.ControlModifier)
    assert (panel.prompt(), panel.negative_prompt()) == ("second", "dark")
    qtbot.keyClick(edit, Qt.Key.Key_Up, Qt.KeyboardModifier.ControlModifier)
    assert panel.prompt() == "first"
    qtbot.keyClick(edit, Qt.Key.Key_Down, Qt.KeyboardModifier.ControlModifier)
    assert panel.prompt() == "second"
