"""AUTOMATIC1111's add-on tags in a prompt: `<lora:NAME:WEIGHT>` (and `<lyco:…>`, which
A1111's LyCORIS extension wrote and newer versions read as LoRA).

The tags name the add-ons a prompt was made with; they are taken out of the text the
text encoder reads and kept in the prompt the metadata records, as A1111 does. A1111's
form allows a second weight for the text encoder (`<lora:name:0.8:0.5>`); the studio
applies one weight to both, as diffusers' adapters do, and keeps the tag as written.
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass
from functools import lru_cache

from studio.core.text import printable

# a weight as Python writes a float: 0.8, -.5, +1, 1e-05 (how "{:g}" writes a small one)
_NUMBER = r"[+-]?(?:[0-9]+\.?[0-9]*|\.[0-9]+)(?:[eE][+-]?[0-9]+)?"
# <lora:name>, <lora:name:0.8>, <lora:name:0.8:0.5>; names may hold spaces and dots
_TAG = re.compile(rf"<(lora|lyco):([^:<>]+?)(?::\s*({_NUMBER})\s*)?(?::\s*({_NUMBER})\s*)?>", re.I)
# anything written as a LoRA tag, read or not
_ANY_TAG = re.compile(r"<(lora|lyco):[^<>]*>", re.I)
# the weights a LoRA is drawn at: artists go to ±2 or 3; far beyond, the denoising goes out
# of range (not a number) after minutes, with advice about the CFG scale
WEIGHT_LIMIT = 10.0


@dataclass(frozen=True)
class LoraTag:
    name: str
    weight: float = 1.0

    def tag(self) -> str:
        return f"<lora:{self.name}:{self.weight:g}>"


def split_lora_tags(prompt: str) -> tuple[str, list[LoraTag]]:
    """The prompt without its LoRA tags (spaces and commas left tidy), and the tags in order;
    a LoRA named twice runs once at the sum of its weights, as A1111, which applies it
    twice, draws it."""
    text, tags = _split_lora_tags(prompt)
    return text, list(tags)


# A prompt is split several times a job (the notes, the encoding, the LoRAs) and at every
# keystroke in the window: the same few texts, each split once.
@lru_cache(maxsize=64)
def _split_lora_tags(prompt: str) -> tuple[str, tuple[LoraTag, ...]]:
    tags: dict[str, LoraTag] = {}
    for match in _TAG.finditer(prompt):
        name = match.group(2).strip()
        weight = float(match.group(3)) if match.group(3) is not None else 1.0
        if name in tags:  # rounded: 0.8 + 0.5 is 1.3 to the metadata, not 1.3000000000000003
            weight = round(tags[name].weight + weight, 6)
        tags[name] = LoraTag(name, weight)
    text = _TAG.sub("", prompt)
    text = re.sub(r"\s*,(\s*,)+", ",", text)  # "a, <lora:x>, b" → "a, b"
    text = re.sub(r"[ \t]{2,}", " ", text).strip().strip(",").strip()
    return text, tuple(tags.values())


def repeated_lora_note(prompt: str) -> str:
    """A sentence when the prompt names a LoRA twice (its weights add up, as in A1111: easily
    written by mistake); "" otherwise."""
    weights: dict[str, list[float]] = {}
    for match in _TAG.finditer(prompt):
        weight = float(match.group(3)) if match.group(3) is not None else 1.0
        weights.setdefault(match.group(2).strip(), []).append(weight)
    for name, said in weights.items():
        if len(said) > 1:
            return (
                f"The LoRA '{printable(name)}' is named {len(said)} times: its weights add up "
                f"to {round(sum(said), 6):g}, as in A1111."
            )
    return ""


def unreadable_lora_tags(prompt: str) -> list[str]:
    """The prompt's LoRA tags that name no LoRA with a weight the studio can use
    (`<lora:x:abc>`, `<lora:x:nan>`, `<lora:x:1e9>`, `<lora:>`, A1111's `te=` form): without
    this they would be read as words and the LoRA left out, or run into a black picture."""
    bad = []
    for match in _ANY_TAG.finditer(prompt):
        tag = _TAG.fullmatch(match.group(0))
        weights = [w for w in (tag.group(3), tag.group(4)) if w is not None] if tag else []
        if tag is None or not tag.group(2).strip() or not all(_usable(w) for w in weights):
            bad.append(match.group(0))
    return bad


def unreadable_tag_sentence(tag: str) -> str:
    """What to say of a tag `unreadable_lora_tags` found."""
    read = _TAG.fullmatch(tag)
    weights = [w for w in (read.group(3), read.group(4)) if w is not None] if read else []
    if read and read.group(2).strip() and all(_finite(w) for w in weights):
        return f"The LoRA tag {tag} has a weight out of range: {weight_range_words()}."
    return (
        f"The LoRA tag {tag} cannot be read: write it as <lora:NAME:WEIGHT>, the weight a "
        "number such as 0.8."
    )


def weight_range_words() -> str:
    return f"a LoRA's weight is between {-WEIGHT_LIMIT:g} and {WEIGHT_LIMIT:g}"


def usable_weight(weight: float) -> bool:
    return math.isfinite(weight) and abs(weight) <= WEIGHT_LIMIT


def _finite(text: str) -> bool:
    try:
        return math.isfinite(float(text))
    except ValueError:
        return False


def _usable(text: str) -> bool:
    return _finite(text) and usable_weight(float(text))


def with_lora_tags(prompt: str, tags: list[LoraTag]) -> str:
    """The prompt with exactly these LoRA tags, at the end, replacing any it had (the LoRA
    panel writes the prompt this way when a weight is changed there)."""
    text, _ = split_lora_tags(prompt)
    return " ".join([text, *(t.tag() for t in tags)]).strip()


def _tag_of(name: str) -> re.Pattern[str]:
    number = rf"\s*{_NUMBER}\s*"
    return re.compile(rf"<(lora|lyco):{re.escape(name)}(?::{number})?(?::{number})?>", re.I)


def set_lora_weight(prompt: str, name: str, weight: float) -> str:
    """The prompt with that LoRA's tag at a new weight, where its first tag stands (a
    second tag of it goes: their weights would add up to another); added at the end when
    the prompt has no tag of it (as A1111's LoRA cards add one)."""
    tag = LoraTag(name, weight).tag()
    pattern = _tag_of(name)
    first = pattern.search(prompt)
    if first is None:
        return f"{prompt.rstrip()} {tag}".strip()
    rest = _tidy(pattern.sub("", prompt[first.end() :]), start=False)
    return f"{prompt[: first.start()]}{tag}{rest}"


def remove_lora_tag(prompt: str, name: str) -> str:
    return _tidy(_tag_of(name).sub("", prompt))


def _tidy(text: str, start: bool = True) -> str:
    """Text a tag was taken out of, without the doubled commas and spaces it left (`start`:
    the text starts the prompt, so a comma or space it starts with goes too)."""
    text = re.sub(r"\s*,(\s*,)+", ",", text)
    text = re.sub(r"[ \t]{2,}", " ", text).rstrip().rstrip(",").rstrip()
    return text.lstrip().lstrip(",").lstrip() if start else text
