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
