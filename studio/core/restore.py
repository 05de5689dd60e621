"""Turning an image's parameters (ours or another tool's) into values for the widgets.

Free of Qt: the rules of what can be restored are tested on their own.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from studio.core.schedulers import SCHEDULER_NAMES
from studio.metadata import ImageParameters, normalise_sampler

SOURCE_NAMES = {
    "studio": "Latent Studio",
    "automatic1111": "AUTOMATIC1111",
    "comfyui": "ComfyUI",
    "invokeai": "InvokeAI",
    "fooocus": "Fooocus",
    "novelai": "NovelAI",
}

MAX_SEED = 2**32 - 1

# Request fields that describe inputs or the mode rather than settings: never restored.
_NOT_RESTORED = ("mode", "prompt", "negative_prompt", "model")


@dataclass
class RestorePlan:
    source: str
    prompt: str
    negative_prompt: str
    model: str | None  # None: the file names no model
    values: dict[str, Any] = field(default_factory=dict)  # for GuidancePanel.set_values
    complete: bool = False  # True for our own files: every parameter is known
    notes: list[str] = field(default_factory=list)  # what could not be restored, and why

    @property
    def source_name(self) -> str:
        return SOURCE_NAMES.get(self.source, self.source)


def plan_restore(params: ImageParameters) -> RestorePlan:
    if params.request:
        request = params.request
        values = {k: v for k, v in request.items() if k not in _NOT_RESTORED}
        return RestorePlan(
            params.source,
            str(request.get("prompt", params.prompt) or ""),
            str(request.get("negative_prompt", params.negative_prompt) or ""),
            request.get("model") or params.model,
            values,
            complete=True,
        )
    values: dict[str, Any] = {}
    for key, value in (
        ("seed", params.seed),
        ("steps", params.steps),
        ("cfg_scale", params.cfg_scale),
        ("width", params.width),
        ("height", params.height),
        ("strength", params.strength),
    ):
        if value is not None:
            values[key] = value
    notes: list[str] = []
    if params.sampler:
        sampler = normalise_sampler(params.sampler)
        if sampler in SCHEDULER_NAMES:
            values["scheduler"] = sampler
        else:
            notes.append(f"the sampler '{params.sampler}' is not available here")
    if params.seed is not None and not 0 <= params.seed <= MAX_SEED:
        values.pop("seed")
        notes.append(f"the seed {params.seed} is beyond the studio's range")
    return RestorePlan(
        params.source, params.prompt, params.negative_prompt, params.model, values, notes=notes
    )
