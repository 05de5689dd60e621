"""Model families: what differs between SD 1.x, SDXL, SD 3, Flux, Qwen-Image and the rest.

Each family is one module of this package declaring a `Family` (or a few variants): its
pipelines for each mode, its denoiser, how its prediction gives the denoised estimate,
its latent layout, its guidance, its native size and defaults, the samplers it can run,
its latent→RGB preview projection, and how to recognise it from a folder's configs or a
single file's tensor names. Torch-free, so the window can ask without loading anything;
the engine turns the declarations into behaviour (`studio.engine.family_runtime`).

Adding a family is one module here (listed in `_MODULES`) and its tiny test fixture.
"""

from __future__ import annotations

import importlib
import logging
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from functools import cache
from pathlib import Path
from typing import Any

from studio.core.files import is_regular_file, read_json_object

log = logging.getLogger(__name__)

Coefficients = tuple[tuple[tuple[float, ...], ...], tuple[float, ...]]
# component name → its config.json ("" → model_index.json, the pipeline's own config)
ConfigReader = Callable[[str], Mapping[str, Any]]


@dataclass(frozen=True)
class Guidance:
    """How a family is guided, and which of the studio's guidance controls apply.

    kind: "cfg" — classifier-free guidance in one batched call ([uncond, cond]);
    "true_cfg" — CFG as two calls a step (cond, then uncond), only with a negative prompt;
    "cfg_list" — CFG in one call on a list of latents (Z-Image), no CFG rescale;
    "distilled" — a guidance strength the model takes as an input (one call, no negative
    prompt); "none" — the model is not guided (timestep-distilled models).
    """

    kind: str = "cfg"
    default_scale: float = 7.0

    @property
    def negative_prompt(self) -> bool:
        return self.kind in ("cfg", "true_cfg", "cfg_list")

    @property
    def scale(self) -> bool:
        """Whether a guidance scale does anything."""
        return self.kind != "none"

    @property
    def cfg_rescale(self) -> bool:
        """CFG rescale needs both halves of one call's prediction."""
        return self.kind == "cfg"

    @property
    def thresholding(self) -> bool:
        """Dynamic thresholding works on the denoised estimate: every family has one."""
        return True


@dataclass(frozen=True)
class Family:
    name: str  # "sdxl", written into metadata and cards
    label: str  # "SDXL", shown to the artist
    pipelines: Mapping[str, str]  # mode ("txt2img", "img2img", "inpaint", "edit") → class
    denoiser: str = "unet"  # the pipeline's attribute holding the denoising network
    # "epsilon", "v_prediction" (from the scheduler's config when it says) or "flow"
    # (rectified flow: the network predicts the velocity noise − x0, and x0 = x_t − σ·v)
    prediction: str = "epsilon"
    latent_channels: int = 4
    # A flow network's timestep argument per unit of σ: SD 3 passes t = 1000·σ, Flux σ.
    timestep_per_sigma: float = 1000.0
    native_size: int = 512
    default_steps: int = 25
    default_sampler: str = "Euler a"
    samplers: tuple[str, ...] = ()  # () = every sampler of the SD families
    guidance: Guidance = field(default_factory=Guidance)
    preview: Coefficients | None = None  # projection of scaled latents to RGB in [-1, 1]
    # The published projection fits the family's own VAE only: a model of the family's
    # architecture with another VAE (studio-tiny, test models) gets a fitted one instead.
    preview_vae_blocks: tuple[int, ...] = (128, 256, 512, 512)
    # "plain" (B, C, h, w), "packed" (Flux's 2×2 patches as tokens) or "flux2" (patched,
    # batch-normalised tokens; the pipeline's own latent output is already the VAE's)
    layout: str = "plain"
    # Recognising it: model_index.json's pipeline class names, a test on the component
    # configs when several families share a class, and for single files the tensor-name
    # prefixes that only this family's checkpoints have.
    index_classes: tuple[str, ...] = ()
    config_test: Callable[[ConfigReader], bool] | None = None
    checkpoint_prefixes: tuple[str, ...] = ()
    checkpoint_class: str = ""  # the class whose from_single_file loads such a file
    # where variants share the prefixes (Flux.1 dev and schnell; Qwen-Image and its Edit
    # models, whose files hold the same tensors): a test on all the names and the file's stem
    checkpoint_test: Callable[[list[str], str], bool] | None = None
    # Edit mode: how many reference images the edit pipeline takes besides the input
    edit_references: int = 0
    # ControlNets: the model classes (config.json's _class_name) the family's ControlNet
    # pipelines run, and diffusers' ControlNet pipeline of each mode, derived from the loaded
    # pipeline with from_pipe; "union" ControlNet classes run by the union variant of those
    controlnet_models: tuple[str, ...] = ()
    controlnet_pipelines: Mapping[str, str] = field(default_factory=dict)
    controlnet_unions: tuple[str, ...] = ()

    @property
    def modes(self) -> tuple[str, ...]:
        return tuple(self.pipelines)

    @property
    def size_step(self) -> int:
        """The pixels a picture's sides come in: the VAE's 8, times the 2×2 patches each
        token of a transformer family covers (SD 3, Flux, Qwen-Image, Z-Image: 16)."""
        return 16 if self.denoiser == "transformer" else 8

    def offers(self, mode: str) -> bool:
        """Whether a job of this mode ("txt2img", "edit", …) can run on the family's models;
        an upscale runs the upscaler, a model of its own, whatever the family."""
        return mode == "upscale" or mode in self.pipelines

    def controlnet_refusal(self, mode: str | None = None) -> str:
        """Why the family's models run no ControlNet (in `mode`, when given: "img2img", …),
        in a sentence; "" where they do. The window's ControlNet section and the engine
        both say it."""
        from studio.core.request import Mode

        if not self.controlnet_pipelines:
            return f"The studio runs no ControlNets on {self.label} models: generate without them."
        if mode is not None and mode not in self.controlnet_pipelines:
            return (
                f"{self.label} models have no ControlNet pipeline for {Mode(mode).label}: "
                "generate without ControlNets, or in another mode."
            )
        return ""

    def preview_fits(self, vae_config: Mapping[str, Any]) -> bool:
        blocks = tuple(vae_config.get("block_out_channels") or ())
        channels = vae_config.get("latent_channels")
        return (
            self.preview is not None
            and blocks == self.preview_vae_blocks
            and channels in (None, len(self.preview[0]))
        )

    @property
    def is_flow(self) -> bool:
        return self.prediction == "flow"

    def defaults(self) -> dict[str, Any]:
        """The request fields this family wants when nothing more specific is known."""
        return {
            "steps": self.default_steps,
            "cfg_scale": self.guidance.default_scale,
            "scheduler": self.default_sampler,
            "width": self.native_size,
            "height": self.native_size,
        }


# Detection order matters where classes are shared: variants with a config test first.
_MODULES = ("sd1", "sd2", "sdxl", "sd3", "chroma", "flux", "flux2", "qwen_image", "z_image")


@cache
def all_families() -> tuple[Family, ...]:
    found: list[Family] = []
    for name in _MODULES:
        module = importlib.import_module(f"{__name__}.{name}")
        found.extend(module.FAMILIES)
    return tuple(found)


def by_name(name: str | None) -> Family | None:
    for family in all_families():
        if family.name == name:
            return family
    return None


def of_index(index: Mapping[str, Any], read_config: ConfigReader) -> Family | None:
    """The family of a diffusers folder, from model_index.json and its component configs."""
    class_name = index.get("_class_name")
    candidates = [
        f for f in all_families() if class_name in (*f.index_classes, *f.pipelines.values())
    ]

    def read(component: str) -> Mapping[str, Any]:
        return index if component == "" else read_config(component)

    for family in candidates:
        if family.config_test is None or family.config_test(read):
            return family
    return None


def of_folder(folder: Path) -> Family | None:
    def read(component: str) -> Mapping[str, Any]:
        try:
            return read_json_object(folder / component / "config.json", 1024 * 1024)
        except (OSError, ValueError):
            return {}

    try:
        index = read_json_object(folder / "model_index.json", 1024 * 1024)
    except (OSError, ValueError):
        return None
    return of_index(index, read)


def of_checkpoint(keys: list[str], name: str = "") -> Family | None:
    """The family of a single-file checkpoint, from its tensor names and, where a family's
    files hold the same tensors as another's, its name (the file's stem)."""
    for family in all_families():
        if (
            family.checkpoint_prefixes
            and any(key.startswith(prefix) for key in keys for prefix in family.checkpoint_prefixes)
            and (family.checkpoint_test is None or family.checkpoint_test(keys, name))
        ):
            return family
    return None


# A line of `<model file>.companion` that names the file's family ("family: qwen-image-edit"),
# for a file whose tensors and name cannot tell it from a family whose files look the same.
SIDECAR_FAMILY = re.compile(r"^family\s*:\s*(\S+)\s*$", re.IGNORECASE)
_SIDECAR_BYTES = 16384


def of_checkpoint_file(path: Path, keys: list[str]) -> Family | None:
    """The family of a single-file checkpoint: from its tensors and name, unless its
    `<file>.companion` names a family whose files look the same (the same tensor prefixes)."""
    found = of_checkpoint(keys, path.stem)
    name = _sidecar_family(path)
    named = by_name(name)
    if name is not None and named is None:  # a typo: the loader refuses it (unknown_...)
        log.warning("%s.companion names the family %r, which no family is", path.name, name)
    if (
        found is not None
        and named is not None
        and named.checkpoint_prefixes == found.checkpoint_prefixes
    ):
        return named
    return found


def unknown_sidecar_family(path: Path) -> str | None:
    """The family a `family:` line of `<file>.companion` names when no family has that name
    (a typo, which choosing the family ignores), else None."""
    name = _sidecar_family(path)
    return name if name is not None and by_name(name) is None else None


def look_alikes(family: Family) -> list[str]:
    """The names of the families whose files look like `family`'s (the same tensor
    prefixes): those a `family:` line can choose among for its files."""
    prefixes = family.checkpoint_prefixes
    return [f.name for f in all_families() if prefixes and f.checkpoint_prefixes == prefixes]


def _sidecar_family(path: Path) -> str | None:
    sidecar = path.with_name(path.name + ".companion")
    if not is_regular_file(sidecar):
        return None
    try:
        with open(sidecar, "rb") as handle:
            text = handle.read(_SIDECAR_BYTES).decode("utf-8", errors="replace")
    except OSError:
        return None
    for line in text.splitlines():
        match = SIDECAR_FAMILY.match(line.strip())
        if match:
            return match.group(1).lower()
    return None


def is_sd2(read_config: ConfigReader) -> bool:
    """SD 2.x's UNet (OpenCLIP's 1024-wide text, linear attention projections) on the
    pipelines SD 1.x shares."""
    unet = read_config("unet")
    return unet.get("cross_attention_dim") == 1024 or bool(unet.get("use_linear_projection"))
