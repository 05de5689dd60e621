"""How the engine runs models; free of torch so the UI can build and persist it."""

from __future__ import annotations

from dataclasses import dataclass

PREVIEW_METHODS = ("linear", "vae", "none")


@dataclass(frozen=True)
class EngineSettings:
    """How the engine runs models. `None` means "let the studio decide"."""

    device: str | None = None  # "cuda", "cuda:1", "mps", "cpu"
    dtype: str | None = None  # "float16", "bfloat16", "float32"
    attention_slicing: bool | None = None
    vae_tiling: bool | None = None
    cpu_offload: bool | None = None
    preview_method: str = "linear"  # "linear", "vae" or "none"
    preview_every: int = 1  # a preview every N steps
    channels_last: bool = False
    compile_unet: bool = False
