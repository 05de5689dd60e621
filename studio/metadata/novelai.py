"""NovelAI's ``Comment`` JSON with its ``Description`` and ``Software`` chunks."""

from __future__ import annotations

from collections.abc import Mapping

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

_NOVELAI_OWN = frozenset(
    {"prompt", "uc", "seed", "steps", "scale", "sampler", "width", "height", "strength"}
)


def from_novelai(chunks: Mapping[str, str]) -> ImageParameters | None:
    comment = load_json(chunks.get("Comment", ""))
    is_novelai = chunks.get("Software", "").strip() == "NovelAI"
    if not isinstance(comment, dict):
        if is_novelai:
            raise Unreadable("NovelAI", "its settings are missing or broken")
        return None
    if not is_novelai and not ("Description" in chunks and {"uc", "scale"} & comment.keys()):
        return None
    p = ImageParameters(source="novelai")
    p.prompt = chunks.get("Description") or to_text(comment.get("prompt")) or ""
    p.negative_prompt = to_text(comment.get("uc")) or ""
    p.seed = to_int(comment.get("seed"))
    p.steps = to_int(comment.get("steps"))
    p.cfg_scale = to_float(comment.get("scale"))
    sampler = to_text(comment.get("sampler"))
    p.sampler = normalise_sampler(sampler) if sampler else None
    p.width, p.height = to_int(comment.get("width")), to_int(comment.get("height"))
    p.strength = to_float(comment.get("strength"))
    p.model = chunks.get("Source")
    put_extras(p.extras, comment, _NOVELAI_OWN)
    if chunks.get("Title"):
        p.extras["Title"] = chunks["Title"]
    return p
