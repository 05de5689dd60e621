"""The embedded LoRA (resources/loras/studio-tiny-heart): the renderer draws its new shape
only when asked, the judge tells it from the shapes it resembles, the studio finds the file by
name and draws with it, and its record says how it was made and what it measured. The full
training is `python -m studio.tiny.train_lora --concept heart`; here it runs two steps."""

from __future__ import annotations

import json
import random
import shutil
from pathlib import Path

import numpy as np
import pytest
import torch
from safetensors import safe_open

from studio.core import loras
from studio.core.request import GenerationRequest
from studio.tiny import evaluate, judge, train_lora
from studio.tiny.judge import Judge, ShapeNet, train_shape_classifier
from studio.tiny.scenes import EXTRA_SHAPES, draw_scene, ground_truth, sample_scene
from studio.tiny.vocabulary import SHAPES

RESOURCES = Path(__file__).resolve().parents[1] / "resources"
LORA = RESOURCES / "loras" / "studio-tiny-heart.safetensors"
PROMPT = "a large red heart in the centre on a blue background"


pytestmark = pytest.mark.usefixtures("one_thread")  # tiny models: one thread is faster


@pytest.fixture(scope="module")
def engine():  # noqa: ANN201
    from studio.engine.generate import Engine

    return Engine()


@pytest.fixture(scope="module")
def heart_judge() -> Judge:
    """A smaller classifier than the evaluator's (seconds, not a minute), on all six shapes."""
    return Judge(train_shape_classifier(n=400, steps=60, shapes=(*SHAPES, *EXTRA_SHAPES)))


def test_hearts_are_drawn_only_when_asked_for() -> None:
    rng = random.Random(0)
    assert all(
        o.shape in SHAPES for _ in range(300) for o in sample_scene(rng).objects
    )  # the base model's training scenes are what they were
    assert "heart" in EXTRA_SHAPES and "heart" not in SHAPES
    assert ShapeNet().shapes == SHAPES  # and so is the default judge

    scene = sample_scene(random.Random(4), 1, shapes=("heart",))
    (obj,) = scene.objects
    assert obj.shape == "heart"
    px = np.asarray(draw_scene(scene, 64), np.float32)
    x0, y0, x1, y1 = ground_truth(scene, 64)[0].box
    inside = np.linalg.norm(px - np.array(obj.rgb, np.float32), axis=-1) < 45
    box = inside[y0:y1, x0:x1]
    assert 0.45 < box.mean() < 0.8  # a heart fills about 60% of its box
    assert inside.sum() == pytest.approx(box.sum(), abs=2)  # and nothing outside it
    # two lobes with a notch between them at the top, a point at the bottom: not a circle
    rows = box[box.any(axis=1)]
    runs = lambda row: int(np.count_nonzero(np.diff(row.astype(int)) == 1) + row[0])  # noqa: E731
    assert runs(rows[0]) == runs(rows[1]) == 2
    assert runs(rows[-1]) == 1 and rows[-1].sum() <= 2
    assert abs(np.nonzero(rows[-1])[0].mean() - (box.shape[1] - 1) / 2) <= 1.5


def test_the_judge_tells_hearts_from_circles_and_triangles(heart_judge: Judge) -> None:
    rng = random.Random(11)
    for shape in ("heart", "circle", "triangle", "star"):
        found = []
        for _ in range(15):
            scene = sample_scene(rng, 1, shapes=(shape,))
            found.append(heart_judge(draw_scene(scene, 64), scene).objects[0].found_shape)
        if shape == "heart":
            assert found.count("heart") >= 14, found
        else:
            assert "heart" not in found, (shape, found)


def test_the_embedded_lora_is_found_by_name_and_describes_itself() -> None:
    assert loras.find("studio-tiny-heart") == LORA
    info = loras.describe(LORA)
    assert info.triggers == ["heart"]
    with safe_open(str(LORA), "pt") as f:
        meta = f.metadata()
        keys = list(f.keys())
    assert meta["modelspec.architecture"] == "studio-tiny"
    assert meta["modelspec.title"] == "studio-tiny heart"
    # diffusers/PEFT layout, on the UNet and on the text encoder (the word is new to it)
    assert any(k.startswith("unet.") and k.endswith("lora_A.weight") for k in keys)
    assert any(k.startswith("text_encoder.") and ".self_attn." in k for k in keys)
    assert LORA.stat().st_size < 5_000_000
    embedded = sum(
        p.stat().st_size
        for folder in ("models", "loras")
        for p in (RESOURCES / folder).rglob("*")
        if p.is_file()
    )
    assert embedded <= 40 * 1024 * 1024


def test_its_record_holds_the_command_and_the_measured_accuracy() -> None:
    record = json.loads(LORA.with_suffix(".json").read_text())
    assert record["command"].startswith("python -m studio.tiny.train_lora --concept heart")
    assert record["steps"] > 100 and record["wall_seconds"] > 0 and record["seed"] == 0
    assert record["final_losses"]["unet_v_mse"] > 0
    rows = record["evaluation"]["table"]
    weights = {w: rows[f"'heart' prompts, LoRA {w}"]["shape"] for w in ("0", "0.5", "1", "1.5")}
    assert weights["0"] < 10 < weights["1"]  # the base model cannot draw it, the LoRA can
    assert "ordinary 1 object, LoRA 1" in rows and "ordinary 1 object, LoRA 0" in rows


def test_the_engine_draws_with_it_from_the_prompt(engine) -> None:  # noqa: ANN001
    def run(prompt: str) -> np.ndarray:
        request = GenerationRequest(
            prompt=prompt, width=64, height=64, steps=6, cfg_scale=4.0, seed=5
        )
        return np.asarray(engine.run(request).images[0], np.int16)

    base = run(PROMPT)
    with_lora = run(f"{PROMPT} <lora:studio-tiny-heart:1>")
    assert np.abs(with_lora - base).mean() > 2.0
    assert np.array_equal(run(f"{PROMPT} <lora:studio-tiny-heart:0>"), base)
    assert np.array_equal(run(PROMPT), base)  # none active: the base model's pixels again


def test_the_training_command_writes_a_loadable_lora_and_its_record(tmp_path: Path) -> None:
    """Two steps of the real command: the plumbing, not the result."""
    out = tmp_path / "heart.safetensors"
    argv = ["--concept", "heart", "--out", str(out), "--steps", "2", "--batch", "2"]
    train_lora.main([*argv, "--scenes", "16", "--threads", "1"])
    record = json.loads(out.with_suffix(".json").read_text())
    assert record["command"] == "python -m studio.tiny.train_lora " + " ".join(
        [*argv, "--scenes", "16", "--threads", "1"]
    )
    assert record["steps"] == 2 and record["tokens"] == ["h", "e", "ar", "t</w>"]
    from diffusers import StableDiffusionPipeline
    from safetensors.torch import load_file

    pipe = StableDiffusionPipeline.from_pretrained(
        RESOURCES / "models" / "studio-tiny", torch_dtype=torch.float32, local_files_only=True
    )
    pipe.load_lora_weights(load_file(str(out)), adapter_name="heart")
    assert set(pipe.get_list_adapters()) == {"unet", "text_encoder"}


def test_the_evaluator_measures_a_lora_by_weight(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, heart_judge: Judge
) -> None:
    lora = tmp_path / LORA.name
    shutil.copy(LORA, lora)
    monkeypatch.setattr(evaluate, "train_shape_classifier", lambda **_: heart_judge.shape_net)
    argv = ["--lora", str(lora), "--concept-prompts", "2", "--single", "2", "--double", "0"]
    argv += ["--steps", "3", "--lora-weights", "0", "1", "--threads", "1"]
    evaluate.main([*argv, "--samples", str(tmp_path / "grid.png"), "--record"])
    table = json.loads(lora.with_suffix(".json").read_text())["evaluation"]
    assert table["concept"] == "heart"
    assert table["table"]["heart renders (judge sanity check)"]["shape"] == 100.0
    assert {
        "'heart' prompts, LoRA 0",
        "'heart' prompts, LoRA 1",
        "ordinary 1 object, LoRA 1",
    } <= set(table["table"])
    assert "called heart" in table["table"]["ordinary 1 object, LoRA 1"]
    assert judge.SHAPES == SHAPES
