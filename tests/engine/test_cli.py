"""The command line: exit codes, one-line errors, files written, JSON printed."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from studio.cli import main
from studio.metadata import read_parameters

INTEROP = Path(__file__).resolve().parents[3] / "shared" / "interop"


def run(args: list[str], capsys: pytest.CaptureFixture) -> tuple[int, str, str]:
    code = main(args)
    out, err = capsys.readouterr()
    return code, out, err


def test_generate_writes_png_with_parameters(tiny_sd, tmp_path, capsys) -> None:
    target = tmp_path / "pics" / "circle.png"
    code, out, err = run(
        [
            "generate",
            "a red circle",
            "--model",
            tiny_sd,
            "--steps",
            "2",
            "--width",
            "32",
            "--height",
            "32",
            "--seed",
            "4",
            "--out",
            str(target),
        ],
        capsys,
    )
    assert code == 0, err
    assert out.strip() == str(target) and target.is_file()
    assert "generate 2/2" in err  # progress goes to stderr
    code, out, err = run(["info", str(target)], capsys)
    info = json.loads(out)
    assert (info["source"], info["prompt"], info["seed"], info["steps"]) == (
        "studio",
        "a red circle",
        4,
        2,
    )


def test_generate_batch_into_a_folder(tiny_sd, tmp_path, capsys) -> None:
    code, out, _ = run(
        [
            "generate",
            "a red circle",
            "--model",
            tiny_sd,
            "--steps",
            "2",
            "--width",
            "32",
            "--height",
            "32",
            "--batch",
            "2",
            "--out",
            str(tmp_path),
        ],
        capsys,
    )
    assert code == 0 and len(out.split()) == 2
    assert sorted(p.suffix for p in tmp_path.iterdir()) == [".png", ".png"]


def test_inpaint_and_upscale_from_the_command_line(
    tiny_sd, tiny_upscaler, tmp_path, capsys
) -> None:
    image, mask = tmp_path / "in.png", tmp_path / "mask.png"
    Image.new("RGB", (32, 32), "blue").save(image)
    mask_image = Image.new("L", (32, 32), 0)
    mask_image.paste(255, (4, 4, 12, 12))
    mask_image.save(mask)
    code, out, err = run(
        [
            "generate",
            "a red circle",
            "--model",
            tiny_sd,
            "--steps",
            "2",
            "--init-image",
            str(image),
            "--mask",
            str(mask),
            "--out",
            str(tmp_path / "inpainted.png"),
        ],
        capsys,
    )
    assert code == 0, err
    assert Image.open(tmp_path / "inpainted.png").size == (32, 32)
    assert "keeps the input picture's size" not in err
    # painted at another size: the picture keeps its own, which is said (it was silent)
    code, out, err = run(
        ["generate", "a red circle", "--model", tiny_sd, "--steps", "1", "--init-image",
         str(image), "--mask", str(mask), "--width", "24", "--height", "16",
         "--out", str(tmp_path / "other-size.png")],
        capsys,
    )  # fmt: skip
    assert code == 0, err
    assert Image.open(tmp_path / "other-size.png").size == (32, 32)
    assert (
        "The inpaint keeps the input picture's size (32×32): it was painted at 24×16 and the "
        "masked area pasted back." in err
    )
    code, out, err = run(
        ["upscale", str(image), "--model", tiny_upscaler, "--out", str(tmp_path / "big.png")],
        capsys,
    )
    assert code == 0, err
    assert Image.open(tmp_path / "big.png").size == (128, 128)
    # a side that is no multiple of the upscaler's own: still exactly ×4, the picture's shape
    # kept (the pipeline cut 30×21 down to 28×20: 112×80)
    odd = tmp_path / "odd.png"
    Image.new("RGB", (30, 21), "blue").save(odd)
    code, out, err = run(
        ["upscale", str(odd), "--model", tiny_upscaler, "--out", str(tmp_path / "odd4.png")],
        capsys,
    )
    assert code == 0, err
    enlarged = np.asarray(Image.open(tmp_path / "odd4.png").convert("RGB"))
    assert enlarged.shape == (84, 120, 3) and read_parameters(tmp_path / "odd4.png").width == 120
    assert enlarged[:, 112:].any() and enlarged[80:].any()  # upscaled there, not black filler


@pytest.mark.parametrize(
    ("args", "words"),
    [
        (["generate", "x", "--width", "33", "--model", "{sd}"], "Width must be a multiple of 8"),
        (
            ["generate", "x", "--model", "nobody/nothing"],
            "is not a folder here, nor in the local cache",
        ),
        (["generate", "x", "--model", "{sd}", "--mask", "{missing}"], "does not exist"),
        (
            ["generate", "x", "--model", "{sd}", "--mask", "{sd}/model_index.json"],
            "cannot be opened",
        ),
        (["generate", "x", "--steps", "many"], "invalid int value"),
        (["generate"], "required: prompt"),
        (["info", "{missing}"], "does not exist"),
        (["upscale", "{missing}"], "does not exist"),
        (
            ["generate", "x", "--model", "{sd}", "--out", "{sd}/a.tiff"],
            "must be a folder or a .png",
        ),
    ],
)
def test_bad_input_exits_2_with_one_line(args, words, tiny_sd, tmp_path, capsys) -> None:
    args = [a.format(sd=tiny_sd, missing=tmp_path / "missing.png") for a in args]
    # argparse's own errors exit at once; ours (a missing prompt, since --from needs none) return 2
    with pytest.raises(SystemExit) if "invalid" in words else _no_raise():
        code, _, err = run(args, capsys)
        assert code == 2
        # progress lines may come first; the error is one line, and the last
        errors = [line for line in err.splitlines() if line.startswith("studio:")]
        assert len(errors) == 1 and words in errors[0] and err.strip().endswith(errors[0]), err
    if "invalid" in words:
        err = capsys.readouterr().err
        assert words in err and len(err.strip().splitlines()) == 1


class _no_raise:
    def __enter__(self):
        return self

    def __exit__(self, *exc):
        return False


@pytest.mark.skipif(not INTEROP.is_dir(), reason="shared/interop is not beside the checkout")
def test_info_reads_other_tools_files(capsys) -> None:
    code, out, _ = run(
        ["info", str(INTEROP / "AUTOMATIC1111" / "automatic1111_cropped.png")], capsys
    )
    info = json.loads(out)
    assert code == 0 and info["source"] == "automatic1111"
    # the values the file holds, not only their keys (read out of the file by hand)
    assert {k: info[k] for k in ("prompt", "negative_prompt", "seed", "steps", "cfg_scale")} == {
        "prompt": "photo of a duck",
        "negative_prompt": "monochrome",
        "seed": 235284042,
        "steps": 15,
        "cfg_scale": 5.0,
    }
    assert (info["sampler"], info["width"], info["height"]) == ("UniPC", 512, 400)
    assert info["model"] == "realistic_realisticVisionV20_v20" and info["strength"] is None
    code, _, err = run(["info", str(INTEROP / "bad_images" / "empty_file.png")], capsys)
    assert code == 2 and len(err.strip().splitlines()) == 1


def test_models_lists_added_models(tiny_sd, capsys) -> None:
    from studio.core.catalog import add_model

    add_model(tiny_sd)
    code, out, _ = run(["models"], capsys)
    assert code == 0 and tiny_sd in out and "added folder" in out
    # the embedded ControlNet and classifier too (they were left out: not pipelines)
    rows = {line.split()[0]: " ".join(line.split()[1:3]) for line in out.splitlines()}
    assert rows["studio-tiny-controlnet"] == "embedded ControlNet"
    assert rows["studio-tiny-classifier"] == "embedded classifier"
    assert rows["studio-tiny"] == "embedded generator"


def test_a_real_process_never_prints_a_traceback(tmp_path) -> None:
    broken = tmp_path / "broken.png"
    broken.write_bytes(b"\x89PNG\r\n\x1a\n garbage")
    done = subprocess.run(
        [sys.executable, "-m", "studio.cli", "generate", "x", "--init-image", str(broken)],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 2
    assert "Traceback" not in done.stderr and len(done.stderr.strip().splitlines()) == 1


def test_an_inputs_size_follows_the_same_rule_as_in_the_window(tmp_path, capsys) -> None:
    """One rule (core.imaging.input_size): a 60×60 input on the 64-pixel model makes a 64×64
    job in the window and on the command line alike; a 512×400 photo a 72×56 one."""
    from studio.core.catalog import is_installed, model_defaults
    from studio.core.imaging import input_size

    if not is_installed("studio-tiny"):
        pytest.skip("the embedded model is not built yet")
    native = model_defaults("studio-tiny")["width"]
    # a strip thinner than 1:4 is made at 1:4 of the model's area, not 8×2616
    assert input_size((3, 5000), native) == (32, 128)
    assert input_size((5000, 3), 1024) == (2048, 512)
    assert input_size((6000, 1000), None) == (2048, 512)  # unknown model: a megapixel at most
    for size, expected in (((60, 60), (64, 64)), ((512, 400), (72, 56))):
        assert input_size(size, native) == expected
        picture = tmp_path / f"in-{size[0]}.png"
        Image.new("RGB", size, "blue").save(picture)
        out = tmp_path / f"out-{size[0]}.png"
        args = ["generate", "a red circle", "--init-image", str(picture), "--steps", "2"]
        code, _, err = run([*args, "--out", str(out)], capsys)
        assert code == 0, err
        assert Image.open(out).size == expected


def test_an_input_stretched_out_of_its_shape_is_said(tmp_path, capsys) -> None:
    """A 10:1 strip is made at 1:4 (the most a job takes), and a size given of another
    shape stretches the picture too: said, where a picture of the job's shape is not."""
    from studio.core.catalog import is_installed

    if not is_installed("studio-tiny"):
        pytest.skip("the embedded model is not built yet")
    strip, square = tmp_path / "strip.png", tmp_path / "square.png"
    Image.new("RGB", (1000, 100), "blue").save(strip)
    Image.new("RGB", (60, 60), "blue").save(square)
    said = "The input picture (1000×100) is stretched to 128×32: its shape is not the job's."
    args = ["generate", "a red circle", "--steps", "1"]
    code, _, err = run(
        [*args, "--init-image", str(strip), "--out", str(tmp_path / "a.png")], capsys
    )
    assert code == 0 and said in err.splitlines(), err
    code, _, err = run(
        [*args, "--init-image", str(square), "--out", str(tmp_path / "b.png")], capsys
    )
    assert code == 0 and "stretched" not in err, err
    wide = ["--width", "128", "--height", "64", "--out", str(tmp_path / "c.png")]
    code, _, err = run([*args, "--init-image", str(square), *wide], capsys)
    assert code == 0 and "(60×60) is stretched to 128×64" in err, err


def _studio(*args: str | bytes, tmp_path: Path) -> subprocess.CompletedProcess:
    """The command line in a process of its own, as a user runs it: real stderr, real exit."""
    env = {
        **os.environ,
        "LATENT_STUDIO_OUTPUT": str(tmp_path / "out"),
        "LATENT_STUDIO_CONFIG": str(tmp_path / "config"),
        "LATENT_STUDIO_LOGS": str(tmp_path / "logs"),
        "HF_HUB_OFFLINE": "1",
    }
    return subprocess.run(
        [sys.executable, "-m", "studio.cli", *args],
        capture_output=True,
        timeout=120,
        env=env,
        check=False,
    )


@pytest.mark.parametrize(
    ("args", "words"),
    [
        (
            ["--threshold", "nan"],
            "The thresholding ceiling must be above 0 and at most 100, not nan.",
        ),
        (
            ["--threshold", "inf"],
            "The thresholding ceiling must be above 0 and at most 100, not inf.",
        ),
        (["--strength", "1e-9", "--init-image", "{picture}"], "Strength must be between 0.01"),
        (["--cfg=-inf"], "CFG scale must be between 0 and 100, not -inf."),
        (["--steps", "999999999"], "Steps must be between 1 and 1000"),
        (["--seed", "18446744073709551616"], "The seed must be between 0 and"),
    ],
)
def test_values_that_would_break_the_maths_get_one_sentence_before_any_work(
    tmp_path: Path, args: list[str], words: str
) -> None:
    picture = tmp_path / "in.png"
    Image.new("RGB", (16, 16)).save(picture)
    args = [a.format(picture=picture) for a in args]
    done = _studio("generate", "a red circle", *args, tmp_path=tmp_path)
    err = done.stderr.decode()
    assert done.returncode == 2 and err.startswith(f"studio: {words}"), err
    assert len(err.strip().splitlines()) == 1 and not (tmp_path / "out").exists()


def test_a_prompt_that_is_not_text_and_a_device_that_is_not_one(tmp_path: Path) -> None:
    done = _studio("generate", b"a red \xff\xfe circle", tmp_path=tmp_path)  # not UTF-8
    assert done.returncode == 2
    assert done.stderr.decode().strip() == (
        "studio: The prompt holds bytes that are not text (UTF-8): type it again."
    )
    done = _studio("--device", "meta", "generate", "a red circle", tmp_path=tmp_path)
    assert done.returncode == 2 and done.stderr.decode().strip().endswith(
        "'meta' is not a device the studio runs on: use cpu, cuda or mps."
    )


def test_special_files_and_broken_state_never_hang_nor_traceback(tmp_path: Path) -> None:
    os.mkfifo(tmp_path / "pipe.png")
    done = _studio("info", str(tmp_path / "pipe.png"), tmp_path=tmp_path)  # would block
    assert done.returncode == 2 and "is not an image file (a folder, a pipe or a device)" in (
        done.stderr.decode()
    )
    (tmp_path / "config").mkdir()
    (tmp_path / "config" / "models.json").write_text('["a list", "not the registry"]')
    done = _studio("models", tmp_path=tmp_path)
    assert done.returncode == 0 and b"studio-tiny" in done.stdout
    assert b"models.json was damaged" in done.stderr and b"Traceback" not in done.stderr
    assert list((tmp_path / "config").glob("models.json.broken-*"))


def test_upscale_prints_progress_and_the_path_nothing_else(tmp_path: Path) -> None:
    from studio.core.catalog import is_installed

    if not is_installed("studio-tiny-x4"):
        pytest.skip("the embedded upscaler is not built yet")
    small = tmp_path / "small.png"
    Image.new("RGB", (16, 16), "blue").save(small)
    done = _studio("upscale", str(small), "--out", str(tmp_path / "big.png"), tmp_path=tmp_path)
    assert done.returncode == 0, done.stderr
    assert done.stdout.decode().strip() == str(tmp_path / "big.png")
    lines = done.stderr.decode().strip().splitlines()
    # status and steps only: no library's warning (transformers' torchvision notice was one)
    assert all(
        line.startswith(("Loading", "studio-tiny-x4 is ready", "upscale ")) for line in lines
    )
    tiny = tmp_path / "tiny.png"
    Image.new("RGB", (1, 1)).save(tiny)
    done = _studio("upscale", str(tiny), tmp_path=tmp_path)
    assert done.returncode == 2 and done.stderr.decode().strip() == (
        "studio: The image to upscale is 1×1: it needs at least 8 pixels a side."
    )


@pytest.mark.parametrize("suffix", [".jpg", ".jpeg", ".webp"])
def test_out_as_jpeg_or_webp_carries_the_parameters_as_a1111_writes_them(
    tiny_sd, tmp_path: Path, capsys, suffix: str
) -> None:
    target = tmp_path / f"picture{suffix}"
    args = ["generate", "a red circle", "--model", tiny_sd, "--steps", "2", "--seed", "8"]
    code, out, err = run([*args, "--width", "32", "--height", "32", "--out", str(target)], capsys)
    assert code == 0, err and out.strip() == str(target)
    with Image.open(target) as image:
        assert image.format == ("JPEG" if suffix != ".webp" else "WEBP")
        comment = image.getexif().get_ifd(0x8769)[0x9286]  # EXIF UserComment
    assert comment.startswith(b"UNICODE\0")  # as A1111 (piexif) writes it: UTF-16 big-endian
    assert comment[8:].decode("utf-16-be").startswith("a red circle\nSteps: 2, Sampler:")
    code, out, _ = run(["info", str(target)], capsys)
    info = json.loads(out)
    assert (info["source"], info["seed"], info["request"]["steps"]) == ("studio", 8, 2)


def test_samplers_are_named_in_any_capitalisation_and_listed_in_the_help(
    tiny_sd, tmp_path: Path, capsys
) -> None:
    target = tmp_path / "x.png"
    args = ["generate", "x", "--model", tiny_sd, "--steps", "2", "--width", "32", "--height", "32"]
    code, _, err = run([*args, "--sampler", "dpm++ 2m karras", "--out", str(target)], capsys)
    assert code == 0, err
    assert read_parameters(target).sampler == "DPM++ 2M Karras"
    with pytest.raises(SystemExit) as exited:
        main([*args, "--sampler", "warp drive"])
    assert exited.value.code == 2 and "no sampler called 'warp drive'" in capsys.readouterr().err
    with pytest.raises(SystemExit):
        main(["generate", "--help"])
    help_text = " ".join(capsys.readouterr().out.split())
    assert "DPM++ 2M SDE Karras" in help_text
    assert "(default: 0.75; with --from, the image's)" in help_text  # --strength


def test_save_steps_writes_each_preview_as_the_window_shows_it(tmp_path: Path, capsys) -> None:
    from studio.core.catalog import is_installed

    if not is_installed("studio-tiny"):
        pytest.skip("the embedded model is not built yet")
    steps, target = tmp_path / "steps", tmp_path / "out.png"
    args = ["generate", "a red circle", "--steps", "5", "--seed", "2", "--save-steps", str(steps)]
    code, _, err = run([*args, "--out", str(target)], capsys)
    assert code == 0, err
    written = sorted(p.name for p in steps.iterdir())
    assert written == [f"step-00{i}.png" for i in range(1, 6)]
    last = np.asarray(Image.open(steps / "step-005.png").convert("RGB"), dtype=np.float32)
    result = np.asarray(Image.open(target).convert("RGB"), dtype=np.float32)
    assert last.shape == result.shape  # stretched to the picture, as the canvas shows it
    assert np.abs(last - result).mean() < 45  # the linear preview's bound
    # a second run into the same folder would replace the first's steps: said, nothing run
    before = {p.name: p.read_bytes() for p in steps.iterdir()}
    code, _, err = run([*args, "--seed", "3", "--out", str(tmp_path / "again.png")], capsys)
    assert code == 2 and err.startswith("studio: --save-steps: ") and "already holds" in err
    assert {p.name: p.read_bytes() for p in steps.iterdir()} == before
    assert not (tmp_path / "again.png").exists()
    # the hires pass's previews at its own picture's size, ×2 (they were a quarter of it)
    hires_steps, hires = tmp_path / "hires-steps", tmp_path / "hires.png"
    hires_args = [*args[:-1], str(hires_steps), "--steps", "2", "--upscale", "hires"]
    code, _, err = run([*hires_args, "--out", str(hires)], capsys)
    assert code == 0, err
    made = sorted(hires_steps.glob("hires-step-*.png"))
    assert made and Image.open(hires).size == (128, 128)
    assert {Image.open(p).size for p in made} == {(128, 128)}
    last = np.asarray(Image.open(made[-1]).convert("RGB"), dtype=np.float32)
    hires_result = np.asarray(Image.open(hires).convert("RGB"), dtype=np.float32)
    assert np.abs(last - hires_result).mean() < 45


def test_upscale_is_guided_by_the_prompt_the_picture_carries(
    tiny_upscaler, tmp_path, capsys
) -> None:
    """`studio upscale` of a picture that carries its parameters tells the upscaler what it
    shows, in its maker's words without the LoRA tags (it ran with an empty prompt, and the
    ×4 file lost the prompt); --prompt still wins, and a bare picture gets none."""
    from PIL import PngImagePlugin

    carrying = tmp_path / "made.png"
    info = PngImagePlugin.PngInfo()
    info.add_text(
        "parameters",
        "a red circle, (sharp:1.2) <lora:detail:0.6>\nNegative prompt: blurry\n"
        "Steps: 20, Sampler: Euler a, CFG scale: 7, Seed: 3, Size: 16x16",
    )
    Image.new("RGB", (16, 16), "blue").save(carrying, pnginfo=info)
    bare = tmp_path / "bare.png"
    Image.new("RGB", (16, 16), "blue").save(bare)
    cases = [([], carrying, "a red circle, (sharp:1.2)"), (["--prompt", "a bowl"], carrying,
             "a bowl"), ([], bare, "")]  # fmt: skip
    for number, (extra, source, prompt) in enumerate(cases):
        out = tmp_path / f"big{number}.png"
        args = ["upscale", str(source), "--model", tiny_upscaler, "--out", str(out), *extra]
        code, _, err = run(args, capsys)
        assert code == 0, err
        assert read_parameters(out).prompt == prompt
