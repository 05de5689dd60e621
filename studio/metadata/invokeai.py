"""InvokeAI 1.x to 3.x+: ``invokeai_metadata``, ``sd-metadata`` and the ``Dream`` command line."""

from __future__ import annotations

import re
import shlex
from collections.abc import Iterator, Mapping
from typing import Any

from studio.metadata.parameters import (
    ImageParameters,
    Unreadable,
    load_json,
    put_extras,
    to_float,
    to_int,
    to_text,
)
from studio.metadata.samplers import normalise_sampler

_INVOKE3_OWN = frozenset(
    {
        "positive_prompt",
        "negative_prompt",
        "seed",
        "steps",
        "cfg_scale",
        "scheduler",
        "width",
        "height",
        "model",
        "strength",
    }
)


def _model_name(value: Any) -> str | None:
    if isinstance(value, dict):
        return to_text(value.get("model_name") or value.get("name"))
    return to_text(value)


def _split_bracket_negative(prompt: str) -> tuple[str, str]:
    """InvokeAI 1.x/2.x put the negative prompt in square brackets: "pos [neg]"."""
    negatives = [part.strip() for part in re.findall(r"\[([^\[\]]*)\]", prompt)]
    positive = re.sub(r" ?\[[^\[\]]*\]", "", prompt)
    return positive.strip(), ", ".join(part for part in negatives if part)


def _from_invokeai3(data: dict[str, Any]) -> ImageParameters:
    p = ImageParameters(source="invokeai")
    p.prompt = to_text(data.get("positive_prompt")) or ""
    p.negative_prompt = to_text(data.get("negative_prompt")) or ""
    p.seed = to_int(data.get("seed"))
    p.steps = to_int(data.get("steps"))
    p.cfg_scale = to_float(data.get("cfg_scale"))
    scheduler = to_text(data.get("scheduler"))
    p.sampler = normalise_sampler(scheduler) if scheduler else None
    p.width, p.height = to_int(data.get("width")), to_int(data.get("height"))
    p.model = _model_name(data.get("model"))
    p.strength = to_float(data.get("strength"))
    put_extras(p.extras, data, _INVOKE3_OWN)
    return p


def _invokeai2_prompt(value: Any) -> str:
    if isinstance(value, str):
        return value
    if not isinstance(value, list):
        return ""
    parts = [item for item in value if isinstance(item, dict)]
    if len(parts) == 1:
        return to_text(parts[0].get("prompt")) or ""
    # Several weighted prompts: InvokeAI 2's own "text:weight" blend syntax.
    return " ".join(f"{item.get('prompt', '')}:{item.get('weight', 1.0)}" for item in parts)


def _from_invokeai2(data: dict[str, Any]) -> ImageParameters:
    image = data.get("image")
    image = image if isinstance(image, dict) else {}
    p = ImageParameters(source="invokeai")
    p.prompt, p.negative_prompt = _split_bracket_negative(_invokeai2_prompt(image.get("prompt")))
    p.seed = to_int(image.get("seed"))
    p.steps = to_int(image.get("steps"))
    p.cfg_scale = to_float(image.get("cfg_scale"))
    sampler = to_text(image.get("sampler"))
    p.sampler = normalise_sampler(sampler) if sampler else None
    p.width, p.height = to_int(image.get("width")), to_int(image.get("height"))
    p.model = to_text(data.get("model_weights"))
    p.strength = to_float(image.get("strength"))
    put_extras(p.extras, data, {"image", "model_weights"})
    own = {"prompt", "seed", "steps", "cfg_scale", "sampler", "width", "height", "strength"}
    put_extras(p.extras, image, own)
    return p


# InvokeAI "dream" command-line switches (short and long forms).
_DREAM_OPTIONS = {
    "-s": "steps",
    "--steps": "steps",
    "-S": "seed",
    "--seed": "seed",
    "-W": "width",
    "--width": "width",
    "-H": "height",
    "--height": "height",
    "-C": "cfg_scale",
    "--cfg_scale": "cfg_scale",
    "-A": "sampler",
    "--sampler": "sampler",
    "-f": "strength",
    "--strength": "strength",
}
_NUMBER_RE = re.compile(r"[+-]?(\d+\.?\d*|\.\d+)")


def _dream_switches(tokens: list[str]) -> Iterator[tuple[str, str]]:
    """(switch, value) pairs; a switch's value is every following non-switch token."""
    switch: str | None = None
    values: list[str] = []
    for token in tokens:
        if token.startswith("-") and not _NUMBER_RE.fullmatch(token):
            if switch is not None:
                yield switch, " ".join(values)
            switch, values = token, []
        elif switch is not None:
            values.append(token)
    if switch is not None:
        yield switch, " ".join(values)


def _from_dream(command: str) -> ImageParameters:
    try:
        tokens = shlex.split(command)
    except ValueError as error:
        raise Unreadable("InvokeAI", "its command line is broken") from error
    if not tokens:
        raise Unreadable("InvokeAI", "its command line is empty")
    p = ImageParameters(source="invokeai")
    p.prompt, p.negative_prompt = _split_bracket_negative(tokens[0])
    for switch, value in _dream_switches(tokens[1:]):
        name = _DREAM_OPTIONS.get(switch)
        converted: Any = None
        if name in ("steps", "seed", "width", "height"):
            converted = to_int(value)
        elif name in ("cfg_scale", "strength"):
            converted = to_float(value)
        elif name == "sampler" and value:
            converted = normalise_sampler(value)
        if converted is None:
            p.extras[switch] = value
        else:
            setattr(p, name, converted)
    return p


def from_invokeai(chunks: Mapping[str, str]) -> ImageParameters | None:
    for key, reader in (("invokeai_metadata", _from_invokeai3), ("sd-metadata", _from_invokeai2)):
        if key in chunks:
            data = load_json(chunks[key])
            if isinstance(data, dict):
                return reader(data)
            if "Dream" not in chunks:
                raise Unreadable("InvokeAI", "its JSON is broken")
    if "Dream" in chunks:
        return _from_dream(chunks["Dream"])
    return None
