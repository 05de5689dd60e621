"""The training command runs end to end: `--quick` (with fewer steps), real components.

It checks the plumbing a full run depends on (data, losses, export, records), so the
command that reproduces studio-tiny cannot rot between retrains.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import pytest
import torch
from diffusers import StableDiffusionPipeline, StableDiffusionUpscalePipeline

from studio.tiny import card, export, train


def _train(*argv: str) -> None:
    threads = torch.get_num_threads()
    try:
        train.main(["--quick", "--device", "cpu", *argv])
    finally:
        torch.set_num_threads(threads)


# Each stage's steps in this module's runs: 4, a quarter of `--quick`'s 16. Nothing here
# asserts on what training learns beyond "it trained and scored" (the probe's loss is 0.16
# after 4 steps as after 16); the steps repeat one step, and a checkpoint is still written
# halfway (checkpoint_every = steps // 2). On one thread the module's three runs take 22 s
# instead of 36 s.
STEPS = 4


@pytest.fixture(scope="module", autouse=True)
def _fewer_quick_steps() -> Iterator[None]:
    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(train, "QUICK_STEPS", STEPS)
        yield


@pytest.fixture(scope="module")
def work(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("work")


@pytest.fixture(scope="module")
def trained(tmp_path_factory: pytest.TempPathFactory, work: Path) -> Path:
    out = tmp_path_factory.mktemp("models")
    folders = ["--out", str(out), "--work", str(work)]
    _train(*folders)  # the README's command: both models, from scratch
    _train("--model", "decoder", *folders)  # the optional extra stage
    return out


def test_quick_run_writes_pipelines_that_generate(trained: Path) -> None:
    pipe = StableDiffusionPipeline.from_pretrained(
        trained / "studio-tiny", local_files_only=True, torch_dtype=torch.float32
    )
    pipe.set_progress_bar_config(disable=True)
    image = pipe("a red circle", num_inference_steps=2, output_type="np").images[0]
    assert image.shape == (64, 64, 3)
    up = export.load_pipeline(StableDiffusionUpscalePipeline, trained / "studio-tiny-x4")
    assert not (trained / "studio-tiny-x4" / "vae").exists()  # studio-tiny's, kept once
    up.set_progress_bar_config(disable=True)
    low = pipe.image_processor.numpy_to_pil(image)[0]
    big = up("", image=low, num_inference_steps=2, guidance_scale=1.0).images[0]
    assert big.size == (256, 256)


def test_quick_run_records_its_command_and_the_text_probe(trained: Path) -> None:
    record = json.loads((trained / "studio-tiny" / "training.json").read_text())
    assert record["command"].startswith("python -m studio.tiny.train --quick")
    assert record["text_aux"] == 1.0  # on by default
    losses = record["final_losses"]
    # A few steps cannot learn much, but the probe must have trained and scored.
    assert 0 < losses["text_pair_bce"] < 0.7
    assert losses["unet_v_mse"] > 0
    text = card.base_card(trained / "studio-tiny")
    assert record["command"] in text and "linear probe" in text


def test_decoder_stage_rewrites_the_shared_vae_of_both_models(trained: Path) -> None:
    for name in ("studio-tiny", "studio-tiny-x4"):
        record = json.loads((trained / name / "training.json").read_text())
        assert record["decoder_finetune"]["final_losses"]["steps"] == train.QUICK_STEPS
    # the upscaler runs the very VAE file the base has, kept once in the base's folder
    up = export.load_pipeline(StableDiffusionUpscalePipeline, trained / "studio-tiny-x4")
    vae = export.load_pipeline(StableDiffusionPipeline, trained / "studio-tiny").vae
    assert all(
        torch.equal(a, b)
        for a, b in zip(up.vae.state_dict().values(), vae.state_dict().values(), strict=True)
    )
    assert "decoder is fine-tuned" in card.base_card(trained / "studio-tiny")


def test_the_text_probe_can_be_left_out(trained: Path, work: Path, tmp_path: Path) -> None:
    # on the VAE the first run trained (--vae-from), so only the UNet stage runs again
    _train("--model", "studio-tiny", "--text-aux", "0", "--vae-from", str(work / "vae"),
           "--out", str(tmp_path), "--work", str(tmp_path / "work"))  # fmt: skip
    record = json.loads((tmp_path / "studio-tiny" / "training.json").read_text())
    assert record["text_aux"] == 0
    assert "text_pair_bce" not in record["final_losses"]
    assert record["final_losses"]["unet_v_mse"] > 0
    assert "linear probe" not in card.base_card(tmp_path / "studio-tiny")
    pipe = StableDiffusionPipeline.from_pretrained(
        tmp_path / "studio-tiny", local_files_only=True, torch_dtype=torch.float32
    )
    pipe.set_progress_bar_config(disable=True)
    assert pipe("a red circle", num_inference_steps=2, output_type="np").images[0].shape == (
        64,
        64,
        3,
    )


def test_a_card_of_continued_runs_lists_every_command_in_order(tmp_path: Path) -> None:
    """A model trained in several commands (`--unet-from`) is reproduced by all of them:
    the card lists each, oldest first, and says how they chain."""
    from studio.core.catalog import resolve

    embedded = Path(resolve("studio-tiny").location)
    folder = tmp_path / "studio-tiny"
    folder.mkdir()
    for name in ("studio.json", "training.json"):
        (folder / name).write_bytes((embedded / name).read_bytes())
    last = json.loads((folder / "training.json").read_text())
    first = {
        "command": "python -m studio.tiny.train --model studio-tiny --unet-steps 4000",
        "wall_seconds": 3600,
        "final_losses": {"unet_v_mse": 0.21, "text_pair_bce": 0.01},
    }
    middle = {
        "command": "python -m studio.tiny.train --unet-from a --unet-steps 2000",
        "wall_seconds": 1800,
        "final_losses": {"unet_v_mse": 0.2},
        "continues": first,
    }
    final_losses = {k: v for k, v in last["final_losses"].items() if k != "text_pair_bce"}
    last.update(command="python -m studio.tiny.train --unet-from b", continues=middle)
    last["final_losses"] = final_losses  # only the first run trained the probe
    (folder / "training.json").write_text(json.dumps(last))

    text = card.base_card(folder)
    reproduce = text.split("## Reproduce")[1].split("## Measured")[0]
    commands = [line for line in reproduce.splitlines() if line.startswith("python -m")]
    assert commands == [
        f"{first['command']}   # 60 minutes",
        f"{middle['command']}   # 30 minutes",
        last["command"],
    ]
    assert "goes on from the folder the one before it wrote" in reproduce
    assert "(the last command)" in reproduce
    assert "linear probe" in text  # trained in the first run, so the model has it


def test_the_vae_trains_in_bfloat16_only_where_the_cpu_computes_it(monkeypatch) -> None:
    """A CPU without AVX512-BF16 or AMX emulates bf16 convolutions, 15 times slower than
    fp32: there the VAE's steps run in fp32 (this module's training took 58 s, now 20 s)."""
    monkeypatch.setattr(train, "cpu_has_bf16", lambda: False)
    with train._autocast("cpu"):
        assert not torch.is_autocast_enabled("cpu")
    monkeypatch.setattr(train, "cpu_has_bf16", lambda: True)
    with train._autocast("cpu"):
        assert torch.is_autocast_enabled("cpu")
