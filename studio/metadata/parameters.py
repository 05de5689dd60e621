"""The normalised parameter set every reader fills, its error, and the loose-type coercions
that metadata written by other tools needs.
"""

from __future__ import annotations

import json
import math
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from studio.core.errors import BadInput

MAX_DIGITS = 40  # 2**64 has 20 digits; nothing a tool writes needs more

SOURCES = ("studio", "automatic1111", "comfyui", "invokeai", "fooocus", "novelai")


@dataclass
class ImageParameters:
    """Generation parameters found in (or destined for) an image, whatever wrote them."""

    source: str = "studio"
    prompt: str = ""
    negative_prompt: str = ""
    seed: int | None = None
    steps: int | None = None
    cfg_scale: float | None = None
    sampler: str | None = None
    width: int | None = None
    height: int | None = None
    model: str | None = None
    strength: float | None = None
    extras: dict[str, str] = field(default_factory=dict)
    request: dict[str, Any] | None = None

    def to_json_dict(self) -> dict[str, Any]:
        """A JSON-ready dict; ``request`` only appears for the studio's own files."""
        data: dict[str, Any] = {
            "source": self.source,
            "prompt": self.prompt,
            "negative_prompt": self.negative_prompt,
            "seed": self.seed,
            "steps": self.steps,
            "cfg_scale": self.cfg_scale,
            "sampler": self.sampler,
            "width": self.width,
            "height": self.height,
            "model": self.model,
            "strength": self.strength,
            "extras": dict(self.extras),
        }
        if self.request is not None:
            data["request"] = self.request
        return data


class MetadataError(BadInput):
    """A file's parameters cannot be read; ``str()`` is one sentence for the user."""


class Unreadable(Exception):
    """A recognised metadata chunk is present but broken; ``detail`` says how."""

    def __init__(self, label: str, detail: str) -> None:
        super().__init__(f"{label}: {detail}")
        self.label = label
        self.detail = detail


def to_int(value: Any) -> int | None:
    if isinstance(value, bool):
        return None
    if isinstance(value, int):
        return value
    if isinstance(value, float):
        return int(value) if value.is_integer() else None
    if isinstance(value, str):
        text = value.strip()
        if re.fullmatch(r"[+-]?\d+", text):
            # a number longer than any setting (Python refuses >4300 digits anyway): that
            # field is lost, not the file
            return int(text) if len(text) <= MAX_DIGITS else None
        number = to_float(text)
        return int(number) if number is not None and number.is_integer() else None
    return None


def to_float(value: Any) -> float | None:
    if isinstance(value, bool):
        return None
    if isinstance(value, (int, float)):
        number = float(value)
    elif isinstance(value, str):
        try:
            number = float(value.strip())
        except ValueError:
            return None
    else:
        return None
    return number if math.isfinite(number) else None


def to_text(value: Any) -> str | None:
    if isinstance(value, str):
        return value
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        return str(value)
    return None


def stringify(value: Any) -> str:
    """Extras are plain strings; structured values keep their JSON form."""
    if isinstance(value, str):
        return value
    if isinstance(value, (list, dict)):
        return json.dumps(value, ensure_ascii=False)
    return str(value)


def load_json(text: str) -> Any:
    """``json.loads`` that reports failure as ``None`` instead of raising; an integer too
    long to be any setting becomes ``None`` (that value is lost, not the document)."""
    try:
        return json.loads(text, parse_int=_bounded_int)
    except (ValueError, RecursionError):
        return None


def _bounded_int(digits: str) -> int | None:
    return int(digits) if len(digits) <= MAX_DIGITS else None


def put_extras(
    extras: dict[str, str], data: Mapping[str, Any], skip: set[str] | frozenset[str]
) -> None:
    for key, value in data.items():
        if key not in skip and value is not None and value != "":
            extras[str(key)] = stringify(value)
