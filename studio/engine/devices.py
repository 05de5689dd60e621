"""Device, dtype and memory policy: chosen automatically, overridable by the user."""

from __future__ import annotations

import torch

from studio.core.catalog import ModelError
from studio.core.settings import EngineSettings
from studio.core.text import printable


def pick_device(requested: str | None = None) -> torch.device:
    if requested:
        try:
            device = torch.device(requested)
        except (RuntimeError, ValueError, TypeError):
            device = None
        if device is None or device.type not in ("cpu", "cuda", "mps"):
            shown = printable(str(requested))
            raise ModelError(f"'{shown}' is not a device the studio runs on: use cpu, cuda or mps.")
        if device.type == "cuda" and not torch.cuda.is_available():
            raise ModelError(
                "CUDA was asked for, but this torch has no CUDA GPU to use: install the CUDA "
                "build of torch, or use the CPU."
            )
        return device
    if torch.cuda.is_available():
        return torch.device("cuda")
    if getattr(torch.backends, "mps", None) and torch.backends.mps.is_available():
        return torch.device("mps")
    return torch.device("cpu")


def pick_dtype(device: torch.device, requested: str | None = None) -> torch.dtype:
    if requested:
        return getattr(torch, requested)
    # Half precision halves memory and doubles speed on GPUs; CPUs are fastest and exact in fp32.
    return torch.float16 if device.type in ("cuda", "mps") else torch.float32


def total_vram_gb(device: torch.device) -> float | None:
    if device.type != "cuda":
        return None
    return torch.cuda.get_device_properties(device).total_memory / 2**30


# Above this many output pixels the VAE decodes in tiles (a 1536×1536 decode needs ~10 GB).
VAE_TILING_PIXELS = 1536 * 1536


def memory_plan(settings: EngineSettings, device: torch.device) -> dict[str, bool]:
    """Which memory savers to turn on for a model on this device."""
    vram = total_vram_gb(device)
    small_gpu = vram is not None and vram < 8
    tiny_gpu = vram is not None and vram < 5
    return {
        "attention_slicing": small_gpu
        if settings.attention_slicing is None
        else settings.attention_slicing,
        "cpu_offload": tiny_gpu if settings.cpu_offload is None else settings.cpu_offload,
    }


def wants_vae_tiling(settings: EngineSettings, width: int, height: int) -> bool:
    if settings.vae_tiling is not None:
        return settings.vae_tiling
    return width * height > VAE_TILING_PIXELS
