"""A1111's "Clip skip" on SD 1.x: the prompt read that many layers from the text encoder's
last (through its final layer norm, as A1111 and diffusers read it), in the picture and the
metadata; restored from another tool's file; said and left out where the family reads none."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from studio.cli import main
from studio.core.jobs import GenerationError
from studio.core.request import GenerationRequest, Mode
from studio.core.restore import plan_restore
from studio.metadata import parse_a1111, read_parameters
from tests.engine.conftest import RecordingReporter


def _request(model: str, clip_skip: int, size: int = 32) -> GenerationRequest:
    return GenerationRequest(
        prompt="a red circle", model=model, width=size, height=size, steps=2, seed=4,
        scheduler="Euler", clip_skip=clip_skip,
    )  # fmt: skip


def test_clip_skip_reads_the_layer_before_the_last(engine, tiny_sd, tmp_path) -> None:  # noqa: ANN001
    pipe = engine.models.pipeline(tiny_sd, Mode.TEXT_TO_IMAGE)
    seen: list[torch.Tensor] = []
    handle = pipe.unet.register_forward_pre_hook(
        lambda m, a, k: seen.append(k["encoder_hidden_states"].clone()), with_kwargs=True
    )
    try:
        skipped = engine.run(_request(tiny_sd, 2))
    finally:
        handle.remove()
    ids = pipe.tokenizer("a red circle", padding="max_length", return_tensors="pt").input_ids
    encoder = pipe.text_encoder
    with torch.no_grad():
        hidden = encoder(ids, output_hidden_states=True).hidden_states[-2]
        wanted = getattr(encoder, "text_model", encoder).final_layer_norm(hidden)
    assert torch.allclose(seen[0][1:2], wanted.to(seen[0]), atol=1e-5)
    plain = engine.run(_request(tiny_sd, 1))
    assert not np.array_equal(np.asarray(skipped.images[0]), np.asarray(plain.images[0]))
    assert skipped.request.clip_skip == 2

    layers = encoder.config.num_hidden_layers
    with pytest.raises(GenerationError, match=f"has {layers} layers: CLIP skip goes up to"):
        engine.run(_request(tiny_sd, layers + 1))


def test_the_command_line_writes_it_and_a_rerun_keeps_it(tiny_sd, tmp_path, capsys) -> None:  # noqa: ANN001
    first, again = tmp_path / "first.png", tmp_path / "again.png"
    args = ["generate", "a red circle", "--model", tiny_sd, "--steps", "2", "--seed", "3"]
    args += ["--width", "32", "--height", "32", "--clip-skip", "2", "--out", str(first)]
    assert main(args) == 0
    assert read_parameters(first).extras["Clip skip"] == "2"  # as A1111 writes it
    assert main(["generate", "--from", str(first), "--out", str(again)]) == 0
    assert read_parameters(again).extras["Clip skip"] == "2"
    capsys.readouterr()


def test_another_tools_clip_skip_is_restored() -> None:
    text = "a cat\nSteps: 20, Sampler: Euler a, CFG scale: 7, Seed: 1, Size: 512x512, Clip skip: 2"
    assert plan_restore(parse_a1111(text)).values["clip_skip"] == 2
    # and a file without one: A1111's 1 (it writes none then), not the value the window had
    assert plan_restore(parse_a1111(text.replace(", Clip skip: 2", ""))).values["clip_skip"] == 1


def test_a_family_that_reads_none_says_so_and_records_none(engine, tmp_path) -> None:  # noqa: ANN001
    from tests.engine.tiny_families import build

    sdxl = str(build("sdxl", tmp_path / "sdxl"))
    reporter = RecordingReporter()
    skipped = engine.run(_request(sdxl, 2, size=64), reporter)
    plain = engine.run(_request(sdxl, 1, size=64))
    assert any("reads no CLIP skip" in message for message, _ in reporter.statuses)
    assert skipped.request.clip_skip == 1  # the metadata records what ran
    assert np.array_equal(np.asarray(skipped.images[0]), np.asarray(plain.images[0]))
