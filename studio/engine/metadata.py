"""Generation parameters inside image files: write the studio's own, read everyone's.

Writing: every PNG the studio saves carries an AUTOMATIC1111-style ``parameters`` text
chunk (the format the whole ecosystem reads) and a ``studio`` chunk holding the complete
request as JSON, so that dropping the file back restores everything exactly.

Reading: files written by the studio, AUTOMATIC1111 (PNG text, JPEG/WebP EXIF, "stealth"
alpha/RGB bits), ComfyUI, InvokeAI (1.x to 3.x+), Fooocus and NovelAI are recognised and
normalised into one :class:`ImageParameters`.  Anything that goes wrong while reading a
file becomes a :class:`MetadataError` with one sentence fit to show to the user.

Pure Python and Pillow only: this module is used by the UI and the engine alike and
must stay importable without Qt or torch.
"""

from __future__ import annotations

import contextlib
import json
import math
import os
import re
import shlex
import zlib
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Any

from PIL import Image, PngImagePlugin

__all__ = [
    "SOURCES",
    "ImageParameters",
    "MetadataError",
    "format_a1111",
    "normalise_sampler",
    "parse_a1111",
    "png_info",
    "read_parameters",
    "read_parameters_from_image",
]

SOURCES = ("studio", "automatic1111", "comfyui", "invokeai", "fooocus", "novelai")

PARAMETERS_KEY = "parameters"
STUDIO_KEY = "studio"


# --------------------------------------------------------------------------------------
# The normalised parameter set
# --------------------------------------------------------------------------------------


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


class MetadataError(Exception):
    """A file's parameters cannot be read; ``str()`` is one sentence for the user."""


class _Unreadable(Exception):
    """A recognised metadata chunk is present but broken; ``detail`` says how."""

    def __init__(self, label: str, detail: str) -> None:
        super().__init__(f"{label}: {detail}")
        self.label = label
        self.detail = detail


# --------------------------------------------------------------------------------------
# Small value coercions: metadata written by other tools has loose types
# --------------------------------------------------------------------------------------


def _to_int(value: Any) -> int | None:
    if isinstance(value, bool):
        return None
    if isinstance(value, int):
        return value
    if isinstance(value, float):
        return int(value) if value.is_integer() else None
    if isinstance(value, str):
        text = value.strip()
        if re.fullmatch(r"[+-]?\d+", text):
            return int(text)
        number = _to_float(text)
        return int(number) if number is not None and number.is_integer() else None
    return None


def _to_float(value: Any) -> float | None:
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


def _to_text(value: Any) -> str | None:
    if isinstance(value, str):
        return value
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        return str(value)
    return None


def _stringify(value: Any) -> str:
    """Extras are plain strings; structured values keep their JSON form."""
    if isinstance(value, str):
        return value
    if isinstance(value, (list, dict)):
        return json.dumps(value, ensure_ascii=False)
    return str(value)


def _load_json(text: str) -> Any:
    """``json.loads`` that reports failure as ``None`` instead of raising."""
    try:
        return json.loads(text)
    except (ValueError, RecursionError):
        return None


def _put_extras(
    extras: dict[str, str], data: Mapping[str, Any], skip: set[str] | frozenset[str]
) -> None:
    for key, value in data.items():
        if key not in skip and value is not None and value != "":
            extras[str(key)] = _stringify(value)


# --------------------------------------------------------------------------------------
# Sampler names
# --------------------------------------------------------------------------------------

# AUTOMATIC1111 display names; the studio's scheduler names are a subset of these.
_A1111_SAMPLERS = (
    "Euler a",
    "Euler",
    "LMS",
    "LMS Karras",
    "Heun",
    "DPM2",
    "DPM2 Karras",
    "DPM2 a",
    "DPM2 a Karras",
    "DPM++ 2S a",
    "DPM++ 2S a Karras",
    "DPM++ 2M",
    "DPM++ 2M Karras",
    "DPM++ SDE",
    "DPM++ SDE Karras",
    "DPM++ 2M SDE",
    "DPM++ 2M SDE Karras",
    "DPM++ 3M SDE",
    "DPM++ 3M SDE Karras",
    "DPM fast",
    "DPM adaptive",
    "DDIM",
    "DDPM",
    "PNDM",
    "UniPC",
    "DEIS",
    "LCM",
)
_CANONICAL = {name.lower(): name for name in _A1111_SAMPLERS}

# Internal names used by ComfyUI (k-diffusion), InvokeAI, NovelAI and Fooocus, after
# lower-casing and stripping "k_"/"sample_" prefixes, "_gpu" and Karras suffixes.
_SAMPLER_ALIASES = {
    "euler_ancestral": "Euler a",
    "euler_a": "Euler a",
    "eulera": "Euler a",
    "euler": "Euler",
    "lms": "LMS",
    "heun": "Heun",
    "dpm_2": "DPM2",
    "dpm2": "DPM2",
    "kdpm_2": "DPM2",
    "dpm_2_ancestral": "DPM2 a",
    "dpm_2_a": "DPM2 a",
    "dpm2_a": "DPM2 a",
    "kdpm_2_a": "DPM2 a",
    "dpmpp_2s_ancestral": "DPM++ 2S a",
    "dpmpp_2s_a": "DPM++ 2S a",
    "dpmpp_2_a": "DPM++ 2S a",
    "dpmpp_2s": "DPM++ 2S a",
    "dpmpp_2m": "DPM++ 2M",
    "dpmpp_2": "DPM++ 2M",
    "dpmpp_sde": "DPM++ SDE",
    "dpmpp_2m_sde": "DPM++ 2M SDE",
    "dpmpp_3m_sde": "DPM++ 3M SDE",
    "dpm_fast": "DPM fast",
    "dpm_adaptive": "DPM adaptive",
    "ddim": "DDIM",
    "ddpm": "DDPM",
    "pndm": "PNDM",
    # diffusers' PNDM with skipped Runge-Kutta steps is PLMS; the studio calls it PNDM.
    "plms": "PNDM",
    "uni_pc": "UniPC",
    "uni_pc_bh2": "UniPC",
    "unipc": "UniPC",
    "deis": "DEIS",
    "lcm": "LCM",
}

# Only these had a "... Karras" variant in A1111's sampler list.
_KARRAS_CAPABLE = {
    "LMS",
    "DPM2",
    "DPM2 a",
    "DPM++ 2S a",
    "DPM++ 2M",
    "DPM++ SDE",
    "DPM++ 2M SDE",
    "DPM++ 3M SDE",
}


def _sampler_key(name: str) -> tuple[str, bool]:
    """Reduce a tool-specific sampler name to an alias key, noting a Karras suffix."""
    key = re.sub(r"[\s\-]+", "_", name.strip().lower())
    for prefix in ("sample_", "k_"):
        key = key.removeprefix(prefix)
    key = key.removesuffix("_gpu")
    karras = False
    for suffix in ("_karras", "_k"):
        if key.endswith(suffix):
            key, karras = key[: -len(suffix)], True
            break
    return key, karras


def normalise_sampler(name: str, scheduler: str | None = None) -> str:
    """Map a sampler name from any tool to its AUTOMATIC1111 display name.

    ``scheduler`` is the separate noise-schedule name some tools write next to the
    sampler (ComfyUI, Fooocus, A1111 >= 1.6 "Schedule type"); only "karras" changes
    the name.  Unknown names come back unchanged.
    """
    text = name.strip()
    karras = (scheduler or "").strip().lower() == "karras"
    canonical = _CANONICAL.get(text.lower())
    if canonical is None:
        key, suffix_karras = _sampler_key(text)
        canonical = _SAMPLER_ALIASES.get(key)
        karras = karras or suffix_karras
    if canonical is None:
        return name
    if karras and canonical in _KARRAS_CAPABLE:
        return f"{canonical} Karras"
    return canonical


# --------------------------------------------------------------------------------------
# AUTOMATIC1111 "parameters" text
# --------------------------------------------------------------------------------------

_NEGATIVE_PREFIX = "Negative prompt:"
# One "Key: value" item of the settings line; same grammar as A1111's re_param.
_PARAM_RE = re.compile(r'\s*(\w[\w \-/.+]{0,79}):\s*("(?:\\.|[^\\"])*"|[^,]*)(?:,|$)')
_SIZE_RE = re.compile(r"\s*(\d+)\s*x\s*(\d+)\s*")
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
        decoded = _load_json(value)
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
    if p.model:
        items.append(("Model", p.model))
    if p.strength is not None:
        items.append(("Denoising strength", _number_text(p.strength)))
    for key, value in p.extras.items():
        if key not in _OWN_KEYS:
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
        "Steps": ("steps", _to_int),
        "CFG scale": ("cfg_scale", _to_float),
        "Seed": ("seed", _to_int),
        "Denoising strength": ("strength", _to_float),
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
    pairs = _settings_pairs(lines[-1])
    if pairs is not None:
        lines.pop()
    p.prompt, p.negative_prompt = _split_prompts(lines)
    for key, value in pairs or []:
        if not _apply_setting(p, key, value):
            p.extras[key] = value
    _fold_schedule_type(p)
    return p


def _has_settings(p: ImageParameters) -> bool:
    return any(v is not None for v in (p.steps, p.seed, p.cfg_scale, p.sampler, p.width))


# --------------------------------------------------------------------------------------
# Writing
# --------------------------------------------------------------------------------------


def _is_latin1(text: str) -> bool:
    try:
        text.encode("latin-1")
    except UnicodeEncodeError:
        return False
    return True


def png_info(parameters: ImageParameters, request: dict[str, Any] | None) -> PngImagePlugin.PngInfo:
    """PNG text chunks for a studio image: A1111 ``parameters`` plus the ``studio`` request."""
    info = PngImagePlugin.PngInfo()
    text = format_a1111(parameters)
    # tEXt is Latin-1 only; iTXt carries UTF-8 and every reader of tEXt also reads it.
    if _is_latin1(text):
        info.add_text(PARAMETERS_KEY, text)
    else:
        info.add_itxt(PARAMETERS_KEY, text)
    if request is not None:
        # default=str: an odd value in the request must not cost the user the image.
        payload = json.dumps(request, sort_keys=True, ensure_ascii=False, default=str)
        info.add_itxt(STUDIO_KEY, payload)
    return info


# --------------------------------------------------------------------------------------
# Reading: text chunks of the open image
# --------------------------------------------------------------------------------------


def _text_chunks(image: Image.Image) -> tuple[dict[str, str], bool]:
    """All text chunks of ``image`` and whether its pixel data decoded cleanly.

    Pillow only sees text written after the image data once the pixels are loaded,
    so a PNG is loaded; a damaged one still yields the chunks read before the damage.
    """
    decoded = True
    chunks = {k: str(v) for k, v in image.info.items() if isinstance(v, str)}
    if isinstance(image, PngImagePlugin.PngImageFile):
        try:
            chunks.update({k: str(v) for k, v in image.text.items()})
        except Exception:
            decoded = False
    comment = image.info.get("comment")
    if isinstance(comment, bytes) and "comment" not in chunks:
        chunks["comment"] = comment.decode("utf-8", errors="replace")
    return chunks, decoded


# --------------------------------------------------------------------------------------
# Reading: the studio's own chunk
# --------------------------------------------------------------------------------------


def _from_studio(chunks: Mapping[str, str]) -> ImageParameters | None:
    raw = chunks.get(STUDIO_KEY)
    if raw is None:
        return None
    request = _load_json(raw)
    if not isinstance(request, dict):
        # The caller goes on to the A1111 chunk, which is usually still fine.
        raise _Unreadable("Latent Studio", "its JSON is broken")
    p = ImageParameters(source="studio", request=request)
    p.prompt = _to_text(request.get("prompt")) or ""
    p.negative_prompt = _to_text(request.get("negative_prompt")) or ""
    p.seed = _to_int(request.get("seed"))
    p.steps = _to_int(request.get("steps"))
    p.cfg_scale = _to_float(request.get("cfg_scale"))
    p.sampler = _to_text(request.get("scheduler"))
    p.width = _to_int(request.get("width"))
    p.height = _to_int(request.get("height"))
    p.model = _to_text(request.get("model"))
    mode = request.get("mode")
    # Strength means something only where an input image is partly repainted.
    p.strength = _to_float(request.get("strength")) if mode in ("img2img", "inpaint") else None
    if PARAMETERS_KEY in chunks:
        written = parse_a1111(chunks[PARAMETERS_KEY])
        # Settings the request does not name (e.g. "Clip skip") are still worth showing.
        p.extras = dict(written.extras)
        if mode == "upscale":  # the request's size is unused there; the input's was written
            p.width, p.height = written.width, written.height
    return p


# --------------------------------------------------------------------------------------
# Reading: AUTOMATIC1111 and Fooocus ("parameters" chunk)
# --------------------------------------------------------------------------------------

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
        return _to_int(value[0]), _to_int(value[1])
    numbers = re.findall(r"\d+", value) if isinstance(value, str) else []
    if len(numbers) == 2:
        return int(numbers[0]), int(numbers[1])
    return None, None


def _from_fooocus_json(data: Mapping[str, Any]) -> ImageParameters:
    p = ImageParameters(source="fooocus")
    p.prompt = _to_text(data.get("prompt")) or ""
    p.negative_prompt = _to_text(data.get("negative_prompt")) or ""
    p.seed = _to_int(data.get("seed"))
    p.steps = _to_int(data.get("steps"))
    p.cfg_scale = _to_float(data.get("guidance_scale"))
    sampler = _to_text(data.get("sampler"))
    scheduler = _to_text(data.get("scheduler"))
    p.sampler = normalise_sampler(sampler, scheduler) if sampler else None
    p.width, p.height = _fooocus_resolution(data.get("resolution"))
    p.model = _to_text(data.get("base_model"))
    p.strength = _to_float(data.get("denoising_strength"))
    _put_extras(p.extras, data, _FOOOCUS_OWN - {"scheduler"})
    return p


def _from_parameters(chunks: Mapping[str, str]) -> ImageParameters | None:
    text = chunks.get(PARAMETERS_KEY)
    if text is None or not text.strip():
        return None
    fooocus = "fooocus_scheme" in chunks
    if text.lstrip().startswith("{"):
        data = _load_json(text)
        if isinstance(data, dict):
            return _from_fooocus_json(data)
        if fooocus:
            raise _Unreadable("Fooocus", "its JSON is broken")
    # Fooocus can also write the A1111 format ("fooocus_scheme" = "a1111").
    return parse_a1111(text, source="fooocus" if fooocus else "automatic1111")


# --------------------------------------------------------------------------------------
# Reading: ComfyUI
# --------------------------------------------------------------------------------------

Graph = dict[str, dict[str, Any]]

_SAMPLER_CLASSES = frozenset(
    {"KSampler", "KSamplerAdvanced", "SamplerCustom", "SamplerCustomAdvanced"}
)
_TEXT_INPUTS = ("text", "text_g", "text_l", "t5xxl", "clip_l", "prompt")
_STRING_INPUTS = ("text", "string", "value", "prompt", "text_g", "String", "STRING")
# Links a conditioning search must not wander into (they lead to models and images).
_NOT_CONDITIONING = frozenset(
    {
        "clip",
        "model",
        "vae",
        "clip_vision",
        "clip_vision_output",
        "image",
        "images",
        "pixels",
        "mask",
        "control_net",
        "latent_image",
        "samples",
        "style_model",
        "upscale_model",
        "noise",
        "sampler",
        "sigmas",
        "guider",
    }
)
_MAX_DEPTH = 64


def _is_link(value: Any) -> bool:
    return (
        isinstance(value, list)
        and len(value) == 2
        and isinstance(value[0], (str, int))
        and isinstance(value[1], int)
    )


def _inputs(node: Any) -> dict[str, Any]:
    inputs = node.get("inputs") if isinstance(node, dict) else None
    return inputs if isinstance(inputs, dict) else {}


def _linked(graph: Graph, value: Any) -> dict[str, Any] | None:
    if not _is_link(value):
        return None
    node = graph.get(str(value[0]))
    return node if isinstance(node, dict) else None


def _node_order(node_id: str) -> tuple[int, tuple[int, ...], str]:
    """Ascending node id ("graph order"); ids like "12:3" come from group nodes."""
    parts = node_id.split(":")
    if all(part.isdigit() for part in parts):
        return 0, tuple(int(part) for part in parts), ""
    return 1, (), node_id


def _is_sampler(node: dict[str, Any]) -> bool:
    class_type = str(node.get("class_type", ""))
    if class_type in _SAMPLER_CLASSES:
        return True
    inputs = _inputs(node)
    return "sampler" in class_type.lower() and ("positive" in inputs or "guider" in inputs)


def _resolve_string(graph: Graph, value: Any, depth: int = 0) -> str | None:
    """A text input's value, following links to primitive/string nodes."""
    if isinstance(value, str):
        return value
    node = _linked(graph, value)
    if node is None or depth > _MAX_DEPTH:
        return None
    inputs = _inputs(node)
    for key in _STRING_INPUTS:
        if key in inputs:
            return _resolve_string(graph, inputs[key], depth + 1)
    return None


def _encoder_texts(graph: Graph, node: dict[str, Any]) -> list[str] | None:
    """Texts of a text-encoder node, or None when the node is not one."""
    inputs = _inputs(node)
    keys = [key for key in _TEXT_INPUTS if key in inputs]
    if not keys:
        return None
    texts: list[str] = []
    for key in keys:
        text = (_resolve_string(graph, inputs[key]) or "").strip()
        if text and text not in texts:
            texts.append(text)
    return texts


def _conditioning_texts(graph: Graph, link: Any) -> tuple[list[str], list[dict[str, Any]]]:
    """Prompt texts behind a conditioning link, through combine/concat/area nodes.

    Returns the texts in link order and the text-encoder nodes they came from.
    """
    texts: list[str] = []
    encoders: list[dict[str, Any]] = []
    seen: set[str] = set()
    stack = [link]
    while stack:
        current = stack.pop()
        if not _is_link(current) or str(current[0]) in seen or len(seen) > 4 * _MAX_DEPTH:
            continue
        seen.add(str(current[0]))
        node = _linked(graph, current)
        if node is None:
            continue
        found = _encoder_texts(graph, node)
        if found is not None:
            encoders.append(node)
            texts.extend(text for text in found if text not in texts)
            continue
        links = [v for k, v in _inputs(node).items() if k not in _NOT_CONDITIONING]
        stack.extend(reversed([v for v in links if _is_link(v)]))
    return texts, encoders


def _scalar(graph: Graph, node: dict[str, Any], keys: tuple[str, ...], via: tuple[str, ...]) -> Any:
    """A setting of a sampler node, looked up in the node itself, through a link in
    the setting itself (seed primitives), or in helper nodes (SamplerCustomAdvanced
    keeps cfg in its guider, steps in its sigmas, the seed in its noise)."""
    inputs = _inputs(node)
    for key in keys:
        if key in inputs:
            value = inputs[key]
            target = _linked(graph, value)
            if target is None:
                return value
            target_inputs = _inputs(target)
            for inner in (*keys, "value", "seed", "int", "float", "number", "string"):
                if inner in target_inputs and not _is_link(target_inputs[inner]):
                    return target_inputs[inner]
            return None
    for name in via:
        helper = _linked(graph, inputs.get(name))
        if helper is not None:
            found = _scalar(graph, helper, keys, ())
            if found is not None:
                return found
    return None


def _follow_chain(
    graph: Graph, start: Any, link_key: str, stop: Callable[[dict[str, Any]], Any]
) -> Any:
    """Walk ``link_key`` links from ``start`` until ``stop`` returns something."""
    node = _linked(graph, start)
    for _ in range(_MAX_DEPTH):
        if node is None:
            return None
        found = stop(node)
        if found is not None:
            return found
        node = _linked(graph, _inputs(node).get(link_key))
    return None


def _checkpoint_name(node: dict[str, Any]) -> str | None:
    inputs = _inputs(node)
    for key in ("ckpt_name", "unet_name", "model_name", "model_path"):
        if isinstance(inputs.get(key), str):
            return inputs[key]
    return None


def _latent_size(graph: Graph, link: Any) -> tuple[int | None, int | None]:
    """Size from an empty-latent (or explicit resize) node; None for encoded images."""

    def size(node: dict[str, Any]) -> tuple[int, int] | None:
        inputs = _inputs(node)
        width, height = _to_int(inputs.get("width")), _to_int(inputs.get("height"))
        if width and height and width > 0 and height > 0:
            return width, height
        if "scale_by" in inputs or "upscale_method" in inputs:
            return (0, 0)  # rescaled by a factor: the size is not written down
        return None

    found = _follow_chain(graph, link, "samples", size)
    if not found or found == (0, 0):
        return None, None
    return found


def _clip_skip(graph: Graph, encoder: dict[str, Any]) -> str | None:
    def layer(node: dict[str, Any]) -> int | None:
        return _to_int(_inputs(node).get("stop_at_clip_layer"))

    stop_at = _follow_chain(graph, _inputs(encoder).get("clip"), "clip", layer)
    return str(-stop_at) if stop_at is not None and stop_at < 0 else None


def _sampler_links(graph: Graph, node: dict[str, Any]) -> tuple[Any, Any, Any]:
    """(positive, negative, model) links of a sampler, looking into a guider if any."""
    inputs = _inputs(node)
    guider = _inputs(_linked(graph, inputs.get("guider")))
    positive = inputs.get("positive", guider.get("positive", guider.get("conditioning")))
    negative = inputs.get("negative", guider.get("negative"))
    return positive, negative, inputs.get("model", guider.get("model"))


def _from_sampler(graph: Graph, node: dict[str, Any]) -> ImageParameters:
    p = ImageParameters(source="comfyui")
    positive, negative, model = _sampler_links(graph, node)
    positive_texts, encoders = _conditioning_texts(graph, positive)
    p.prompt = "\n".join(positive_texts)
    p.negative_prompt = "\n".join(_conditioning_texts(graph, negative)[0])
    p.seed = _to_int(_scalar(graph, node, ("seed", "noise_seed"), ("noise",)))
    p.steps = _to_int(_scalar(graph, node, ("steps",), ("sigmas",)))
    p.cfg_scale = _to_float(_scalar(graph, node, ("cfg",), ("guider",)))
    sampler_name = _to_text(_scalar(graph, node, ("sampler_name",), ("sampler",)))
    scheduler = _to_text(_scalar(graph, node, ("scheduler",), ("sigmas",)))
    p.sampler = normalise_sampler(sampler_name, scheduler) if sampler_name else None
    denoise = _to_float(_scalar(graph, node, ("denoise",), ("sigmas",)))
    p.strength = denoise if denoise is not None and 0 <= denoise < 1 else None
    p.width, p.height = _latent_size(graph, _inputs(node).get("latent_image"))
    p.model = _follow_chain(graph, model, "model", _checkpoint_name)
    if scheduler:
        p.extras["Scheduler"] = scheduler
    for key, label in (("start_at_step", "Start at step"), ("end_at_step", "End at step")):
        value = _inputs(node).get(key)
        if value is not None and not _is_link(value):
            p.extras[label] = _stringify(value)
    clip_skip = _clip_skip(graph, encoders[0]) if encoders else None
    if clip_skip:
        p.extras["Clip skip"] = clip_skip
    return p


def _completeness(p: ImageParameters) -> int:
    fields = (p.prompt or None, p.seed, p.steps, p.cfg_scale, p.sampler)
    return sum(value is not None for value in fields)


def _from_comfy_graph(graph: Graph) -> ImageParameters | None:
    """The first sampler (in node id order) that carries every main setting."""
    ids = sorted((k for k, v in graph.items() if isinstance(v, dict)), key=_node_order)
    samplers = [node_id for node_id in ids if _is_sampler(graph[node_id])]
    best: ImageParameters | None = None
    for node_id in samplers:
        candidate = _from_sampler(graph, graph[node_id])
        if best is None or _completeness(candidate) > _completeness(best):
            best = candidate
        if _completeness(candidate) == 5:
            break
    if best is not None and len(samplers) > 1:
        best.extras["Sampler nodes"] = str(len(samplers))
    return best


# Widget order of common nodes in the UI ``workflow`` format, needed to turn its
# positional ``widgets_values`` back into named inputs.
_WIDGETS = {
    "KSampler": ("seed", "steps", "cfg", "sampler_name", "scheduler", "denoise"),
    "KSamplerAdvanced": (
        "add_noise",
        "noise_seed",
        "steps",
        "cfg",
        "sampler_name",
        "scheduler",
        "start_at_step",
        "end_at_step",
        "return_with_leftover_noise",
    ),
    "SamplerCustom": ("add_noise", "noise_seed", "cfg"),
    "RandomNoise": ("noise_seed",),
    "KSamplerSelect": ("sampler_name",),
    "BasicScheduler": ("scheduler", "steps", "denoise"),
    "CFGGuider": ("cfg",),
    "CLIPTextEncode": ("text",),
    "CLIPSetLastLayer": ("stop_at_clip_layer",),
    "EmptyLatentImage": ("width", "height", "batch_size"),
    "EmptySD3LatentImage": ("width", "height", "batch_size"),
    "LatentUpscale": ("upscale_method", "width", "height", "crop"),
    "CheckpointLoaderSimple": ("ckpt_name",),
    "CheckpointLoader": ("config_name", "ckpt_name"),
    "unCLIPCheckpointLoader": ("ckpt_name",),
    "UNETLoader": ("unet_name", "weight_dtype"),
}
# The value ComfyUI stores after a seed widget ("control after generate").
_SEED_CONTROLS = {"fixed", "increment", "decrement", "randomize"}


def _widget_inputs(class_type: str, values: Any) -> dict[str, Any]:
    if isinstance(values, dict):
        return dict(values)
    names = _WIDGETS.get(class_type)
    if not names or not isinstance(values, list):
        return {}
    inputs: dict[str, Any] = {}
    queue = list(values)
    for name in names:
        if not queue:
            break
        inputs[name] = queue.pop(0)
        is_control = bool(queue) and (isinstance(queue[0], bool) or queue[0] in _SEED_CONTROLS)
        if name in ("seed", "noise_seed") and is_control:
            queue.pop(0)
    return inputs


def _workflow_links(workflow: dict[str, Any]) -> dict[Any, list[Any]]:
    """link id -> [origin node id, origin slot], for list and dict link records."""
    links: dict[Any, list[Any]] = {}
    for record in workflow.get("links") or []:
        if isinstance(record, list) and len(record) >= 3:
            links[record[0]] = [str(record[1]), record[2]]
        elif isinstance(record, dict) and "id" in record:
            links[record["id"]] = [str(record.get("origin_id")), record.get("origin_slot")]
    return links


def _workflow_to_graph(workflow: Any) -> Graph:
    """Convert the UI ``workflow`` JSON into the API graph shape the reader knows."""
    if not isinstance(workflow, dict) or not isinstance(workflow.get("nodes"), list):
        return {}
    links = _workflow_links(workflow)
    graph: Graph = {}
    for node in workflow["nodes"]:
        if not isinstance(node, dict) or "id" not in node:
            continue
        class_type = str(node.get("type", ""))
        inputs = _widget_inputs(class_type, node.get("widgets_values"))
        for slot in node.get("inputs") or []:
            # Widgets turned into inputs keep their value in widgets_values.
            if isinstance(slot, dict) and "widget" not in slot and slot.get("link") in links:
                inputs[str(slot.get("name"))] = links[slot["link"]]
        graph[str(node["id"])] = {"class_type": class_type, "inputs": inputs}
    return graph


def _from_comfyui(chunks: Mapping[str, str]) -> ImageParameters | None:
    if "prompt" not in chunks and "workflow" not in chunks:
        return None
    graph = _load_json(chunks.get("prompt", ""))
    if isinstance(graph, dict):
        found = _from_comfy_graph(graph)
        if found is not None:
            return found
    workflow = _load_json(chunks.get("workflow", ""))
    found = _from_comfy_graph(_workflow_to_graph(workflow))
    if found is not None:
        return found
    if isinstance(graph, dict) or isinstance(workflow, dict):
        raise _Unreadable("ComfyUI", "its workflow has no sampler node")
    if "prompt" in chunks and chunks["prompt"].lstrip().startswith("{"):
        raise _Unreadable("ComfyUI", "its JSON is broken")
    return None  # a plain "prompt" text chunk from some other tool


# --------------------------------------------------------------------------------------
# Reading: InvokeAI
# --------------------------------------------------------------------------------------

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
        return _to_text(value.get("model_name") or value.get("name"))
    return _to_text(value)


def _split_bracket_negative(prompt: str) -> tuple[str, str]:
    """InvokeAI 1.x/2.x put the negative prompt in square brackets: "pos [neg]"."""
    negatives = [part.strip() for part in re.findall(r"\[([^\[\]]*)\]", prompt)]
    positive = re.sub(r" ?\[[^\[\]]*\]", "", prompt)
    return positive.strip(), ", ".join(part for part in negatives if part)


def _from_invokeai3(data: dict[str, Any]) -> ImageParameters:
    p = ImageParameters(source="invokeai")
    p.prompt = _to_text(data.get("positive_prompt")) or ""
    p.negative_prompt = _to_text(data.get("negative_prompt")) or ""
    p.seed = _to_int(data.get("seed"))
    p.steps = _to_int(data.get("steps"))
    p.cfg_scale = _to_float(data.get("cfg_scale"))
    scheduler = _to_text(data.get("scheduler"))
    p.sampler = normalise_sampler(scheduler) if scheduler else None
    p.width, p.height = _to_int(data.get("width")), _to_int(data.get("height"))
    p.model = _model_name(data.get("model"))
    p.strength = _to_float(data.get("strength"))
    _put_extras(p.extras, data, _INVOKE3_OWN)
    return p


def _invokeai2_prompt(value: Any) -> str:
    if isinstance(value, str):
        return value
    if not isinstance(value, list):
        return ""
    parts = [item for item in value if isinstance(item, dict)]
    if len(parts) == 1:
        return _to_text(parts[0].get("prompt")) or ""
    # Several weighted prompts: InvokeAI 2's own "text:weight" blend syntax.
    return " ".join(f"{item.get('prompt', '')}:{item.get('weight', 1.0)}" for item in parts)


def _from_invokeai2(data: dict[str, Any]) -> ImageParameters:
    image = data.get("image")
    image = image if isinstance(image, dict) else {}
    p = ImageParameters(source="invokeai")
    p.prompt, p.negative_prompt = _split_bracket_negative(_invokeai2_prompt(image.get("prompt")))
    p.seed = _to_int(image.get("seed"))
    p.steps = _to_int(image.get("steps"))
    p.cfg_scale = _to_float(image.get("cfg_scale"))
    sampler = _to_text(image.get("sampler"))
    p.sampler = normalise_sampler(sampler) if sampler else None
    p.width, p.height = _to_int(image.get("width")), _to_int(image.get("height"))
    p.model = _to_text(data.get("model_weights"))
    p.strength = _to_float(image.get("strength"))
    _put_extras(p.extras, data, {"image", "model_weights"})
    own = {"prompt", "seed", "steps", "cfg_scale", "sampler", "width", "height", "strength"}
    _put_extras(p.extras, image, own)
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
        raise _Unreadable("InvokeAI", "its command line is broken") from error
    if not tokens:
        raise _Unreadable("InvokeAI", "its command line is empty")
    p = ImageParameters(source="invokeai")
    p.prompt, p.negative_prompt = _split_bracket_negative(tokens[0])
    for switch, value in _dream_switches(tokens[1:]):
        name = _DREAM_OPTIONS.get(switch)
        converted: Any = None
        if name in ("steps", "seed", "width", "height"):
            converted = _to_int(value)
        elif name in ("cfg_scale", "strength"):
            converted = _to_float(value)
        elif name == "sampler" and value:
            converted = normalise_sampler(value)
        if converted is None:
            p.extras[switch] = value
        else:
            setattr(p, name, converted)
    return p


def _from_invokeai(chunks: Mapping[str, str]) -> ImageParameters | None:
    for key, reader in (("invokeai_metadata", _from_invokeai3), ("sd-metadata", _from_invokeai2)):
        if key in chunks:
            data = _load_json(chunks[key])
            if isinstance(data, dict):
                return reader(data)
            if "Dream" not in chunks:
                raise _Unreadable("InvokeAI", "its JSON is broken")
    if "Dream" in chunks:
        return _from_dream(chunks["Dream"])
    return None


# --------------------------------------------------------------------------------------
# Reading: NovelAI
# --------------------------------------------------------------------------------------

_NOVELAI_OWN = frozenset(
    {"prompt", "uc", "seed", "steps", "scale", "sampler", "width", "height", "strength"}
)


def _from_novelai(chunks: Mapping[str, str]) -> ImageParameters | None:
    comment = _load_json(chunks.get("Comment", ""))
    is_novelai = chunks.get("Software", "").strip() == "NovelAI"
    if not isinstance(comment, dict):
        if is_novelai:
            raise _Unreadable("NovelAI", "its settings are missing or broken")
        return None
    if not is_novelai and not ("Description" in chunks and {"uc", "scale"} & comment.keys()):
        return None
    p = ImageParameters(source="novelai")
    p.prompt = chunks.get("Description") or _to_text(comment.get("prompt")) or ""
    p.negative_prompt = _to_text(comment.get("uc")) or ""
    p.seed = _to_int(comment.get("seed"))
    p.steps = _to_int(comment.get("steps"))
    p.cfg_scale = _to_float(comment.get("scale"))
    sampler = _to_text(comment.get("sampler"))
    p.sampler = normalise_sampler(sampler) if sampler else None
    p.width, p.height = _to_int(comment.get("width")), _to_int(comment.get("height"))
    p.strength = _to_float(comment.get("strength"))
    p.model = chunks.get("Source")
    _put_extras(p.extras, comment, _NOVELAI_OWN)
    if chunks.get("Title"):
        p.extras["Title"] = chunks["Title"]
    return p


# --------------------------------------------------------------------------------------
# Reading: EXIF (JPEG / WebP)
# --------------------------------------------------------------------------------------

_EXIF_IFD = 0x8769
_USER_COMMENT = 0x9286
_EXIF_MAKE = 0x010F
_EXIF_MODEL = 0x0110


def _utf16(payload: bytes) -> str:
    """UTF-16 of unknown byte order: a BOM, else the side where ASCII's zeros fall."""
    if payload[:2] in (b"\xfe\xff", b"\xff\xfe"):
        return payload.decode("utf-16", errors="replace")
    sample = payload[:2048]
    zeros_even = sample[0::2].count(0)
    zeros_odd = sample[1::2].count(0)
    codec = "utf-16-be" if zeros_even >= zeros_odd else "utf-16-le"
    return payload[: len(payload) // 2 * 2].decode(codec, errors="replace")


def _decode_user_comment(raw: bytes | str) -> str:
    if isinstance(raw, str):
        return raw.rstrip("\0")
    prefix, payload = raw[:8], raw[8:]
    if prefix == b"UNICODE\0":
        text = _utf16(payload)
    elif prefix == b"JIS\0\0\0\0\0":
        text = payload.decode("shift_jis", errors="replace")
    elif prefix in (b"ASCII\0\0\0", b"\0" * 8):
        text = payload.decode("utf-8", errors="replace")
    else:
        text = raw.decode("utf-8", errors="replace")
    return text.rstrip("\0")


def _exif_chunks(image: Image.Image) -> dict[str, str]:
    """EXIF text as pseudo-chunks: A1111's UserComment, ComfyUI's "prompt:" Make/Model."""
    exif = image.getexif()
    found: dict[str, str] = {}
    comment = exif.get_ifd(_EXIF_IFD).get(_USER_COMMENT) or exif.get(_USER_COMMENT)
    if isinstance(comment, (bytes, str)) and comment:
        found["UserComment"] = _decode_user_comment(comment)
    for tag in (_EXIF_MAKE, _EXIF_MODEL):
        value = exif.get(tag)
        if isinstance(value, str) and ":" in value:
            key, _, text = value.partition(":")
            if key in ("prompt", "workflow"):
                found[key] = text
    return found


def _from_exif(image: Image.Image) -> ImageParameters | None:
    try:
        chunks = _exif_chunks(image)
    except Exception:
        return None  # a broken EXIF block is the same as none
    if "prompt" in chunks or "workflow" in chunks:
        return _from_comfyui(chunks)
    return _from_loose_text(chunks.get("UserComment"))


def _from_loose_text(text: str | None) -> ImageParameters | None:
    """Text from a place any program may write (EXIF comments): accept it only when
    it really is A1111 parameters, with a settings line."""
    if not text:
        return None
    p = parse_a1111(text)
    return p if _has_settings(p) else None


# --------------------------------------------------------------------------------------
# Reading: A1111 "stealth pnginfo" (least significant bits of alpha or RGB)
# --------------------------------------------------------------------------------------

_STEALTH_SIGNATURES = {
    "A": {"stealth_pnginfo": False, "stealth_pngcomp": True},
    "RGB": {"stealth_rgbinfo": False, "stealth_rgbcomp": True},
}
_SIGNATURE_BITS = len("stealth_pnginfo") * 8
_LENGTH_BITS = 32
_MAX_STEALTH_TEXT = 4 * 1024 * 1024
# bytes.translate table: each pixel byte -> ASCII "0" or "1" of its lowest bit.
_LSB_DIGITS = bytes(48 + (value & 1) for value in range(256))


def _stealth_bits(image: Image.Image, bands: str, count: int) -> bytes:
    """The first ``count`` hidden bits, as bytes (``count`` is a multiple of 8).

    The writer walks pixels column by column; transposing a crop of just the columns
    needed turns that into Pillow's row order, so big images stay cheap.
    """
    per_pixel = len(bands)
    pixels = -(-count // per_pixel)
    columns = min(image.width, -(-pixels // image.height))
    crop = image.crop((0, 0, columns, image.height))
    crop = crop.getchannel("A") if bands == "A" else crop.convert("RGB")
    data = crop.transpose(Image.Transpose.TRANSPOSE).tobytes()
    digits = data[: pixels * per_pixel].translate(_LSB_DIGITS)[:count]
    return int(digits, 2).to_bytes(count // 8, "big") if digits else b""


def _stealth_text(image: Image.Image, bands: str) -> str | None:
    capacity = image.width * image.height * len(bands)
    if capacity < _SIGNATURE_BITS + _LENGTH_BITS:
        return None
    header = _stealth_bits(image, bands, _SIGNATURE_BITS + _LENGTH_BITS)
    signature = header[: _SIGNATURE_BITS // 8].decode("latin-1")
    compressed = _STEALTH_SIGNATURES[bands].get(signature)
    if compressed is None:
        return None
    length = int.from_bytes(header[_SIGNATURE_BITS // 8 :], "big")
    total = _SIGNATURE_BITS + _LENGTH_BITS + length
    if length == 0 or length % 8 or total > capacity:
        return None
    payload = _stealth_bits(image, bands, total)[len(header) :]
    if compressed:
        inflater = zlib.decompressobj(wbits=31)  # gzip framing
        payload = inflater.decompress(payload, _MAX_STEALTH_TEXT)
    return payload.decode("utf-8", errors="replace")


def _from_stealth(image: Image.Image) -> ImageParameters | None:
    if image.mode not in ("RGBA", "RGB") or image.width < 1 or image.height < 1:
        return None
    for bands in ("A", "RGB") if image.mode == "RGBA" else ("RGB",):
        try:
            text = _stealth_text(image, bands)
        except Exception:
            text = None  # damaged pixels or gzip data: nothing hidden here
        if text is None:
            continue
        # NovelAI hides its whole text-chunk dict as JSON the same way.
        data = _load_json(text) if text.lstrip().startswith("{") else None
        if isinstance(data, dict):
            chunks = {str(k): _stringify(v) for k, v in data.items()}
            with contextlib.suppress(_Unreadable):
                found = _from_text_chunks(chunks)
                if found is not None:
                    return found
        return parse_a1111(text)
    return None


# --------------------------------------------------------------------------------------
# Reading: putting it together
# --------------------------------------------------------------------------------------

_CHUNK_READERS: tuple[Callable[[Mapping[str, str]], ImageParameters | None], ...] = (
    _from_studio,
    _from_parameters,
    _from_comfyui,
    _from_invokeai,
    _from_novelai,
)
# Text chunks that, when present, mean the image is not a stealth-pnginfo carrier.
_KNOWN_CHUNKS = frozenset(
    {
        STUDIO_KEY,
        PARAMETERS_KEY,
        "prompt",
        "workflow",
        "invokeai_metadata",
        "sd-metadata",
        "Dream",
        "Comment",
        "Description",
        "fooocus_scheme",
    }
)


def _from_text_chunks(chunks: Mapping[str, str]) -> ImageParameters | None:
    """Try each tool's chunks in priority order; re-raise the first breakage seen."""
    failure: _Unreadable | None = None
    for reader in _CHUNK_READERS:
        try:
            found = reader(chunks)
        except _Unreadable as error:
            failure = failure or error
            continue
        if found is not None:
            return found
    if failure is not None:
        raise failure
    return None


def _extract(image: Image.Image) -> tuple[ImageParameters | None, _Unreadable | None, bool]:
    """(parameters, why recognised metadata was unreadable, pixel data decoded)."""
    chunks, decoded = _text_chunks(image)
    failure: _Unreadable | None = None
    try:
        found = _from_text_chunks(chunks)
    except _Unreadable as error:
        found, failure = None, error
    if found is None:
        found = _from_exif(image) or _from_loose_text(chunks.get("comment"))
    if found is None and decoded and not _KNOWN_CHUNKS & chunks.keys():
        found = _from_stealth(image)
    return found, failure, decoded


def read_parameters_from_image(image: Image.Image) -> ImageParameters | None:
    """Parameters of an already-open image (pasted or dropped), or None if it has none."""
    try:
        return _extract(image)[0]
    except Exception:
        return None


def _display_name(source: Any) -> str:
    """The file's name in quotes, safe to put inside a one-line sentence."""
    name = source if isinstance(source, (str, os.PathLike)) else getattr(source, "name", None)
    if not isinstance(name, (str, os.PathLike)):
        return "This file"
    text = re.sub(r"[\x00-\x1f\x7f]", "?", Path(name).name or str(name))
    return f"'{text}'"


def _open_stream(source: str | os.PathLike[str] | IO[bytes], name: str) -> IO[bytes]:
    if isinstance(source, (str, os.PathLike)):
        try:
            return open(source, "rb")  # noqa: SIM115 - closed by the caller
        except FileNotFoundError as error:
            raise MetadataError(f"{name} does not exist.") from error
        except OSError as error:
            reason = error.strerror or "access denied"
            raise MetadataError(f"{name} could not be opened ({reason.lower()}).") from error
    return source


def _is_empty(stream: IO[bytes]) -> bool:
    try:
        position = stream.tell()
        empty = not stream.read(1)
        stream.seek(position)
    except Exception:
        return False
    return empty


def _not_an_image(name: str, error: Exception) -> MetadataError:
    if isinstance(error, Image.UnidentifiedImageError):
        reason = "unknown or damaged format"
    elif isinstance(error, Image.DecompressionBombError):
        reason = "too many pixels"
    else:
        reason = "damaged data"
    return MetadataError(f"{name} is not an image file that can be read ({reason}).")


def _read_stream(stream: IO[bytes], name: str) -> ImageParameters:
    if _is_empty(stream):
        raise MetadataError(f"{name} is not an image file that can be read (empty file).")
    try:
        image = Image.open(stream)
    except Exception as error:
        raise _not_an_image(name, error) from error
    with image:
        try:
            found, failure, decoded = _extract(image)
        except Exception as error:
            raise MetadataError(f"{name} could not be read (damaged data).") from error
    if found is not None:
        return found
    if failure is not None:
        raise MetadataError(
            f"{name} carries {failure.label} metadata that the studio cannot read "
            f"({failure.detail})."
        )
    if not decoded:
        raise MetadataError(
            f"{name} is damaged and carries no generation parameters that the studio could read."
        )
    raise MetadataError(f"{name} carries no generation parameters that the studio recognises.")


def read_parameters(source: str | os.PathLike[str] | IO[bytes]) -> ImageParameters:
    """Generation parameters of an image file (path or binary file object).

    Raises :class:`MetadataError`, and nothing else, when the file cannot be opened, is
    not an image, or carries no parameters the studio recognises.
    """
    name = _display_name(source)
    stream = _open_stream(source, name)
    try:
        return _read_stream(stream, name)
    except MetadataError:
        raise
    except Exception as error:  # last line of defence: the promise is MetadataError only
        raise MetadataError(f"{name} could not be read (unexpected data).") from error
    finally:
        if stream is not source:
            stream.close()
