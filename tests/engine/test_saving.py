"""Saved images carry their parameters, and reading them back regenerates the same pixels."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from studio.core.request import GenerationRequest
from studio.core.saving import save_image
from studio.metadata import read_parameters


def test_round_trip_write_read_regenerate(engine, tiny_sd: str, tmp_path: Path) -> None:
    request = GenerationRequest(
        prompt="a red circle, on blue",
        negative_prompt="green",
        model=tiny_sd,
        width=32,
        height=32,
        steps=3,
        seed=21,
        batch_size=2,
        cfg_rescale=0.5,
    )
    result = engine.run(request)
    path = save_image(result.images[1], result.request, result.seeds[1], tmp_path)

    parameters = read_parameters(path)
    assert parameters.source == "studio"
    assert (parameters.prompt, parameters.negative_prompt) == (request.prompt, "green")
    assert (parameters.seed, parameters.steps, parameters.sampler) == (22, 3, "Euler a")
    assert (parameters.width, parameters.height) == (32, 32)

    restored = GenerationRequest.from_dict(parameters.request)
    assert restored.seed == 22 and restored.batch_size == 1 and restored.cfg_rescale == 0.5
    again = engine.run(restored).images[0]
    saved = np.asarray(Image.open(path).convert("RGB"), dtype=np.int16)
    assert np.abs(saved - np.asarray(again, dtype=np.int16)).max() <= 2


def test_a_failed_save_leaves_no_file(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    def explode(*args, **kwargs):
        raise OSError("disk full")

    monkeypatch.setattr(Image.Image, "save", explode)
    with pytest.raises(OSError):
        save_image(Image.new("RGB", (8, 8)), GenerationRequest(prompt="x"), 1, tmp_path)
    assert list(tmp_path.iterdir()) == []


def test_names_never_overwrite(tmp_path: Path) -> None:
    request = GenerationRequest(prompt="same")
    first = save_image(Image.new("RGB", (8, 8)), request, 1, tmp_path, stem="same")
    second = save_image(Image.new("RGB", (8, 8)), request, 1, tmp_path, stem="same")
    assert first != second and first.exists() and second.exists()
