"""AUTOMATIC1111's ``parameters`` text: the format the whole ecosystem reads and writes.

Fooocus writes the same chunk, as JSON or in this format; `from_parameters` tells them apart.
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable, Mapping
from typing import Any

from studio.metadata.fooocus import from_fooocus_json
from studio.metadata.parameters import ImageParameters, Unreadable, load_json, to_float, to_int
from studio.metadata.samplers import normalise_sampler

PARAMETERS_KEY = "parameters"


_NEGATIVE_PREFIX = "Negative prompt:"
# One "Key: value" item of the settings line; same grammar as A1111's re_param.
_PARAM_RE = re.compile(r'\s*(\w[\w \-/.+]{0,79}):\s*("(?:\\.|[^\\"])*"|[^,]*)(?:,|$)')
_SIZE_RE = re.compile(r"\s*(\d{1,9})\s*x\s*(\d{1,9})\s*")
# A settings line is a few hundred characters (a few thousand with long hashes); a longer
# last line is text, not settings, and is not scanned as such.
MAX_SETTINGS_LINE = 256 * 1024
_KEY_BAD_CHARS = re.compile(r"[^\w \-/.+]")
_OWN_KEYS = frozenset(
    {"Steps", "Sampler", "CFG scale", "Seed", "Size", "Model", "Denoising strength"}
)
_SETTINGS_HINTS = _OWN_KEYS | {"Model hash", "Schedule type", "Clip skip", "Version"}


def _quote(value: str) -> str:
    """JSON-quote values that would otherwise break the settings line, like A1111."""
    if any(char in value for char in ',:"\n\r') or value != value.strip():
        return json.dumps(value, ensure_ascii=False)
    return value


def _unquote(value: str) -> str:
    if len(value) >= 2 and value.startswith('"') and value.endswith('"'):
        decoded = load_json(value)
        if isinstance(decoded, str):
            return decoded
    return value


def _safe_key(key: str) -> str:
    """An extras key the settings-line grammar can read back."""
    cleaned = _KEY_BAD_CHARS.sub("_", key).strip()[:79]
    return cleaned if cleaned and (cleaned[0].isalnum() or cleaned[0] == "_") else f"_{cleaned}"


def _number_text(value: float) -> str:
    return str(float(value)) if isinstance(value, (int, float)) else str(value)


def _settings_items(p: ImageParameters) -> list[tuple[str, str]]:
    items: list[tuple[str, str]] = []
    if p.steps is not None:
        items.append(("Steps", str(p.steps)))
    if p.sampler:
        items.append(("Sampler", p.sampler))
    if p.cfg_scale is not None:
        items.append(("CFG scale", _number_text(p.cfg_scale)))
    if p.seed is not None:
        items.append(("Seed", str(p.seed)))
    if p.width is not None and p.height is not None:
        items.append(("Size", f"{p.width}x{p.height}"))
    if p.extras.get("Model hash"):  # before the model, in A1111's order
        items.append(("Model hash", str(p.extras["Model hash"])))
    if p.model:
        items.append(("Model", p.model))
    if p.strength is not None:
        items.append(("Denoising strength", _number_text(p.strength)))
    for key, value in p.extras.items():
        if key not in _OWN_KEYS and key != "Model hash":
            items.append((_safe_key(str(key)), str(value)))
    return items


def format_a1111(p: ImageParameters) -> str:
    """The AUTOMATIC1111 ``parameters`` text for ``p``: prompt, negative, settings line."""
    settings = ", ".join(f"{key}: {_quote(value)}" for key, value in _settings_items(p))
    negative = f"\n{_NEGATIVE_PREFIX} {p.negative_prompt}" if p.negative_prompt else ""
    return f"{p.prompt}{negative}\n{settings}" if settings else f"{p.prompt}{negative}"


def _settings_pairs(line: str) -> list[tuple[str, str]] | None:
    """The items of a settings line, or None when the line is not one."""
    if line.startswith(_NEGATIVE_PREFIX):
        return None
    pairs: list[tuple[str, str]] = []
    whole_line = True
    position = 0
    # Items are matched one after another from where the last one ended (never from
    # every offset), so a long prompt line costs linear time, not quadratic.
    while position < len(line):
        match = _PARAM_RE.match(line, position)
        if match is None or match.end() == position:
            whole_line = whole_line and not line[position:].strip(" ,")
            comma = line.find(",", position)
            position = len(line) if comma < 0 else comma + 1
            continue
        pairs.append((match.group(1).strip(), _unquote(match.group(2))))
        position = match.end()
    if not pairs:
        return None
    # A1111's own rule is "at least three items"; a shorter line counts when it is made
    # only of items and names at least one setting, so sparse studio lines survive.
    if len(pairs) >= 3 or (whole_line and any(k in _SETTINGS_HINTS for k, _ in pairs)):
        return pairs
    return None


def _split_prompts(lines: list[str]) -> tuple[str, str]:
    for index, line in enumerate(lines):
        if line.startswith(_NEGATIVE_PREFIX):
            negative = "\n".join(lines[index:])[len(_NEGATIVE_PREFIX) :]
            return "\n".join(lines[:index]), negative.removeprefix(" ")
    return "\n".join(lines), ""


def _apply_setting(p: ImageParameters, key: str, value: str) -> bool:
    """Store one known setting on ``p``; False when it belongs in extras instead."""
    if key == "Size":
        match = _SIZE_RE.fullmatch(value)
        if match:
            p.width, p.height = int(match.group(1)), int(match.group(2))
        return match is not None
    if key == "Sampler":
        p.sampler = normalise_sampler(value) if value.strip() else None
        return p.sampler is not None
    if key == "Model":
        p.model = value
        return True
    converters: dict[str, tuple[str, Callable[[Any], Any]]] = {
        "Steps": ("steps", to_int),
        "CFG scale": ("cfg_scale", to_float),
        "Seed": ("seed", to_int),
        "Denoising strength": ("strength", to_float),
    }
    if key not in converters:
        return False
    attribute, convert = converters[key]
    converted = convert(value)
    if converted is None:
        return False
    setattr(p, attribute, converted)
    return True


def _fold_schedule_type(p: ImageParameters) -> None:
    """A1111 >= 1.6 writes "Sampler: DPM++ 2M, Schedule type: Karras"; the studio's
    scheduler names fold Karras into the sampler name."""
    schedule = p.extras.get("Schedule type")
    if p.sampler and schedule and not p.sampler.endswith("Karras"):
        p.sampler = normalise_sampler(p.sampler, schedule)


def parse_a1111(text: str, source: str = "automatic1111") -> ImageParameters:
    """Parse AUTOMATIC1111 ``parameters`` text; never raises for any string."""
    p = ImageParameters(source=source)
    lines = text.replace("\r\n", "\n").split("\n")
    while len(lines) > 1 and not lines[-1].strip():
        lines.pop()  # hand-edited files often end with blank lines
    pairs = _settings_pairs(lines[-1]) if len(lines[-1]) <= MAX_SETTINGS_LINE else None
    if pairs is not None:
        lines.pop()
    p.prompt, p.negative_prompt = _split_prompts(lines)
    for key, value in pairs or []:
        if not _apply_setting(p, key, value):
            p.extras[key] = value
    _fold_schedule_type(p)
    return p


def has_settings(p: ImageParameters) -> bool:
    return any(v is not None for v in (p.steps, p.seed, p.cfg_scale, p.sampler, p.width))


def from_parameters(chunks: Mapping[str, str]) -> ImageParameters | None:
    text = chunks.get(PARAMETERS_KEY)
    if text is None or not text.strip():
        return None
    fooocus = "fooocus_scheme" in chunks
    if text.lstrip().startswith("{"):
        data = load_json(text)
        if isinstance(data, dict):
            return from_fooocus_json(data)
        if fooocus:
            raise Unreadable("Fooocus", "its JSON is broken")
    # Fooocus can also write the A1111 format ("fooocus_scheme" = "a1111").
    return parse_a1111(text, source="fooocus" if fooocus else "automatic1111")


def from_loose_text(text: str | None) -> ImageParameters | None:
    """Text from a place any program may write (EXIF comments): accept it only when
    it really is A1111 parameters, with a settings line."""
    if not text:
        return None
    p = parse_a1111(text)
    return p if has_settings(p) else None
