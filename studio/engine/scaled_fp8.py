"""ComfyUI's scaled fp8 model files, read back to the precision the studio computes in.

ComfyUI distributes many models and text encoders (`*_fp8_scaled`, `*_fp8_e4m3fn_scaled`)
with each large weight in 8 bits and a scale beside it: the weight is `stored * scale`. The
files come in two layouts:

- the old one: `<layer>.scale_weight` beside `<layer>.weight`, an activation scale
  `<layer>.scale_input`, and a marker tensor `scaled_fp8` (or `<prefix>scaled_fp8`);
- ComfyUI's quantisation format: `<layer>.weight_scale`, optionally `<layer>.input_scale`,
  and the layer's format as JSON bytes in a uint8 tensor `<layer>.comfy_quant`
  (`{"format": "float8_e4m3fn"}`), or for all layers at once in the header's metadata
  (`_quantization_metadata`: `{"layers": {"<layer>": {"format": ...}}}`).

diffusers knows neither, so every such weight is multiplied out here, one tensor at a time,
to the load dtype (and an 8-bit weight without a scale is simply widened). The activation
scales matter only to fp8 matrix products, which the studio does not run: they are dropped.
Formats that are not an 8-bit float times a scale (nvfp4's packed 4-bit values with their
swizzled block scales, mxfp8's shared exponents, the int8 ones) are refused in one sentence
(`ModelError`) rather than read into wrong pixels.
"""

from __future__ import annotations

import json
from collections.abc import Iterable
from pathlib import Path
from typing import Any

from studio.core.catalog import ModelError
from studio.core.text import printable

# a weight's scale, in the new layout and the old one
_SCALES = (".weight_scale", ".scale_weight")
# what only describes the quantisation: the activation scales, the layer's format
_DESCRIPTIONS = (".input_scale", ".scale_input", ".comfy_quant")
_MARKER = "scaled_fp8"  # the old layout's marker tensor
# the formats that are an 8-bit float times a scale (ComfyUI's names) → the torch dtype's name
_FLOAT8 = {"float8_e4m3fn": "float8_e4m3fn", "float8_e5m2": "float8_e5m2"}


def is_quantisation_key(key: str) -> bool:
    """Whether a tensor name is a scale, a format or a marker rather than a model weight."""
    return key.endswith(_SCALES + _DESCRIPTIONS) or key == _MARKER or key.endswith("." + _MARKER)


def is_scaled(keys: Iterable[str]) -> bool:
    """Whether a file's tensor names say it is one of ComfyUI's scaled (quantised) files."""
    return any(is_quantisation_key(key) for key in keys)


def check_formats(path: Path) -> None:
    """One sentence if a scaled .safetensors file holds a format the studio cannot read."""
    from safetensors import safe_open

    with safe_open(str(path), framework="pt") as handle:
        _layer_formats(path, handle, list(handle.keys()))


def unreadable_format(path: Path, prefix: str = "") -> str | None:
    """A format of the layers under `prefix` that the studio cannot read (its name), or None
    when it reads them all: to pass over a part file that could only be refused when a
    readable one is there."""
    from safetensors import safe_open

    with safe_open(str(path), framework="pt") as handle:
        keys = [k for k in handle.keys() if k.startswith(prefix)]  # noqa: SIM118 - no __iter__
        formats = _formats(handle, keys, prefix)
    return next((name for name in formats.values() if name not in _FLOAT8), None)


def read_tensors(path: Path, prefix: str = "", dtype: Any = None) -> dict[str, Any]:
    """A .safetensors file's tensors under `prefix` (names without it), each 8-bit or scaled
    weight dequantised to `dtype` (float32 when None), one tensor at a time; the other
    tensors as stored. The one place a model file's scales are applied."""
    import torch
    from safetensors import safe_open

    tensors: dict[str, Any] = {}
    with safe_open(str(path), framework="pt") as handle:
        keys = [k for k in handle.keys() if k.startswith(prefix)]  # noqa: SIM118 - no __iter__
        formats = _layer_formats(path, handle, keys, prefix)
        present = set(keys)
        for key in keys:
            if is_quantisation_key(key):
                continue
            layer = key.removesuffix(".weight") if key.endswith(".weight") else None
            scale_key = next((layer + s for s in _SCALES if layer and layer + s in present), None)
            tensor = handle.get_tensor(key)
            if scale_key is not None:
                scale = handle.get_tensor(scale_key)
                tensor = _dequantised(path, key, tensor, scale, formats.get(layer or ""), dtype)
            elif tensor.is_floating_point() and tensor.element_size() == 1:
                tensor = tensor.to(dtype or torch.float32)  # fp8 without a scale (unscaled files)
            tensors[key[len(prefix) :]] = tensor
    return tensors


def _layer_formats(path: Path, handle: Any, keys: list[str], prefix: str = "") -> dict[str, str]:
    """Layer → its format (`_formats`); one sentence for a format that is not an 8-bit float
    times a scale."""
    formats = _formats(handle, keys, prefix)
    for name in formats.values():
        if name not in _FLOAT8:
            raise ModelError(
                f"'{printable(path.name)}' is quantised in ComfyUI's '{printable(name)[:40]}' "
                "format, which the studio cannot read yet: use the model's fp8 (scaled), fp16 "
                "or GGUF file instead."
            )
    return formats


def _formats(handle: Any, keys: list[str], prefix: str) -> dict[str, str]:
    """Layer → its format, from its `comfy_quant` tensor or the header's metadata (the layers
    under `prefix`)."""
    listed = _metadata_formats((handle.metadata() or {}).get("_quantization_metadata"))
    formats = {layer: name for layer, name in listed.items() if layer.startswith(prefix)}
    for key in keys:
        if key.endswith(".comfy_quant"):
            formats[key.removesuffix(".comfy_quant")] = _config_format(handle.get_tensor(key))
    return formats


def _metadata_formats(text: str | None) -> dict[str, str]:
    """The formats `_quantization_metadata` gives its layers ({} when it gives none)."""
    try:
        layers = json.loads(text).get("layers", {}) if text else {}
    except (ValueError, AttributeError):
        return {}
    if not isinstance(layers, dict):
        return {}
    return {  # a layer's entry is {"format": ...}, or (some tools) the format's name alone
        str(layer): str(entry.get("format") if isinstance(entry, dict) else entry)
        for layer, entry in layers.items()
    }


def _config_format(config: Any) -> str:
    """The format named by a `comfy_quant` tensor (JSON as bytes)."""
    try:
        data = json.loads(config.numpy().tobytes().decode("utf-8"))
    except (ValueError, UnicodeDecodeError):
        return "unreadable"
    return str(data.get("format")) if isinstance(data, dict) else "unreadable"


def _dequantised(
    path: Path, key: str, weight: Any, scale: Any, name: str | None, dtype: Any
) -> Any:
    """`weight * scale` in float32, then `dtype`: ComfyUI's dequantisation. A float8 format
    stored in a byte container (uint8) is its float8 type first."""
    import torch

    if name in _FLOAT8 and not weight.is_floating_point() and weight.element_size() == 1:
        weight = weight.view(getattr(torch, _FLOAT8[name]))
    if not weight.is_floating_point():  # bytes with a scale and no format: not ours to guess
        raise ModelError(
            f"'{printable(path.name)}' holds '{printable(key)[:80]}' in a quantised format it "
            "does not name, which the studio cannot read: use the model's fp8, fp16 or GGUF file."
        )
    expanded = _expanded_scale(scale.float(), tuple(weight.shape))
    if expanded is None:
        raise ModelError(
            f"'{printable(path.name)}' has a scale of shape {tuple(scale.shape)} for "
            f"'{printable(key)[:80]}' of shape {tuple(weight.shape)}, which the studio cannot "
            "apply (damaged, or a format it does not know)."
        )
    return (weight.float() * expanded).to(dtype or torch.float32)


def _expanded_scale(scale: Any, shape: tuple[int, ...]) -> Any | None:
    """The scale shaped to multiply a weight of `shape`, or None if it cannot. A scalar; a
    scale of the weight's rank, as torch broadcasting (ComfyUI multiplies so: per row as
    (rows, 1)) and in blocks too (`_blocks`); a 1-D one as long as the weight's rows, per
    row. Any other shape is ambiguous (a (rows,) scale aligned to the right would be read as
    columns, or column blocks) and refused rather than guessed."""
    if scale.numel() == 1:
        return scale.reshape(())
    if scale.ndim == 1 and len(shape) > 1 and scale.shape[0] == shape[0]:
        return scale.reshape((shape[0],) + (1,) * (len(shape) - 1))  # per output row
    if scale.ndim != len(shape):
        return None
    return _blocks(scale, shape)


def _blocks(scale: Any, shape: tuple[int, ...]) -> Any | None:
    """A scale of the weight's rank widened to its shape: a dimension of 1 broadcasts, a
    shorter one (not 1) covers the weight's in equal blocks (blockwise scales, (rows / b,
    columns / b)), the last one cut at the weight's edge; None when the blocks do not fit."""
    for dim, (size, full) in enumerate(zip(scale.shape, shape, strict=True)):
        if size > full:
            return None
        if 1 < size < full:
            block = -(-full // size)
            if (size - 1) * block >= full:  # blocks that would leave a scale unused
                return None
            scale = scale.repeat_interleave(block, dim=dim).narrow(dim, 0, full)
    return scale
