"""How the engine runs models; free of torch so the UI can build and persist it."""

from __future__ import annotations

from dataclasses import dataclass

PREVIEW_METHODS = ("linear", "vae", "none")


DEFAULT_BRANCH_MEMORY_MB = 256
MAX_BRANCH_MEMORY_MB = 16384


@dataclass(frozen=True)
class EngineSettings:
    """How the engine runs models. `None` means "let the studio decide"."""

    device: str | None = None  # "cuda", "cuda:1", "mps", "cpu"
    dtype: str | None = None  # "float16", "bfloat16", "float32"
    attention_slicing: bool | None = None
    vae_tiling: bool | None = None
    cpu_offload: bool | None = None
    # the denoiser's weights stored in float8 on CUDA (computed in 16 bits): half its memory
    fp8_weights: bool = False
    preview_method: str = "linear"  # "linear", "vae" or "none"
    preview_every: int = 1  # a preview every N steps
    # what recent jobs' steps keep for "Continue from here"; past it the oldest jobs' go
    # (their steps can still be continued from, after computing them again)
    branch_memory_mb: int = DEFAULT_BRANCH_MEMORY_MB
    # speed-ups (SPEEDUPS below), all off by default
    channels_last: bool = False
    fuse_qkv: bool = False
    compile_unet: bool = False
    cuda_graphs: bool = False


@dataclass(frozen=True)
class Speedup:
    """An optional speed-up: its EngineSettings field, how the user sees it, and the
    speed-up it works through (CUDA graphs are recorded by the compiler)."""

    field: str
    label: str
    tip: str
    needs: str | None = None

    @property
    def compiles(self) -> bool:
        """Whether it works through torch.compile, so its first image at a size compiles."""
        return "compile_unet" in (self.field, self.needs)


SPEEDUPS: tuple[Speedup, ...] = (
    Speedup(
        "channels_last",
        "Channels-last memory layout",
        "Store the UNet channels-last, the layout tensor cores prefer: faster on recent "
        "GPUs, little or no gain on the CPU.",
    ),
    Speedup(
        "fuse_qkv",
        "Fused attention projections",
        "One matrix product for attention's query, key and value instead of three: fewer, "
        "larger GPU kernels. The picture is the same; the fused weights are a second copy "
        "(about 100 MB more for SD 1.5).",
    ),
    Speedup(
        "compile_unet",
        "Compile the UNet with torch.compile",
        "Slower first generation while it compiles (half a minute to minutes, again for "
        "each new size), then faster on GPUs; on the CPU it depends on the model. Off by "
        "default.",
    ),
    Speedup(
        "cuda_graphs",
        "CUDA graphs",
        "Record each compiled step once and replay it: the least launch overhead on NVIDIA "
        "GPUs. Each new size is recorded again and keeps its own GPU memory. Needs "
        "compilation.",
        needs="compile_unet",
    ),
)


# The settings a model is loaded and placed under. The rest (previews, VAE tiling) the engine
# reads at every job, so changing them costs no reload.
PLACEMENT_FIELDS = (
    "device",
    "dtype",
    "attention_slicing",
    "cpu_offload",
    *(speedup.field for speedup in SPEEDUPS),
)


def needs_reload(old: EngineSettings, new: EngineSettings) -> bool:
    """Whether a loaded model must be loaded again to follow `new` (every engine's owner
    asks: the local worker and a cluster's engines)."""
    return any(getattr(old, name) != getattr(new, name) for name in PLACEMENT_FIELDS)
