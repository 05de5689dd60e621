"""Restoring parameters into the window: from the studio's own PNGs (everything) and from
files other tools wrote (whatever they carry)."""

from __future__ import annotations

from pathlib import Path

import pytest
from PIL import Image
from PIL.PngImagePlugin import PngInfo

from studio.core.draft import Source
from studio.core.request import GenerationRequest, Mode, Upscaler
from studio.core.restore import plan_restore
from studio.core.saving import save_image
from studio.metadata import read_parameters

INTEROP_FILES = [
    "AUTOMATIC1111/automatic1111_cropped.png",
    "AUTOMATIC1111/automatic1111_cropped.jpg",
    "AUTOMATIC1111/automatic1111_stealth.png",
    "ComfyUI/img2img_cropped.png",
    "ComfyUI/night_evening_day_morning_cropped.png",
    "Fooocus/fooocus1_cropped.png",
    "InvokeAI/invokeai_imeta1.png",
    "InvokeAI/invokeai_sdmeta1.png",
    "InvokeAI/invokeai_dream1.png",
    "NovelAI/novelai1_cropped.png",
]


def _own_png(folder: Path) -> Path:
    request = GenerationRequest(
        prompt="a large yellow star in the centre on a black background",
        negative_prompt="blurry",
        steps=13,
        cfg_scale=5.5,
        cfg_rescale=0.3,
        dynamic_thresholding=True,
        threshold_percentile=98.5,
        scheduler="DDIM",
        width=96,
        height=64,
        upscaler=Upscaler.HIRES,
        upscale_strength=0.4,
    )
    return save_image(Image.new("RGB", (96, 64), "black"), request, 1234, folder)


def test_restoring_our_own_png_fills_every_widget(qtbot, make_window, tmp_path):  # noqa: ANN001
    window = make_window()
    path = _own_png(tmp_path / "elsewhere")
    window.restore_parameters_from(path)
    assert window.prompt_panel.prompt() == "a large yellow star in the centre on a black background"
    assert window.prompt_panel.negative_prompt() == "blurry"
    g = window.guidance
    assert g.steps.value() == 13 and g.cfg_scale.value() == pytest.approx(5.5)
    assert g.scheduler.currentText() == "DDIM"
    assert g.seed.value() == 1234  # the seed field is the seed the next job runs with
    assert g.size() == (96, 64)
    assert g.cfg_rescale.value() == pytest.approx(0.3)
    assert g.dynamic_thresholding.isChecked() and g.percentile.value() == pytest.approx(98.5)
    assert g.upscaler_choice() is Upscaler.HIRES
    assert g.upscale_strength.value() == pytest.approx(0.4)
    assert window.mode() is Mode.TEXT_TO_IMAGE  # the mode and the canvas are the artist's
    # ...and the next request is exactly the saved one.
    saved = read_parameters(path).request
    rebuilt = window.build_request().to_dict()
    assert {k: rebuilt[k] for k in saved if k != "mode"} == {
        k: v for k, v in saved.items() if k != "mode"
    }


def test_restoring_gives_the_controlnets_type_strength_and_steps_back(qtbot, make_window, tmp_path):  # noqa: ANN001, E501
    from studio.core.request import Control

    union = Control("xinsir/controlnet-union-sdxl-1.0", Image.new("RGB", (8, 8)), 0.6, 0.1, 0.8,
                    control_type="lineart")  # fmt: skip
    request = GenerationRequest(prompt="a house", controls=(union,))
    path = save_image(Image.new("RGB", (64, 64)), request, 7, tmp_path)
    text_only = tmp_path / "text-only.png"  # as another tool keeps it: the A1111 text alone
    info = PngInfo()
    info.add_text("parameters", Image.open(path).text["parameters"])
    Image.new("RGB", (64, 64)).save(text_only, pnginfo=info)
    for restored in (path, text_only):
        window = make_window()
        panel = window.controlnet
        assert panel.control_type.currentData() == ""
        window.restore_parameters_from(restored)
        assert panel.control_type.currentData() == "lineart", restored.name
        assert panel.scale.value() == pytest.approx(0.6)
        assert panel.range.value() == pytest.approx((0.1, 0.8))


@pytest.mark.parametrize("name", INTEROP_FILES)
def test_restoring_other_tools_files_fills_the_widgets(qtbot, make_window, interop_dir, name):  # noqa: ANN001
    path = interop_dir / name
    params = read_parameters(path)
    window = make_window()
    window.restore_parameters_from(path)
    assert window.prompt_panel.prompt() == params.prompt.strip()
    assert window.prompt_panel.negative_prompt() == params.negative_prompt.strip()
    g = window.guidance
    if params.steps:
        assert g.steps.value() == params.steps
    if params.cfg_scale is not None:
        assert g.cfg_scale.value() == pytest.approx(params.cfg_scale)
    if params.seed is not None:
        assert g.seed.value() == params.seed
    if params.width and params.height:
        assert g.size() == (params.width, params.height)
    plan = plan_restore(params)
    if "scheduler" in plan.values:
        assert g.scheduler.currentText() == plan.values["scheduler"]
    assert window.banner.kind == "info" and window.banner.text().startswith("Restored")
    assert window.draft["model"] == "studio-tiny"  # none of these files' models is installed
    if params.model:
        assert f"The model '{params.model}' is not installed" in window.banner.text()


def test_opening_an_image_offers_actions_and_changes_nothing_until_one_is_picked(
    qtbot, make_window, interop_dir
):  # noqa: ANN001
    window = make_window()
    before = window.draft.values()
    path = interop_dir / "AUTOMATIC1111" / "automatic1111_cropped.png"
    assert window.load_image(path)
    assert window.draft.values() == before and window.canvas.image() is None
    assert window.banner.kind == "info" and "AUTOMATIC1111" in window.banner.text()
    assert window.banner.actions_shown() == [
        "Restore parameters",
        "Image→Image",
        "Inpaint",
        "Upscale",
    ]
    window.banner.action_button.click()
    assert window.prompt_panel.prompt() == "photo of a duck"
    assert window.guidance.steps.value() == 15
    assert window.mode() is Mode.TEXT_TO_IMAGE and window.canvas.image() is None


def test_using_an_opened_image_keeps_the_models_size_in_the_images_shape(
    qtbot, make_window, tmp_path
):  # noqa: ANN001
    window = make_window()
    path = tmp_path / "photo.png"
    Image.new("RGB", (512, 400), "green").save(path)
    window.set_mode(Mode.INPAINT)
    assert window.load_image(path)
    assert window.banner.actions_shown()[0] == "Inpaint"  # the current mode's use first
    window.banner.buttons[1].click()  # Image→Image
    assert window.mode() is Mode.IMAGE_TO_IMAGE
    assert window.canvas.image().size == (512, 400)
    # studio-tiny makes 64×64 images: a 512×400 job would be noise at 60 times the cost
    assert window.guidance.size() == (72, 56)


def test_an_image_without_parameters_offers_only_its_uses(qtbot, make_window, tmp_path):  # noqa: ANN001
    window = make_window()
    path = tmp_path / "plain.png"
    Image.new("RGB", (50, 30), "green").save(path)
    assert window.load_image(path)
    assert window.banner.actions_shown() == ["Image→Image", "Inpaint", "Upscale"]
    window.banner.buttons[2].click()  # Upscale
    assert window.mode() is Mode.UPSCALE and window.canvas.image().size == (50, 30)


def test_a_file_without_parameters_cannot_be_restored(qtbot, make_window, interop_dir):  # noqa: ANN001
    window = make_window()
    window.restore_parameters_from(interop_dir / "bad_images" / "empty_image.png")
    assert window.banner.kind == "error"
    assert window.banner.text().endswith(
        "carries no generation parameters that the studio recognises."
    )


def test_dropping_a_file_on_the_window_or_the_canvas_opens_it(qtbot, make_window, interop_dir):  # noqa: ANN001
    from PySide6.QtCore import QMimeData, QPointF, Qt, QUrl
    from PySide6.QtGui import QDropEvent

    window = make_window()
    path = interop_dir / "ComfyUI" / "img2img_cropped.png"
    mime = QMimeData()
    mime.setUrls([QUrl.fromLocalFile(str(path))])
    event = QDropEvent(
        QPointF(10, 10),
        Qt.DropAction.CopyAction,
        mime,
        Qt.MouseButton.LeftButton,
        Qt.KeyboardModifier.NoModifier,
    )
    window.dropEvent(event)
    assert "ComfyUI" in window.banner.text()
    window.banner.dismiss()
    window.canvas.imageDropped.emit(str(interop_dir / "NovelAI" / "novelai1_cropped.png"))
    assert "NovelAI" in window.banner.text()


def test_a_files_model_that_is_not_installed_is_offered_never_switched_to(
    qtbot, make_window, tmp_path, monkeypatch
):  # noqa: ANN001
    from studio.core.request import GenerationRequest

    path = save_image(
        Image.new("RGB", (64, 64)),
        GenerationRequest(prompt="a duck", model="stranger/big-model", steps=7),
        5,
        tmp_path,
    )
    window = make_window()
    asked: list[str] = []
    monkeypatch.setattr(window.intake, "add_model", asked.append)
    window.restore_parameters_from(path)
    assert window.draft["model"] == "studio-tiny" and window.draft["steps"] == 7
    assert "The model 'stranger/big-model' is not installed" in window.banner.text()
    assert window.banner.actions_shown() == ["Add this model…"]
    window.banner.action_button.click()  # only now, because the artist asked
    assert asked == ["stranger/big-model"]


def test_the_open_dialog_starts_in_the_last_folder_used_else_the_output_folder(
    make_window, out_dir, tmp_path, monkeypatch
):  # noqa: ANN001
    from PySide6.QtWidgets import QFileDialog

    pictures = tmp_path / "pictures"
    pictures.mkdir()
    Image.new("RGB", (16, 16), "red").save(pictures / "red.png")
    starts: list[str] = []

    def pick(_parent, _title, start, _filter):  # noqa: ANN001, ANN202
        starts.append(start)
        return str(pictures / "red.png"), ""

    monkeypatch.setattr(QFileDialog, "getOpenFileName", pick)
    window = make_window()
    window.open_image_dialog()
    window.open_image_dialog()
    window.close()
    make_window().open_image_dialog()  # a restart remembers it
    assert starts == [str(out_dir), str(pictures), str(pictures)]


def test_dropping_a_file_that_is_no_image_says_why(make_window, tmp_path):  # noqa: ANN001
    """A checkpoint or a text file dropped on the window or the canvas showed a refusing
    cursor and nothing else: it now gives one sentence, and the canvas keeps its picture."""
    from PIL import Image
    from PySide6.QtCore import QMimeData, QPointF, Qt, QUrl
    from PySide6.QtGui import QDropEvent

    kept: list[QMimeData] = []  # an event does not own its data: keep it alive

    def dropped(*paths: Path) -> QDropEvent:
        mime = QMimeData()
        mime.setUrls([QUrl.fromLocalFile(str(p)) for p in paths])
        kept.append(mime)
        return QDropEvent(
            QPointF(10, 10),
            Qt.DropAction.CopyAction,
            mime,
            Qt.MouseButton.LeftButton,
            Qt.KeyboardModifier.NoModifier,
        )

    window = make_window()
    window.canvas.set_image(Image.new("RGB", (8, 8), (200, 0, 0)))
    window.dropEvent(dropped(tmp_path / "ponyDiffusionV6XL.safetensors"))
    assert window.banner.kind == "error"
    assert window.banner.text() == (
        "'ponyDiffusionV6XL.safetensors' is a model file, not an image: put it in your models "
        "folder (Settings) or choose Add model… in the model picker."
    )
    window.canvas.dropEvent(dropped(tmp_path / "prompt.txt"))
    assert window.banner.text().startswith("'prompt.txt' is not an image the studio opens (PNG")
    assert window.canvas.image().getpixel((0, 0)) == (200, 0, 0)


def test_an_a1111_hires_fix_is_restored_as_the_studios(make_window) -> None:  # noqa: ANN001
    """A1111 writes a text→image job's hires pass as "Hires upscale" with its strength in
    "Denoising strength": restored, the window's hires fix is on at that strength (it was
    off, the strength taken as an image→image one); a scale other than ×2 is said."""
    from studio.metadata import parse_a1111

    text = (
        "a castle\nSteps: 28, Sampler: DPM++ 2M, Schedule type: Karras, CFG scale: 6.5, "
        "Seed: 31, Size: 512x768, Denoising strength: 0.4, Hires upscale: 1.5, "
        "Hires steps: 12, Hires upscaler: Latent, Clip skip: 2"
    )
    plan = plan_restore(parse_a1111(text))
    assert plan.values["upscaler"] == "hires" and plan.values["upscale_strength"] == 0.4
    assert "strength" not in plan.values and plan.values["clip_skip"] == 2
    assert plan.values["upscale_steps"] == 12  # A1111's hires schedule, not the main 28
    same = plan_restore(parse_a1111(text.replace("Hires steps: 12", "Hires steps: 28")))
    assert same.values["upscale_steps"] == 0  # as many as the main steps: the studio's 0
    unsaid = plan_restore(parse_a1111(text.replace("Hires steps: 12, ", "")))
    assert unsaid.values["upscale_steps"] == 0  # A1111 leaves it out when it is 0
    assert plan.notes == [
        "The hires fix enlarges ×2 here (the file's ×1.5).",
        "The hires fix enlarges with Lanczos here (the file's Latent).",
    ]
    lanczos = plan_restore(
        parse_a1111(text.replace("Hires upscaler: Latent", "Hires upscaler: Lanczos"))
    )
    assert lanczos.notes == ["The hires fix enlarges ×2 here (the file's ×1.5)."]
    window = make_window()
    window.draft.apply(plan.values, Source.RESTORED)
    request = window.build_request()
    assert request.upscaler is Upscaler.HIRES and request.upscale_strength == 0.4
    assert request.clip_skip == 2 and request.upscale_steps == 12
    assert window.guidance.upscale_steps.value() == 12 and window.guidance.upscale_steps.isVisible()
    window.guidance.grab().save("/tmp/hires_steps_restored.png")


def test_opening_a_file_with_parameters_says_what_it_opened_in_a_sentence(
    qtbot, make_window, tmp_path
):  # noqa: ANN001
    """The status line read "Opened x.png (1×1) carries parameters from ComfyUI." (helper-34)."""
    request = GenerationRequest(prompt="a red circle", width=40, height=24)
    path = save_image(Image.new("RGB", (40, 24), "red"), request, 7, tmp_path, stem="made")
    window = make_window()
    assert window.load_image(path)
    qtbot.waitUntil(lambda: window.banner.actions_shown()[:1] == ["Restore parameters"])
    assert window.status.text() == "Opened made.png (40×24)."
    assert window.banner.text() == "made.png (40×24) carries parameters from Latent Studio."


def _a1111_png(folder: Path, name: str, settings: str) -> Path:
    info = PngInfo()
    text = f"a lighthouse\nSteps: 9, Sampler: Euler a, CFG scale: 6, {settings}"
    info.add_text("parameters", text)
    path = folder / name
    Image.new("RGB", (64, 64)).save(path, pnginfo=info)
    return path


def test_another_tools_file_sets_what_it_leaves_out_as_that_tool_ran_it(
    qtbot, make_window, tmp_path
):  # noqa: ANN001
    """A1111 writes "Clip skip" only when it is not 1 and its hires fields only for a hires
    fix, and no other tool has CFG rescale or dynamic thresholding: a file without them was
    made without them, so restoring it after a file with them (the studio's ×4 upscale with
    clip skip 2, A1111's "Clip skip: 2") does not keep them; the window's mode and strength
    stay, as for every restore."""
    studio_file = save_image(
        Image.new("RGB", (64, 64)),
        GenerationRequest(
            prompt="a harbour",
            clip_skip=2,
            upscaler=Upscaler.X4,
            cfg_rescale=0.4,
            dynamic_thresholding=True,
        ),
        3,
        tmp_path / "ours",
    )
    skipped = _a1111_png(tmp_path, "skip2.png", "Seed: 5, Size: 64x64, Clip skip: 2")
    plain = _a1111_png(tmp_path, "plain.png", "Seed: 6, Size: 64x64")
    window = make_window()
    window.restore_parameters_from(studio_file)
    window.draft.edit({"strength": 0.35})
    request = window.build_request()
    assert request.upscaler is Upscaler.X4 and request.clip_skip == 2
    assert request.cfg_rescale == pytest.approx(0.4) and request.dynamic_thresholding
    window.restore_parameters_from(plain)
    request = window.build_request()
    assert (request.seed, request.steps, request.clip_skip, request.upscaler) == (6, 9, 1, None)
    assert request.cfg_rescale == 0.0 and not request.dynamic_thresholding
    assert request.mode is Mode.TEXT_TO_IMAGE and window.draft["strength"] == 0.35
    window.restore_parameters_from(skipped)
    assert window.build_request().clip_skip == 2
    window.restore_parameters_from(plain)
    assert window.build_request().clip_skip == 1
    # a hires fix of its own is still the studio's hires fix
    hires = _a1111_png(
        tmp_path, "hires.png", "Seed: 7, Size: 64x64, Denoising strength: 0.45, Hires upscale: 2"
    )
    window.restore_parameters_from(hires)
    request = window.build_request()
    assert request.upscaler is Upscaler.HIRES and request.upscale_strength == 0.45


def test_the_studios_own_a1111_text_restores_its_guidance_controls(tmp_path) -> None:  # noqa: ANN001
    """A studio JPEG whose XMP was too large keeps only the A1111 text: the CFG rescale and
    dynamic thresholding written there are read back, not taken as off."""
    path = _a1111_png(
        tmp_path, "ours.png", "Seed: 5, CFG rescale: 0.7, Dynamic thresholding: 99% / 1.5"
    )
    values = plan_restore(read_parameters(path)).values
    assert values["cfg_rescale"] == 0.7 and values["dynamic_thresholding"] is True
    assert (values["threshold_percentile"], values["threshold_max"]) == (99.0, 1.5)


def test_fooocus_clip_skip_is_restored(interop_dir) -> None:  # noqa: ANN001
    params = read_parameters(interop_dir / "Fooocus" / "fooocus1_cropped.png")
    assert params.extras["clip_skip"] == "2"
    assert plan_restore(params).values["clip_skip"] == 2


def test_novelais_own_cfg_rescale_is_restored(tmp_path) -> None:  # noqa: ANN001
    info = PngInfo()
    info.add_text("Software", "NovelAI")
    info.add_text("Description", "a fox")
    info.add_text("Comment", '{"steps": 28, "scale": 5, "seed": 2, "uc": "", "cfg_rescale": 0.3}')
    Image.new("RGB", (8, 8)).save(tmp_path / "nai.png", pnginfo=info)
    plan = plan_restore(read_parameters(tmp_path / "nai.png"))
    assert plan.values["cfg_rescale"] == 0.3 and plan.values["clip_skip"] == 1


def test_a_file_without_a_size_says_the_size_is_not_restored(make_window) -> None:  # noqa: ANN001
    """NovelAI's older files record no size: restored after a file that had one, the window
    kept that size without a word (the command line took the model's)."""
    from studio.metadata import ImageParameters

    window = make_window()
    sized = ImageParameters(source="automatic1111", prompt="a", seed=1, width=96, height=64)
    window.intake.restore(plan_restore(sized), "a.png")
    assert "size" not in window.banner.text()
    unsized = ImageParameters(source="novelai", prompt="a cat", seed=2, steps=28)
    window.intake.restore(plan_restore(unsized), "nai.png")
    assert window.banner.text() == (
        "Restored the parameters from NovelAI of nai.png. The file records no size: the size "
        "is not restored."
    )
    request = window.build_request()
    assert (request.width, request.height, request.prompt) == (96, 64, "a cat")
