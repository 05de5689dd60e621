"""Live mode: every change makes a new few-step picture beside the canvas; the stale job in
flight is cancelled and never shown; nothing is saved; the canvas keeps the input."""

from __future__ import annotations

import numpy as np
import pytest
from PIL import Image
from PySide6.QtCore import Qt

from studio.core.request import Mode
from studio.ui.live_mode import LIVE_STEPS
from tests.pictures import yellow_square_on_blue as _input


@pytest.fixture
def window(engine_window):  # noqa: ANN001, ANN201
    return engine_window("a small red circle at the top left", seed=11, steps=20)


def test_live_pictures_follow_every_change_and_only_the_newest_shows(
    qtbot, window, out_dir
) -> None:  # noqa: ANN001
    live, view = window.live, window.live_view
    cancelled: list[int] = []
    window.controller.jobCancelled.connect(cancelled.append)
    shown: list[int] = []
    live.shown.connect(shown.append)
    with qtbot.waitSignal(live.shown, timeout=60000) as first:
        qtbot.mouseClick(window.live_button, Qt.MouseButton.LeftButton)
    assert view.isVisible() and view.shown is not None
    record = window.controller.job(first.args[0])
    assert record.live and record.request.steps == LIVE_STEPS and record.request.seed == 11

    # a burst of edits while a picture is being made: the last one wins, the rest never show
    prompts = ["a green ring", "a yellow star", "a purple square in the centre"]
    with qtbot.waitSignal(live.shown, timeout=60000) as last:
        for prompt in prompts:
            window.prompt_panel.set_prompts(prompt, "")
            qtbot.wait(5)
    assert window.controller.job(last.args[0]).request.prompt == prompts[-1]
    assert shown == [first.args[0], last.args[0]]  # nothing stale was shown in between
    assert cancelled  # the replaced ones were stopped, not left to run

    # a stroke on the mask in inpaint: a new picture; the canvas keeps its input image
    window.canvas.set_image(_input())
    window.set_mode(Mode.INPAINT)
    window.canvas.set_mask(Image.new("L", (64, 64), 255))
    with qtbot.waitSignal(live.shown, timeout=60000) as stroke:
        window.canvas.maskChanged.emit()
    assert window.controller.job(stroke.args[0]).request.mode is Mode.INPAINT
    assert np.array_equal(np.asarray(window.canvas.image().convert("RGB")), np.asarray(_input()))

    assert not out_dir.is_dir() or not list(out_dir.iterdir())  # live pictures are not saved
    qtbot.mouseClick(window.live_button, Qt.MouseButton.LeftButton)  # off
    assert not view.isVisible()
    jobs_before = len(window.controller.queued_jobs)
    window.prompt_panel.set_prompts("a blue circle", "")
    qtbot.wait(50)
    assert len(window.controller.queued_jobs) == jobs_before and not window.controller.is_busy


def test_a_model_with_a_fast_setting_goes_live_with_it_and_one_without_says_how(
    make_window, qtbot, tmp_path, monkeypatch
) -> None:  # noqa: ANN001
    """An SDXL model and SDXL-Lightning's LoRA in the LoRA folder: live jobs add the LoRA and
    run its 4 steps of trailing Euler without CFG, while the panel keeps the keeper's
    settings; with the LoRA gone, a short schedule, and the view says once how to get one."""
    from safetensors.numpy import save_file

    from studio.core.loras import LORA_DIR_ENV
    from tests.scripted_backend import ScriptedBackend

    model = tmp_path / "juggernautXL_v9"  # an SDXL fine-tune (only its index is needed here)
    model.mkdir()
    (model / "model_index.json").write_text('{"_class_name": "StableDiffusionXLPipeline"}')
    folder = tmp_path / "loras"
    folder.mkdir()
    lora = folder / "sdxl_lightning_4step_lora.safetensors"
    module = "lora_unet_input_blocks_4_1_transformer_blocks_1_attn1_to_q"
    save_file({f"{module}.lora_down.weight": np.zeros((4, 8), np.float32)}, str(lora))
    monkeypatch.setenv(LORA_DIR_ENV, str(folder))
    backend = ScriptedBackend()
    window = make_window(backend=backend)
    window.draft.edit(
        {"model": str(model), "width": 64, "height": 64, "steps": 30, "cfg_scale": 7.0}
    )
    window.draft.edit({"scheduler": "DPM++ 2M Karras", "seed": 11})
    window.prompt_panel.set_prompts("a lighthouse at dusk", "")
    live, view = window.live, window.live_view

    window.live_button.click()
    qtbot.waitUntil(lambda: bool(backend.submitted), timeout=5000)
    job = backend.submitted[-1]
    sent = job.request
    assert sent.prompt == "a lighthouse at dusk <lora:sdxl_lightning_4step_lora:1>"
    assert (sent.steps, sent.cfg_scale, sent.scheduler) == (4, 1.0, "Euler SGM Uniform")
    # the panel keeps the keeper's settings: Generate still makes a 30-step picture
    assert window.draft["steps"] == 30 and window.draft["prompt"] == "a lighthouse at dusk"
    with qtbot.waitSignal(live.shown, timeout=5000):
        backend.finish(job)
    assert view.caption.text().startswith("Live · Lightning LoRA, 4 steps · seed ")

    lora.unlink()  # no fast setting left: a short schedule that suits few steps
    window.prompt_panel.set_prompts("a lighthouse at night", "")
    qtbot.waitUntil(lambda: backend.submitted[-1] is not job, timeout=5000)
    job = backend.submitted[-1]
    sent = job.request
    assert sent.prompt == "a lighthouse at night"
    assert (sent.steps, sent.cfg_scale, sent.scheduler) == (LIVE_STEPS, 4.0, "DPM++ 2M Karras")
    with qtbot.waitSignal(live.shown, timeout=5000):
        backend.finish(job)
    told = "No fast setting found for SDXL"
    assert "no fast setting, 6 steps" in view.caption.text() and told in view.caption.text()
    assert "LCM, Lightning or Hyper-SD LoRA for SDXL to your LoRA folder" in view.caption.text()
    window.prompt_panel.set_prompts("a lighthouse in fog", "")
    qtbot.waitUntil(lambda: backend.submitted[-1] is not job, timeout=5000)
    with qtbot.waitSignal(live.shown, timeout=5000):
        backend.finish(backend.submitted[-1])
    assert told not in view.caption.text() and told in view.toolTip()  # said once
