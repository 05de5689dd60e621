"""Which words of a prompt a model knows, for models whose card lists its vocabulary.

studio-tiny learnt from captions made of a few dozen words; any other word reaches its
text encoder as pieces it never saw together, and changes nothing the artist intended.
The window marks those words and says in one line what will be ignored.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from studio.core import catalog
from studio.core.text import printable

_WORD = re.compile(r"[^\W\d_]+(?:['’][^\W\d_]+)*")  # letters, with inner apostrophes
# <lora:…> and other tags, and A1111's BREAK, are not words of the prompt
_TAG = re.compile(r"<[^<>\n]*>|\bBREAK\b")
_PLACEHOLDER = re.compile(r"<[^<>]*>")  # "<colour> striped background" in a card
NOTE_WORDS = 8  # the note names this many words, then counts the rest


@dataclass(frozen=True)
class WordSpan:
    start: int
    end: int
    word: str


@dataclass(frozen=True)
class Vocabulary:
    model: str  # the name to show
    words: frozenset[str]  # lower case

    def unknown(self, text: str) -> list[WordSpan]:
        """The words of `text` this model does not know, where they are."""
        hidden = _TAG.sub(lambda m: " " * len(m.group()), text)
        return [
            WordSpan(m.start(), m.end(), m.group())
            for m in _WORD.finditer(hidden)
            if m.group().lower().replace("’", "'") not in self.words
        ]

    def note(self, *texts: str) -> str:
        """One line saying which words will be ignored, or "" when all are known."""
        seen: dict[str, None] = {}
        for text in texts:
            for span in self.unknown(text):
                seen.setdefault(span.word.lower(), None)
        if not seen:
            return ""
        words = list(seen)
        shown = ", ".join(f"'{printable(w)}'" for w in words[:NOTE_WORDS])
        more = len(words) - NOTE_WORDS
        rest = f" and {more} more" if more > 0 else ""
        return f"{self.model} does not know {shown}{rest}: ignored."


def from_card(model: str, card: dict[str, Any]) -> Vocabulary | None:
    """The vocabulary a model card ("vocabulary" in studio.json) lists, or None."""
    listed = card.get("vocabulary")
    if not isinstance(listed, dict):
        return None
    words: set[str] = set()

    def take(value: object) -> None:
        if isinstance(value, str):
            words.update(w.lower() for w in _WORD.findall(_PLACEHOLDER.sub(" ", value)))
        elif isinstance(value, list | tuple):
            for item in value:
                take(item)
        elif isinstance(value, dict):
            for key, item in value.items():
                take(key)
                take(item)

    for value in listed.values():  # the keys are headings ("shapes"), not words
        take(value)
    return Vocabulary(model, frozenset(words)) if words else None


def of_model(spec: str) -> Vocabulary | None:
    """The vocabulary of the model `spec` points to, if its card lists one (never loads)."""
    try:
        source = catalog.resolve(spec)
    except catalog.ModelError:
        return None
    if source.kind not in ("embedded", "folder"):
        return None
    folder = Path(source.location)
    return from_card(folder.name, catalog.read_model_card(folder))
