"""Textual-inversion embeddings: files whose name, written in a prompt or negative prompt,
stands for the learned vectors (AUTOMATIC1111's way: "EasyNegative" in the negative prompt).
Found in the models folder's embeddings folder (A1111's `embeddings/`, ComfyUI's
`models/embeddings`). Torch-free: which embeddings a prompt names is decided here."""

from __future__ import annotations

import re
from pathlib import Path

from studio.core import models_folder

EMBEDDING_SUFFIXES = (".safetensors", ".pt", ".bin")


def available() -> list[Path]:
    found = models_folder.current()
    if found is None:
        return []
    return [p for p in found.embeddings if p.suffix.lower() in EMBEDDING_SUFFIXES]


def named_in(*texts: str, candidates: list[Path] | None = None) -> list[Path]:
    """The embeddings whose file name stands as a word in any of the texts."""
    candidates = available() if candidates is None else candidates
    joined = "\n".join(texts)
    return [
        path
        for path in candidates
        if re.search(rf"(?<![\w-]){re.escape(path.stem)}(?![\w-])", joined, flags=re.I)
    ]
