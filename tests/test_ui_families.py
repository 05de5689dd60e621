"""Every model family once through the real window and engine thread: the model picked, its
family's defaults and samplers shown, a job run with a preview at every step, the canvas and
the saved file showing what ran (tiny random-weight pipelines of each family's layout)."""

from __future__ import annotations

from pathlib import Path

import pytest
from PySide6.QtCore import Qt

from studio.core import families
from studio.core.request import Mode
from studio.metadata import read_parameters
from tests.engine.tiny_families import FAMILIES, build

SIZE = 64


@pytest.fixture(scope="module")
def folders(tmp_path_factory: pytest.TempPathFactory) -> dict[str, str]:
    root = tmp_path_factory.mktemp("window-families")
    return {name: str(build(name, root / name)) for name in FAMILIES}


def _generate(qtbot, window):  # noqa: ANN001, ANN202
    with qtbot.waitSignal(window.controller.jobFinished, timeout=60000) as blocker:
        qtbot.mouseClick(window.generate_button, Qt.MouseButton.LeftButton)
    return blocker.args[1]


@pytest.mark.parametrize("fixture", FAMILIES)
def test_each_family_runs_in_the_window(  # noqa: ANN001
    qtbot, make_window, shared_engine_factory, out_dir, folders, fixture: str
) -> None:
    window = make_window(engine_factory=shared_engine_factory)
    window.start_engine(preload=False)
    model = folders[fixture]
    family = families.of_folder(Path(model))
    window.draft.edit({"model": model})
    # the family's defaults and its own samplers
    offered = [
        window.guidance.scheduler.itemData(i) for i in range(window.guidance.scheduler.count())
    ]
    assert window.draft["scheduler"] in offered
    if family.samplers:
        assert offered == list(family.samplers)
    assert window.draft["steps"] == family.default_steps
    assert window.guidance.cfg_scale.isEnabled() == family.guidance.scale
    window.draft.edit({"steps": 2, "width": SIZE, "height": SIZE, "seed": 7})
    window.prompt_panel.set_prompts("a red circle", "")
    previews: list[int] = []
    window.controller.progress.connect(
        lambda _job, progress: (
            previews.append(progress.step) if progress.preview is not None else None
        )
    )

    result = _generate(qtbot, window)
    assert previews and previews[-1] == 2  # previews as they came (throttled), to the last
    assert window.canvas.image().size == (SIZE, SIZE)
    assert window.timeline.frame_count() == 3  # two steps and the result
    saved = read_parameters(result.paths[0])
    assert saved.model == model and saved.seed == 7 and saved.sampler == window.draft["scheduler"]

    if family.offers(Mode.EDIT.value):  # the families that edit, on the picture just made
        window.set_mode(Mode.EDIT)
        window.prompt_panel.set_prompts("make the circle blue", "")
        edited = _generate(qtbot, window)
        assert read_parameters(edited.paths[0]).extras.get("Mode") == "edit"


def test_the_size_boxes_step_in_the_familys_sizes(qtbot, make_window, folders) -> None:  # noqa: ANN001
    """A transformer family's sides come in 16 pixels: the boxes stepped by 8, so every other
    size the arrows gave ran cut down (with a note); they now go from one size it makes to
    the next, and a size typed or restored off the step goes to the step first."""
    window = make_window()
    box = window.guidance.width_box
    window.draft.edit({"model": folders["flux"], "width": 1024})
    assert box.singleStep() == 16 and "multiple of 16" in box.toolTip()
    qtbot.keyClick(box, Qt.Key.Key_Up)
    assert window.draft["width"] == 1040
    window.draft.edit({"width": 1032})  # a restored file's size, a multiple of 8 only
    qtbot.keyClick(box, Qt.Key.Key_Down)
    assert window.draft["width"] == 1024
    window.draft.edit({"width": 1032})
    qtbot.keyClick(box, Qt.Key.Key_Up)
    assert window.draft["width"] == 1040
    assert box.valueFromText("1030") == 1024  # typed: the nearest it makes

    window.draft.edit({"model": folders["sd1"]})  # a UNet family: 8 pixels again
    window.draft.edit({"width": 1024})
    assert box.singleStep() == 8 and "multiple of 8" in box.toolTip()
    qtbot.keyClick(box, Qt.Key.Key_Up)
    assert window.draft["width"] == 1032


def test_the_clip_skip_control_is_sd_1s(make_window, folders) -> None:  # noqa: ANN001
    """A1111's Clip skip in Advanced guidance: it reaches the request on SD 1.x, and is off on
    a family that reads none, saying why."""
    window = make_window()
    control = window.guidance.clip_skip
    window.draft.edit({"model": folders["sd1"]})
    control.setValue(2)
    assert window.draft["clip_skip"] == 2 and window.build_request().clip_skip == 2
    assert control.isEnabled()
    window.draft.edit({"model": folders["sdxl"]})
    assert not control.isEnabled()
    assert (
        control.toolTip()
        == "SDXL reads no CLIP skip (A1111 applies it to SD 1.x): it does not apply."
    )
