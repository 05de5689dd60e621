"""Prompts encoded the way AUTOMATIC1111 encodes them, for the CLIP families (SD 1.x, SD 2.x,
SDXL, the embedded studio-tiny); plain text for the T5 and language-model encoders.

A1111's way (its `sd_hijack_clip`, emphasis "Original"): the prompt's tokens, weighted by
`studio.core.prompt_syntax`, are cut into chunks of 75 (a CLIP tokenizer's 77 less BOS and
EOS; studio-tiny's 32 gives 30), a BREAK ending a chunk early and text after a comma close to
a chunk's end moved to the next chunk (its "word wrap" of 20 tokens). Each chunk is wrapped in
BOS … EOS, padded, encoded on its own, each token's hidden state multiplied by its weight and
the chunk rescaled to its mean before weighting; the chunks are concatenated along the
sequence (162 tokens: 3 chunks, 231 positions). SDXL does this for both encoders (hidden
states side by side) and takes the pooled embedding of the second from the first chunk.

The layer read, the padding token and the dtype are the diffusers pipelines' own, so a plain
prompt of up to 75 tokens gives exactly the embeddings their `encode_prompt` gives. The
negative prompt is encoded the same way and padded with empty-prompt chunks to the prompt's
length (A1111's "pad prompt/negative prompt to be same length"; diffusers needs equal
shapes); SDXL's empty negative is zeros where the model asks for it, as the pipeline does.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import torch

from studio.core import prompt_schedule
from studio.core.jobs import GenerationError
from studio.core.prompt_syntax import (
    PLAIN_ENCODERS,
    STEP_PROMPT_FAMILIES,
    cut_note,
    has_weights,
    parse_weighted,
    plain_text,
    split_breaks,
    weights_note,
)
from studio.engine.family_runtime import call_parameters, family_of

WORD_WRAP = 20  # A1111's "prompt word wrap length limit" (comma_padding_backtrack) default

Note = Callable[[str], None]
Tokens = list[tuple[list[int], list[float]]]  # chunks: token ids (no BOS/EOS) and weights


@dataclass
class Encoded:
    embeds: torch.Tensor  # (1, 77·chunks, width)
    pooled: torch.Tensor | None = None  # SDXL: (1, projection)


# -- the arguments a pipeline call gets ------------------------------------------------------


def prompt_arguments(
    pipe: Any,
    prompt: str,
    guidance: dict[str, Any],
    note: Note | None = None,
    clip_skip: int = 1,
) -> dict[str, Any]:
    """The call's prompt entries: `guidance` (from `guidance_arguments`, holding the negative
    prompt where the family takes one) with the prompt added as A1111 would have it read:
    embeddings for the CLIP families (from the layer `clip_skip` says), plain text for the
    others."""
    note = note or (lambda _message: None)
    call = dict(guidance)
    kind = encoder_kind(pipe)
    if kind == "plain":
        call["prompt"] = _plain(pipe, prompt, note)
        if call.get("negative_prompt"):
            call["negative_prompt"] = _plain(pipe, call["negative_prompt"], note, "negative ")
        return call
    negative = call.pop("negative_prompt", None)
    # looked up once a job: diffusers walks every module to find it (ms on any pipeline)
    device = getattr(pipe, "_studio_device", None) or getattr(pipe, "_execution_device", None)
    layers = getattr(getattr(pipe.text_encoder, "config", None), "num_hidden_layers", None)
    if kind == "sd" and layers is not None and clip_skip > layers:
        raise GenerationError(
            f"This model's text encoder has {layers} layers: CLIP skip goes up to {layers}."
        )
    if changes_by_step(pipe, prompt, negative):
        return call  # `step_prompts` encodes each step's, the first into the call
    positive = encode(pipe, prompt, device, clip_skip)
    empty = encode_negative(pipe, negative, positive, device, clip_skip)
    positive, empty = pad_to_same_length(pipe, positive, empty, clip_skip)
    call.update(prompt_embeds=positive.embeds, negative_prompt_embeds=empty.embeds)
    if kind == "sdxl":
        call.update(
            pooled_prompt_embeds=positive.pooled, negative_pooled_prompt_embeds=empty.pooled
        )
    return call


def encode_negative(
    pipe: Any, negative: str | None, positive: Encoded, device: Any, clip_skip: int = 1
) -> Encoded:
    """The negative prompt's embeddings; SDXL's empty negative is zeros where the model asks
    for it, as the pipeline does."""
    zeros = encoder_kind(pipe) == "sdxl" and pipe.config.get("force_zeros_for_empty_prompt")
    if zeros and not negative:
        return Encoded(torch.zeros_like(positive.embeds), torch.zeros_like(positive.pooled))
    return encode(pipe, negative or "", device, clip_skip)


def encoder_kind(pipe: Any) -> str:
    """ "sdxl", "sd" (one CLIP encoder: SD 1.x, 2.x, studio-tiny, the x4 upscaler) or
    "plain" (no weights: T5 and language-model encoders, or a pipeline of no known kind)."""
    name = family_of(pipe).name
    takes = call_parameters(pipe)
    if "prompt_embeds" not in takes:
        return "plain"
    if name == "sdxl":
        ready = "pooled_prompt_embeds" in takes and pipe.text_encoder_2 is not None
        return "sdxl" if ready else "plain"
    if getattr(pipe, "tokenizer", None) is None or getattr(pipe, "text_encoder", None) is None:
        return "plain"
    cls = type(pipe).__name__
    if name in ("sd1", "sd2") or (
        name == "unknown" and cls.startswith("StableDiffusion") and cls[15:17] not in ("XL", "3")
    ):
        return "sd"
    return "plain"


# -- A1111's chunks ---------------------------------------------------------------------------


def encode(pipe: Any, prompt: str, device: Any = None, clip_skip: int = 1) -> Encoded:
    """The prompt's embeddings (and SDXL's pooled one) as A1111 computes them; `clip_skip`
    (SD 1.x's one encoder, A1111's "Clip skip") reads them that many layers from the last."""
    pairs = [
        (getattr(pipe, "tokenizer", None), getattr(pipe, "text_encoder", None)),
        (getattr(pipe, "tokenizer_2", None), getattr(pipe, "text_encoder_2", None)),
    ]
    pairs = [(t, e) for t, e in pairs if t is not None and e is not None]
    sdxl = encoder_kind(pipe) == "sdxl"
    chunked = [tokenize(pipe, tokenizer, encoder, prompt) for tokenizer, encoder in pairs]
    count = max(len(chunks) for chunks in chunked)
    hidden: list[torch.Tensor] = []
    pooled = None
    device = device or getattr(pipe, "_execution_device", None)
    for (tokenizer, encoder), chunks in zip(pairs, chunked, strict=True):
        chunks = chunks + [([], [])] * (count - len(chunks))  # the empty chunk, as A1111 pads
        states = []
        for i, (tokens, weights) in enumerate(chunks):
            state, pool = encode_chunk(
                pipe, tokenizer, encoder, tokens, weights, sdxl, device or encoder.device, clip_skip
            )
            states.append(state)
            if i == 0 and pool is not None:
                pooled = pool  # A1111: the pooled embedding of the first chunk
        hidden.append(torch.cat(states, dim=1))
    embeds = torch.cat(hidden, dim=-1)
    dtype = (pairs[-1][1] if sdxl else pairs[0][1]).dtype
    return Encoded(embeds.to(dtype), pooled)


def tokenize(pipe: Any, tokenizer: Any, encoder: Any, prompt: str) -> Tokens:
    """The prompt as A1111 chunks it for this tokenizer: token ids and their weights, at most
    `chunk_length` a chunk; at least one chunk (empty for an empty prompt)."""
    length = chunk_length(tokenizer, encoder)
    comma = tokenizer.convert_tokens_to_ids(",</w>")  # not get_vocab(): a 49,408-entry copy
    comma = None if comma == tokenizer.unk_token_id else comma
    chunks: Tokens = []
    tokens: list[int] = []
    weights: list[float] = []
    last_comma = -1

    def close() -> None:
        nonlocal tokens, weights, last_comma
        chunks.append((tokens, weights))
        tokens, weights, last_comma = [], [], -1

    for part_index, part in enumerate(split_breaks(parse_weighted(prompt))):
        if part_index > 0:
            close()  # BREAK
        for text, weight in part:
            for token in _ids(pipe, tokenizer, text):
                if token == comma:
                    last_comma = len(tokens)
                elif (
                    len(tokens) == length and last_comma != -1 and length - last_comma <= WORD_WRAP
                ):
                    # the words after the last comma move to the next chunk whole
                    moved = tokens[last_comma + 1 :], weights[last_comma + 1 :]
                    tokens, weights = tokens[: last_comma + 1], weights[: last_comma + 1]
                    close()
                    tokens, weights = list(moved[0]), list(moved[1])
                if len(tokens) == length:
                    close()
                tokens.append(token)
                weights.append(weight)
    if tokens or not chunks:
        close()
    return chunks


def chunk_length(tokenizer: Any, encoder: Any) -> int:
    """Tokens a chunk holds: the tokenizer's length less BOS and EOS (75 for CLIP)."""
    length = int(tokenizer.model_max_length)
    if encoder is not None:
        length = min(length, int(encoder.config.max_position_embeddings))
    return length - 2


def encode_chunk(
    pipe: Any,
    tokenizer: Any,
    encoder: Any,
    tokens: list[int],
    weights: list[float],
    sdxl: bool,
    device: Any = None,
    clip_skip: int = 1,
) -> tuple[torch.Tensor, torch.Tensor | None]:
    """One chunk through one encoder, as the diffusers pipeline encodes a prompt of these
    tokens (layer, padding, mask), then A1111's emphasis on the hidden states."""
    length = chunk_length(tokenizer, encoder) + 2
    bos, eos = tokenizer.bos_token_id, tokenizer.eos_token_id
    pad = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else eos
    ids = [bos, *tokens, eos] + [pad] * (length - len(tokens) - 2)
    device = device or getattr(pipe, "_execution_device", None) or encoder.device
    input_ids = torch.tensor([ids], device=device)
    if sdxl:
        out = encoder(input_ids, output_hidden_states=True)
        pooled = out[0] if out[0].ndim == 2 else None
        state = out.hidden_states[-2]
    else:
        mask = None
        if getattr(encoder.config, "use_attention_mask", False):
            mask = torch.tensor([[1] * (len(tokens) + 2) + [0] * (length - len(tokens) - 2)])
            mask = mask.to(device)
        if clip_skip > 1:  # as A1111: that layer's states through the final layer norm
            out = encoder(input_ids, attention_mask=mask, output_hidden_states=True)
            # transformers 5's CLIPTextModel holds the norm itself (4.x: in its text_model)
            norm = getattr(encoder, "text_model", encoder).final_layer_norm
            state = norm(out.hidden_states[-clip_skip])
        else:
            state = encoder(input_ids, attention_mask=mask)[0]
        pooled = None
    multipliers = [1.0, *weights, *[1.0] * (length - len(weights) - 1)]
    if any(m != 1.0 for m in multipliers):
        state = emphasis(state, torch.tensor(multipliers, device=state.device))
    return state, pooled


def emphasis(state: torch.Tensor, multipliers: torch.Tensor) -> torch.Tensor:
    """A1111's emphasis "Original": each position's hidden state times its weight, then the
    chunk rescaled so its mean is what it was."""
    original = state.mean()
    weighted = state * multipliers.to(state.dtype).reshape(1, -1, 1)
    return weighted * (original / weighted.mean())


def pad_to_same_length(
    pipe: Any, a: Encoded, b: Encoded, clip_skip: int = 1
) -> tuple[Encoded, Encoded]:
    """Both sides with as many chunks: the shorter padded with empty-prompt chunks (zeros when
    that side is SDXL's zeroed empty negative)."""
    length = max(a.embeds.shape[1], b.embeds.shape[1])
    return pad_to(pipe, a, length, clip_skip), pad_to(pipe, b, length, clip_skip)


def pad_to(pipe: Any, encoded: Encoded, length: int, clip_skip: int = 1) -> Encoded:
    """`encoded` with empty-prompt chunks after it (zeros for SDXL's zeroed empty negative)
    up to `length` positions."""
    missing = length - encoded.embeds.shape[1]
    if missing <= 0:
        return encoded
    if not encoded.embeds.any():
        filler = encoded.embeds.new_zeros(
            (*encoded.embeds.shape[:1], missing, encoded.embeds.shape[2])
        )
    else:
        empty = encode(pipe, "", clip_skip=clip_skip).embeds.to(encoded.embeds)
        filler = empty.repeat(1, missing // empty.shape[1], 1)
    return Encoded(torch.cat([encoded.embeds, filler], dim=1), encoded.pooled)


# -- prompts that change from step to step ---------------------------------------------------


@dataclass
class StepPrompts:
    """A1111's prompt editing and alternating words on a CLIP family (`prompt_schedule`), in
    the prompt and the negative prompt: each step's pair encoded, padded to one length (as
    A1111 pads them step by step), and the step callback's output that hands the pipeline
    the next step's where they change."""

    ends: list[int]  # the last step (from 1) of each entry
    pairs: list[tuple[Encoded, Encoded]]  # (prompt, negative) of each entry
    tensor_inputs: tuple[str, ...]  # what the callback must be given to replace
    # the entry the pipeline holds: the first at its call; a branch's loop passes over the
    # parent's steps without a callback, so it holds the first until told otherwise
    holds: int = 0
    last_step: int = 0  # a step at or before the last one: the call began again (a retry)

    def entry(self, step: int) -> int:
        """The entry step `step` (from 1) runs with."""
        for index, last in enumerate(self.ends):
            if step <= last:
                return index
        return len(self.ends) - 1

    def after_step(self, step: int, given: dict[str, Any], cfg: bool) -> dict[str, Any]:
        """The callback's output once step `step` (from 1) is done: the next step's
        embeddings where its prompts are others, in the pipeline's own layout (under CFG
        `cfg`, [negative batch, prompt batch]; each prompt once per image); nothing
        otherwise."""
        if step <= self.last_step:
            self.holds = 0
        self.last_step = step
        upcoming = self.entry(step + 1)
        if upcoming == self.holds:
            return {}
        self.holds = upcoming
        positive, negative = self.pairs[upcoming]
        current = given["prompt_embeds"]
        images = current.shape[0] // (2 if cfg else 1)
        sides = [negative, positive] if cfg else [positive]
        out = {"prompt_embeds": _batched([side.embeds for side in sides], images, current)}
        if "add_text_embeds" in self.tensor_inputs and positive.pooled is not None:
            pooled = [side.pooled for side in sides]
            out["add_text_embeds"] = _batched(pooled, images, given["add_text_embeds"])
        return out


def _batched(sides: list[Any], images: int, like: torch.Tensor) -> torch.Tensor:
    """Each side (one prompt's) once per image, the sides one after another, as `like`."""
    return torch.cat([side.to(like).expand(images, *side.shape[1:]) for side in sides])


def changes_by_step(pipe: Any, prompt: str, negative: str | None) -> bool:
    """Whether the prompts change from step to step on this pipeline (`step_prompts` then
    encodes them, step by step)."""
    texts = (prompt, negative or "")
    return any(map(prompt_schedule.changes, texts)) and runs_step_prompts(pipe)


def step_prompts(
    pipe: Any, prompt: str, negative: str, call: dict[str, Any], steps: int, clip_skip: int = 1
) -> StepPrompts | None:
    """The prompts of each step where the prompt or the negative prompt changes from step
    to step, on a pipeline that runs it (a CLIP family's, with a step callback that can hand
    it new embeddings); `call` is made to start with the first step's. None where neither
    changes, or the pipeline cannot."""
    texts = (prompt, negative or "")
    if not changes_by_step(pipe, prompt, negative):
        return None
    schedules = [prompt_schedule.schedule(text, steps) for text in texts]
    ends = sorted({last for entries in schedules for last, _ in entries})
    wanted = [tuple(prompt_schedule.at_step(s, end) for s in schedules) for end in ends]
    device = getattr(pipe, "_studio_device", None) or getattr(pipe, "_execution_device", None)
    made: dict[tuple[str, str], tuple[Encoded, Encoded]] = {}
    for pair in wanted:
        if pair not in made:
            positive = encode(pipe, pair[0], device, clip_skip)
            negative_pair = encode_negative(pipe, pair[1], positive, device, clip_skip)
            made[pair] = pad_to_same_length(pipe, positive, negative_pair, clip_skip)
    pairs = [made[pair] for pair in wanted]
    first, first_negative = pairs[0]
    call.update(prompt_embeds=first.embeds, negative_prompt_embeds=first_negative.embeds)
    if first.pooled is not None:
        call.update(
            pooled_prompt_embeds=first.pooled, negative_pooled_prompt_embeds=first_negative.pooled
        )
    sdxl = encoder_kind(pipe) == "sdxl"
    return StepPrompts(
        ends, pairs, ("prompt_embeds", "add_text_embeds") if sdxl else ("prompt_embeds",)
    )


def runs_step_prompts(pipe: Any) -> bool:
    """Whether the pipeline runs prompt editing and alternating words: a family that reads
    them (`prompt_syntax.STEP_PROMPT_FAMILIES`), encoded here, whose step callback can be
    handed the embeddings of the next step."""
    kind = encoder_kind(pipe)
    if kind == "plain" or family_of(pipe).name not in STEP_PROMPT_FAMILIES:
        return False
    inputs = set(getattr(pipe, "_callback_tensor_inputs", ()))
    wanted = {"prompt_embeds", "add_text_embeds"} if kind == "sdxl" else {"prompt_embeds"}
    return wanted <= inputs and "callback_on_step_end" in call_parameters(pipe)


def _ids(pipe: Any, tokenizer: Any, text: str) -> list[int]:
    if not text:
        return []
    convert = getattr(pipe, "maybe_convert_prompt", None)
    if convert is not None:  # textual inversion: multi-vector tokens spelt out
        text = convert(text, tokenizer)
    return list(tokenizer(text, add_special_tokens=False, verbose=False).input_ids)


# -- plain-text encoders ---------------------------------------------------------------------


def _plain(pipe: Any, prompt: str, note: Note, side: str = "") -> str:
    """The text without syntax, with a note when weights were dropped or text will be cut."""
    text = plain_text(prompt)
    if text == prompt.strip():
        text = prompt  # nothing to take out: the text exactly as given (Qwen's " " negative)
    label = family_of(pipe).label
    if has_weights(prompt):
        note(weights_note(label, side))
    counted = token_count(pipe, text)
    if counted is not None and counted[0] > counted[1]:
        note(cut_note(label, *counted, side))
    return text


COUNTS_KEPT = 64  # texts whose token count a tokenizer keeps


def token_count(pipe: Any, text: str) -> tuple[int, int] | None:
    """(tokens the text is, tokens the pipeline reads) for a plain-text encoder, or None."""
    known = PLAIN_ENCODERS.get(family_of(pipe).name)
    if known is None:
        return None
    tokenizer = getattr(pipe, known[0], None)
    if tokenizer is None or not callable(tokenizer):
        return None
    limit = known[1]
    default = call_parameters(pipe).get("max_sequence_length")
    if default is not None and isinstance(default.default, int):
        limit = default.default
    # counted once per text and tokenizer: live mode and repeated jobs send the same text
    counts = tokenizer.__dict__.setdefault("_studio_counts", {})
    count = counts.get(text)
    if count is None:
        try:
            count = len(tokenizer(text, verbose=False).input_ids)
        except Exception:  # noqa: BLE001 - a note, never a failure
            return None
        if len(counts) >= COUNTS_KEPT:
            counts.clear()
        counts[text] = count
    return count, limit
