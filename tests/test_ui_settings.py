"""What the studio remembers between runs, and the panels' own rules."""

from __future__ import annotations

import threading
import time
from dataclasses import replace
from pathlib import Path

import pytest
from PIL import Image
from PySide6.QtCore import Qt

from studio.core.draft import Draft, Source
from studio.core.jobs import GenerationResult, Job, StepProgress
from studio.core.request import GenerationRequest, Mode, Upscaler
from studio.core.settings import EngineSettings
from studio.ui.backends.local import EngineWorker, real_engine
from studio.ui.controller import JobController
from studio.ui.dialogs import SettingsDialog, StudioSettings
from studio.ui.panels.guidance_panel import GuidancePanel
from studio.ui.panels.prompt_panel import PromptPanel
from studio.ui.settings import Settings

# Every engine setting away from its default, so a field that is lost shows.
CHANGED = EngineSettings(
    device="cuda",
    dtype="bfloat16",
    attention_slicing=False,
    vae_tiling=True,
    cpu_offload=True,
    preview_method="vae",
    preview_every=4,
    channels_last=True,
    fuse_qkv=True,
    compile_unet=True,
    cuda_graphs=True,
)


def test_parameters_layout_and_theme_survive_a_restart(qtbot, make_window, out_dir):  # noqa: ANN001
    first = make_window()
    first.prompt_panel.set_prompts("a white ring on the left", "noise")
    first.draft.edit({"steps": 9, "cfg_scale": 4.5, "scheduler": "UniPC", "seed": 77})
    first.draft.edit({"width": 128, "height": 96, "dynamic_thresholding": True})
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
    assert g.seed.value() == 77  # a typed seed stays the seed
    assert g.dynamic_thresholding.isChecked()
    assert second.mode() is Mode.IMAGE_TO_IMAGE
    assert second.settings.theme() == "light" and second.theme_actions["light"].isChecked()
    assert second.prompt_panel.history()[0] == ("an older prompt", "")
    assert second.gallery_dock.isHidden() and not second.controls_dock.isHidden()
    second.set_theme("dark")


def test_settings_change_the_output_folder_and_previews(qtbot, make_window, tmp_path):  # noqa: ANN001
    window = make_window()
    folder = tmp_path / "elsewhere"
    engine = EngineSettings(preview_method="none", preview_every=3)
    window.apply_settings(StudioSettings(folder, engine, "dark"))
    assert window.controller.output_dir == folder
    assert window.gallery.model.folder == folder
    settings = window.settings.engine_settings()
    assert (settings.preview_method, settings.preview_every) == ("none", 3)


def test_sizes_snap_to_multiples_of_8_and_swap(qtbot):  # noqa: ANN001
    draft = Draft()
    panel = GuidancePanel(draft)
    qtbot.addWidget(panel)
    panel.width_box.lineEdit().setText("100")
    panel.width_box.interpretText()
    assert panel.width_box.value() == 104 and draft["width"] == 104  # one rule: snap_to_8
    panel.set_size(513, 770)
    assert panel.size() == (512, 768)
    panel.swap.click()
    assert panel.size() == (768, 512)
    assert (panel.width_box.value(), panel.height_box.value()) == (768, 512)
    panel.presets.menu().actions()[5].trigger()
    assert panel.size() == (1024, 1024)


def test_the_seed_field_is_the_seed_used(qtbot):  # noqa: ANN001
    draft = Draft()
    panel = GuidancePanel(draft)
    qtbot.addWidget(panel)
    assert panel.seed.value() == -1 and draft.freeze().seed == -1  # random: shown as -1
    assert not panel.reuse_seed.isEnabled()  # no job yet: no last seed
    panel.seed.setValue(31337)  # typed: that is the seed the job runs with
    assert draft.freeze().seed == 31337
    panel.dice.click()
    assert panel.seed.value() == -1 and draft.freeze().seed == -1
    draft.set_last_seed(2**64 - 1)  # a job finished; its seed is one click away
    assert panel.reuse_seed.isEnabled()
    panel.reuse_seed.click()
    assert panel.seed.value() == 2**64 - 1 and draft.freeze().seed == 2**64 - 1


def test_a_value_beyond_a_sliders_usual_range_is_shown_as_it_will_run(qtbot):  # noqa: ANN001
    draft = Draft()
    panel = GuidancePanel(draft)
    qtbot.addWidget(panel)
    draft.apply({"steps": 300, "cfg_scale": 45.0}, Source.RESTORED)
    assert (panel.steps.value(), panel.cfg_scale.value()) == (300, 45.0)
    assert draft.freeze().steps == 300


def test_strength_and_mode_specific_controls(qtbot):  # noqa: ANN001
    draft = Draft()
    panel = GuidancePanel(draft)
    qtbot.addWidget(panel)
    panel.show()
    assert not panel.strength.isVisible() and not panel.inpaint_box.isVisible()
    assert panel.upscaler.isVisible() and not panel.upscale_method.isVisible()
    draft.edit({"mode": Mode.IMAGE_TO_IMAGE})
    assert panel.strength.isVisible()
    draft.edit({"mode": Mode.INPAINT})
    assert panel.strength.isVisible() and panel.inpaint_box.isVisible()
    draft.edit({"mode": Mode.UPSCALE})
    assert panel.upscale_method.isVisible() and not panel.upscaler.isVisible()
    assert panel.upscaler_choice() is Upscaler.X4 and not panel.strength.isVisible()
    # the Upscale mode's upscaler is picked where the model is, at the top of the window
    assert not panel.upscale_model.isVisible() and panel.upscale_runs.isVisible()
    assert panel.upscale_runs.text() == "Runs 20 steps, DPM++ 2M, CFG 1."
    # the ×4 upscaler's own steps, sampler and CFG run: the generation's are not shown
    # beside that line, nor a size or batch, which no upscale reads
    shown = (panel.steps, panel.cfg_scale, panel.scheduler, panel.width_box, panel.batch_size)
    assert [w.isVisible() for w in shown] == [False] * 5 and panel.seed.isVisible()
    assert not panel.advanced.isEnabled()
    panel.upscale_method.setCurrentIndex(panel.upscale_method.findData("hires"))
    assert draft["upscale_method"] == "hires" and not panel.upscale_model.isVisible()
    # the hires fix runs the generator with its steps (hires steps 0), sampler and CFG
    assert [w.isVisible() and w.isEnabled() for w in shown[:3]] == [True] * 3
    assert not panel.width_box.isVisible() and panel.advanced.isEnabled()
    draft.edit({"mode": Mode.TEXT_TO_IMAGE})  # the generation modes keep their own choice
    assert panel.upscaler.currentData() is None and draft.freeze().upscaler is None


def test_prompt_history_with_ctrl_up_and_down(qtbot):  # noqa: ANN001
    panel = PromptPanel(Draft())
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


# -- engine settings: the dialog, persistence, and the worker applying them ----------------


def test_the_settings_dialog_shows_the_stored_values(qtbot, tmp_path):  # noqa: ANN001
    settings = Settings(tmp_path / "studio.ini")
    assert settings.engine_settings() == EngineSettings()  # nothing stored: all automatic
    dialog = SettingsDialog(StudioSettings(tmp_path, settings.engine_settings(), "dark"))
    qtbot.addWidget(dialog)
    combos = (dialog.device, dialog.dtype, dialog.attention_slicing, dialog.cpu_offload)
    assert {combo.currentText() for combo in combos} == {"Automatic"}
    assert not any(check.isChecked() for check in dialog.speedups.values())
    assert "slower first generation" in dialog.speedups["compile_unet"].toolTip().lower()
    # CUDA graphs are recorded by the compiler: not choosable without it
    assert not dialog.speedups["cuda_graphs"].isEnabled()
    dialog.speedups["compile_unet"].setChecked(True)
    assert dialog.speedups["cuda_graphs"].isEnabled()

    settings.set_engine_settings(CHANGED)
    dialog = SettingsDialog(StudioSettings(tmp_path, settings.engine_settings(), "light"))
    qtbot.addWidget(dialog)
    assert dialog.device.currentText() == "CUDA (NVIDIA GPU)"
    assert dialog.dtype.currentText() == "bfloat16"
    assert (dialog.attention_slicing.currentText(), dialog.vae_tiling.currentText()) == (
        "Off",
        "On",
    )
    assert dialog.cpu_offload.currentText() == "On"
    assert dialog.preview_method.currentData() == "vae" and dialog.preview_every.value() == 4
    assert all(check.isChecked() for check in dialog.speedups.values())
    assert dialog.values() == StudioSettings(tmp_path, CHANGED, "light")
    dialog.speedups["compile_unet"].setChecked(False)  # graphs go with the compiler
    assert dialog.values().engine == replace(CHANGED, compile_unet=False, cuda_graphs=False)


def test_the_settings_dialog_fits_a_laptop_screen(qtbot):  # noqa: ANN001
    """On a 1366×768 screen OK and Cancel stay on it: what does not fit above them scrolls
    (the dialog could not be made shorter than 787 pixels)."""
    from PySide6.QtWidgets import QDialogButtonBox, QScrollArea

    dialog = SettingsDialog(StudioSettings(Path("."), EngineSettings(), "dark"))
    qtbot.addWidget(dialog)
    dialog.show()
    dialog.resize(1060, 700)  # 768 less the desktop's panel and the title bar
    qtbot.waitUntil(lambda: dialog.height() == 700, timeout=2000)
    ok = dialog.findChild(QDialogButtonBox).button(QDialogButtonBox.StandardButton.Ok)
    corner = ok.mapTo(dialog, ok.rect().bottomRight())
    assert ok.isVisible() and dialog.rect().contains(corner)
    assert dialog.findChild(QScrollArea).verticalScrollBar().maximum() > 0  # the rest scrolls


def test_the_dialog_shows_what_each_speed_up_bought_when_benched_here(qtbot):  # noqa: ANN001
    from studio.core.speedup_figures import from_ladder, record

    def shown(dialog: SettingsDialog) -> dict[str, str]:
        return {field: label.text() for field, label in dialog.speedup_figures.items()}

    dialog = SettingsDialog(StudioSettings(Path("."), EngineSettings(), "dark"))
    qtbot.addWidget(dialog)
    assert set(shown(dialog).values()) == {""}  # never benched: says how to measure
    assert "studio bench" in dialog.measured_caption.text()

    # what `studio bench` keeps, on the CPU and then on a GPU (bench/runner.record_speedups)
    cpu_rows = {
        "engine": {"s_per_image": 1.0},
        "channels_last": {"s_per_image": 0.96},
        "fuse_qkv": {"s_per_image": 0.96},
        "compile_unet": {"s_per_image": 0.72, "first_run_s": 38.0},
        "cuda_graphs": {"skipped": "CUDA graphs need a CUDA GPU."},
    }
    record(from_ladder(cpu_rows, "cpu", "CPU", "studio-tiny, 64×64, 25 steps"))
    gpu_rows = {
        "engine": {"s_per_image": 0.40},
        "channels_last": {"s_per_image": 0.38},
        "fuse_qkv": {"s_per_image": 0.38},
        "compile_unet": {"s_per_image": 0.30, "first_run_s": 61.0},
        "cuda_graphs": {"s_per_image": 0.24, "first_run_s": 70.0},
    }
    record(from_ladder(gpu_rows, "cuda:0", "NVIDIA H100", "SD 1.5 architecture, 512×512"))

    dialog = SettingsDialog(StudioSettings(Path("."), EngineSettings(), "dark"))
    qtbot.addWidget(dialog)
    # Automatic would pick the GPU: its figures, each against the row above it
    assert shown(dialog) == {
        "channels_last": "5% less time",
        "fuse_qkv": "no measurable change",
        "compile_unet": "21% less time, first image 61 s",
        "cuda_graphs": "20% less time, first image 70 s",
    }
    assert "NVIDIA H100" in dialog.measured_caption.text()
    assert "0.79×" in dialog.speedups["compile_unet"].toolTip()
    dialog.device.setCurrentIndex(dialog.device.findText("CPU"))  # the CPU's, when chosen
    assert shown(dialog)["compile_unet"] == "25% less time, first image 38 s"
    assert shown(dialog)["cuda_graphs"] == "CUDA graphs need a CUDA GPU"
    assert "studio-tiny" in dialog.measured_caption.text()
    dialog.device.setCurrentIndex(dialog.device.findText("Apple MPS"))  # not benched there
    assert set(shown(dialog).values()) == {""}
    assert "0.79×" not in dialog.speedups["compile_unet"].toolTip()


def test_odd_stored_engine_values_read_as_automatic(qtbot, tmp_path):  # noqa: ANN001
    settings = Settings(tmp_path / "studio.ini")
    settings.set_engine_settings(replace(CHANGED, device="cuda:1"))
    settings._qs.setValue("engine/dtype", "float8")
    settings._qs.setValue("engine/vae_tiling", "sometimes")
    read = settings.engine_settings()
    assert (read.device, read.dtype, read.vae_tiling) == ("cuda:1", None, None)
    dialog = SettingsDialog(StudioSettings(tmp_path, read, "dark"))  # cuda:1 stays choosable
    qtbot.addWidget(dialog)
    assert dialog.values().engine == read


def test_settings_chosen_in_the_dialog_persist_and_reach_the_engine(  # noqa: ANN001
    qtbot, make_window, tmp_path, monkeypatch
):
    window = make_window()
    configured: list[EngineSettings] = []
    monkeypatch.setattr(window.controller, "configure", configured.append)

    def choose(dialog: SettingsDialog) -> int:  # what the user clicks, then OK
        dialog.device.setCurrentIndex(dialog.device.findText("CUDA (NVIDIA GPU)"))
        dialog.dtype.setCurrentIndex(dialog.dtype.findText("bfloat16"))
        dialog.attention_slicing.setCurrentIndex(dialog.attention_slicing.findText("Off"))
        dialog.vae_tiling.setCurrentIndex(dialog.vae_tiling.findText("On"))
        dialog.cpu_offload.setCurrentIndex(dialog.cpu_offload.findText("On"))
        dialog.preview_method.setCurrentIndex(dialog.preview_method.findData("vae"))
        dialog.preview_every.setValue(4)
        for check in dialog.speedups.values():
            check.setChecked(True)
        return SettingsDialog.DialogCode.Accepted

    monkeypatch.setattr(SettingsDialog, "exec", choose)
    window.open_settings()
    assert window.engine_settings() == CHANGED
    assert configured == [CHANGED]
    window.settings.sync()
    assert Settings(tmp_path / "studio.ini").engine_settings() == CHANGED


class _FakeModels:
    """A model manager's shape: one loaded model, dropped by unload()."""

    def __init__(self, events: list[str]) -> None:
        self.events = events
        self.loaded: str | None = None

    def pipeline(self, spec: str, mode: Mode) -> str:  # noqa: ARG002
        self.loaded = spec
        return spec

    def unload(self) -> None:
        self.events.append("unload")
        self.loaded = None


class _ModelEngine:
    """A fake engine with a model manager; `events` records what happened in which order, and
    a run waits for `gate` before it ends, or for its `cancel` flag, which ends it unfinished."""

    def __init__(self, settings: EngineSettings, events: list[str], gate: threading.Event) -> None:
        self.settings = settings
        self.models = _FakeModels(events)
        self.events = events
        self.gate = gate

    def run(
        self,
        request: GenerationRequest,
        reporter,  # noqa: ANN001
        cancel: threading.Event | None = None,
    ) -> GenerationResult:
        cancel = cancel or threading.Event()
        if cancel.is_set():
            return GenerationResult([], request, [request.seed], cancelled=True)
        self.events.append("run")
        self.models.pipeline(request.model, request.mode)
        reporter.step(StepProgress("generate", 1, 1, 0.01, None))
        deadline = time.monotonic() + 5
        while not self.gate.wait(0.01):  # the job's "work", until the test lets it end
            if cancel.is_set():
                self.events.append("cancelled")
                return GenerationResult([], request, [request.seed], cancelled=True)
            assert time.monotonic() < deadline, "the gate never opened"
        self.events.append("done")
        image = Image.new("RGB", (request.width, request.height), (0, 90, 200))
        return GenerationResult([image], request, [request.seed])


def _engines(gate: threading.Event | None = None):  # noqa: ANN202
    """An engine factory, the engines it built in order, and the events they recorded."""
    built: list[_ModelEngine] = []
    events: list[str] = []
    if gate is None:
        gate = threading.Event()
        gate.set()

    def factory(settings: EngineSettings) -> _ModelEngine:
        built.append(_ModelEngine(settings, events, gate))
        return built[-1]

    return factory, built, events


def _request(prompt: str = "a ring") -> GenerationRequest:
    return GenerationRequest(prompt=prompt, model="m", steps=2, width=16, height=16, seed=5)


def test_a_new_device_or_precision_drops_the_loaded_model(qtbot, tmp_path):  # noqa: ANN001
    factory, built, _ = _engines()
    worker = EngineWorker(EngineSettings(), factory)  # slots called directly, on this thread
    worker.start("m")
    first = built[0]
    assert first.models.loaded == "m"

    # Previews and VAE tiling are read at every job: no reload, same engine, same model.
    preview_only = EngineSettings(preview_method="none", preview_every=3, vae_tiling=True)
    worker.configure(preview_only)
    assert len(built) == 1 and first.models.loaded == "m" and first.settings == preview_only

    worker.configure(replace(preview_only, device="cpu", dtype="float32"))
    assert first.models.loaded is None  # the old model's memory is freed at once
    finished: list[int] = []
    worker.finished.connect(lambda job_id, outcome: finished.append(job_id))
    worker.run(Job(1, _request(), tmp_path))
    assert finished == [1]
    second = built[1]  # the next job built the engine anew, under the new settings
    assert (second.settings.device, second.settings.dtype) == ("cpu", "float32")
    assert second.models.loaded == "m"

    worker.configure(replace(second.settings, compile_unet=True))
    assert second.models.loaded is None


def test_settings_apply_between_jobs_never_during_one(qtbot, tmp_path):  # noqa: ANN001
    gate = threading.Event()
    factory, built, events = _engines(gate)
    controller = JobController(tmp_path / "out", EngineSettings(), engine_factory=factory)
    controller.start_engine()
    try:
        controller.submit(_request())
        qtbot.waitUntil(lambda: events == ["run"], timeout=5000)
        controller.configure(EngineSettings(dtype="float32"))  # while the job runs
        qtbot.wait(100)  # time enough for a configure that did not wait to show
        assert events == ["run"]
        with qtbot.waitSignal(controller.jobFinished, timeout=5000):
            gate.set()
        qtbot.waitUntil(lambda: "unload" in events, timeout=5000)
        assert events == ["run", "done", "unload"]  # the job ran to its end first
        with qtbot.waitSignal(controller.jobFinished, timeout=5000):
            controller.submit(_request("b"))
        assert len(built) == 2 and built[1].settings.dtype == "float32"
    finally:
        gate.set()
        assert controller.shutdown(2000)
        controller.deleteLater()


def test_the_real_engine_reloads_under_a_new_precision(qtbot, tmp_path, tiny_sd):  # noqa: ANN001
    import torch

    worker = EngineWorker(EngineSettings(device="cpu"), real_engine)
    ready: list[str] = []
    worker.engineReady.connect(ready.append)
    worker.start(str(tiny_sd))
    assert ready == ["Ready"]
    old = worker._engine
    assert old.models.weight_loads == 1 and old.models.dtype == torch.float32

    worker.configure(EngineSettings(device="cpu", preview_every=2))
    assert worker._engine is old and old.settings.preview_every == 2

    worker.configure(EngineSettings(device="cpu", dtype="bfloat16"))
    assert old.models._base is None  # unloaded
    worker.start(str(tiny_sd))
    pipe = worker._engine.models.pipeline(str(tiny_sd), Mode.TEXT_TO_IMAGE)
    assert pipe.unet.dtype == torch.bfloat16

    # A device this machine lacks fails the next job with one sentence, when it loads.
    if torch.cuda.is_available():
        pytest.skip("this machine has CUDA")
    failed: list[str] = []
    worker.failed.connect(lambda job_id, message: failed.append(message))
    worker.configure(EngineSettings(device="cuda"))
    worker.run(Job(1, _request(), tmp_path))
    assert len(failed) == 1 and failed[0].startswith("CUDA was asked for")


def test_a_restart_in_upscale_mode_keeps_both_upscaler_choices(qtbot, make_window) -> None:  # noqa: ANN001
    first = make_window()
    first.draft.edit({"upscaler": None, "mode": Mode.UPSCALE, "upscale_method": "hires"})
    first.close()
    second = make_window()
    assert second.mode() is Mode.UPSCALE and second.guidance.upscaler_choice() is Upscaler.HIRES
    second.set_mode(Mode.TEXT_TO_IMAGE)
    assert second.draft.freeze().upscaler is None  # no hires fix the artist never asked for


def test_a_sliders_label_shows_every_decimal_the_value_will_run_with(qtbot) -> None:  # noqa: ANN001
    draft = Draft()
    panel = GuidancePanel(draft)
    qtbot.addWidget(panel)
    draft.apply(
        {"cfg_scale": 7.25, "threshold_percentile": 99.95, "strength": 0.875}, Source.RESTORED
    )
    labels = {
        name: widget._label.text()
        for name, widget in (
            ("cfg_scale", panel.cfg_scale),
            ("threshold_percentile", panel.percentile),
            ("strength", panel.strength),
        )
    }
    assert labels == {"cfg_scale": "7.25", "threshold_percentile": "99.95", "strength": "0.875"}
    assert draft.freeze().cfg_scale == 7.25


def test_the_models_folder_setting_lists_its_checkpoints(  # noqa: ANN001
    qtbot, make_window, tmp_path, monkeypatch
):
    from studio.core import models_folder

    monkeypatch.setattr(models_folder, "_chosen", {"command line": None, "setting": None})
    monkeypatch.delenv(models_folder.ENV_VAR, raising=False)
    checkpoints = tmp_path / "ComfyUI" / "models" / "checkpoints"
    checkpoints.mkdir(parents=True)
    (checkpoints / "juggernautXL.safetensors").write_bytes(b"x")
    window = make_window()
    combo = window.model_picker.combo
    listed = [combo.itemText(i) for i in range(combo.count())]
    assert "juggernautXL" not in listed
    engine = window.settings.engine_settings()
    window.apply_settings(StudioSettings(tmp_path, engine, "dark", models_dir=tmp_path / "ComfyUI"))
    listed = [combo.itemText(i) for i in range(combo.count())]
    assert "juggernautXL" in listed
    # picking it names the file the engine loads; the setting survives a restart
    combo.activated.emit(listed.index("juggernautXL"))
    assert window.draft["model"] == str(checkpoints / "juggernautXL.safetensors")
    window.settings.sync()
    assert Settings(window.settings.path).models_dir() == tmp_path / "ComfyUI"
    dialog = SettingsDialog(StudioSettings(tmp_path, engine, "dark", models_dir=tmp_path))
    assert dialog.values().models_dir == tmp_path
    dialog.deleteLater()


def test_models_of_one_name_are_told_apart_in_the_picker(  # noqa: ANN001
    make_window, tmp_path, monkeypatch
):
    """A GGUF beside its .safetensors, or one name in two subfolders, were listed as two
    identical entries: each is listed by as much of its file name and folders as tells it
    from the others."""
    from studio.core import models_folder

    monkeypatch.setattr(models_folder, "_chosen", {"command line": None, "setting": None})
    monkeypatch.setenv(models_folder.ENV_VAR, str(tmp_path))
    checkpoints = tmp_path / "checkpoints"
    for name in (
        "flux1-dev.safetensors",
        "flux1-dev.gguf",
        "SDXL/pony.safetensors",
        "SD15/pony.safetensors",
        "juggernautXL.safetensors",
    ):
        (checkpoints / name).parent.mkdir(parents=True, exist_ok=True)
        (checkpoints / name).write_bytes(b"x")
    combo = make_window().model_picker.combo
    listed = {combo.itemText(i): combo.itemData(i) for i in range(combo.count())}
    assert {name: path for name, path in listed.items() if "flux" in name or "pony" in name} == {
        "flux1-dev.gguf": str(checkpoints / "flux1-dev.gguf"),
        "flux1-dev.safetensors": str(checkpoints / "flux1-dev.safetensors"),
        "SD15/pony.safetensors": str(checkpoints / "SD15" / "pony.safetensors"),
        "SDXL/pony.safetensors": str(checkpoints / "SDXL" / "pony.safetensors"),
    }
    assert listed["juggernautXL"] == str(checkpoints / "juggernautXL.safetensors")


def test_the_picker_says_a_damaged_model_is_damaged_when_it_is_picked(  # noqa: ANN001
    make_window, tmp_path, monkeypatch
):
    """A half-downloaded file or a folder missing a part read as any model under the picker
    ("A single-file checkpoint: …") until Generate failed: the hint now says what is wrong,
    in the warning colour, as soon as it is picked."""
    from studio.core import models_folder

    monkeypatch.setattr(models_folder, "_chosen", {"command line": None, "setting": None})
    monkeypatch.setenv(models_folder.ENV_VAR, str(tmp_path))
    checkpoints = tmp_path / "checkpoints"
    checkpoints.mkdir()
    (checkpoints / "half.safetensors").write_bytes((10**6).to_bytes(8, "little") + b"{}")
    (checkpoints / "half.gguf").write_bytes(b"GGUF\x03\x00\x00\x00")
    incomplete = checkpoints / "incomplete"
    incomplete.mkdir()
    (incomplete / "model_index.json").write_text(
        '{"_class_name": "StableDiffusionPipeline", "unet": ["diffusers", "UNet2DConditionModel"]}'
    )
    window = make_window()
    picker = window.model_picker
    for name, says in (
        ("half.safetensors", "'half.safetensors' is not a readable .safetensors file (damaged"),
        ("half.gguf", "'half.gguf' is not a readable GGUF file (damaged"),
        ("incomplete", "'incomplete' has no 'unet' folder, which its model_index.json lists"),
    ):
        index = picker.combo.findText(name)
        picker.combo.activated.emit(index)
        assert window.draft["model"] == picker.combo.itemData(index)
        assert says in picker.hint.text() and picker.hint.objectName() == "warning"
    picker.combo.activated.emit(picker.combo.findData("studio-tiny"))
    assert picker.hint.objectName() == "hint"


def test_the_models_list_says_each_models_family_and_size(  # noqa: ANN001
    qtbot, make_window, tmp_path, monkeypatch
):
    """Only the chosen model's hint said its family: a list of fine-tunes of SD 1.5, SDXL
    and Flux read as bare names. Opening the list gives each its family and size."""
    from studio.core import models_folder
    from tests.engine.tiny_families import build
    from tests.sparse_files import sparse_safetensors

    monkeypatch.setattr(models_folder, "_chosen", {"command line": None, "setting": None})
    monkeypatch.setenv(models_folder.ENV_VAR, str(tmp_path))
    build("sd1", tmp_path / "diffusers" / "dreamshaper")
    sparse_safetensors(
        tmp_path / "checkpoints" / "juggernautXL.safetensors",
        {
            "model.diffusion_model.input_blocks.0.0.weight": [320, 4, 3, 3],
            "conditioner.embedders.1.model.ln_final.weight": [1280],
        },
    )
    from studio.ui.panels import model_picker

    read_on_the_windows_thread = []
    family_label = model_picker._family_label

    def recording_family_label(spec: str) -> str:
        read_on_the_windows_thread.append(threading.current_thread() is threading.main_thread())
        return family_label(spec)

    combo = make_window().model_picker.combo
    monkeypatch.setattr(model_picker, "_family_label", recording_family_label)

    def names() -> list[str]:
        return [combo.itemText(i) for i in range(combo.count())]

    assert "juggernautXL" in names() and "dreamshaper" in names()  # nothing read at start
    combo.showPopup()  # read on a worker: the list opens at once, each name grows once read
    combo.hidePopup()
    qtbot.waitUntil(lambda: "juggernautXL · SDXL · 25.8 kB" in names(), timeout=10_000)
    assert any(name.startswith("dreamshaper · SD 1.x · ") for name in names())
    assert read_on_the_windows_thread and not any(read_on_the_windows_thread)  # never frozen


def test_a_models_folder_that_lists_nothing_says_why(make_window, tmp_path, monkeypatch):  # noqa: ANN001
    """A mistyped models folder, or one with no models where the tools keep them, left the
    picker as it was without a word; a folder that has gone says so at the next start."""
    from studio.core import models_folder

    monkeypatch.setattr(models_folder, "_chosen", {"command line": None, "setting": None})
    monkeypatch.delenv(models_folder.ENV_VAR, raising=False)
    window = make_window()
    engine = window.settings.engine_settings()
    typo = tmp_path / "ComfyUl"
    window.apply_settings(StudioSettings(tmp_path, engine, "dark", models_dir=typo))
    assert window.banner.kind == "error"
    assert window.banner.text() == (
        f"The models folder '{typo}' is not there (moved, or on a drive not plugged in): its "
        "models are not listed."
    )
    picture = tmp_path / "in.png"  # a file: not "not there", which it is
    picture.write_bytes(b"x")
    window.apply_settings(StudioSettings(tmp_path, engine, "dark", models_dir=picture))
    assert window.banner.text() == (
        f"The models folder '{picture}' is a file, not a folder: its models are not listed."
    )
    empty = tmp_path / "Documents"
    empty.mkdir()
    window.apply_settings(StudioSettings(tmp_path, engine, "dark", models_dir=empty))
    assert window.banner.text().startswith(f"No models were found in '{empty}': the studio looks")
    window.settings.set_models_dir(typo)  # and at the next start
    window.settings.sync()
    again = make_window()  # the same settings file
    assert f"The models folder '{typo}' is not there" in again.banner.text()
    # `studio --models-dir FOLDER` uses that folder: the setting's is not the one in use
    models_folder.use(empty)
    over = make_window()
    assert "is not there" not in over.banner.text()
