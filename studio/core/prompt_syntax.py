"""AUTOMATIC1111's prompt syntax (wiki "Features → Attention/emphasis"), read as A1111 reads it.

- `(word)` multiplies the attention to `word` by 1.1, `((word))` by 1.21, `[word]` divides
  it by 1.1, `(word:1.3)` sets the factor (brackets nest and multiply);
- `\\(`, `\\)`, `\\[`, `\\]` are the characters themselves (and `\\\\` a backslash);
- unbalanced brackets as A1111 handles them: a bracket never closed weights everything after
  it, a closing bracket never opened is a literal character;
- `BREAK` (capitals, a word of its own) ends the current 75-token chunk;
- `<lora:…>` tags are taken out first (`studio.core.prompt_tags`), as A1111 does.

This is the parser of A1111's `modules/prompt_parser.parse_prompt_attention`, written from its
documented behaviour and its doctest table (tests/core/test_prompt_syntax.py). Two deviations:
a weight that is not a number (`(word:1.2.3)`) is kept as literal text where A1111 fails, and
a BREAK inside brackets still breaks (A1111 weights its marker, which then reaches the encoder
as the word "BREAK" with a negative weight).

No torch: the window uses it too. The text encoders' side is `studio.engine.prompt_encoding`.
"""

from __future__ import annotations

import re
from functools import lru_cache
from pathlib import Path
from typing import Any

from studio.core.prompt_tags import repeated_lora_note, split_lora_tags

BREAK = ("BREAK", -1.0)  # the marker parse_weighted puts where a chunk ends, as A1111 does
# The families whose text encoders read no weights (T5, language models): the tokenizer the
# pipeline cuts the prompt with, and how many tokens it reads (its max_sequence_length).
PLAIN_ENCODERS = {
    "sd3": ("tokenizer_3", 256),
    "flux-dev": ("tokenizer_2", 512),
    "flux-schnell": ("tokenizer_2", 512),
    "flux-kontext": ("tokenizer_2", 512),
    "chroma": ("tokenizer", 512),
    "qwen-image": ("tokenizer", 512),
    "qwen-image-edit": ("tokenizer", 512),
    "qwen-image-edit-plus": ("tokenizer", 512),
    "z-image": ("tokenizer", 512),
    "flux2-klein": ("tokenizer", 512),
    "flux2-klein-base": ("tokenizer", 512),
}
# The families whose prompts the studio encodes itself (CLIP), so that prompt editing and
# alternating words (`prompt_schedule`) run: each step is handed its own prompt's embeddings.
STEP_PROMPT_FAMILIES = frozenset({"sd1", "sd2", "sdxl"})
# The families A1111 applies "Clip skip" to: SD 1.x's one CLIP encoder (SD 2.x's diffusers
# encoder already ends a layer early; SDXL reads its penultimate layers whatever the setting).
CLIP_SKIP_FAMILIES = frozenset({"sd1"})
ROUND = 1.1
SQUARE = 1 / 1.1

_ATTENTION = re.compile(
    r"""
    \\\(|\\\)|\\\[|\\]|\\\\|\\|   # escapes (a lone backslash is dropped, as in A1111)
    \(|\[|
    :\s*([+-]?[.\d]+)\s*\)|        # the end of (word:1.3)
    \)|]|
    [^\\()\[\]:]+|
    :
    """,
    re.X,
)
_BREAK = re.compile(r"\s*\bBREAK\b\s*", re.S)


def parse_weighted(text: str) -> list[tuple[str, float]]:
    """The prompt as (text, weight) pieces in order, runs of one weight merged, with `BREAK`
    where a chunk ends; `[("", 1.0)]` for an empty prompt. `<lora:…>` tags are removed."""
    return list(_parse_weighted(text))


@lru_cache(maxsize=64)  # a job parses its prompts several times (notes, encoding)
def _parse_weighted(text: str) -> tuple[tuple[str, float], ...]:
    text, _ = split_lora_tags(text)
    pieces: list[list] = []
    rounds: list[int] = []  # where each open bracket started, in pieces
    squares: list[int] = []

    def multiply(start: int, factor: float) -> None:
        for piece in pieces[start:]:
            if piece != list(BREAK):
                piece[1] *= factor

    for match in _ATTENTION.finditer(text):
        token, weight = match.group(0), match.group(1)
        if token.startswith("\\"):
            pieces.append([token[1:], 1.0])
        elif token == "(":
            rounds.append(len(pieces))
        elif token == "[":
            squares.append(len(pieces))
        elif weight is not None and rounds and _is_number(weight):
            multiply(rounds.pop(), float(weight))
        elif token == ")" and rounds:
            multiply(rounds.pop(), ROUND)
        elif token == "]" and squares:
            multiply(squares.pop(), SQUARE)
        else:
            for i, part in enumerate(_BREAK.split(token)):
                if i > 0:
                    pieces.append(list(BREAK))
                pieces.append([part, 1.0])
    for start in rounds:  # never closed: weighted to the end
        multiply(start, ROUND)
    for start in squares:
        multiply(start, SQUARE)

    if not pieces:
        return (("", 1.0),)
    merged = [pieces[0]]
    for piece in pieces[1:]:
        if piece[1] == merged[-1][1]:
            merged[-1][0] += piece[0]
        else:
            merged.append(piece)
    return tuple((str(t), float(w)) for t, w in merged)


def is_break(piece: tuple[str, float]) -> bool:
    return piece == BREAK


def split_breaks(pieces: list[tuple[str, float]]) -> list[list[tuple[str, float]]]:
    """The pieces between BREAKs (each part starts a new chunk); empty pieces left out."""
    parts: list[list[tuple[str, float]]] = [[]]
    for piece in pieces:
        if is_break(piece):
            parts.append([])
        elif piece[0]:
            parts[-1].append(piece)
    return parts


def plain_text(text: str) -> str:
    """The words only (no tags, brackets, weights or BREAK), for encoders that read no
    weights (T5 and the language-model encoders)."""
    words = [" " if is_break(p) else p[0] for p in parse_weighted(text)]
    return re.sub(r"[ \t]{2,}", " ", "".join(words)).strip()


def has_weights(text: str) -> bool:
    """Whether the prompt weights anything or breaks it into chunks (what a plain-text encoder
    cannot read)."""
    return any(w != 1.0 for _, w in parse_weighted(text))


def _is_number(text: str) -> bool:
    try:
        float(text)
    except ValueError:
        return False
    return True


# -- what the window says under the prompt ---------------------------------------------------


def weights_note(label: str, side: str = "") -> str:
    return f"{label} reads no weights: the {side}prompt's (…), […] and BREAK are ignored."


def cut_note(label: str, count: int, limit: int, side: str = "") -> str:
    return f"The {side}prompt is {count} tokens; {label} reads {limit}: the rest is cut."


# A1111's syntax that changes the prompt from step to step, which only the CLIP families run:
# the innermost [...] holding "|" (alternating words), or ending in ":when" (prompt editing:
# [from:to:when], [to:when], [from::when]).
_BRACKETS = re.compile(r"(?<!\\)\[([^\[\]]*)(?<!\\)\]")
_WHEN = re.compile(r":\s*[+-]?(\d+\.?\d*|\.\d+)\s*$")


def unrun_syntax_note(text: str, side: str = "", family: Any = None) -> str:
    """A sentence when the prompt uses A1111's alternating words ([a|b]) or prompt editing
    ([from:to:when]) where the studio does not run them (a family not in
    STEP_PROMPT_FAMILIES): a plain-text family reads the words inside with the rest (its
    weights note says the brackets go), another reads them as any [...]; "" otherwise."""
    text, _ = split_lora_tags(text)
    for match in _BRACKETS.finditer(text):
        inside = match.group(1)
        if "|" in inside:
            kind = "alternating words"
        elif _WHEN.search(inside):
            kind = "prompt editing"
        else:
            continue
        label = family.label if family is not None else "this model"
        read = (
            "its words are read as plain text"
            if family is not None and family.name in PLAIN_ENCODERS
            else "the text inside is read as it stands, as any [...] is"
        )
        said = match.group(0)
        return f"The {side}prompt's {said} is A1111's {kind}, which {label} does not run: {read}."
    return ""


def reading_note(family: Any, folder: Path | None, prompt: str, negative: str = "") -> str:
    """What the studio will not read of the prompts as A1111 would (alternating words and
    prompt editing, in a family not in STEP_PROMPT_FAMILIES; weights and text past the
    maximum, in a plain-text family), in a line or two; "" when it reads them all. The
    tokens are counted with the model folder's tokenizer.json (the Rust tokenizer, loaded
    once)."""
    runs = family is not None and family.name in STEP_PROMPT_FAMILIES
    sides = (("", prompt), ("negative ", negative))
    unrun = [] if runs else [unrun_syntax_note(text, side, family) for side, text in sides]
    unrun.append(repeated_lora_note(prompt))
    if family is None or family.name not in PLAIN_ENCODERS:
        return "\n".join(note for note in unrun if note)
    subfolder, limit = PLAIN_ENCODERS[family.name]
    notes = [note for note in unrun if note]
    for side, text in (("", prompt), ("negative ", negative)):
        if not text:
            continue
        if has_weights(text):
            notes.append(weights_note(family.label, side))
        tokenizer = _tokenizer(folder / subfolder / "tokenizer.json") if folder else None
        if tokenizer is not None:
            count = len(tokenizer.encode(plain_text(text)).ids)
            if count > limit:
                notes.append(cut_note(family.label, count, limit, side))
    return "\n".join(notes)


@lru_cache(maxsize=4)
def _tokenizer(path: Path) -> Any:
    try:
        from tokenizers import Tokenizer

        return Tokenizer.from_file(str(path)) if path.is_file() else None
    except Exception:  # noqa: BLE001 - a damaged file: no note, never a failure
        return None
