"""`python -m studio.tiny.evaluate` runs end to end on the embedded models and records its
tables where the model cards read them, so the figures in README can always be re-made."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
import torch

from studio.tiny import evaluate


def test_evaluate_records_its_tables_in_the_model_folders(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    models = tmp_path / "models"
    shutil.copytree(evaluate.MODELS, models)
    threads = torch.get_num_threads()
    try:
        evaluate.main(
            ["--models", str(models), "--single", "6", "--double", "2", "--steps", "4"]
            # a smaller judge (the plumbing): 400 masks and 60 steps already name the shape of
            # every one of 200 clean renders, as the 1500 and 150 it had did
            + ["--judge-masks", "400", "--judge-steps", "60"]
            + ["--cfg", "4", "--upscale", "1", "--samples", str(tmp_path / "samples.png")]
            + ["--record"]
        )
    finally:
        torch.set_num_threads(threads)

    table = json.loads((models / "studio-tiny" / "training.json").read_text())["evaluation"]
    rows = table["table"]
    assert set(rows) == {
        "renderer (judge sanity check)",
        "renderer through the VAE (ceiling)",
        "1 object, CFG 4, 4 steps",
        "2 objects, CFG 4, 4 steps",
    }
    assert rows["renderer (judge sanity check)"]["all"] == 100.0  # the judge reads clean renders
    # The VAE keeps colours and backgrounds; what it loses is fine shape detail.
    ceiling = rows["renderer through the VAE (ceiling)"]
    assert ceiling["colour"] == ceiling["background"] == 100.0
    assert table["seconds_per_image_64px"] > 0

    x4 = json.loads((models / "studio-tiny-x4" / "training.json").read_text())["evaluation"]
    assert {"studio-tiny-x4", "lanczos"} <= set(x4["upscale_64_to_256"])
    assert all(r["psnr"] > 15 for r in x4["upscale_64_to_256"].values())

    base_card = (models / "studio-tiny" / "README.md").read_text()
    assert "| renderer through the VAE (ceiling) | 100.0% |" in base_card
    assert (tmp_path / "samples.png").is_file()
