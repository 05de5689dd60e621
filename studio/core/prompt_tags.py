"""AUTOMATIC1111's add-on tags in a prompt: `<lora:NAME:WEIGHT>` (and `<lyco:…>`, which
A1111's LyCORIS extension wrote and newer versions read as LoRA).

The tags name the add-ons a prompt was made with; they are taken out of the text the
text encoder reads and kept in the prompt the metadata records, as A1111 does. A1111's
form allows a second weight for the text encoder (`<lora:name:0.8:0.5>`); the studio
applies one weight to both, as diffusers' adapters do, and keeps the tag as written.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

# <lora:name>, <lora:name:0.8>, <lora:name:0.8:0.5>; names may hold spaces and dots
_TAG = re.compile(
    r"<(lora|lyco):([^:<>]+?)(?::(-?[0-9]*\.?[0-9]+))?(?::(-?[0-9]*\.?[0-9]+))?>", re.I
)


@dataclass(frozen=True)
class LoraTag:
    name: str
    weight: float = 1.0

    def tag(self) -> str:
        return f"<lora:{self.name}:{self.weight:g}>"


def split_lora_tags(prompt: str) -> tuple[str, list[LoraTag]]:
    """The prompt without its LoRA tags (spaces and commas left tidy), and the tags in order;
    a LoRA named twice keeps its last weight, where A1111 would apply it twice."""
    tags: dict[str, LoraTag] = {}
    for match in _TAG.finditer(prompt):
        name = match.group(2).strip()
        weight = float(match.group(3)) if match.group(3) is not None else 1.0
        tags.pop(name, None)
        tags[name] = LoraTag(name, weight)
    text = _TAG.sub("", prompt)
    text = re.sub(r"\s*,(\s*,)+", ",", text)  # "a, <lora:x>, b" → "a, b"
    text = re.sub(r"[ \t]{2,}", " ", text).strip().strip(",").strip()
    return text, list(tags.values())


def with_lora_tags(prompt: str, tags: list[LoraTag]) -> str:
    """The prompt with exactly these LoRA tags, at the end, replacing any it had (the LoRA
    panel writes the prompt this way when a weight is changed there)."""
    text, _ = split_lora_tags(prompt)
    return " ".join([text, *(t.tag() for t in tags)]).strip()


def _tag_of(name: str) -> re.Pattern[str]:
    number = r"-?[0-9]*\.?[0-9]+"
    return re.compile(rf"<(lora|lyco):{re.escape(name)}(?::{number})?(?::{number})?>", re.I)


def set_lora_weight(prompt: str, name: str, weight: float) -> str:
    """The prompt with that LoRA's tag at a new weight, where it stands; added at the end
    when the prompt has no tag of it (as A1111's LoRA cards add one)."""
    tag = LoraTag(name, weight).tag()
    pattern = _tag_of(name)
    if pattern.search(prompt):
        return pattern.sub(lambda _match: tag, prompt, count=1)
    return f"{prompt.rstrip()} {tag}".strip()


def remove_lora_tag(prompt: str, name: str) -> str:
    text = _tag_of(name).sub("", prompt)
    text = re.sub(r"\s*,(\s*,)+", ",", text)
    return re.sub(r"[ \t]{2,}", " ", text).strip().strip(",").strip()
