"""The optional speed-ups of the denoising UNet: the compile mode, fused attention, and
undoing a compilation that failed. ModelManager applies them when it places a model.

Fused projections and channels-last change how the weights are laid out, not what they
compute. Compilation wraps the UNet; when a compiled UNet fails (no compiler on this
machine, an operation the compiler cannot handle), the engine unwraps it and runs eager.
"""

from __future__ import annotations

import logging
import sys
from typing import Any

import torch

from studio.core.settings import EngineSettings

log = logging.getLogger(__name__)

# Devices torch.compile is used on: its MPS backend is still experimental.
COMPILED_DEVICES = ("cuda", "cpu")


def compile_mode(settings: EngineSettings, device: torch.device) -> str | None:
    """The torch.compile mode for these settings on this device; None: run eager.

    Not max-autotune: its kernel tuning lengthens the first generation at each size,
    which the user sits through (the bench's first_run_s shows what a mode costs).
    On the CPU (`studio bench`): 38 s to compile the embedded model, then a quarter faster.
    """
    if not settings.compile_unet or device.type not in COMPILED_DEVICES:
        return None
    return "reduce-overhead" if settings.cuda_graphs and device.type == "cuda" else "default"


def fuse_attention(unet: Any) -> None:
    """One projection for q, k and v (k and v for cross-attention). Fusing again only puts
    the fused processors back (the model's own: Flux's and SD 3's are not the UNet's):
    diffusers would build the fused weights anew each time. Models with added key/value
    projections, or with no fusing at all (Z-Image), run as they are."""
    fused = any(getattr(module, "fused_projections", False) for module in unet.modules())
    try:
        if fused:
            kept = getattr(unet, "_studio_fused_processors", None)
            if kept is None:
                from diffusers.models.attention_processor import FusedAttnProcessor2_0

                kept = FusedAttnProcessor2_0()
            unet.set_attn_processor(kept)
        elif hasattr(unet, "fuse_qkv_projections"):
            unet.fuse_qkv_projections()
            unet._studio_fused_processors = dict(unet.attn_processors)
    except ValueError as e:
        log.info("attention projections not fused: %s", e)


def is_compiler_error(error: BaseException) -> bool:
    """Whether torch.compile raised it: only then can running eager help. (Looked up in
    sys.modules: if the compiler was never imported, it raised nothing.)"""
    for module_name, class_name in (
        ("torch._dynamo.exc", "TorchDynamoException"),
        ("torch._inductor.exc", "InductorError"),
    ):
        kind = getattr(sys.modules.get(module_name), class_name, None)
        if kind is not None and isinstance(error, kind):
            return True
    return False


def replays_graphs(settings: EngineSettings, device: torch.device) -> bool:
    """Whether a compiled UNet runs as CUDA graphs, which overwrite their outputs."""
    return compile_mode(settings, device) == "reduce-overhead"


def is_compiled(unet: Any) -> bool:
    return hasattr(unet, "_orig_mod")


def eager(unet: Any) -> Any:
    """The model itself, compiled or not: what holds the weights and attention processors."""
    return getattr(unet, "_orig_mod", unet)


def uncompile(pipe: Any) -> bool:
    """Put the eager network back in place of its compiled wrapper; whether there was one."""
    from studio.engine.family_runtime import denoiser, set_denoiser

    network = denoiser(pipe)
    if not is_compiled(network):
        return False
    set_denoiser(pipe, eager(network))
    return True
