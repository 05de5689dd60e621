"""Textual-inversion embeddings named in a prompt or negative prompt, as A1111 uses them:
A1111's .pt layout and safetensors, SD 1.x and SDXL (both encoders); another size refused."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from safetensors.torch import save_file

from studio.core import models_folder
from studio.core.catalog import ModelError
from studio.core.request import GenerationRequest
from studio.engine.generate import Engine
from tests.engine.tiny_families import build

SIZE = 64


@pytest.fixture(scope="module")
def models(tmp_path_factory: pytest.TempPathFactory) -> dict[str, str]:
    root = tmp_path_factory.mktemp("ti-models")
    return {name: str(build(name, root / name)) for name in ("sd1", "sdxl")}


@pytest.fixture(scope="module")
def folder(tmp_path_factory: pytest.TempPathFactory, models: dict[str, str]) -> Path:
    """An AUTOMATIC1111 folder: embeddings/ beside models/."""
    from transformers import CLIPTextConfig

    root = tmp_path_factory.mktemp("webui")
    (root / "models" / "Stable-diffusion").mkdir(parents=True)
    embeddings = root / "embeddings"
    embeddings.mkdir()
    width = CLIPTextConfig.from_pretrained(Path(models["sd1"]) / "text_encoder").hidden_size
    xl = Path(models["sdxl"])
    width_l = CLIPTextConfig.from_pretrained(xl / "text_encoder").hidden_size
    width_g = CLIPTextConfig.from_pretrained(xl / "text_encoder_2").hidden_size
    generator = torch.Generator().manual_seed(0)
    # A1111's own .pt layout, two vectors
    vectors = torch.randn(2, width, generator=generator) * 3
    torch.save(
        {"string_to_param": {"*": vectors}, "name": "shinystyle", "step": 500},
        embeddings / "shinystyle.pt",
    )
    save_file(
        {"emb_params": torch.randn(1, width, generator=generator) * 3},
        embeddings / "badhands.safetensors",
    )
    save_file(
        {
            "clip_l": torch.randn(1, width_l, generator=generator) * 3,
            "clip_g": torch.randn(1, width_g, generator=generator) * 3,
        },
        embeddings / "xlstyle.safetensors",
    )
    save_file(
        {"emb_params": torch.randn(1, width + 8, generator=generator)},
        embeddings / "otherfamily.safetensors",
    )
    return root


@pytest.fixture(autouse=True)
def use_folder(folder: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(models_folder, "_chosen", {"command line": folder, "setting": None})
    monkeypatch.setattr(models_folder, "_scanned", {})


@pytest.fixture(scope="module")
def engine() -> Engine:
    return Engine()


def _run(engine: Engine, model: str, prompt: str, negative: str = "") -> np.ndarray:
    request = GenerationRequest(
        prompt=prompt,
        negative_prompt=negative,
        model=model,
        width=SIZE,
        height=SIZE,
        steps=2,
        seed=4,
    )
    return np.asarray(engine.run(request).images[0], np.int16)


def test_an_embeddings_name_in_the_prompt_or_negative_uses_it(engine, models) -> None:
    model = models["sd1"]
    base = _run(engine, model, "a red circle")
    styled = _run(engine, model, "a red circle, shinystyle")
    assert not np.array_equal(styled, _run(engine, model, "a red circle, plainstyle"))
    assert np.abs(styled - base).mean() > 0.3
    negative = _run(engine, model, "a red circle", negative="badhands")
    assert not np.array_equal(negative, _run(engine, model, "a red circle", negative="hands"))
    # loaded and kept, it changes nothing for a prompt that does not name it
    assert np.array_equal(_run(engine, model, "a red circle"), base)


def test_sdxl_embeddings_reach_both_encoders_and_others_are_refused(engine, models) -> None:
    xl = models["sdxl"]
    assert not np.array_equal(_run(engine, xl, "a cube xlstyle"), _run(engine, xl, "a cube style"))
    with pytest.raises(ModelError, match="made for SDXL"):
        _run(engine, xl, "a cube badhands")
    with pytest.raises(ModelError, match="does not fit SD 1.x"):
        _run(engine, models["sd1"], "a cube otherfamily")
    # and the model is as it was
    assert np.array_equal(
        _run(engine, models["sd1"], "a red circle, shinystyle"),
        _run(engine, models["sd1"], "a red circle, shinystyle"),
    )
