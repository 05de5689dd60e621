"""Textual-inversion embeddings on the loaded model, through diffusers' loader: the file's
name becomes a token of the text encoder (both encoders of SDXL). Loaded when a prompt names
one, and kept: an added token changes nothing for prompts that do not use it.

Weights are read here (safetensors, or torch.load with weights_only=True), never by a
library that might unpickle; a file of another family's size is refused in one sentence.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

import torch

from studio.core.catalog import ModelError
from studio.core.text import printable
from studio.engine.loras import read_weights

log = logging.getLogger(__name__)


class EmbeddingSet:
    """The embeddings loaded into one model's text encoders; forgotten with the model."""

    def __init__(self) -> None:
        self._loaded: set[str] = set()

    def reset(self) -> None:
        self._loaded.clear()

    def apply(self, pipe: Any, paths: list[Path], family_label: str) -> None:
        for path in paths:
            token = path.stem
            if token in self._loaded:
                continue
            if not hasattr(pipe, "load_textual_inversion"):
                raise ModelError(
                    f"{family_label} models take no textual-inversion embeddings: remove "
                    f"'{printable(token)}' from the prompt."
                )
            self._load(pipe, path, token, family_label)
            self._loaded.add(token)

    def _load(self, pipe: Any, path: Path, token: str, family_label: str) -> None:
        state = _vectors(read_weights(path, "embedding", flat=False))
        shown = printable(path.name)
        encoders = [("text_encoder", "tokenizer", "clip_l")]
        if getattr(pipe, "text_encoder_2", None) is not None:
            encoders.append(("text_encoder_2", "tokenizer_2", "clip_g"))
        if len(encoders) == 2 and not {"clip_l", "clip_g"} <= state.keys():
            raise ModelError(
                f"The embedding '{shown}' is for one text encoder; {family_label} models need "
                "one made for SDXL (with clip_l and clip_g)."
            )
        done: list[tuple[Any, Any]] = []
        try:
            for encoder_name, tokenizer_name, key in encoders:
                vectors = state[key] if len(encoders) == 2 else next(iter(state.values()))
                encoder = getattr(pipe, encoder_name)
                tokenizer = getattr(pipe, tokenizer_name)
                pipe.load_textual_inversion(
                    vectors, token=token, text_encoder=encoder, tokenizer=tokenizer
                )
                done.append((encoder, tokenizer))
        except Exception as e:  # noqa: BLE001 - diffusers' own words are not the artist's
            log.info("embedding %s failed: %r", path, e)
            for encoder, tokenizer in done:  # the model as it was
                pipe.unload_textual_inversion(token, tokenizer=tokenizer, text_encoder=encoder)
            raise ModelError(
                f"The embedding '{shown}' does not fit {family_label} models (its vectors have "
                "another size: it was made for another family)."
            ) from None


def _vectors(state: dict[str, Any]) -> dict[str, torch.Tensor]:
    """The learned vectors of the layouts in use: A1111's (string_to_param), SD-scripts'
    (emb_params), SDXL's (clip_l, clip_g), or a file of one tensor."""
    if "string_to_param" in state and isinstance(state["string_to_param"], dict):
        return {"clip_l": next(iter(state["string_to_param"].values()))}
    if {"clip_l", "clip_g"} <= state.keys():
        return {"clip_l": state["clip_l"], "clip_g": state["clip_g"]}
    tensors = {k: v for k, v in state.items() if torch.is_tensor(v)}
    if len(tensors) != 1:
        raise ModelError("The embedding holds no learned vectors the studio knows.")
    return {"clip_l": next(iter(tensors.values()))}
