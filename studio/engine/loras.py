"""LoRAs on the loaded model, through diffusers' adapters (PEFT): several at once, each with
its weight; changing the set or a weight never reloads the model, and none active leaves the
model's own modules (unloaded: the base model's pixels bit for bit).

Weights are read here, never by a library that might unpickle: .safetensors with
safetensors, other files only when torch loads them with weights_only=True. A file that
does not fit the model (another family's, damaged, a format diffusers cannot convert) is
refused with one sentence and leaves the model as it was.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from studio.core import loras
from studio.core.catalog import ModelError
from studio.core.files import is_regular_file
from studio.core.prompt_tags import LoraTag
from studio.core.text import printable

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class ActiveLora:
    path: Path
    weight: float


class LoraSet:
    """The adapters loaded on one model; forgotten when the model is."""

    def __init__(self) -> None:
        self._adapters: dict[tuple[str, int, float], str] = {}  # file identity → adapter
        self._count = 0

    def reset(self) -> None:
        self._adapters.clear()

    @property
    def loaded(self) -> int:
        return len(self._adapters)

    def apply(self, pipe: Any, wanted: list[ActiveLora], family_label: str) -> None:
        """Make exactly `wanted` active on `pipe`'s networks, with their weights."""
        if not wanted:
            if self._adapters:
                pipe.unload_lora_weights()  # the model's own modules back
                self._adapters.clear()
            return
        names: list[str] = []
        for lora in wanted:
            key = _identity(lora.path)
            if key not in self._adapters:
                self._adapters[key] = self._load(pipe, lora.path, family_label)
            names.append(self._adapters[key])
        unused = [name for key, name in self._adapters.items() if name not in names]
        if unused:
            pipe.delete_adapters(unused)
            self._adapters = {k: n for k, n in self._adapters.items() if n in names}
        pipe.set_adapters(names, adapter_weights=[lora.weight for lora in wanted])

    def _load(self, pipe: Any, path: Path, family_label: str) -> str:
        state = read_weights(path)
        self._count += 1
        adapter = f"lora_{self._count}"
        shown = printable(path.name)
        before = _adapters_of(pipe)
        try:
            pipe.load_lora_weights(state, adapter_name=adapter)
        except Exception as e:  # noqa: BLE001 - diffusers' and PEFT's own words are not ours
            log.info("LoRA %s failed to load: %r", path, e)
            _remove(pipe, adapter, before)
            raise ModelError(_refusal(shown, family_label, e)) from None
        if adapter not in _adapters_of(pipe):  # nothing in it matched the model's layers
            _remove(pipe, adapter, before)
            raise ModelError(
                f"The LoRA '{shown}' does not fit {family_label} models (it was made for "
                "another family): remove it or pick a model of its family."
            )
        return adapter


def read_weights(path: Path, kind: str = "LoRA", flat: bool = True) -> dict[str, Any]:
    """A LoRA's (or an embedding's) file, without running anything the file brings: its
    tensors by name (`flat`), or the dict it holds (embeddings nest theirs)."""
    shown = printable(path.name)
    if not is_regular_file(path):
        raise ModelError(f"The {kind} '{shown}' is not a file the studio can read.")
    try:
        if path.suffix.lower() == ".safetensors":
            from safetensors.torch import load_file

            state = load_file(str(path))
        else:
            state = torch.load(str(path), map_location="cpu", weights_only=True)
    except Exception as e:  # noqa: BLE001
        pickled = path.suffix.lower() != ".safetensors" and "weights_only" in str(e)
        raise ModelError(
            f"The {kind} '{shown}' holds code as well as weights, which the studio never runs: "
            "use its .safetensors version."
            if pickled
            else f"The {kind} '{shown}' is damaged or incomplete: download it again."
        ) from None
    if isinstance(state, dict) and "state_dict" in state and isinstance(state["state_dict"], dict):
        state = state["state_dict"]  # some trainers wrap the weights
    if not (isinstance(state, dict) and state):
        raise ModelError(f"The {kind} '{shown}' holds no weights.")
    if flat and not all(torch.is_tensor(v) for v in state.values()):
        raise ModelError(f"The {kind} '{shown}' holds no {kind} weights.")
    return state


def active_loras(tags: list[LoraTag]) -> list[ActiveLora]:
    """The files a prompt's tags name, in order; ModelError naming those not found."""
    found: list[ActiveLora] = []
    missing: list[str] = []
    for tag in tags:
        path = loras.find(tag.name)
        if path is None:
            missing.append(tag.name)
        else:
            found.append(ActiveLora(path, tag.weight))
    if missing:
        raise ModelError(
            loras.not_found(missing, "add the file there or remove its tag from the prompt")
        )
    return found


def _refusal(shown: str, family_label: str, error: Exception) -> str:
    text = str(error).lower()
    if "hada" in text or "lokr" in text or "lycoris" in text:
        return (
            f"The LoRA '{shown}' is a LyCORIS kind that diffusers cannot convert for "
            f"{family_label} models."
        )
    if "size mismatch" in text or "shape" in text:
        return (
            f"The LoRA '{shown}' does not fit {family_label} models (its layers have other "
            "sizes: it was made for another family)."
        )
    return f"The LoRA '{shown}' could not be applied to this {family_label} model."


def _adapters_of(pipe: Any) -> set[str]:
    try:
        return {name for names in pipe.get_list_adapters().values() for name in names}
    except Exception:  # noqa: BLE001 - no PEFT layers yet
        return set()


def _remove(pipe: Any, adapter: str, before: set[str]) -> None:
    """Leave the model as it was before a failed load."""
    if adapter in _adapters_of(pipe):
        pipe.delete_adapters([adapter])
    if not before:
        try:
            pipe.unload_lora_weights()
        except Exception:  # noqa: BLE001 - nothing was loaded
            log.debug("nothing to unload after a failed LoRA")


def _identity(path: Path) -> tuple[str, int, float]:
    stat = path.stat()
    return (str(path.resolve()), stat.st_size, stat.st_mtime)
