"""Prompts encoded as AUTOMATIC1111 encodes them: exactly the pipeline's own embeddings for a
plain short prompt, weights on their own tokens' rows, 75-token chunks for long prompts and
BREAK, equal lengths on both sides, SDXL's pooled embedding from the first chunk, and plain
text (with notes) for the T5 families. The models are the tiny random-weight fixtures and
the embedded studio-tiny."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from diffusers import DiffusionPipeline

from studio.core.paths import EMBEDDED_MODELS_DIR
from studio.core.request import GenerationRequest
from studio.engine import generate, prompt_encoding
from studio.engine.prompt_encoding import prompt_arguments, tokenize
from tests.engine.conftest import RecordingReporter
from tests.engine.tiny_families import build

TINY = str(EMBEDDED_MODELS_DIR / "studio-tiny")
# single tokens of the studio-tiny vocabulary, which the tiny fixtures share
WORDS = [
    "red",
    "blue",
    "green",
    "yellow",
    "circle",
    "square",
    "triangle",
    "small",
    "large",
    "top",
    "bottom",
    "left",
    "right",
]


def long_prompt(count: int, last: str = "") -> str:
    words = [WORDS[i % len(WORDS)] for i in range(count - len(last.split()))]
    return " ".join(words + last.split())


pytestmark = pytest.mark.usefixtures("one_thread")  # tiny models: one thread is faster


@pytest.fixture(scope="module")
def folders(tmp_path_factory: pytest.TempPathFactory) -> dict[str, str]:
    root = tmp_path_factory.mktemp("prompt-families")
    built = {name: str(build(name, root / name)) for name in ("sd1", "sd2v", "sdxl", "chroma")}
    return {"tiny": TINY, **built}


@pytest.fixture(scope="module")
def pipes(folders: dict[str, str]) -> dict[str, DiffusionPipeline]:
    return {name: DiffusionPipeline.from_pretrained(folder) for name, folder in folders.items()}


def embeddings(pipe, prompt: str, negative: str | None = None) -> dict:
    with torch.inference_mode():
        return prompt_arguments(pipe, prompt, {"negative_prompt": negative})


def own(pipe, prompt: str, negative: str | None = None) -> tuple:
    """The pipeline's own encode_prompt (CFG on)."""
    with torch.inference_mode():
        if hasattr(pipe, "text_encoder_2"):
            return pipe.encode_prompt(
                prompt, device="cpu", do_classifier_free_guidance=True, negative_prompt=negative
            )
        return pipe.encode_prompt(prompt, "cpu", 1, True, negative)


@pytest.mark.parametrize("name", ["tiny", "sd1", "sd2v", "sdxl"])
@pytest.mark.parametrize("negative", ["a blue square", None])
def test_plain_short_prompt_is_exactly_the_pipelines(pipes, name: str, negative) -> None:
    pipe = pipes[name]
    ours = embeddings(pipe, "a small red circle at the top left", negative)
    theirs = own(pipe, "a small red circle at the top left", negative)
    assert torch.equal(ours["prompt_embeds"], theirs[0])
    assert torch.equal(ours["negative_prompt_embeds"], theirs[1])
    if name == "sdxl":
        assert torch.equal(ours["pooled_prompt_embeds"], theirs[2])
        assert torch.equal(ours["negative_pooled_prompt_embeds"], theirs[3])
    assert "prompt" not in ours and "negative_prompt" not in ours


def _a1111(plain: torch.Tensor, multipliers: torch.Tensor) -> torch.Tensor:
    weighted = plain * multipliers.reshape(1, -1, 1)
    return weighted * (plain.mean() / weighted.mean())


@pytest.mark.parametrize("name", ["tiny", "sdxl"])
def test_weight_multiplies_its_token_rows_then_restores_the_mean(pipes, name: str) -> None:
    pipe = pipes[name]
    plain = embeddings(pipe, "a red circle")["prompt_embeds"].double()
    weighted = embeddings(pipe, "a (red:1.5) circle")["prompt_embeds"].double()
    multipliers = torch.ones(plain.shape[1], dtype=torch.double)
    multipliers[2] = 1.5  # BOS, "a", "red"
    if name == "sdxl":  # each encoder's half weighted and rescaled on its own
        width = pipe.text_encoder.config.hidden_size
        halves = [slice(0, width), slice(width, None)]
        expected = torch.cat([_a1111(plain[..., h], multipliers) for h in halves], dim=-1)
    else:
        expected = _a1111(plain, multipliers)
    tolerance = 1e-2 if weighted.dtype == torch.float16 or name == "tiny" else 1e-6
    torch.testing.assert_close(weighted, expected, atol=tolerance, rtol=tolerance)
    # before the rescale only the weighted row differs: the ratio is one constant elsewhere
    ratio = weighted / plain
    others = torch.cat([ratio[:, :2], ratio[:, 3:]], dim=1)
    assert float(others.std()) < 1e-3 * float(others.abs().mean())
    assert not torch.allclose(ratio[:, 2], others[:, 0])


def test_a_162_token_prompt_is_three_chunks(pipes) -> None:
    pipe = pipes["sd1"]
    prompt = long_prompt(162)
    chunks = tokenize(pipe, pipe.tokenizer, pipe.text_encoder, prompt)
    assert [len(tokens) for tokens, _ in chunks] == [75, 75, 12]
    args = embeddings(pipe, prompt, "blurry")
    assert args["prompt_embeds"].shape == (1, 231, 32)
    assert args["negative_prompt_embeds"].shape == (1, 231, 32)  # padded to the same length
    # the first chunk is what the pipeline makes of the prompt (it cuts after 75 tokens)
    assert torch.equal(args["prompt_embeds"][:, :77], own(pipe, prompt)[0])
    # the negative's padding is the empty prompt's chunk
    empty = embeddings(pipe, "")["prompt_embeds"]
    assert torch.equal(args["negative_prompt_embeds"][:, 77:154], empty)


def test_break_starts_a_new_chunk(pipes) -> None:
    pipe = pipes["sd1"]
    chunks = tokenize(pipe, pipe.tokenizer, pipe.text_encoder, "a red circle BREAK blue")
    assert len(chunks) == 2
    assert pipe.tokenizer.decode(chunks[1][0]) == "blue"
    args = embeddings(pipe, "a red circle BREAK blue")
    assert args["prompt_embeds"].shape[1] == 154
    assert torch.equal(
        args["prompt_embeds"][:, :77], embeddings(pipe, "a red circle")["prompt_embeds"]
    )
    assert torch.equal(args["prompt_embeds"][:, 77:], embeddings(pipe, "blue")["prompt_embeds"])


def test_word_wrap_moves_the_words_after_a_late_comma(pipes) -> None:
    """A1111's default word wrap: a chunk that fills up within 20 tokens of a comma ends at
    the comma, and the words after it open the next chunk."""
    pipe = pipes["sd1"]
    chunks = tokenize(
        pipe, pipe.tokenizer, pipe.text_encoder, long_prompt(70) + ", " + long_prompt(10)
    )
    assert [len(tokens) for tokens, _ in chunks] == [71, 10]


def test_negative_longer_than_the_prompt_pads_the_prompt(pipes) -> None:
    args = embeddings(pipes["tiny"], "a red circle", long_prompt(40))  # studio-tiny: 30 a chunk
    assert args["prompt_embeds"].shape == args["negative_prompt_embeds"].shape == (1, 64, 128)


def test_sdxl_pooled_is_the_first_chunks_and_empty_negative_is_zeros(pipes) -> None:
    pipe = pipes["sdxl"]
    prompt = long_prompt(162)
    args = embeddings(pipe, prompt)
    theirs = own(pipe, prompt)  # the pipeline reads the first 75 tokens only
    assert args["prompt_embeds"].shape == (1, 231, 64)
    assert torch.equal(args["prompt_embeds"][:, :77], theirs[0])
    assert torch.equal(args["pooled_prompt_embeds"], theirs[2])
    later = embeddings(pipe, long_prompt(162, "green green green"))
    assert torch.equal(later["pooled_prompt_embeds"], args["pooled_prompt_embeds"])
    assert not torch.equal(later["prompt_embeds"], args["prompt_embeds"])
    # force_zeros_for_empty_prompt: zeros as long as the prompt, as the pipeline gives
    assert args["negative_prompt_embeds"].shape == (1, 231, 64)
    assert not args["negative_prompt_embeds"].any()
    assert not args["negative_pooled_prompt_embeds"].any()


def test_plain_text_families_read_no_syntax_and_say_when_text_is_cut(pipes) -> None:
    pipe = pipes["chroma"]
    notes: list[str] = []
    with torch.inference_mode():
        args = prompt_arguments(
            pipe, "a (red:1.3) circle <lora:ink:0.8>", {"negative_prompt": "[blurry]"}, notes.append
        )
    assert args["prompt"] == "a red circle" and args["negative_prompt"] == "blurry"
    assert any("reads no weights" in n for n in notes)
    with torch.inference_mode():  # text with nothing to take out is passed as it is
        same = prompt_arguments(pipe, "a red circle", {"negative_prompt": " "})
    assert same["prompt"] == "a red circle" and same["negative_prompt"] == " "
    notes.clear()
    with torch.inference_mode():
        prompt_arguments(pipe, long_prompt(700), {}, notes.append)
    assert any("reads 512" in n and "cut" in n for n in notes), notes


def test_the_last_tokens_of_a_long_prompt_change_the_picture(folders, monkeypatch) -> None:
    """Through the engine: the last words of a 162-token prompt reach the UNet."""
    seen: list[tuple[int, ...]] = []

    def recording(*args, **kwargs):  # noqa: ANN002, ANN003
        call = prompt_encoding.prompt_arguments(*args, **kwargs)
        seen.append(tuple(call["prompt_embeds"].shape))
        return call

    monkeypatch.setattr(generate, "prompt_arguments", recording)
    engine = generate.Engine()
    base = GenerationRequest(
        prompt=long_prompt(162, "red red red"),
        model=folders["sd1"],
        width=64,
        height=64,
        steps=2,
        seed=3,
        negative_prompt="blurry",
    )
    one = engine.run(base, RecordingReporter()).images[0]
    other = engine.run(base.replace(prompt=long_prompt(162, "blue blue blue")), RecordingReporter())
    assert seen == [(1, 231, 32), (1, 231, 32)]
    assert not np.array_equal(np.asarray(one), np.asarray(other.images[0]))
    # the saved prompt is the text as typed
    assert other.request.prompt == long_prompt(162, "blue blue blue")


def test_the_notes_reach_the_reporter_and_the_prompt_is_saved_as_typed(folders) -> None:
    typed = "a (red:1.3) circle BREAK blue"
    request = GenerationRequest(
        prompt=typed, model=folders["chroma"], width=64, height=64, steps=2, seed=1
    )
    reporter = RecordingReporter()
    result = generate.Engine().run(request, reporter)
    notes = [message for message, _ in reporter.statuses if "reads no weights" in message]
    assert notes == ["Chroma reads no weights: the prompt's (…), […] and BREAK are ignored."]
    assert result.request.prompt == typed
