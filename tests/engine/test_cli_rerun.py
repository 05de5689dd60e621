"""studio generate --from IMAGE (no --at-step): the parameters saved in an image make it again,
the same pixels for the studio's own files; the options change what they name; another
tool's file gives what it records; an input image the file was made from is asked for."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from PIL import Image, PngImagePlugin

from studio.cli import main
from studio.metadata import read_parameters


def run(args: list[str], capsys: pytest.CaptureFixture) -> tuple[int, str, str]:
    code = main(args)
    out, err = capsys.readouterr()
    return code, out, err


def _pixels(path: Path) -> np.ndarray:
    with Image.open(path) as image:
        return np.asarray(image.convert("RGB"), np.int16)


def test_an_image_is_made_again_from_its_parameters(tiny_sd, tmp_path, capsys) -> None:
    first, again, other = tmp_path / "first.png", tmp_path / "again.png", tmp_path / "other.png"
    picture = tmp_path / "in.png"
    Image.new("RGB", (32, 32), "blue").save(picture)
    args = ["generate", "a red circle", "--model", tiny_sd, "--steps", "2", "--seed", "11"]
    args += ["--negative", "green", "--init-image", str(picture), "--strength", "0.6"]
    code, _, err = run([*args, "--sampler", "DPM++ 2M", "--out", str(first)], capsys)
    assert code == 0, err
    # its input image is asked for again, in a sentence
    code, out, err = run(["generate", "--from", str(first)], capsys)
    assert (
        code == 2
        and out == ""
        and err
        == f"studio: {first} was made from an input image: give it again with --init-image.\n"
    )
    code, out, err = run(
        ["generate", "--from", str(first), "--init-image", str(picture), "--out", str(again)],
        capsys,
    )
    assert code == 0 and out.strip() == str(again), err
    assert np.array_equal(_pixels(again), _pixels(first))
    assert read_parameters(again).request == read_parameters(first).request
    # what an option names changes, the rest is the file's
    code, _, err = run(
        ["generate", "a blue square", "--from", str(first), "--init-image", str(picture),
         "--seed", "12", "--out", str(other)],
        capsys,
    )  # fmt: skip
    assert code == 0, err
    changed = read_parameters(other)
    assert (changed.prompt, changed.seed, changed.negative_prompt) == ("a blue square", 12, "green")
    assert (changed.steps, changed.sampler, changed.strength) == (2, "DPM++ 2M", 0.6)
    # an option with a default changes the file's value too, even typed as that default
    stronger = tmp_path / "stronger.png"
    code, _, err = run(
        ["generate", "--from", str(first), "--init-image", str(picture), "--strength", "0.75",
         "--out", str(stronger)],
        capsys,
    )  # fmt: skip
    assert code == 0, err
    assert read_parameters(stronger).strength == 0.75


def test_another_tools_parameters_are_run_as_far_as_they_go(tiny_sd, tmp_path, capsys) -> None:
    foreign = tmp_path / "a1111.png"
    info = PngImagePlugin.PngInfo()
    info.add_text(
        "parameters",
        "a cat\nNegative prompt: dog\nSteps: 3, Sampler: DPM++ SDE Karras, CFG scale: 5, "
        "Seed: 77, Size: 32x40, Model hash: 0123456789, Model: realisticVision",
    )
    Image.new("RGB", (32, 40)).save(foreign, pnginfo=info)
    target = tmp_path / "ours.png"
    # the model it names is not here: one sentence; --model gives one
    code, _, err = run(["generate", "--from", str(foreign)], capsys)
    assert code == 2 and err.splitlines()[-1] == (
        f"studio: {foreign} was made with 'realisticVision', which is not here: name another "
        "with --model (studio-tiny is built in), or give your models folder with --models-dir."
    )
    code, _, err = run(
        ["generate", "--from", str(foreign), "--model", tiny_sd, "--out", str(target)], capsys
    )
    assert code == 0, err
    assert "runs as its close relative DPM++ 2M SDE Karras" in err
    ran = read_parameters(target)
    assert (ran.prompt, ran.negative_prompt, ran.seed, ran.steps, ran.cfg_scale) == (
        "a cat",
        "dog",
        77,
        3,
        5.0,
    )
    assert (ran.width, ran.height, ran.sampler) == (32, 40, "DPM++ 2M SDE Karras")


def test_a_model_given_by_a_relative_path_is_recorded_to_be_found_from_anywhere(
    tiny_sd, tmp_path, capsys, monkeypatch: pytest.MonkeyPatch
) -> None:
    model = Path(tiny_sd)
    monkeypatch.chdir(model.parent)
    first = tmp_path / "first.png"
    args = ["generate", "a red circle", "--model", model.name, "--steps", "1", "--seed", "3"]
    code, _, err = run([*args, "--width", "32", "--height", "32", "--out", str(first)], capsys)
    assert code == 0, err
    assert read_parameters(first).model == str(model)
    monkeypatch.chdir(tmp_path)  # elsewhere, the file still names its model
    code, _, err = run(["generate", "--from", str(first), "--out", str(tmp_path / "2.png")], capsys)
    assert code == 0, err
    assert np.array_equal(_pixels(tmp_path / "2.png"), _pixels(first))


def test_an_edit_with_references_asks_for_them_again(tmp_path, capsys) -> None:
    from tests.engine.tiny_families import build

    klein = str(build("flux2_klein", tmp_path / "klein"))
    capsys.readouterr()
    picture, other = tmp_path / "in.png", tmp_path / "ref.png"
    Image.new("RGB", (64, 64), "blue").save(picture)
    Image.new("RGB", (32, 32), "red").save(other)
    first = tmp_path / "edit.png"
    args = ["generate", "make it red", "--model", klein, "--edit", str(picture), "--steps", "1"]
    args += ["--reference", str(other), "--width", "64", "--height", "64", "--seed", "5"]
    # the pipeline's limit on its pictures is a sentence, not its ValueError
    code, _, err = run([*args, "--out", str(first)], capsys)
    assert code == 2 and err.strip().splitlines()[-1] == (
        "studio: Flux.2 Klein cannot edit with reference image 1 (32×32): both dimensions must "
        "be at least 64px."
    )
    Image.new("RGB", (64, 64), "red").save(other)
    code, _, err = run([*args, "--out", str(first)], capsys)
    assert code == 0, err
    again = ["generate", "--from", str(first), "--edit", str(picture)]
    code, out, err = run([*again, "--out", str(tmp_path / "x.png")], capsys)
    assert (
        code == 2
        and out == ""
        and err
        == (
            f"studio: {first} was edited with 1 reference image(s): give them again with "
            "--reference, in the same order (not 0).\n"
        )
    )
    branch = [*again, "--at-step", "1"]
    code, _, err = run(branch, capsys)
    assert code == 2 and "was edited with 1 reference image(s)" in err
    code, _, err = run(
        [*again, "--reference", str(other), "--out", str(tmp_path / "2.png")], capsys
    )
    assert code == 0, err
    assert np.array_equal(_pixels(tmp_path / "2.png"), _pixels(first))


def test_another_tools_image_to_image_file_asks_for_its_input_image(
    tiny_sd, interop_dir, tmp_path, capsys
) -> None:
    """ComfyUI's KSampler at denoise 0.87 over a VAEEncode of a loaded picture is an
    image→image job: --from asks for the picture, as for the studio's own such files, and
    runs image→image at the file's strength once it is given (it ran text→image, silently)."""
    foreign = interop_dir / "ComfyUI" / "img2img_cropped.png"
    args = ["generate", "--from", str(foreign), "--model", tiny_sd, "--steps", "1"]
    args += ["--width", "32", "--height", "32"]
    code, out, err = run([*args, "--out", str(tmp_path / "x.png")], capsys)
    assert (code, out) == (2, "") and err.splitlines()[-1] == (
        f"studio: {foreign} was made from an input image: give it again with --init-image."
    )
    assert not (tmp_path / "x.png").exists()
    picture = tmp_path / "in.png"
    Image.new("RGB", (32, 32), "blue").save(picture)
    code, _, err = run(
        [*args, "--init-image", str(picture), "--out", str(tmp_path / "y.png")], capsys
    )
    assert code == 0, err
    ran = read_parameters(tmp_path / "y.png")
    assert ran.request["mode"] == "img2img" and ran.strength == pytest.approx(0.87)
    # a second pass over a sampled latent (denoise 0.54) is no input image: it runs
    two_pass = interop_dir / "ComfyUI" / "noisy_latents_3_subjects_cropped.png"
    code, _, err = run(
        ["generate", "--from", str(two_pass), "--model", tiny_sd, "--steps", "1", "--width",
         "32", "--height", "32", "--cfg", "1", "--out", str(tmp_path / "z.png")],
        capsys,
    )  # fmt: skip
    assert code == 0, err
    assert read_parameters(tmp_path / "z.png").request["mode"] == "txt2img"


def _comfy_inpaint(path: Path, denoise: float, noise_mask: bool) -> Path:
    """A ComfyUI API graph of an inpaint: a loaded picture and its mask, encoded for
    inpainting (or encoded, then masked with SetLatentNoiseMask), sampled at `denoise`."""
    import json

    graph = {
        "1": {"class_type": "CheckpointLoaderSimple", "inputs": {"ckpt_name": "sd15.ckpt"}},
        "2": {"class_type": "CLIPTextEncode", "inputs": {"text": "a red apple", "clip": ["1", 1]}},
        "3": {"class_type": "CLIPTextEncode", "inputs": {"text": "blurry", "clip": ["1", 1]}},
        "4": {"class_type": "LoadImage", "inputs": {"image": "bowl.png"}},
        "5": {
            "class_type": "VAEEncode" if noise_mask else "VAEEncodeForInpaint",
            "inputs": {"pixels": ["4", 0], "vae": ["1", 2]}
            | ({} if noise_mask else {"mask": ["4", 1], "grow_mask_by": 6}),
        },
        "6": {
            "class_type": "SetLatentNoiseMask",
            "inputs": {"samples": ["5", 0], "mask": ["4", 1]},
        },
        "7": {
            "class_type": "KSampler",
            "inputs": {"seed": 5, "steps": 1, "cfg": 7.0, "sampler_name": "euler",
                       "scheduler": "normal", "denoise": denoise, "model": ["1", 0],
                       "positive": ["2", 0], "negative": ["3", 0],
                       "latent_image": ["6" if noise_mask else "5", 0]},
        },
    }  # fmt: skip
    info = PngImagePlugin.PngInfo()
    info.add_text("prompt", json.dumps(graph))
    Image.new("RGB", (32, 32), "gray").save(path, pnginfo=info)
    return path


def test_another_tools_inpaint_asks_for_its_picture_and_its_mask(tiny_sd, tmp_path, capsys) -> None:
    """An inpaint made in ComfyUI (or A1111, InvokeAI) holds neither the picture nor the
    mask: --from asks for both in one sentence, then for the mask alone, and once both are
    given runs an inpaint at the file's strength (it ran text→image or image→image before,
    the mask unasked for)."""
    foreign = _comfy_inpaint(tmp_path / "comfy.png", denoise=1.0, noise_mask=False)
    args = ["generate", "--from", str(foreign), "--model", tiny_sd, "--steps", "1"]
    args += ["--width", "32", "--height", "32", "--out", str(tmp_path / "x.png")]
    code, out, err = run(args, capsys)
    assert (code, out) == (2, "") and err.splitlines()[-1] == (
        f"studio: {foreign} was inpainted: give its picture again with --init-image and its "
        "mask with --mask."
    )
    picture, mask = tmp_path / "in.png", tmp_path / "mask.png"
    Image.new("RGB", (32, 32), "blue").save(picture)
    Image.new("L", (32, 32), 255).save(mask)
    code, _, err = run([*args, "--init-image", str(picture)], capsys)
    assert code == 2 and err.splitlines()[-1] == (
        f"studio: {foreign} was inpainted: give its mask again with --mask."
    )
    assert not (tmp_path / "x.png").exists()
    code, _, err = run([*args, "--init-image", str(picture), "--mask", str(mask)], capsys)
    assert code == 0, err
    ran = read_parameters(tmp_path / "x.png")
    assert ran.request["mode"] == "inpaint" and ran.strength == pytest.approx(1.0)
    # a latent masked after encoding, at denoise 0.6: an inpaint at that strength
    masked = _comfy_inpaint(tmp_path / "noise-mask.png", denoise=0.6, noise_mask=True)
    again = [*args[:2], str(masked), *args[3:-1], str(tmp_path / "y.png")]
    code, _, err = run([*again, "--init-image", str(picture), "--mask", str(mask)], capsys)
    assert code == 0, err
    ran = read_parameters(tmp_path / "y.png")
    assert ran.request["mode"] == "inpaint" and ran.strength == pytest.approx(0.6)


def test_a1111_and_invokeai_inpaints_are_known_by_what_they_write() -> None:
    """A1111 writes "Mask blur" only for an inpaint, InvokeAI its generation mode; an
    image→image job of either is no inpaint."""
    from studio.core.restore import plan_restore
    from studio.metadata import ImageParameters

    def plan(source: str, **extras: str):
        return plan_restore(ImageParameters(source=source, prompt="x", strength=0.6, extras=extras))

    inpaint = plan("automatic1111", **{"Mask blur": "4"})
    assert inpaint.from_mask and inpaint.from_image
    assert not plan("automatic1111").from_mask and plan("automatic1111").from_image
    assert plan("invokeai", generation_mode="inpaint").from_mask
    assert plan("invokeai", generation_mode="sdxl_outpaint").from_mask
    assert not plan("invokeai", generation_mode="img2img").from_mask
