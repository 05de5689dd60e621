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


@pytest.mark.parametrize("hard_links", [True, False])
def test_two_studios_saving_into_one_folder_lose_nothing(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, hard_links: bool
) -> None:
    """Same prompt, same seed, same second: every save takes a name of its own (a name is
    taken atomically, never checked then written). Without hard links (some network and
    FAT file systems) a name is reserved exclusively instead."""
    import os
    import threading

    if not hard_links:

        def no_links(*args, **kwargs):  # noqa: ANN002, ANN003, ANN202
            raise PermissionError("this file system has no hard links")

        monkeypatch.setattr(os, "link", no_links)
    request = GenerationRequest(prompt="same")
    picture = Image.new("RGB", (8, 8), "red")
    saved: list[Path] = []
    lock = threading.Lock()

    def studio() -> None:
        for _ in range(25):
            path = save_image(picture, request, 1, tmp_path, stem="same")
            with lock:
                saved.append(path)

    threads = [threading.Thread(target=studio) for _ in range(6)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert len(set(saved)) == 150 and len(list(tmp_path.glob("same*.png"))) == 150
    assert all(read_parameters(path).prompt == "same" for path in saved)
    assert not list(tmp_path.glob(".partial-*"))
