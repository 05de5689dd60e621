"""What a model family's declaration (`studio.core.families`) means for the tensors: which
network denoises, how packed latents unpack, how latents become pixels.

Where diffusers already knows a layout (Flux's 2×2 packing), its pipeline's own helper
does the work; what is generic (a VAE's scaling, shift or per-channel statistics) is read
from the VAE's config, so a new family with a known layout needs no code here.
"""

from __future__ import annotations

import weakref
from typing import Any

import torch

from studio.core import families
from studio.core.families import Family, Guidance

_CALL_PARAMETERS: dict[type, Any] = {}


def call_parameters(pipe: Any) -> Any:
    """The parameters a pipeline's call takes (a pipeline or its class), read once per class
    (inspecting the signature costs tens of microseconds, asked several times a job)."""
    cls = pipe if isinstance(pipe, type) else type(pipe)
    found = _CALL_PARAMETERS.get(cls)
    if found is None:
        import inspect

        found = _CALL_PARAMETERS[cls] = inspect.signature(cls.__call__).parameters
    return found


def family_of(pipe: Any) -> Family:
    """The family of a loaded pipeline (kept on it; derived pipelines share the base's)."""
    known = getattr(pipe, "_studio_kind", None)
    if known is not None:
        return known

    def read(component: str) -> dict[str, Any]:
        module = pipe if component == "" else getattr(pipe, component, None)
        config = getattr(module, "config", None)
        return dict(config) if config is not None else {}

    index = {**dict(getattr(pipe, "config", {}) or {}), "_class_name": type(pipe).__name__}
    found = families.of_index(index, read) or _unknown(pipe)
    pipe._studio_kind = found
    return found


def _unknown(pipe: Any) -> Family:
    """A pipeline of no declared family: what can be read off it, guided as SD is."""
    flow = type(getattr(pipe, "scheduler", None)).__name__.startswith("FlowMatch")
    denoiser = "unet" if getattr(pipe, "unet", None) is not None else "transformer"
    vae = getattr(pipe, "vae", None)
    channels = getattr(getattr(vae, "config", None), "latent_channels", 4)
    return Family(
        name="unknown",
        label=type(pipe).__name__.removesuffix("Pipeline"),
        pipelines={"txt2img": type(pipe).__name__},
        denoiser=denoiser,
        prediction="flow" if flow else "epsilon",
        latent_channels=channels or 4,
        guidance=Guidance("cfg", 7.0),
    )


def denoiser(pipe: Any) -> torch.nn.Module:
    return getattr(pipe, family_of(pipe).denoiser)


def set_denoiser(pipe: Any, module: Any) -> None:
    setattr(pipe, family_of(pipe).denoiser, module)


def unpack(pipe: Any, latents: torch.Tensor, width: int, height: int) -> torch.Tensor:
    """The network's latents as a (B, C, h, w) grid, whatever layout the pipeline keeps
    (still in the network's normalisation)."""
    layout = family_of(pipe).layout
    if layout == "packed" and latents.dim() == 3:
        latents = type(pipe)._unpack_latents(latents, height, width, pipe.vae_scale_factor)
    elif layout == "flux2" and latents.dim() == 3:
        # patched tokens in row-major order over a grid of 2×2 latent pixels
        rows = 2 * (int(height) // (pipe.vae_scale_factor * 2)) // 2
        columns = 2 * (int(width) // (pipe.vae_scale_factor * 2)) // 2
        batch, _, channels = latents.shape
        latents = latents.transpose(1, 2).reshape(batch, channels, rows, columns)
    if latents.dim() == 5:  # a video VAE's (B, C, frames, h, w), one frame
        latents = latents[:, :, 0]
    return latents


def token_grid(pipe: Any, width: int, height: int) -> tuple[int, int, int] | None:
    """How a packing family's latents (B, tokens, C·p²) lie on the latent grid: (rows,
    columns, p), token r·columns + c holding the p×p latent pixels at (r, c), channel-major
    (index channel·p² + dy·p + dx, as `unpack` reads them); None for a grid layout. The
    linear preview projects the tokens as they are, sparing the unpacking copies a step."""
    layout = family_of(pipe).layout
    if layout not in ("packed", "flux2"):
        return None
    side = pipe.vae_scale_factor * 2  # a token covers 2×2 latent pixels of the VAE's
    # Flux.2's tokens are its VAE's 2×2 patches, already channels of one grid pixel
    return int(height) // side, int(width) // side, 2 if layout == "packed" else 1


_DTYPES: weakref.WeakKeyDictionary[Any, tuple[Any, torch.dtype]] = weakref.WeakKeyDictionary()


def dtype_of(module: Any) -> torch.dtype:
    """`module.dtype`, which diffusers finds by walking every submodule for casting hooks
    (0.3-0.8 ms for a VAE, every time: a few a decode, one a step with VAE previews); kept
    until the module's first parameter changes dtype (`.to()`, layerwise casting)."""
    first = next(module.parameters(), None)
    key = first.dtype if first is not None else None
    kept = _DTYPES.get(module)
    if kept is None or kept[0] != key:
        kept = (key, module.dtype)
        _DTYPES[module] = kept
    return kept[1]


def to_vae(vae: Any, latents: torch.Tensor, layout: str = "plain") -> torch.Tensor:
    """Network latents (a grid) as the VAE decodes them: its scaling and shift, per-channel
    statistics, or Flux.2's batch norm and 2×2 patches; with a frame axis for video VAEs."""
    config = vae.config
    latents = latents.to(dtype_of(vae))
    if layout == "flux2":
        mean, std = _batch_norm(vae, latents)
        return _unpatchify(latents * std + mean)
    mean, std = _statistics(vae, latents)
    if mean is not None:
        latents = latents * std + mean
    else:
        latents = latents / config.scaling_factor + (config.get("shift_factor") or 0.0)
    return latents.unsqueeze(2) if _is_video_vae(vae) else latents


def from_vae(vae: Any, latents: torch.Tensor, layout: str = "plain") -> torch.Tensor:
    """The inverse of `to_vae`: what an encoding looks like to the network."""
    if latents.dim() == 5:
        latents = latents[:, :, 0]
    if layout == "flux2":
        patched = _patchify(latents)
        mean, std = _batch_norm(vae, patched)
        return (patched - mean) / std
    mean, std = _statistics(vae, latents)
    if mean is not None:
        return (latents - mean) / std
    config = vae.config
    return (latents - (config.get("shift_factor") or 0.0)) * config.scaling_factor


def vae_decode(vae: Any, latents: torch.Tensor, layout: str = "plain") -> torch.Tensor:
    """Pixels in [-1, 1], (B, 3, H, W), from a grid of network latents."""
    return _decoded(vae, to_vae(vae, latents, layout))


def decode_output(pipe: Any, latents: torch.Tensor, width: int, height: int) -> torch.Tensor:
    """Pixels of what the pipeline returns for output_type="latent": its network latents,
    or for Flux.2 latents it has already brought to the VAE's space."""
    layout = family_of(pipe).layout
    if layout == "flux2" and latents.dim() == 4:
        return _decoded(pipe.vae, latents.to(dtype_of(pipe.vae)))
    return vae_decode(pipe.vae, unpack(pipe, latents, width, height), layout)


def _decoded(vae: Any, latents: torch.Tensor) -> torch.Tensor:
    image = vae.decode(latents, return_dict=False)[0]
    return image[:, :, 0] if image.dim() == 5 else image


def _statistics(vae: Any, like: torch.Tensor) -> tuple[Any, Any]:
    mean, std = vae.config.get("latents_mean"), vae.config.get("latents_std")
    if mean is None or std is None:
        return None, None
    shape = (1, len(mean), 1, 1)
    return (
        torch.tensor(mean, device=like.device, dtype=like.dtype).view(shape),
        torch.tensor(std, device=like.device, dtype=like.dtype).view(shape),
    )


def _batch_norm(vae: Any, like: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    mean = vae.bn.running_mean.view(1, -1, 1, 1).to(like.device, like.dtype)
    var = vae.bn.running_var.view(1, -1, 1, 1).to(like.device, like.dtype)
    return mean, torch.sqrt(var + vae.config.batch_norm_eps)


def _patchify(latents: torch.Tensor) -> torch.Tensor:
    batch, channels, height, width = latents.shape
    latents = latents.view(batch, channels, height // 2, 2, width // 2, 2)
    return latents.permute(0, 1, 3, 5, 2, 4).reshape(batch, channels * 4, height // 2, width // 2)


def _unpatchify(latents: torch.Tensor) -> torch.Tensor:
    batch, channels, height, width = latents.shape
    latents = latents.reshape(batch, channels // 4, 2, 2, height, width)
    return latents.permute(0, 1, 4, 2, 5, 3).reshape(batch, channels // 4, height * 2, width * 2)


def _is_video_vae(vae: Any) -> bool:
    return "z_dim" in vae.config  # the Wan-style VAEs of Qwen-Image decode frames
