"""A large file's parameters are read off the UI thread, and only the latest request is
answered: the window never waits for a big ComfyUI graph, and never shows a stale one."""

from __future__ import annotations

import json
from pathlib import Path

from PIL import Image, PngImagePlugin

from studio.ui.parameter_reader import ON_THE_SPOT_BYTES, ParameterReader


def _png(path: Path, prompt: str, padding: int = 0) -> Path:
    info = PngImagePlugin.PngInfo()
    info.add_text("parameters", f"{prompt}\nSteps: 12, Sampler: Euler a, CFG scale: 7, Seed: 3")
    if padding:  # a large graph-sized chunk the reader has to look through
        info.add_text("workflow", json.dumps({"nodes": [], "x": "y" * padding}))
    Image.new("RGB", (8, 8)).save(path, pnginfo=info)
    return path


def test_small_files_at_once_large_ones_later_and_only_the_latest(qtbot, tmp_path: Path) -> None:  # noqa: ANN001
    reader = ParameterReader()
    answers: list[tuple[str, str]] = []

    def answer(parameters, why) -> None:  # noqa: ANN001
        answers.append((parameters.prompt if parameters else "", why))

    reader.read(_png(tmp_path / "small.png", "small"), answer)
    assert answers == [("small", "")]  # answered before read() returned

    big = _png(tmp_path / "big.png", "big", padding=ON_THE_SPOT_BYTES)
    other = _png(tmp_path / "other.png", "other", padding=ON_THE_SPOT_BYTES)
    reader.read(big, answer)
    assert len(answers) == 1  # not at once: it is read on the worker
    reader.read(other, answer)  # the artist moved on before it was done
    qtbot.waitUntil(lambda: len(answers) == 2, timeout=5000)
    qtbot.wait(100)
    assert answers[1:] == [("other", "")]  # the stale answer for big.png was dropped

    reader.read(tmp_path / "missing.png", answer)
    assert answers[-1] == ("", "'missing.png' does not exist.")
    reader.shutdown()
