"""A1111's prompt editing ([from:to:when]) and alternating words ([a|b]) run on the CLIP
families: each denoising step is conditioned on its own prompt's embeddings (the negative
padded to its length, once per image), and the picture is not the one either prompt gives
alone. The schedule itself: tests/core/test_prompt_schedule.py."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from studio.core.request import GenerationRequest, Mode
from studio.engine import prompt_encoding
from tests.engine.conftest import RecordingReporter
from tests.engine.tiny_families import build


def encode(pipe, text: str) -> prompt_encoding.Encoded:  # noqa: ANN001
    """The embeddings the engine makes of `text`, made as it makes them (in inference mode:
    the model's weights may be inference tensors, which autograd may not record)."""
    with torch.inference_mode():
        return prompt_encoding.encode(pipe, text)


def _conditions(engine, request: GenerationRequest) -> tuple:  # noqa: ANN001
    """The run's result and, per network call, its text conditioning (and SDXL's pooled)."""
    pipe = engine.models.pipeline(request.model, Mode.TEXT_TO_IMAGE)
    seen: list[tuple[torch.Tensor, torch.Tensor | None]] = []

    def grab(module, args, kwargs) -> None:  # noqa: ANN001
        added = kwargs.get("added_cond_kwargs") or {}
        pooled = added.get("text_embeds")
        seen.append((kwargs["encoder_hidden_states"].clone(), pooled))

    handle = pipe.unet.register_forward_pre_hook(grab, with_kwargs=True)
    reporter = RecordingReporter()
    try:
        result = engine.run(request, reporter)
    finally:
        handle.remove()
    return result, seen, pipe, reporter


@pytest.fixture(scope="module")
def tiny_sdxl(tmp_path_factory: pytest.TempPathFactory) -> str:
    return str(build("sdxl", tmp_path_factory.mktemp("editing") / "sdxl"))


@pytest.mark.parametrize("which", ["sd1", "sdxl"])
def test_each_step_is_conditioned_on_its_own_prompt(engine, tiny_sd, tiny_sdxl, which) -> None:  # noqa: ANN001
    model = tiny_sd if which == "sd1" else tiny_sdxl
    size = 32 if which == "sd1" else 64
    base = GenerationRequest(
        prompt="a red circle", model=model, width=size, height=size, steps=4, seed=5,
        scheduler="Euler", batch_size=2, negative_prompt="blurry",
    )  # fmt: skip
    edited = base.replace(prompt="a [red circle:blue square:0.5]")
    result, seen, pipe, reporter = _conditions(engine, edited)
    red, blue = encode(pipe, "a red circle"), encode(pipe, "a blue square")
    wanted = [red, red, blue, blue]  # steps 1-2, then 3-4
    assert len(seen) == 4
    for (states, pooled), prompt in zip(seen, wanted, strict=True):
        assert states.shape[0] == 4  # CFG: [negative, negative, prompt, prompt]
        for row in (2, 3):
            assert torch.allclose(states[row : row + 1], prompt.embeds.to(states), atol=1e-6)
            if which == "sdxl":
                assert torch.allclose(pooled[row : row + 1], prompt.pooled.to(pooled), atol=1e-6)
    negative = encode(pipe, "blurry").embeds
    assert all(torch.allclose(s[0:1], negative.to(s), atol=1e-6) for s, _ in seen)
    # nothing said about syntax not run; the picture is neither prompt's alone
    assert not any("does not run" in message for message, _ in reporter.statuses)
    assert result.request.prompt == "a [red circle:blue square:0.5]"
    alone = [
        np.asarray(engine.run(base.replace(prompt=p)).images[0])
        for p in ("a red circle", "a blue square")
    ]
    made = np.asarray(result.images[0])
    assert all(not np.array_equal(made, other) for other in alone)


def test_alternating_words_switch_at_every_step_in_both_prompts(engine, tiny_sd) -> None:  # noqa: ANN001
    request = GenerationRequest(
        prompt="a [red|blue] circle", model=tiny_sd, width=32, height=32, steps=3, seed=5,
        scheduler="Euler", negative_prompt="[blurry|grainy]",
    )  # fmt: skip
    _, seen, pipe, reporter = _conditions(engine, request)
    red, blue = encode(pipe, "a red circle").embeds, encode(pipe, "a blue circle").embeds
    blurry, grainy = encode(pipe, "blurry").embeds, encode(pipe, "grainy").embeds
    wanted = [(red, blurry), (blue, grainy), (red, blurry)]
    for (states, _), (prompt, negative) in zip(seen, wanted, strict=True):
        assert torch.allclose(states[1:2], prompt.to(states), atol=1e-6)
        assert torch.allclose(states[0:1], negative.to(states), atol=1e-6)
    assert not any("does not run" in message for message, _ in reporter.statuses)


def test_the_bracketed_prompt_itself_is_not_encoded(engine, tiny_sd) -> None:  # noqa: ANN001
    """Only each step's prompts are: "a [red:blue:2] circle" and its negative once each
    for "a red circle" and "a blue circle", not a third time as written."""
    request = GenerationRequest(
        prompt="a [red:blue:2] circle", model=tiny_sd, width=32, height=32, steps=4, seed=5,
        scheduler="Euler",
    )  # fmt: skip
    pipe = engine.models.pipeline(tiny_sd, Mode.TEXT_TO_IMAGE)
    engine.run(request)  # loaded, with whatever a first run prepares
    read: list[int] = []
    hook = pipe.text_encoder.register_forward_pre_hook(lambda *args: read.append(1))
    try:
        engine.run(request)
    finally:
        hook.remove()
    assert len(read) == 4  # two steps' prompts and their negatives


@pytest.mark.parametrize("at", [1, 3])  # before the prompt changes, and after
def test_a_branch_continues_the_parents_schedule(engine, tiny_sd, at: int) -> None:  # noqa: ANN001
    """Continued from a step with nothing changed, an edited prompt's picture is its parent's:
    the steps after the branch get the prompts the schedule gives them, kept or replayed."""
    from studio.core.branches import branch_of

    parent = engine.run(
        GenerationRequest(
            prompt="a [red circle:blue square:0.5]", model=tiny_sd, width=32, height=32,
            steps=4, seed=8, scheduler="Euler",
        )
    )  # fmt: skip
    branch = engine.run(branch_of(parent.request, parent.request, at).request)
    assert np.array_equal(np.asarray(branch.images[0]), np.asarray(parent.images[0]))
    engine.states.set_budget(0)  # nothing kept: the parent's steps are computed again
    try:
        again = engine.run(branch_of(parent.request, parent.request, at).request)
    finally:
        engine.states.set_budget(engine.settings.branch_memory_mb * 2**20)
    assert np.array_equal(np.asarray(again.images[0]), np.asarray(parent.images[0]))
