"""Where the command line writes: a folder it cannot write into, a file where a folder should
be, or a file that exists already is one sentence before any work; a save that fails at the
end is one sentence too, and leaves no half-written file; nothing is ever replaced."""

from __future__ import annotations

import errno
import os
import tempfile
from pathlib import Path

import pytest
from PIL import Image

from studio.cli import main


def run(args: list[str], capsys: pytest.CaptureFixture) -> tuple[int, str, str]:
    code = main(args)
    out, err = capsys.readouterr()
    return code, out, err


def _generate(model: str, target: Path, *extra: str) -> list[str]:
    args = ["generate", "a red circle", "--model", model, "--steps", "1", "--seed", "3"]
    return [*args, "--width", "32", "--height", "32", *extra, "--out", str(target)]


def _one_line_before_any_work(err: str) -> str:
    lines = err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("studio: "), err
    assert "Loading" not in err and "unexpectedly" not in err, err
    return lines[0]


def test_an_existing_file_is_never_replaced(tiny_sd, tmp_path, capsys) -> None:
    target = tmp_path / "keep.png"
    Image.new("RGB", (8, 8), "red").save(target)
    before = target.read_bytes()
    code, out, err = run(_generate(tiny_sd, target), capsys)
    assert code == 2 and out == ""
    line = _one_line_before_any_work(err)
    assert "'keep.png' exists already and is never replaced" in line
    assert target.read_bytes() == before
    # a batch's names likewise: keep-2.png is taken
    Image.new("RGB", (8, 8)).save(tmp_path / "keep-2.png")
    code, _, err = run(_generate(tiny_sd, target, "--batch", "2"), capsys)
    assert code == 2 and "'keep-2.png' exists already" in _one_line_before_any_work(err)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["keep-2.png", "keep.png"]


def test_an_existing_folder_named_like_a_file_is_the_folder_out_names(
    tiny_sd, tmp_path, capsys
) -> None:
    """--out v1.5.png, an existing folder: its images go into it (it was refused as a file
    that exists already, and no name could reach the folder)."""
    folder = tmp_path / "v1.5.png"
    folder.mkdir()
    code, out, err = run(_generate(tiny_sd, folder), capsys)
    assert code == 0, err
    saved = [Path(line) for line in out.splitlines()]
    assert len(saved) == 1 and saved[0].parent == folder and saved[0].is_file()


def test_options_the_job_does_not_read_are_said(tiny_sd, tmp_path, capsys) -> None:
    """--strength with no input image, --mask-blur with no mask, --quality for a PNG were
    dropped without a word (helper-37): each is said, and the job runs."""
    extra = ["--strength", "0.5", "--mask-blur", "3", "--hires-steps", "2", "--quality", "80"]
    code, out, err = run([*_generate(tiny_sd, tmp_path / "a.png"), *extra], capsys)
    assert code == 0 and Path(out.strip()).is_file(), err
    said = [line for line in err.splitlines() if "not used" in line]
    assert said == [
        "studio: --strength changes an input image (--init-image): not used in this job.",
        "studio: --mask-blur shapes a mask (--mask): not used in this job.",
        "studio: --hires-steps is the hires fix's (--upscale hires): not used in this job.",
        "studio: --quality is for .jpg and .webp files: not used for a PNG.",
    ]
    code, _, err = run([*_generate(tiny_sd, tmp_path / "b.jpg"), "--quality", "80"], capsys)
    assert code == 0 and "not used" not in err, err


def test_a_file_where_the_folder_should_be_is_one_sentence(tiny_sd, tmp_path, capsys) -> None:
    picture = tmp_path / "in.png"
    Image.new("RGB", (8, 8)).save(picture)
    code, out, err = run(_generate(tiny_sd, picture / "out.png"), capsys)
    assert code == 2 and out == ""
    line = _one_line_before_any_work(err)
    assert line == f"studio: --out: '{picture}' is a file, not a folder."
    code, _, err = run(_generate(tiny_sd, picture / "deeper" / "out.png"), capsys)
    line = _one_line_before_any_work(err)
    assert (
        line
        == f"studio: --out: '{picture / 'deeper'}' would be inside '{picture}', which is a file."
    )
    # a file name longer than the file system takes
    code, out, err = run(_generate(tiny_sd, tmp_path / ("a" * 300 + ".png")), capsys)
    assert code == 2 and out == ""
    assert _one_line_before_any_work(err).endswith(
        "cannot be a file's name here (file name too long)."
    )


def test_a_folder_that_cannot_be_written_into_is_one_sentence(
    tiny_sd, tmp_path, capsys, monkeypatch: pytest.MonkeyPatch
) -> None:
    locked = tmp_path / "locked"
    locked.mkdir()
    real = tempfile.mkstemp

    def refused(*args, **kwargs):  # a read-only folder, whoever runs the test (root too)
        if Path(kwargs.get("dir", "")) == locked:
            raise PermissionError(errno.EACCES, os.strerror(errno.EACCES))
        return real(*args, **kwargs)

    monkeypatch.setattr(tempfile, "mkstemp", refused)
    for out in (locked / "x.png", locked):
        code, stdout, err = run(_generate(tiny_sd, out), capsys)
        assert code == 2 and stdout == ""
        line = _one_line_before_any_work(err)
        assert line == f"studio: --out: '{locked}' cannot be written into (permission denied)."
    steps = ["--save-steps", str(locked)]
    code, _, err = run(_generate(tiny_sd, tmp_path / "fine.png", *steps), capsys)
    assert code == 2 and "--save-steps: " in _one_line_before_any_work(err)
    assert not (tmp_path / "fine.png").exists()


def test_a_save_that_fails_at_the_end_is_one_sentence_and_leaves_nothing(
    tiny_sd, tmp_path, capsys, monkeypatch: pytest.MonkeyPatch
) -> None:
    folder = tmp_path / "pictures"

    def full(_fd: int) -> None:
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))

    monkeypatch.setattr(os, "fsync", full)  # the disk fills while the image is written
    code, out, err = run(_generate(tiny_sd, folder / "x.png"), capsys)
    assert code == 1 and out == ""
    assert err.strip().splitlines()[-1] == (
        f"studio: The image could not be saved in '{folder}' (no space left on device)."
    )
    assert "unexpectedly" not in err
    assert list(folder.iterdir()) == []  # no half-written file, no .partial- left


def test_an_inpaints_mask_settings_are_written_and_read_as_a1111_writes_them(
    tmp_path: Path,
) -> None:
    from studio.core.request import GenerationRequest, Mode
    from studio.core.restore import plan_restore
    from studio.core.saving import save_image
    from studio.metadata import read_parameters
    from studio.metadata.a1111 import parse_a1111

    picture, mask = Image.new("RGB", (32, 32), "blue"), Image.new("L", (32, 32), 255)
    request = GenerationRequest(
        mode=Mode.INPAINT, prompt="a red circle", init_image=picture, mask=mask, seed=4,
        width=32, height=32, mask_blur=6, inpaint_only_masked=True, inpaint_padding=24,
    )  # fmt: skip
    path = save_image(picture, request, 4, tmp_path)
    with Image.open(path) as saved:
        text = saved.text["parameters"]
    assert "Mask blur: 6, Inpaint area: Only masked, Masked area padding: 24" in text, text
    assert read_parameters(path).request["inpaint_padding"] == 24
    # an A1111 inpaint's file gives them back
    a1111 = parse_a1111(
        "a cat\nSteps: 20, Sampler: Euler a, CFG scale: 7, Seed: 1, Size: 512x512, "
        "Denoising strength: 0.75, Mask blur: 8, Inpaint area: Only masked, "
        "Masked area padding: 48"
    )
    values = plan_restore(a1111).values
    assert (values["mask_blur"], values["inpaint_only_masked"], values["inpaint_padding"]) == (
        8,
        True,
        48,
    )
    whole = parse_a1111("a cat\nSteps: 20, Seed: 1, Mask blur: 4, Inpaint area: Whole picture")
    assert plan_restore(whole).values["inpaint_only_masked"] is False


def test_a_cleared_status_prints_no_blank_line(capsys) -> None:
    from studio.cli import _StderrProgress

    progress = _StderrProgress()
    progress.status("Computing the first 3 steps of the parent again…", None)
    progress.status("", None)  # the engine clears the window's status line after a replay
    assert capsys.readouterr().err == "Computing the first 3 steps of the parent again…\n"


def test_a_cluster_address_nothing_answers_at_is_one_sentence_at_once(tmp_path, capsys) -> None:
    import socket
    import time

    with socket.socket() as free:  # a port nothing listens on
        free.bind(("127.0.0.1", 0))
        port = free.getsockname()[1]
    started = time.monotonic()
    args = ["generate", "a red circle", "--backend", f"127.0.0.1:{port}"]
    code, out, err = run([*args, "--out", str(tmp_path / "x.png")], capsys)
    assert time.monotonic() - started < 10  # Ray alone retries for minutes
    assert code == 2 and out == ""
    assert _one_line_before_any_work(err) == (
        f"studio: No Ray cluster answers at 127.0.0.1:{port} (connection refused): start one "
        "there ('ray start --head'), or check the address."
    )
