"""How much GPU memory each model family needs, and where the studio places a model.

One table, one rule. The table: each family's networks with their published parameter
counts, so the memory of its weights at 16 bits follows (two bytes a parameter; one for a
denoiser stored in fp8), plus a rough working allowance for a step's activations and the
VAE's decode at the family's native size. The rule (`choose`), by the GPU memory free
when a model is placed:

- everything on the GPU, when the whole model fits with a margin: the fastest;
- model CPU offload (diffusers' `enable_model_cpu_offload`), when the largest network fits
  but not all of them: each network moves to the GPU while it runs (text encoders, then
  the denoiser, then the VAE), a little slower;
- group offloading (`enable_group_offload`, leaf level, on a CUDA stream), when not even
  the denoiser fits: its layers stream in as they run, the least memory, slowest.

fp8 weights (`enable_layerwise_casting`: the denoiser stored in float8, computed in 16
bits) is a setting, off by default, that halves the denoiser's memory at a small cost in
fidelity. The families trained in bfloat16 run in bfloat16, not float16, whose narrower
range overflows their activations (black or NaN images).

Torch-free, so the window can show the table without loading anything.
"""

from __future__ import annotations

import shutil
import subprocess
from dataclasses import dataclass

GIB = 2**30
# Headroom over the estimate: the allocator's fragmentation, the CUDA context, the display.
MARGIN = 0.10

PLACEMENTS = ("gpu", "model_offload", "group_offload")
PLACEMENT_LABELS = {
    "gpu": "All on the GPU",
    "model_offload": "Model offload",
    "group_offload": "Group offload",
}

# Families whose published weights are bfloat16 and whose activations overflow float16.
BF16_FAMILIES = frozenset(
    {
        "sd3",
        "flux-dev",
        "flux-schnell",
        "flux-kontext",
        "flux2-klein",
        "flux2-klein-base",
        "qwen-image",
        "qwen-image-edit",
        "qwen-image-edit-plus",
        "z-image",
        "chroma",
    }
)


@dataclass(frozen=True)
class FamilyMemory:
    """A family's networks as (name, billions of parameters), the denoiser first, and the
    working memory (GiB) of a generation at its native size beyond the weights."""

    family: str  # the family's name in studio.core.families
    label: str
    networks: tuple[tuple[str, float], ...]
    working_gib: float
    native_size: int

    @property
    def dtype(self) -> str:
        return "bfloat16" if self.family in BF16_FAMILIES else "float16"

    def weights_gib(self, fp8: bool = False) -> float:
        return sum(self.network_gib(fp8).values())

    def network_gib(self, fp8: bool = False) -> dict[str, float]:
        """Each network's weights in GiB: two bytes a parameter, one for an fp8 denoiser."""
        return {
            name: billions * 1e9 * (1 if fp8 and index == 0 else 2) / GIB
            for index, (name, billions) in enumerate(self.networks)
        }

    def all_on_gpu_gib(self, fp8: bool = False) -> float:
        """GPU memory with everything on the GPU, at the native size."""
        return self.weights_gib(fp8) + self.working_gib

    def largest_network_gib(self, fp8: bool = False) -> float:
        """GPU memory under model offload: the largest network at once, and the work."""
        return max(self.network_gib(fp8).values()) + self.working_gib


# Published parameter counts in billions (model cards and the tensors of the published
# safetensors files; the text encoders as the pipelines load them, encoders only):
# CLIP-L 0.123, OpenCLIP-H text 0.354, OpenCLIP-bigG text 0.695, T5-XXL encoder 4.762,
# Qwen3-4B 4.02, Qwen2.5-VL-7B 8.29; the SD/SDXL/Flux VAEs 0.084, Qwen-Image's 0.127.
# Working memory (GiB) is a rough allowance, not a measurement: a step's activations
# (CFG doubles the batch) and the VAE's decode at the native size, where the decode of a
# megapixel image dominates.
_CLIP_L = ("CLIP-L", 0.123)
_T5 = ("T5-XXL", 4.762)
_VAE = ("VAE", 0.084)
_QWEN3_4B = ("Qwen3-4B", 4.02)
_MEMORY = (
    FamilyMemory("sd1", "SD 1.x", (("UNet", 0.860), _CLIP_L, _VAE), 1.0, 512),
    FamilyMemory("sd2", "SD 2.x", (("UNet", 0.866), ("OpenCLIP-H", 0.354), _VAE), 1.5, 768),
    FamilyMemory(
        "sdxl", "SDXL", (("UNet", 2.567), _CLIP_L, ("OpenCLIP-bigG", 0.695), _VAE), 3.0, 1024
    ),
    # SD 3.5 Large (Medium: a 2.5B MMDiT with the same encoders)
    FamilyMemory(
        "sd3",
        "SD 3.5 Large",
        (("MMDiT", 8.1), _CLIP_L, ("OpenCLIP-bigG", 0.695), _T5, _VAE),
        2.5,
        1024,
    ),
    FamilyMemory("flux-dev", "Flux.1 dev", (("Transformer", 11.90), _CLIP_L, _T5, _VAE), 3.0, 1024),
    FamilyMemory(
        "flux-schnell", "Flux.1 schnell", (("Transformer", 11.90), _CLIP_L, _T5, _VAE), 3.0, 1024
    ),
    FamilyMemory(
        "flux-kontext", "Flux.1 Kontext", (("Transformer", 11.90), _CLIP_L, _T5, _VAE), 4.0, 1024
    ),
    FamilyMemory(
        "flux2-klein",
        "Flux.2 Klein 4B",
        (("Transformer", 3.9), _QWEN3_4B, ("VAE", 0.084)),
        3.0,
        1024,
    ),
    FamilyMemory(
        "flux2-klein-base",
        "Flux.2 Klein 4B base",
        (("Transformer", 3.9), _QWEN3_4B, ("VAE", 0.084)),
        3.0,
        1024,
    ),
    FamilyMemory(
        "qwen-image",
        "Qwen-Image",
        (("MMDiT", 20.43), ("Qwen2.5-VL-7B", 8.29), ("VAE", 0.127)),
        4.5,
        1328,
    ),
    FamilyMemory(
        "qwen-image-edit",
        "Qwen-Image-Edit",
        (("MMDiT", 20.43), ("Qwen2.5-VL-7B", 8.29), ("VAE", 0.127)),
        5.5,
        1328,
    ),
    FamilyMemory(
        "qwen-image-edit-plus",
        "Qwen-Image-Edit 2509",
        (("MMDiT", 20.43), ("Qwen2.5-VL-7B", 8.29), ("VAE", 0.127)),
        6.0,
        1328,
    ),
    FamilyMemory("z-image", "Z-Image", (("S3-DiT", 6.15), _QWEN3_4B, _VAE), 2.5, 1024),
    FamilyMemory("chroma", "Chroma", (("Transformer", 8.9), _T5, _VAE), 3.0, 1024),
)
FAMILY_MEMORY: dict[str, FamilyMemory] = {memory.family: memory for memory in _MEMORY}


@dataclass(frozen=True)
class Policy:
    """Where a family's model goes on a GPU with `free_gib` free, and why."""

    family: str
    placement: str  # one of PLACEMENTS
    dtype: str  # "float16" or "bfloat16"
    fp8: bool
    needed_gib: float  # with everything on the GPU
    free_gib: float

    @property
    def label(self) -> str:
        return PLACEMENT_LABELS[self.placement] + (", fp8" if self.fp8 else "")


def memory_of(family: str) -> FamilyMemory | None:
    return FAMILY_MEMORY.get(family)


def choose(family: str, free_gib: float, fp8: bool = False) -> Policy | None:
    """The placement of `family` on a GPU with `free_gib` free (None for a family of no
    known size: it goes on the GPU, as it always did)."""
    memory = FAMILY_MEMORY.get(family)
    if memory is None:
        return None
    needed = memory.all_on_gpu_gib(fp8)
    if free_gib >= needed * (1 + MARGIN):
        placement = "gpu"
    elif free_gib >= memory.largest_network_gib(fp8) * (1 + MARGIN):
        placement = "model_offload"
    else:
        placement = "group_offload"
    return Policy(family, placement, memory.dtype, fp8, needed, free_gib)


def thresholds(family: str, fp8: bool = False) -> tuple[float, float]:
    """The free GiB from which `family` goes all on the GPU, and from which model offload
    suffices (below it: group offloading)."""
    memory = FAMILY_MEMORY[family]
    return (
        memory.all_on_gpu_gib(fp8) * (1 + MARGIN),
        memory.largest_network_gib(fp8) * (1 + MARGIN),
    )


def dtype_for(family: str) -> str | None:
    """The 16-bit type a family runs in on a GPU: bfloat16 where it needs it."""
    return "bfloat16" if family in BF16_FAMILIES else None


def table(free_gib: float | None, fp8: bool = False) -> list[tuple[str, float, str, str]]:
    """Rows for the Settings dialog: (family, GiB at native size with everything on the
    GPU, dtype, the placement it would get with `free_gib` free, or "" without a GPU)."""
    rows = []
    for name, memory in FAMILY_MEMORY.items():
        policy = choose(name, free_gib, fp8) if free_gib is not None else None
        rows.append(
            (
                memory.label,
                memory.all_on_gpu_gib(fp8),
                memory.dtype,
                policy.label if policy else "",
            )
        )
    return rows


@dataclass(frozen=True)
class Gpu:
    name: str
    total_gib: float
    free_gib: float


def detect_gpu() -> Gpu | None:
    """This machine's first NVIDIA GPU, asked of nvidia-smi (the window never loads torch);
    None without one, or when the driver does not answer within a second."""
    program = shutil.which("nvidia-smi")
    if program is None:
        return None
    try:
        done = subprocess.run(
            [
                program,
                "--query-gpu=name,memory.total,memory.free",
                "--format=csv,noheader,nounits",
            ],
            capture_output=True,
            text=True,
            timeout=1.0,
            check=True,
        )
        name, total, free = (part.strip() for part in done.stdout.splitlines()[0].split(","))
        return Gpu(name, float(total) / 1024, float(free) / 1024)  # MiB → GiB
    except (OSError, subprocess.SubprocessError, ValueError, IndexError):
        return None
