"""Turning an image's parameters (ours or another tool's) into values for the draft.

Free of Qt: what a file can restore is decided here, and how restored values meet the
draft's other values (ranges, installed models, precedence) in `Draft.apply`.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Any

from studio.core.prompt_tags import split_lora_tags
from studio.core.schedulers import closest_scheduler
from studio.core.text import printable
from studio.metadata import ImageParameters

SOURCE_NAMES = {
    "studio": "Latent Studio",
    "automatic1111": "AUTOMATIC1111",
    "comfyui": "ComfyUI",
    "invokeai": "InvokeAI",
    "fooocus": "Fooocus",
    "novelai": "NovelAI",
}


def carried_prompt(parameters: ImageParameters | None) -> str:
    """The prompt a picture carries, its LoRA tags left out (they are the generator's, not
    an upscaler's): what an upscale of it is guided by when no prompt is given. "" if none."""
    return split_lora_tags(parameters.prompt or "")[0] if parameters is not None else ""


@dataclass
class RestorePlan:
    source: str
    values: dict[str, Any] = field(default_factory=dict)  # request fields, for Draft.apply
    complete: bool = False  # True for our own files: every parameter is known
    notes: list[str] = field(default_factory=list)  # sentences: what changed on the way
    # another tool's file made from an input picture (an image→image strength): the picture
    # is not in the file, so a re-run asks for it (our own files say so by their mode)
    from_image: bool = False
    # another tool's inpaint (a painted mask): the mask is not in the file either
    from_mask: bool = False

    @property
    def source_name(self) -> str:
        return SOURCE_NAMES.get(self.source, self.source)

    @property
    def model(self) -> str | None:
        return self.values.get("model")


def plan_restore(params: ImageParameters) -> RestorePlan:
    if params.request:  # our own file: the whole request (the draft keeps its own mode)
        values = dict(params.request)
        values["prompt"], notes = _with_loras_here(str(values.get("prompt", "")), params)
        return RestorePlan(params.source, values, complete=True, notes=notes)
    prompt, notes = _with_loras_here(params.prompt or "", params)
    values: dict[str, Any] = {"prompt": prompt, "negative_prompt": params.negative_prompt}
    for key, value in (
        ("seed", params.seed),
        ("steps", params.steps),
        ("cfg_scale", params.cfg_scale),
        ("width", params.width),
        ("height", params.height),
        ("strength", params.strength),
        ("model", params.model),
    ):
        if value is not None:
            values[key] = value
    if params.width is None or params.height is None:  # NovelAI's older files, ComfyUI's
        # image→image (its latent encoded from a picture): the draft's size stays, unsaid
        notes.append("The file records no size: the size is not restored.")
    controls = controls_of(params.extras)
    if controls:
        values["controls"] = controls
    values.update(_inpaint_settings(params.extras))
    # What the file leaves out is what its tool did without it, not the draft's value: A1111
    # writes "Clip skip" only when it is not 1 and its hires fields only for a hires fix
    # ("Hires steps" only when not the main steps'), and CFG rescale and dynamic
    # thresholding are written only when on (the studio's A1111 text, NovelAI's rescale).
    values.update(clip_skip=1, upscaler=None, cfg_rescale=0.0, dynamic_thresholding=False)
    values.update(upscale_steps=0)
    hires = _hires(params, notes)
    if hires:  # the Denoising strength was the hires pass's, not an image→image one
        values.pop("strength", None)
        values.update(hires)
    for key in ("Clip skip", "clip_skip"):  # A1111's and ComfyUI's CLIPSetLastLayer; Fooocus's
        clip_skip = _finite_number(params.extras.get(key))
        if clip_skip is not None and clip_skip >= 1:
            values["clip_skip"] = int(clip_skip)
            break
    for key in ("CFG rescale", "cfg_rescale"):  # the studio's A1111 text; NovelAI's
        rescale = _finite_number(params.extras.get(key))
        if rescale is not None:
            values["cfg_rescale"] = rescale
            break
    values.update(_thresholding(params.extras.get("Dynamic thresholding")))
    distilled = _finite_number(params.extras.get("Distilled CFG Scale"))
    if distilled is not None:  # Forge's Flux: "CFG scale: 1" is no CFG; this is the scale
        values["cfg_scale"] = distilled
    if params.sampler:
        closest = closest_scheduler(params.sampler)
        if closest is None:
            notes.append(f"The sampler '{printable(params.sampler)}' is not available here.")
        else:
            values["scheduler"] = closest
            if closest != params.sampler:
                notes.append(
                    f"The sampler '{printable(params.sampler)}' runs as its close relative "
                    f"{closest}."
                )
    masked = _from_mask(params)
    return RestorePlan(
        params.source,
        values,
        notes=notes,
        from_image=masked or _from_image(params, values),
        from_mask=masked,
    )


def _from_mask(params: ImageParameters) -> bool:
    """Whether another tool's file is an inpaint: A1111 writes "Mask blur" only with a mask,
    InvokeAI names its generation mode, ComfyUI's sampler latent carries a mask."""
    if params.source == "automatic1111":
        return "Mask blur" in params.extras
    if params.source == "invokeai":
        return any(m in params.extras.get("generation_mode", "") for m in ("inpaint", "outpaint"))
    return params.source == "comfyui" and "Input mask" in params.extras


def _from_image(params: ImageParameters, values: dict[str, Any]) -> bool:
    """Whether another tool's file was made from an input picture: it has an image→image
    strength (A1111's "Denoising strength" without a hires fix, InvokeAI's and Fooocus's),
    ComfyUI's only when the sampler's latent was encoded from a picture (below 1 over a
    sampled latent it is a second pass), never NovelAI's (written with every picture)."""
    if "strength" not in values or params.source == "novelai":
        return False
    return params.source != "comfyui" or "Input image" in params.extras


def _thresholding(text: str | None) -> dict[str, Any]:
    """Dynamic thresholding as the studio writes it in A1111 text ("99.5% / 2.5"), when it
    was on; {} when the text says nothing readable."""
    percentile, _, ceiling = str(text or "").partition("/")
    found = _finite_number(percentile.strip().removesuffix("%")), _finite_number(ceiling)
    if None in found:
        return {}
    return {
        "dynamic_thresholding": True,
        "threshold_percentile": found[0],
        "threshold_max": found[1],
    }


def _finite_number(text: str | None) -> float | None:
    try:
        value = float(str(text))
    except ValueError:
        return None
    return value if value == value and abs(value) != float("inf") else None


def _hires(params: ImageParameters, notes: list[str]) -> dict[str, Any]:
    """A1111's hires fix of a text→image job ("Hires upscale"): the studio's, whose strength
    is then the file's "Denoising strength" (A1111 writes the hires pass's there); the studio
    enlarges ×2 with Lanczos, which a note says when the file's scale or upscaler is
    another."""
    scale = _finite_number(params.extras.get("Hires upscale"))
    if scale is None:
        return {}
    found: dict[str, Any] = {"upscaler": "hires"}
    if params.strength is not None:
        found["upscale_strength"] = params.strength
    steps = _finite_number(params.extras.get("Hires steps"))
    if steps is not None and steps >= 1 and steps.is_integer():
        found["upscale_steps"] = 0 if steps == params.steps else int(steps)
    if abs(scale - 2) > 1e-6:
        notes.append(f"The hires fix enlarges ×2 here (the file's ×{scale:g}).")
    upscaler = " ".join(str(params.extras.get("Hires upscaler", "")).split())
    if upscaler and upscaler.lower() != "lanczos":  # "Latent", "R-ESRGAN 4x+", "4x-UltraSharp"
        notes.append(
            f"The hires fix enlarges with Lanczos here (the file's {printable(upscaler, 60)})."
        )
    return found


def _inpaint_settings(extras: dict[str, str]) -> dict[str, Any]:
    """An inpaint's mask blur, and its "only masked" area and padding, as A1111 writes them."""
    found: dict[str, Any] = {}
    for key, field_name in (("Mask blur", "mask_blur"), ("Masked area padding", "inpaint_padding")):
        try:
            found[field_name] = int(float(extras[key]))
        except (KeyError, ValueError, OverflowError):
            continue
    area = extras.get("Inpaint area", "").strip().lower()
    if area in ("only masked", "whole picture"):
        found["inpaint_only_masked"] = area == "only masked"
    return found


def _with_loras_here(prompt: str, params: ImageParameters) -> tuple[str, list[str]]:
    """The prompt's LoRA tags naming the files on this machine, found by name or hash."""
    from studio.core import loras

    return loras.restore_tags(prompt, params.extras.get("Lora hashes"))


def controls_of(extras: dict[str, str]) -> list[dict[str, Any]]:
    """The ControlNet units of A1111's parameters ("ControlNet 0: "Module: canny, Model: …,
    Weight: 1, …""), in their order, as the studio's control fields (Control.to_dict, with
    no image): the model's name, weight, start and end, the preprocessor where the studio
    has the module, and a union ControlNet's control type ("Union Control Type", or the
    studio's exact "Studio Control Type")."""
    from studio.core.preprocessors import MODULE_NAMES, UNION_TYPES_READ
    from studio.core.request import CONTROL_TYPES

    modules = {name: mine for mine, name in MODULE_NAMES.items()}
    units = []
    for key, text in extras.items():
        number = key.removeprefix("ControlNet ")
        if key.startswith("ControlNet ") and number.isdigit():
            units.append((int(number), text))
    found = []
    for _, text in sorted(units):
        fields = {}
        for item in text.split(","):
            name, colon, value = item.partition(":")
            if colon:
                fields[name.strip().lower()] = value.strip()
        if not fields.get("model"):
            continue
        control: dict[str, Any] = {
            "model": re.sub(r"\s*\[[0-9a-fA-F]{8,}\]$", "", fields["model"]),  # A1111's hash
            "preprocessor": modules.get(fields.get("module", "none"), "none"),
        }
        for name, key in (
            ("weight", "scale"),
            ("guidance start", "start"),
            ("guidance end", "end"),
        ):
            number = _number(fields.get(name, ""))
            if number is not None:
                control[key] = number
        kind = fields.get("studio control type", "").lower()
        if kind not in CONTROL_TYPES:
            kind = UNION_TYPES_READ.get(fields.get("union control type", "").lower(), "")
        if kind:
            control["control_type"] = kind
        found.append(control)
    return found


def _number(text: str) -> float | None:
    try:
        return float(text)
    except ValueError:
        return None
