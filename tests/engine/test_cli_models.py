"""Models given in the wrong place on the command line: an upscaler as the model that makes
the picture, a model that makes pictures as the upscaler. Each is one sentence naming what
it is, before any step runs."""

from __future__ import annotations

import pytest
from PIL import Image

from studio.cli import main


def run(args: list[str], capsys: pytest.CaptureFixture) -> tuple[int, str, str]:
    code = main(args)
    out, err = capsys.readouterr()
    return code, out, err


def _refused(code: int, out: str, err: str) -> str:
    assert code == 2 and out == "", err
    lines = err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("studio: "), err
    assert "unexpectedly" not in err and "damaged" not in err, err
    return lines[0]


def test_an_upscaler_given_as_the_model_is_named_as_one(tiny_upscaler, tmp_path, capsys) -> None:
    args = ["generate", "a red circle", "--model", tiny_upscaler, "--steps", "1"]
    line = _refused(*run([*args, "--out", str(tmp_path / "x.png")], capsys))
    assert line == (
        f"studio: '{tiny_upscaler}' is an upscaler: it enlarges images and makes none from a "
        "prompt. Choose a model that makes images, and this one to upscale them."
    )


def test_a_model_that_makes_pictures_is_not_taken_as_the_upscaler(
    tiny_sd, tmp_path, capsys
) -> None:
    expected = (
        f"studio: '{tiny_sd}' is not a ×4 upscaler: upscaling takes a model of the Stable "
        "Diffusion x4 upscaler family (studio-tiny-x4, stabilityai/stable-diffusion-x4-upscaler)."
    )
    picture = tmp_path / "in.png"
    Image.new("RGB", (16, 16), "blue").save(picture)
    line = _refused(*run(["upscale", str(picture), "--model", tiny_sd], capsys))
    assert line == expected
    # after a generation: said before the picture is made, not after
    args = ["generate", "a red circle", "--model", tiny_sd, "--steps", "1", "--upscale", "x4"]
    code, out, err = run([*args, "--upscale-model", tiny_sd, "--width", "32"], capsys)
    assert _refused(code, out, err) == expected and "generate 1/1" not in err
    assert list(tmp_path.iterdir()) == [picture]


# -- samplers ---------------------------------------------------------------------------------


def _sampler_run(model: str, tmp_path, capsys, sampler: str, name: str) -> tuple[str, str]:
    target = tmp_path / f"{name}.png"
    args = ["generate", "a red circle", "--model", model, "--steps", "1", "--seed", "2"]
    code, out, err = run([*args, "--width", "32", "--height", "32", "--sampler", sampler,
                          "--out", str(target)], capsys)  # fmt: skip
    assert code == 0 and out.strip() == str(target), err
    from studio.metadata import read_parameters

    return read_parameters(target).sampler, err


def test_comfyuis_sampler_names_run_and_a_relative_is_said(tiny_sd, tmp_path, capsys) -> None:
    ran, err = _sampler_run(tiny_sd, tmp_path, capsys, "dpmpp_2m", "comfy")
    assert ran == "DPM++ 2M" and "studio: " not in err
    ran, _ = _sampler_run(tiny_sd, tmp_path, capsys, "LCM", "lcm")  # runnable: not a relative
    assert ran == "LCM"
    ran, err = _sampler_run(tiny_sd, tmp_path, capsys, "DPM++ SDE Karras", "relative")
    assert ran == "DPM++ 2M SDE Karras"
    assert (
        "studio: The studio has no sampler called 'DPM++ SDE Karras': DPM++ 2M SDE Karras runs "
        "in its place, its closest relative."
    ) in err.splitlines()


@pytest.fixture(scope="module")
def flux(tmp_path_factory: pytest.TempPathFactory) -> str:
    from tests.engine.tiny_families import build

    return str(build("flux", tmp_path_factory.mktemp("flux") / "flux"))


def test_a_sampler_the_family_does_not_run_is_said_and_recorded(flux, tmp_path, capsys) -> None:
    ran, err = _sampler_run(flux, tmp_path, capsys, "Heun", "flux")
    assert ran == "Euler"
    assert (
        "Flux.1 dev does not run Heun: Euler runs in its place (its samplers: Euler, DPM++ 2M, "
        "UniPC)."
    ) in err.splitlines()


# -- guidance the model does not use ----------------------------------------------------------


def _parameters_text(target) -> str:  # noqa: ANN001
    with Image.open(target) as image:
        return image.text["parameters"]


def test_a_negative_prompt_or_cfg_rescale_that_does_not_run_is_said_and_not_recorded(
    flux, tiny_sd, tmp_path, capsys
) -> None:
    base = [
        "generate",
        "a red circle",
        "--steps",
        "1",
        "--seed",
        "2",
        "--width",
        "32",
        "--height",
        "32",
    ]
    target = tmp_path / "flux.png"
    args = [*base, "--model", flux, "--negative", "blurry", "--cfg-rescale", "0.7"]
    code, _, err = run([*args, "--out", str(target)], capsys)
    assert code == 0, err
    lines = err.splitlines()
    assert "Flux.1 dev takes no negative prompt: it is not used." in lines
    assert "Flux.1 dev has no CFG rescale: it is not used." in lines
    text = _parameters_text(target)
    assert "Negative prompt" not in text and "CFG rescale" not in text, text
    # CFG at 1 runs no guidance: the negative prompt does nothing there either
    target = tmp_path / "sd.png"
    args = [*base, "--model", tiny_sd, "--negative", "blurry", "--cfg", "1"]
    code, _, err = run([*args, "--out", str(target)], capsys)
    assert code == 0, err
    assert (
        "At CFG scale 1 the negative prompt does nothing (guidance uses it above 1): it is not "
        "used."
    ) in err.splitlines()
    assert "Negative prompt" not in _parameters_text(target)
    # where it runs, it is recorded, with no note
    target = tmp_path / "sd-guided.png"
    args = [*base, "--model", tiny_sd, "--negative", "blurry", "--cfg", "5"]
    code, _, err = run([*args, "--cfg-rescale", "0.5", "--out", str(target)], capsys)
    assert code == 0 and "not used" not in err, err
    text = _parameters_text(target)
    assert "Negative prompt: blurry" in text and "CFG rescale: 0.5" in text


# -- the models folder -------------------------------------------------------------------------


@pytest.fixture
def webui(tmp_path):  # noqa: ANN001, ANN201
    """An AUTOMATIC1111 folder with an SDXL checkpoint and an SD 1.x LoRA (headers only)."""
    from studio.core import models_folder
    from tests.sparse_files import sparse_safetensors

    models = tmp_path / "webui" / "models"
    sparse_safetensors(
        models / "Stable-diffusion" / "ponyV6.safetensors",
        {"conditioner.embedders.1.model.ln_final.weight": [8]},
    )
    lora = {"lora_unet_down_blocks_0_attentions_0_proj_in.lora_down.weight": [4, 8]}
    sparse_safetensors(models / "Lora" / "inkStyle_sd15.safetensors", lora)
    yield tmp_path / "webui"
    models_folder.use(None)


def test_models_lists_the_models_folder_and_a_missing_name_says_where_it_looked(
    webui, capsys
) -> None:
    folder = str(webui)
    code, out, _ = run(["--models-dir", folder, "models"], capsys)
    assert code == 0
    rows = [line.split() for line in out.splitlines()]
    assert [
        "ponyV6",
        "checkpoint,",
        "SDXL",
        f"{folder}/models/Stable-diffusion/ponyV6.safetensors",
    ] in rows
    assert [
        "inkStyle_sd15",
        "LoRA,",
        "SD",
        "1.x",
        f"{folder}/models/Lora/inkStyle_sd15.safetensors",
    ] in rows
    # a name that is not there says where it was looked for
    code, _, err = run(["--models-dir", folder, "generate", "x", "--model", "ponyV7"], capsys)
    assert code == 2 and err.strip() == (
        f"studio: 'ponyV7' is not in the models folder ({folder}), nor a known model, a "
        "diffusers folder, a checkpoint file or a hub id."
    )
    args = ["generate", "x <lora:inkStyle:1>", "--steps", "1"]
    code, _, err = run(["--models-dir", folder, *args], capsys)
    assert code == 2 and f"{folder}/models/Lora)" in err.strip().splitlines()[-1], err


def test_a_checkpoint_name_without_a_models_folder_says_how_to_set_one(
    capsys, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("LATENT_STUDIO_MODELS_DIR", raising=False)
    code, _, err = run(["generate", "x", "--model", "ponyV6"], capsys)
    assert code == 2 and "point the studio at it (--models-dir" in err, err


def test_a_mode_the_family_has_no_pipeline_for_is_said_before_loading(
    tiny_sd, tmp_path, capsys
) -> None:
    picture = tmp_path / "in.png"
    Image.new("RGB", (32, 32), "blue").save(picture)
    args = ["generate", "make the circle red", "--model", tiny_sd, "--edit", str(picture)]
    line = _refused(*run(args, capsys))  # one line: no "Loading…" before it
    assert line.startswith("studio: SD 1.x models do not edit by instruction: use one that does")


def test_a_hires_fix_the_family_cannot_run_is_said_before_the_picture_is_made(
    tmp_path, capsys
) -> None:
    from tests.engine.tiny_families import build

    klein = str(build("flux2_klein", tmp_path / "klein"))
    capsys.readouterr()  # the builder's progress bars
    args = ["generate", "a red circle", "--model", klein, "--steps", "1", "--upscale", "hires"]
    line = _refused(*run([*args, "--out", str(tmp_path / "x.png")], capsys))
    assert line == (
        "studio: Hires fix runs image→image, which Flux.2 Klein models do not have: upscale "
        "with the ×4 upscaler instead."
    )
    assert not (tmp_path / "x.png").exists()


def test_flux_guidance_is_written_and_read_as_forge_writes_it(flux, tmp_path, capsys) -> None:
    """Flux.1 dev takes its scale as an input and runs no CFG: Forge writes "CFG scale: 1,
    Distilled CFG Scale: 3.5"; "CFG scale: 3.5" would make another tool run CFG at 3.5, and
    a Forge file read as CFG 1 would run Flux at guidance 1."""
    from studio.core.restore import plan_restore
    from studio.metadata.a1111 import parse_a1111

    target = tmp_path / "flux.png"
    args = ["generate", "a red circle", "--model", flux, "--steps", "1", "--cfg", "3.5"]
    code, _, err = run([*args, "--width", "32", "--height", "32", "--out", str(target)], capsys)
    assert code == 0, err
    text = _parameters_text(target)
    assert "CFG scale: 1.0," in text and "Distilled CFG Scale: 3.5" in text, text
    forge = parse_a1111(
        "a cat\nSteps: 20, Sampler: Euler, Schedule type: Simple, CFG scale: 1, "
        "Distilled CFG Scale: 3.5, Seed: 1, Size: 896x1152, Model: flux1-dev-bnb-nf4-v2"
    )
    assert plan_restore(forge).values["cfg_scale"] == 3.5


def test_a_size_the_family_does_not_make_runs_at_the_one_below_and_says_so(
    tmp_path, capsys
) -> None:
    """SD 3 (and Z-Image) refuse sides that are not multiples of 16 in a ValueError: a size
    given off the steps runs at the one below, said; the size the studio derives from an
    input image (its shape at the model's area) is in the family's steps already, with no
    note about a size the artist never gave (helper-37)."""
    from tests.engine.tiny_families import build

    sd3 = str(build("sd3", tmp_path / "sd3"))
    capsys.readouterr()
    picture, target = tmp_path / "in.png", tmp_path / "out.png"
    Image.new("RGB", (60, 44), "blue").save(picture)  # 72×56 at the model's area in 8s
    args = ["generate", "a red circle", "--model", sd3, "--init-image", str(picture)]
    code, _, err = run([*args, "--steps", "2", "--out", str(target)], capsys)
    assert code == 0, err
    assert "steps of 16" not in err
    with Image.open(target) as image:
        assert image.size == (80, 48) and "Size: 80x48" in image.text["parameters"]
    given = tmp_path / "given.png"
    sized = [*args, "--width", "72", "--height", "56", "--steps", "2"]
    code, _, err = run([*sized, "--out", str(given)], capsys)
    assert code == 0, err
    assert "SD 3.x makes pictures in steps of 16 pixels: 72×56 runs as 64×48." in err.splitlines()
    with Image.open(given) as image:
        assert image.size == (64, 48) and "Size: 64x48" in image.text["parameters"]
