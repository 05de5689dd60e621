"""Fooocus's JSON ``parameters`` chunk."""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Any

from studio.metadata.parameters import ImageParameters, put_extras, to_float, to_int, to_text
from studio.metadata.samplers import normalise_sampler

_FOOOCUS_OWN = frozenset(
    {
        "prompt",
        "negative_prompt",
        "seed",
        "steps",
        "guidance_scale",
        "sampler",
        "scheduler",
        "resolution",
        "base_model",
        "denoising_strength",
    }
)


def _fooocus_resolution(value: Any) -> tuple[int | None, int | None]:
    if isinstance(value, (list, tuple)) and len(value) == 2:
        return to_int(value[0]), to_int(value[1])
    numbers = re.findall(r"\d{1,9}", value) if isinstance(value, str) else []
    if len(numbers) == 2:
        return int(numbers[0]), int(numbers[1])
    return None, None


def from_fooocus_json(data: Mapping[str, Any]) -> ImageParameters:
    p = ImageParameters(source="fooocus")
    p.prompt = to_text(data.get("prompt")) or ""
    p.negative_prompt = to_text(data.get("negative_prompt")) or ""
    p.seed = to_int(data.get("seed"))
    p.steps = to_int(data.get("steps"))
    p.cfg_scale = to_float(data.get("guidance_scale"))
    sampler = to_text(data.get("sampler"))
    scheduler = to_text(data.get("scheduler"))
    p.sampler = normalise_sampler(sampler, scheduler) if sampler else None
    p.width, p.height = _fooocus_resolution(data.get("resolution"))
    p.model = to_text(data.get("base_model"))
    p.strength = to_float(data.get("denoising_strength"))
    put_extras(p.extras, data, _FOOOCUS_OWN - {"scheduler"})
    return p
