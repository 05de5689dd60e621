"""Saved images carry their parameters, and reading them back regenerates the same pixels."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from studio.core.request import GenerationRequest
from studio.core.saving import save_image
from studio.metadata import read_parameters
from tests.engine.conftest import RecordingReporter


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


def _ran(path: Path) -> dict:
    found = read_parameters(path)
    return {
        "steps": found.steps,
        "sampler": found.sampler,
        "cfg": found.cfg_scale,
        "model": found.model,
        "size": (found.width, found.height),
        "strength": found.strength,
        **found.extras,
    }


def test_metadata_records_what_every_stage_ran(tmp_path: Path) -> None:
    """An Upscale job records the upscaler's model, steps, sampler, CFG and output size (it
    wrote the generator's and the input's); a cascade records each stage, in A1111's words."""
    from studio.core.catalog import is_installed
    from studio.core.request import Mode, Upscaler
    from studio.core.saving import save_result
    from studio.engine.generate import Engine

    if not (is_installed("studio-tiny") and is_installed("studio-tiny-x4")):
        pytest.skip("the embedded models are not built yet")
    engine = Engine()
    base = GenerationRequest(prompt="a red circle", steps=6, cfg_scale=4.0, seed=3)
    base = base.replace(scheduler="Euler a")
    upscale = base.replace(mode=Mode.UPSCALE, init_image=Image.new("RGB", (32, 32), "blue"))
    ran = _ran(save_result(engine.run(upscale), tmp_path)[0])
    assert ran["model"] == "studio-tiny-x4" and ran["size"] == (128, 128)
    assert (ran["steps"], ran["sampler"], ran["cfg"]) == (20, "DPM++ 2M", 1.0)  # its card's
    assert ran["Noise level"] == "20" and ran["Input size"] == "32x32"

    cascade = base.replace(upscaler=Upscaler.X4)
    ran = _ran(save_result(engine.run(cascade), tmp_path)[0])
    assert (ran["steps"], ran["sampler"], ran["model"], ran["size"]) == (
        6,
        "Euler a",
        "studio-tiny",
        (64, 64),
    )
    assert ran["Upscaler"] == "studio-tiny-x4" and ran["Upscale steps"] == "20"
    assert ran["Upscale sampler"] == "DPM++ 2M" and ran["Output size"] == "256x256"

    hires = base.replace(upscaler=Upscaler.HIRES, upscale_strength=0.5)
    ran = _ran(save_result(engine.run(hires), tmp_path)[0])
    # A1111's Hires steps: the schedule (6), of which it runs int(6 × 0.5) = 3, as ran here
    assert ran["Hires steps"] == "6" and ran["strength"] == 0.5  # A1111's Denoising strength
    assert ran["Hires upscale"] == "2" and ran["Output size"] == "128x128"

    # Hires steps of their own (A1111's): a schedule of 10, of which it runs 5
    reporter = RecordingReporter()
    result = engine.run(hires.replace(upscale_steps=10), reporter)
    assert max(p.step for p in reporter.steps if p.stage == "hires") == 5
    ran = _ran(save_result(result, tmp_path)[0])
    assert ran["Hires steps"] == "10" and ran["steps"] == 6
