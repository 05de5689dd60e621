"""Single-file models loaded with no network: checkpoints as model sites share them.

A `.safetensors` (or safe pickled `.ckpt`) checkpoint of SD 1.x, SD 2.x or SDXL holds every
weight of its pipeline but none of its configuration. diffusers fetches that configuration
from the hub; the studio ships it instead (`studio/resources/single_file_configs/<variant>`,
the published configs' values, JSON only) and builds the CLIP tokenizers from the BPE
vocabulary shipped beside them (OpenCLIP's `bpe_simple_vocab_16e6.txt.gz`, MIT), once, into
the studio's cache folder. The shipped configuration is used when the file's tensor shapes
are the published model's; a file of other shapes takes its configuration from a companion.

SD 3.x, Flux.1, Chroma, Qwen-Image (and Qwen-Image-Edit) and Z-Image files (and every `.gguf`
file) are used for their denoiser (transformer) only: their VAE, text encoders and tokenizers
(T5's and Qwen's cannot be shipped) come from a *companion*, a diffusers folder of the same family,
or, for files of the published shapes, from *separate parts*, found in this order:

1. the file `<model file>.companion` beside it, one entry a line (absolute, or relative to
   the model file's folder): a diffusers folder or a hub id already in the local Hugging
   Face cache (the companion); or part files and a folder holding T5's tokenizer;
2. a diffusers folder of the same family beside the model file;
3. separate parts as ComfyUI and Forge keep them: the VAE (`ae.safetensors`; Qwen-Image's
   `qwen_image_vae`), CLIP-L, CLIP-G and T5-XXL (`clip_l`, `clip_g`, `t5xxl_fp16`/`fp8`), Qwen
   (`qwen_2.5_vl_7b`, `qwen_3_4b`; text encoders as `.gguf` too) in the model file itself,
   named in `<file>.companion`, beside the file, or in the `vae` and `clip` /
   `text_encoders` (Forge: `VAE`, `text_encoder`) folders of the tool folder the file lies
   in or of the studio's models folder; each told by its tensor shapes against the shipped
   config (then its name, and full precision before fp8) and loaded with diffusers'
   single-file loaders. T5's tokenizer (a SentencePiece model no pip dependency of the
   studio carries, so it is not shipped; nor Qwen's) comes from ComfyUI's own copy
   (`comfy/text_encoders/t5_tokenizer`, `qwen25_tokenizer`) or Forge's, a folder of that
   name beside the parts, a folder named in `<file>.companion`, or the hub cache;
4. the family's own hub repository (e.g. black-forest-labs/FLUX.1-dev) in the local cache.

Qwen-Image-Edit's files hold Qwen-Image's tensors: their name tells them (`edit`; with an
edition from 2509 on, or `plus`, the Plus pipeline; ComfyUI marks 2511's), or a line
`family: qwen-image-edit-plus` in `<file>.companion` (`families.of_checkpoint_file`). They take
Qwen-Image's parts, but their text encoder must hold Qwen2.5-VL's vision tower (ComfyUI's
qwen_2.5_vl_7b files do, GGUF ones do not), and their processor is the tokenizer found with the
shipped image processor config (`qwen_vl`).

ComfyUI's scaled fp8 files (either layout; whole checkpoints, transformers and parts) are
read through `scaled_fp8`, which multiplies each weight by its scale to the load dtype as it
reads it: diffusers' loaders, which know neither layout, get those tensors.

Nothing here downloads (`local_files_only=True` everywhere), runs code from a model file
(safetensors, GGUF, or pickles that load with weights_only=True) or lets a library's
traceback reach the artist: each problem is one sentence (`ModelError`).
"""

from __future__ import annotations

import gzip
import hashlib
import json
import logging
import os
import re
import shutil
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from studio.core import families
from studio.core.catalog import ModelError
from studio.core.families.qwen_image import conditions_at_time_zero
from studio.core.files import is_regular_file
from studio.core.model_files import check_model_folder, safetensors_header
from studio.core.paths import cache_dir
from studio.core.text import printable
from studio.engine import qwen_vl, scaled_fp8

log = logging.getLogger(__name__)

CONFIGS_DIR = Path(__file__).resolve().parents[1] / "resources" / "single_file_configs"
CLIP_VOCAB = CONFIGS_DIR / "clip" / "bpe_simple_vocab_16e6.txt.gz"
_BUILD_VERSION = "1"  # bump when the assembled config folders change

UNET = "model.diffusion_model."
UNET_IN = UNET + "input_blocks.0.0.weight"  # its input channels: 4, 9 (inpainting), 8 (edit)
SDXL_CLIP_L = "conditioner.embedders.0.transformer.text_model."


@dataclass(frozen=True)
class Variant:
    """A published model whose configuration the studio ships."""

    name: str  # the folder under single_file_configs
    # original tensor name (prefix of a denoiser-only file removed) → its published shape
    signature: dict[str, tuple[int, ...]]
    # pipeline component → the prefixes of its tensors in a full checkpoint
    components: dict[str, tuple[str, ...]] = field(default_factory=dict)


_SD_VAE = ("first_stage_model.",)
VARIANTS: dict[str, Variant] = {
    v.name: v
    for v in (
        Variant(
            "sd1",
            {
                UNET + "input_blocks.0.0.weight": (320, 4, 3, 3),
                UNET + "input_blocks.1.1.proj_in.weight": (320, 320, 1, 1),
                "cond_stage_model.transformer.text_model.embeddings.token_embedding.weight": (
                    49408,
                    768,
                ),
                "first_stage_model.encoder.conv_in.weight": (128, 3, 3, 3),
            },
            {
                "unet": (UNET,),
                "vae": _SD_VAE,
                "text_encoder": ("cond_stage_model.transformer.",),
            },
        ),
        *(
            Variant(
                name,
                {
                    UNET + "input_blocks.0.0.weight": (320, 4, 3, 3),
                    UNET + "input_blocks.1.1.proj_in.weight": (320, 320),
                    "cond_stage_model.model.token_embedding.weight": (49408, 1024),
                    "first_stage_model.encoder.conv_in.weight": (128, 3, 3, 3),
                },
                {"unet": (UNET,), "vae": _SD_VAE, "text_encoder": ("cond_stage_model.model.",)},
            )
            for name in ("sd2-v", "sd2-base")
        ),
        Variant(
            "sdxl",
            {
                UNET + "input_blocks.0.0.weight": (320, 4, 3, 3),
                UNET + "label_emb.0.0.weight": (1280, 2816),
                SDXL_CLIP_L + "embeddings.token_embedding.weight": (49408, 768),
                "conditioner.embedders.1.model.token_embedding.weight": (49408, 1280),
                "first_stage_model.encoder.conv_in.weight": (128, 3, 3, 3),
            },
            {
                "unet": (UNET,),
                "vae": _SD_VAE,
                "text_encoder": ("conditioner.embedders.0.transformer.",),
                "text_encoder_2": ("conditioner.embedders.1.model.",),
            },
        ),
        Variant(
            "sd3.5-large",
            {"x_embedder.proj.weight": (2432, 16, 2, 2), "pos_embed": (1, 36864, 2432)},
        ),
        Variant(
            "sd3.5-medium",
            {"x_embedder.proj.weight": (1536, 16, 2, 2), "pos_embed": (1, 147456, 1536)},
        ),
        Variant(  # SD 3 medium: SD 3.5 medium's width, a quarter of its position table
            "sd3-medium",
            {"x_embedder.proj.weight": (1536, 16, 2, 2), "pos_embed": (1, 36864, 1536)},
        ),
        *(
            Variant(
                name,
                {
                    "img_in.weight": (3072, 64),
                    "txt_in.weight": (3072, 4096),
                    "vector_in.in_layer.weight": (3072, 768),
                    "double_blocks.18.img_attn.qkv.weight": (9216, 3072),
                    "single_blocks.37.linear1.weight": (21504, 3072),
                },
            )
            for name in ("flux-dev", "flux-schnell")
        ),
        Variant(  # Chroma1-HD (and the unlocked v4x files): Flux.1's width, T5's context
            "chroma",
            {
                "img_in.weight": (3072, 64),
                "txt_in.weight": (3072, 4096),
                "distilled_guidance_layer.in_proj.weight": (5120, 64),
            },
        ),
        Variant(  # Qwen-Image (and 2512): published in diffusers' names
            "qwen-image",
            {"img_in.weight": (3072, 64), "txt_in.weight": (3072, 3584)},
        ),
        Variant(  # Z-Image-Turbo (and Z-Image): Tongyi's names, or diffusers'
            "z-image",
            {
                "x_embedder.weight": (3840, 64),
                "all_x_embedder.2-1.weight": (3840, 64),
                "cap_embedder.1.weight": (3840, 2560),
            },
        ),
    )
}

# Families whose single files are complete pipelines the studio can build from shipped configs.
_FULL_FAMILIES = ("sd1", "sd2", "sdxl")
# The denoiser's class and the prefix full checkpoints put before its tensors.
_DENOISERS = {
    "sd3": "SD3Transformer2DModel",
    "flux-dev": "FluxTransformer2DModel",
    "flux-schnell": "FluxTransformer2DModel",
    "chroma": "ChromaTransformer2DModel",
    "qwen-image": "QwenImageTransformer2DModel",
    "z-image": "ZImageTransformer2DModel",
}
# Families whose files are another's, tensor for tensor (told apart by name): that family,
# whose entries in the tables here (variants, denoiser, parts, tokenizer) they use.
_SHARED_VARIANTS = {"qwen-image-edit": "qwen-image", "qwen-image-edit-plus": "qwen-image"}


def files_family(family: Any) -> str:
    """The family whose single files a family's are, by name: the one to look it up by in
    the tables of file layouts (its own, or the family it shares files with)."""
    return _SHARED_VARIANTS.get(family.name, family.name)


# Where a family's companion may already be, in the local Hugging Face cache.
HUB_COMPANIONS: dict[str, tuple[str, ...]] = {
    "sd1": ("stable-diffusion-v1-5/stable-diffusion-v1-5", "runwayml/stable-diffusion-v1-5"),
    "sd2": ("stabilityai/stable-diffusion-2-1", "stabilityai/stable-diffusion-2-1-base"),
    "sdxl": ("stabilityai/stable-diffusion-xl-base-1.0",),
    "sd3": (
        "stabilityai/stable-diffusion-3.5-large",
        "stabilityai/stable-diffusion-3.5-medium",
        "stabilityai/stable-diffusion-3.5-large-turbo",
        "stabilityai/stable-diffusion-3-medium-diffusers",
    ),
    "flux-dev": ("black-forest-labs/FLUX.1-dev", "black-forest-labs/FLUX.1-schnell"),
    "flux-schnell": ("black-forest-labs/FLUX.1-schnell", "black-forest-labs/FLUX.1-dev"),
    "chroma": ("lodestones/Chroma1-HD", "lodestones/Chroma"),
    "qwen-image": ("Qwen/Qwen-Image",),
    "qwen-image-edit": ("Qwen/Qwen-Image-Edit",),
    "qwen-image-edit-plus": ("Qwen/Qwen-Image-Edit-2511", "Qwen/Qwen-Image-Edit-2509"),
    "z-image": ("Tongyi-MAI/Z-Image-Turbo",),
}
MAX_SIBLINGS = 500  # entries of the model file's folder looked at for a companion


# -- what a file holds ----------------------------------------------------------------------


@dataclass
class FileInfo:
    path: Path
    keys: list[str]
    shapes: dict[str, tuple[int, ...]]  # empty for pickles (not opened twice)
    family: families.Family | None
    variant: Variant | None  # the published model it would be, from its family and tensors
    matches: bool  # its tensor shapes are the variant's (its shipped configs fit)

    @property
    def is_gguf(self) -> bool:
        return self.path.suffix.lower() == ".gguf"

    @property
    def is_scaled(self) -> bool:
        """One of ComfyUI's scaled fp8 .safetensors files (weights × scales, see scaled_fp8)."""
        return self.path.suffix.lower() == ".safetensors" and scaled_fp8.is_scaled(self.keys)

    def has(self, prefixes: tuple[str, ...]) -> bool:
        return any(k.startswith(p) for k in self.keys for p in prefixes)

    @property
    def unet_inputs(self) -> int:
        """The UNet's input channels (4 when unknown: a pickle's shapes are not read)."""
        shape = self.shapes.get(UNET_IN, (0, 4))
        return int(shape[1]) if len(shape) > 1 else 4


def safetensors_shapes(path: Path) -> dict[str, tuple[int, ...]]:
    """Tensor name → shape, from a .safetensors header alone (no weights are read; the
    header checked as `model_files.safetensors_header` checks it)."""
    return {
        name: tuple(int(d) for d in entry.get("shape", ()))
        for name, entry in safetensors_header(path).items()
        if name != "__metadata__"
    }


def gguf_module() -> Any:
    try:
        import gguf
    except ImportError:
        raise ModelError(
            "GGUF models need the gguf package: install it with `pip install gguf` "
            "(or `pip install latent-studio[gguf]`)."
        ) from None
    return gguf


def gguf_shapes(path: Path) -> dict[str, tuple[int, ...]]:
    """Tensor name → logical shape (torch order) of a GGUF file; its weights stay on disk."""
    reader = _gguf_reader(path)
    return {t.name: tuple(int(d) for d in reversed(list(t.shape))) for t in reader.tensors}


def inspect(path: Path) -> FileInfo:
    """Read what a model file holds (names and shapes; pickles: names), or one sentence."""
    from studio.engine.models import check_checkpoint_is_safe

    name = printable(path.name)
    suffix = path.suffix.lower()
    try:
        if suffix == ".safetensors":
            shapes = safetensors_shapes(path)
        elif suffix == ".gguf":
            shapes = gguf_shapes(path)
        else:
            shapes = {}
    except ModelError:
        raise
    except Exception:  # noqa: BLE001 - a damaged header, whatever the library says
        kind = "GGUF" if suffix == ".gguf" else ".safetensors"
        raise ModelError(
            f"'{name}' is not a readable {kind} file (damaged or incompletely downloaded)."
        ) from None
    if suffix in (".safetensors", ".gguf"):
        keys = list(shapes)
    else:  # a pickle: refused unless it loads with weights_only=True
        keys = check_checkpoint_is_safe(path)
        shapes = _pickle_shapes(path)
    family = families.of_checkpoint_file(path, keys)
    variant = _variant(path, family, keys, shapes)
    fit = _unprefixed(shapes, family)
    if UNET_IN in fit:  # an inpainting UNet is its model's but for its input channels
        fit = {**fit, UNET_IN: (fit[UNET_IN][0], 4, *fit[UNET_IN][2:])}
    matches = variant is not None and _fits(variant, fit)
    return FileInfo(path, keys, shapes, family, variant, matches)


def _check_family_line(path: Path, family: Any) -> None:
    """One sentence for a `family:` line in `<file>.companion` that names no family (a typo):
    the file would load as the family its tensors and name say, not the one meant."""
    name = families.unknown_sidecar_family(path)
    if name is not None:
        valid = sorted(families.look_alikes(family)) or [family.name]
        raise ModelError(
            f"'{printable(path.name)}.companion' names the family '{printable(name)[:40]}', "
            f"which the studio does not know: for this file write one of {', '.join(valid)}."
        )


def _pickle_shapes(path: Path) -> dict[str, tuple[int, ...]]:
    """Tensor name → shape of a pickled checkpoint already found safe, its weights left on
    disk (meta tensors); {} when the file's format does not allow that."""
    import torch

    try:
        data = torch.load(path, map_location="meta", weights_only=True, mmap=True)
    except Exception:  # noqa: BLE001 - an old (non-zip) pickle: shapes unknown
        return {}
    if isinstance(data, dict) and isinstance(data.get("state_dict"), dict):
        data = data["state_dict"]
    if not isinstance(data, dict):
        return {}
    return {
        k: tuple(v.shape) for k, v in data.items() if isinstance(k, str) and hasattr(v, "shape")
    }


def _unprefixed(shapes: dict[str, tuple[int, ...]], family: Any) -> dict[str, tuple[int, ...]]:
    """A transformer file's tensor names without the prefix full checkpoints put first."""
    if family is None or family.name in _FULL_FAMILIES:
        return shapes
    return {k.removeprefix(UNET): v for k, v in shapes.items()}


def _fits(variant: Variant, shapes: dict[str, tuple[int, ...]]) -> bool:
    if not shapes:  # a pickle: not opened twice to find out; the published model is likely
        return True
    present = [k for k in variant.signature if k in shapes]
    return bool(present) and all(shapes[k] == variant.signature[k] for k in present)


def _variant(path: Path, family: Any, keys: list[str], shapes: dict) -> Variant | None:
    if family is None:
        return None
    if family.name == "sd2":
        inpainting = shapes.get(UNET_IN, (0, 4))[1:2] == (9,)  # SD 2's inpainting: epsilon
        return VARIANTS["sd2-v" if not inpainting and sd2_predicts_v(path) else "sd2-base"]
    if family.name == "sd3":
        unprefixed = _unprefixed(shapes, family)
        fitting = [v for n, v in VARIANTS.items() if n.startswith("sd3") and _fits(v, unprefixed)]
        if fitting:
            return fitting[0]
        width = unprefixed.get("x_embedder.proj.weight", (0,))[0]
        return {2432: VARIANTS["sd3.5-large"], 1536: VARIANTS["sd3.5-medium"]}.get(width)
    if family.name in ("flux-dev", "flux-schnell"):
        guided = any(k.removeprefix(UNET).startswith("guidance_in.") for k in keys)
        return VARIANTS["flux-dev" if guided else "flux-schnell"]
    return VARIANTS.get(files_family(family))


def sd2_predicts_v(path: Path) -> bool:
    """Whether an SD 2.x checkpoint predicts v, which its tensors cannot tell. As A1111: a
    sibling `<name>.yaml` says (`parameterization: "v"`; without it, epsilon); with none, a
    name that says 512 or base is the 512 px epsilon model, and any other the 768 px v one
    (SD 2.0/2.1 and most of their fine-tunes)."""
    yaml = path.with_suffix(".yaml")
    if is_regular_file(yaml):
        try:
            text = yaml.read_text(encoding="utf-8", errors="replace")[:100_000]
        except OSError:
            text = ""
        return bool(re.search(r"parameterization:\s*[\"']?v[\"']?\s*$", text, re.MULTILINE))
    return not re.search(r"512|base", path.stem, re.IGNORECASE)


# -- companions -----------------------------------------------------------------------------


def companion_hint(path: Path, family: Any) -> str:
    repos = HUB_COMPANIONS.get(family.name, ())
    cached = f"have '{repos[0]}' in the local Hugging Face cache, " if repos else ""
    return (
        f"put a diffusers folder of {family.label} beside it, {cached}or write the folder or "
        f"hub id into '{printable(path.name)}.companion'"
    )


def find_companion(path: Path, family: Any, hub: bool = True) -> Path | None:
    """The diffusers folder whose missing parts (configs, VAE, text encoders, tokenizers) a
    single file uses: named in `<file>.companion`, beside the file, or (`hub`) in the local
    cache. None when `<file>.companion` names separate part files instead of a folder."""
    sidecar = read_sidecar(path)
    if sidecar is not None and (sidecar.folder is not None or sidecar.named):
        return sidecar.folder
    siblings: list[Path] = []
    try:
        with os.scandir(path.parent) as scan:
            for _, entry in zip(range(MAX_SIBLINGS), scan, strict=False):
                if entry.is_dir() and is_regular_file(Path(entry.path) / "model_index.json"):
                    siblings.append(Path(entry.path))
    except OSError:
        pass
    same_class = []
    for folder in sorted(siblings):
        found = families.of_folder(folder)
        if found is not None and found.name == family.name:
            return folder
        if found is not None and pipeline_name(found) == pipeline_name(family):
            same_class.append(folder)
    if same_class:
        return same_class[0]
    return cached_companion(family) if hub else None


def pipeline_name(family: Any) -> str:
    """The pipeline class a family's single files are loaded as: its text→image one, or its
    edit one where it has no other (Qwen-Image-Edit)."""
    return str(family.pipelines.get("txt2img") or family.pipelines.get("edit"))


def cached_companion(family: Any) -> Path | None:
    for repo in HUB_COMPANIONS.get(family.name, ()):
        folder = _cached_repo(repo)
        if folder is not None:
            return folder
    return None


@dataclass
class Sidecar:
    """What `<model file>.companion` names, one a line: a diffusers folder or hub id (the
    companion), part files (a VAE, text encoders), a folder holding T5's tokenizer (and the
    file's family, read by `families.of_checkpoint_file`)."""

    path: Path
    folder: Path | None = None
    files: list[Path] = field(default_factory=list)
    tokenizers: list[Path] = field(default_factory=list)

    @property
    def named(self) -> bool:
        return bool(self.files or self.tokenizers)


def read_sidecar(path: Path) -> Sidecar | None:
    sidecar = path.with_name(path.name + ".companion")
    if not is_regular_file(sidecar):
        return None
    try:
        lines = sidecar.read_text(encoding="utf-8", errors="replace")[:16384].splitlines()
    except OSError:
        lines = []
    found = Sidecar(sidecar)
    for line in (line.strip() for line in lines):
        if not line or line.startswith("#") or families.SIDECAR_FAMILY.match(line):
            continue  # a family line is the family's (families.of_checkpoint_file)
        named = path.parent / Path(line).expanduser()
        if (named / "model_index.json").is_file():
            found.folder = found.folder or named
        elif is_regular_file(named) and named.suffix.lower() in PART_SUFFIXES:
            found.files.append(named)
        elif is_tokenizer_folder(named):
            found.tokenizers.append(named)
        elif re.match(r"^[\w.-]+/[\w.-]+$", line) and _cached_repo(line) is not None:
            found.folder = found.folder or _cached_repo(line)
        else:
            raise ModelError(
                f"'{printable(sidecar.name)}' names '{printable(line)}', which is neither a "
                "diffusers folder, a .safetensors file, a tokenizer folder nor a hub model in "
                "the local cache."
            )
    if not (found.folder or found.named):
        raise ModelError(f"'{printable(sidecar.name)}' names nothing: write a folder into it.")
    return found


def _cached_repo(repo: str) -> Path | None:
    try:
        from huggingface_hub import try_to_load_from_cache

        index = try_to_load_from_cache(repo, "model_index.json")
    except Exception:  # noqa: BLE001 - no cache, no companion
        return None
    return Path(index).parent if isinstance(index, str) else None


# -- separate parts: ComfyUI's and Forge's VAE and text encoder files ----------------------

# The parts a transformer-only file of each family needs, as model sites and ComfyUI keep them
# (one file each): pipeline component → role. Their configs are shipped with the variant.
FAMILY_PARTS: dict[str, dict[str, str]] = {
    "flux-dev": {"vae": "vae", "text_encoder": "clip_l", "text_encoder_2": "t5xxl"},
    "flux-schnell": {"vae": "vae", "text_encoder": "clip_l", "text_encoder_2": "t5xxl"},
    "sd3": {
        "vae": "vae",
        "text_encoder": "clip_l",
        "text_encoder_2": "clip_g",
        "text_encoder_3": "t5xxl",
    },
    "chroma": {"vae": "vae", "text_encoder": "t5xxl"},
    "qwen-image": {"vae": "qwen_vae", "text_encoder": "qwen25vl"},
    "z-image": {"vae": "vae", "text_encoder": "qwen3"},
}
# The tokenizer the studio cannot ship (no pip dependency of the studio carries T5's
# SentencePiece model or Qwen's BPE vocabulary): its pipeline slot and kind; found as ComfyUI
# and Forge keep it, or named.
FAMILY_TOKENIZER = {
    "flux-dev": ("tokenizer_2", "t5"),
    "flux-schnell": ("tokenizer_2", "t5"),
    "sd3": ("tokenizer_3", "t5"),
    "chroma": ("tokenizer", "t5"),
    "qwen-image": ("tokenizer", "qwen"),
    "z-image": ("tokenizer", "qwen"),
}
ROLE_KIND = {
    "vae": "vae",
    "qwen_vae": "qwen_vae",
    "clip_l": "clip",
    "clip_g": "clip",
    "t5xxl": "t5",
    "qwen25vl": "qwen",
    "qwen3": "qwen",
}
ROLE_LABEL = {
    "vae": "VAE (ae.safetensors)",
    "qwen_vae": "VAE (qwen_image_vae.safetensors)",
    "clip_l": "CLIP-L text encoder (clip_l.safetensors)",
    "clip_g": "CLIP-G text encoder (clip_g.safetensors)",
    "t5xxl": "T5-XXL text encoder (t5xxl_fp16.safetensors, or a .gguf)",
    "qwen25vl": "Qwen2.5-VL text encoder (qwen_2.5_vl_7b.safetensors, or a .gguf)",
    "qwen3": "Qwen3-4B text encoder (qwen_3_4b.safetensors, or a .gguf)",
}
# Where a full checkpoint keeps each part (Stability's, ComfyUI's saves); "" a file of its own.
PART_PREFIXES = (
    "",
    "first_stage_model.",
    "vae.",
    "text_encoders.clip_l.transformer.",
    "text_encoders.clip_g.transformer.",
    "text_encoders.t5xxl.transformer.",
)
PART_SUFFIXES = (".safetensors", ".sft", ".gguf")
MAX_PART_FILES = 200  # part files whose headers are read, in all
# The tokenizers as ComfyUI (inside its code) and Forge keep them, relative to the tool's folder.
TOOL_TOKENIZERS = {
    "t5": (
        "comfy/text_encoders/t5_tokenizer",
        "comfy/t5_tokenizer",
        "backend/huggingface/black-forest-labs/FLUX.1-dev/tokenizer_2",
    ),
    "qwen": (
        "comfy/text_encoders/qwen25_tokenizer",
        "backend/huggingface/Qwen/Qwen-Image/tokenizer",
    ),
}
# A folder of that name beside the model file or its parts.
TOKENIZER_FOLDERS = {"t5": ("t5_tokenizer",), "qwen": ("qwen25_tokenizer", "qwen_tokenizer")}
TOKENIZER_HUB_REPOS = {
    "t5": ("google/t5-v1_1-xxl",),
    "qwen": ("Qwen/Qwen2.5-VL-7B-Instruct", "Qwen/Qwen3-4B"),
}


@dataclass(frozen=True)
class PartFile:
    """One part inside a file: its kind ("vae", "qwen_vae", "clip", "t5", "qwen") and the shape
    that tells which model it is (a VAE's decoder input, a text encoder's token embedding)."""

    path: Path
    prefix: str  # where its tensors' names start ("" for a file of its own)
    kind: str
    shape: tuple[int, ...]
    fp8: bool  # 8 bits or fewer (fp8, or a quantised GGUF): full precision is preferred
    rank: int  # 0: the model file itself, 1: named in .companion, 2: found
    readable: bool = True  # False: quantised in a format the studio refuses (nvfp4, mxfp8)

    @property
    def is_gguf(self) -> bool:
        return self.path.suffix.lower() == ".gguf"


# A part's kind → (the names of the tensor whose shape tells the model, a tensor it must have).
_PART_KINDS: dict[str, tuple[tuple[str, ...], tuple[str, ...]]] = {
    "vae": (("decoder.conv_in.weight",), ()),
    "qwen_vae": (("decoder.conv1.weight", "decoder.conv_in.weight"), ()),  # Wan's, diffusers'
    "clip": (
        ("text_model.embeddings.token_embedding.weight", "embeddings.token_embedding.weight"),
        (),
    ),
    "t5": (
        ("shared.weight", "encoder.embed_tokens.weight"),
        ("encoder.block.0.layer.0.SelfAttention.q.weight",),
    ),
    "qwen": (  # ComfyUI's and transformers 4's names, transformers 5's, a bare Qwen3Model's
        (
            "model.embed_tokens.weight",
            "model.language_model.embed_tokens.weight",
            "embed_tokens.weight",
        ),
        (
            "model.layers.0.self_attn.q_proj.weight",
            "model.language_model.layers.0.self_attn.q_proj.weight",
            "layers.0.self_attn.q_proj.weight",
        ),
    ),
}
# GGUF text encoders (llama.cpp's names): the architecture written in the file → the kind.
_GGUF_KINDS = {"t5": "t5", "t5encoder": "t5", "qwen2": "qwen", "qwen2vl": "qwen", "qwen3": "qwen"}


def identify_parts(path: Path, rank: int) -> list[PartFile]:
    """The parts a .safetensors (or GGUF) file holds, from its header alone ([] if none or
    unreadable; a GGUF named in `<file>.companion` that cannot be read is one sentence)."""
    if path.suffix.lower() == ".gguf":
        return _identify_gguf_part(path, rank)
    try:
        header = safetensors_header(path)
    except Exception:  # noqa: BLE001 - not a part file the studio can read: not a candidate
        return []
    found = []
    for prefix in PART_PREFIXES:
        for kind, (names, required) in _PART_KINDS.items():
            key = next((prefix + n for n in names if prefix + n in header), None)
            if key is None or not isinstance(header[key], dict):
                continue
            if required and not any(prefix + r in header for r in required):
                continue
            shape = tuple(int(d) for d in header[key].get("shape", ()))
            if (kind == "vae" and len(shape) != 4) or (kind == "qwen_vae" and len(shape) != 5):
                continue  # a 2D VAE's decoder input is 4-dimensional, a Wan-style one's 5
            fp8 = any(  # any weight of the part in 8 bits (scaled fp8 files keep some at 16)
                str(entry.get("dtype", "")).startswith("F8")
                or scaled_fp8.is_quantisation_key(name)  # scaled: 8 bits or fewer
                for name, entry in header.items()
                if name.startswith(prefix) and isinstance(entry, dict)
            )
            readable = not fp8 or _readable_format(path, prefix)
            found.append(PartFile(path, prefix, kind, shape, fp8, rank, readable))
    return found


def _readable_format(path: Path, prefix: str) -> bool:
    """Whether a quantised part's layers are in formats scaled_fp8 reads (what it cannot read
    it refuses when the part is loaded, so such a part is chosen only when nothing else is)."""
    try:
        return scaled_fp8.unreadable_format(path, prefix) is None
    except Exception:  # noqa: BLE001 - unreadable here: reading it later says why
        return False


def _identify_gguf_part(path: Path, rank: int) -> list[PartFile]:
    """A GGUF text encoder (T5's encoder, Qwen2/2.5-VL's or Qwen3's language model, as
    llama.cpp writes them): its kind from the architecture, its shape from `token_embd`."""
    try:
        reader = _gguf_reader(path)
        field = reader.fields.get("general.architecture")
        arch = bytes(field.parts[field.data[0]]).decode("utf-8") if field else ""
        embedding = next((t for t in reader.tensors if t.name == "token_embd.weight"), None)
        quantised = any(t.tensor_type.name not in ("F32", "F16", "BF16") for t in reader.tensors)
    except ModelError:
        if rank < 2:  # named by the artist: say what is wrong with it
            raise
        return []
    except Exception:  # noqa: BLE001 - damaged: as unreadable
        if rank < 2:
            raise _damaged_gguf(path) from None
        return []
    kind = _GGUF_KINDS.get(arch)
    if kind is None or embedding is None:
        return []  # a transformer GGUF, or another model's
    shape = tuple(int(d) for d in reversed(list(embedding.shape)))
    return [PartFile(path, "", kind, shape, quantised, rank)]


def _gguf_reader(path: Path) -> Any:
    gguf = gguf_module()
    if not is_regular_file(path):
        raise ValueError("not a regular file")
    return gguf.GGUFReader(str(path))


def _damaged_gguf(path: Path) -> ModelError:
    return ModelError(
        f"'{printable(path.name)}' is not a readable GGUF file (damaged or incompletely "
        "downloaded): download it again."
    )


def _expected_shape(config: dict[str, Any], kind: str) -> tuple[int, ...]:
    if kind == "vae":
        return (config["block_out_channels"][-1], config["latent_channels"], 3, 3)
    if kind == "qwen_vae":
        return (config["base_dim"] * config["dim_mult"][-1], config["z_dim"], 3, 3, 3)
    if kind == "clip":
        return (config["vocab_size"], config["hidden_size"])
    if kind == "qwen":  # Qwen2.5-VL's language model is its text_config (transformers 5)
        text = config.get("text_config") or config
        return (text["vocab_size"], text["hidden_size"])
    return (config["vocab_size"], config["d_model"])


def _name_hint(path: Path, family: Any) -> int:
    """How much a file's name says it is this family's part (ComfyUI's names): 1 for ae or
    flux for Flux's VAE (Chroma's and Z-Image's too), sd3 for SD 3; -1 for a name of the
    other (its VAE has the same shapes but not the same weights: such a file found is passed
    over); else 0."""
    stem = path.stem.lower()
    flux = stem == "ae" or "flux" in stem
    sd3 = "sd3" in stem or "sd35" in stem
    if family.name != "sd3":
        return 1 if flux else -1 if sd3 else 0
    return 1 if sd3 else -1 if flux else 0


def part_folders(path: Path) -> list[Path]:
    """The folders separate parts may be in: beside the model file, then the VAE and text
    encoder folders of the tool folder it lies in (ComfyUI's models/unet/x.safetensors beside
    models/vae and models/clip) and of the studio's models folder."""
    from studio.core import models_folder

    roots = [parent for parent in list(path.parents)[:4] if _has_part_folders(parent)]
    chosen = models_folder.models_dir()
    if chosen is not None:
        roots.append(chosen)
    folders = [path.parent]
    for root in roots:
        for kind in ("vae", "text_encoders"):
            folders += models_folder.kind_folders(root, kind)
    return list(dict.fromkeys(folders))


def _has_part_folders(folder: Path) -> bool:
    from studio.core import models_folder

    return any(models_folder.kind_folders(folder, k) for k in ("vae", "text_encoders"))


def _part_candidates(info: FileInfo, sidecar: Sidecar | None) -> list[PartFile]:
    # the model file's own parts (a checkpoint's VAE); a GGUF model file holds none, and
    # reading its header again would be all it did
    own = info.path.suffix.lower() in PART_SUFFIXES and not info.is_gguf
    candidates = identify_parts(info.path, 0) if own else []
    files = list(sidecar.files) if sidecar is not None else []
    named = set(files)
    for folder in part_folders(info.path):
        files += _part_files_in(folder, depth=1)
    for file in list(dict.fromkeys(files))[:MAX_PART_FILES]:
        if file != info.path:
            candidates += identify_parts(file, 1 if file in named else 2)
    return candidates


def _part_files_in(folder: Path, depth: int) -> list[Path]:
    """Part files in a folder and (ComfyUI users sort them) its subfolders, bounded."""
    found: list[Path] = []
    try:
        entries = sorted(os.scandir(folder), key=lambda e: e.name)[:MAX_SIBLINGS]
    except OSError:
        return found
    for entry in entries:
        path = Path(entry.path)
        if entry.name.lower().endswith(PART_SUFFIXES) and is_regular_file(path):
            found.append(path)
        elif depth > 0 and entry.is_dir(follow_symlinks=False):
            found += _part_files_in(path, depth - 1)
    return found


def choose_parts(
    info: FileInfo, folder: Path, sidecar: Sidecar | None
) -> tuple[dict[str, PartFile], list[str]]:
    """Each part the family needs (component → file), and the roles of those not found. A
    part is the file's own if it holds one; then one named in `<file>.companion`; then the
    best found, by the shipped config's shapes, the name, and full precision before fp8. A
    part in a format the studio cannot read (nvfp4, mxfp8) comes last whatever its rank."""
    family = info.family
    assert family is not None
    candidates = _part_candidates(info, sidecar)
    chosen: dict[str, PartFile] = {}
    missing = []
    for component, role in FAMILY_PARTS[files_family(family)].items():
        config = json.loads((folder / component / "config.json").read_text(encoding="utf-8"))
        kind = ROLE_KIND[role]
        expected = _expected_shape(config, kind)
        fitting = [  # not a file whose name says it is the other family's (same shapes)
            c
            for c in candidates
            if c.kind == kind
            and c.shape == expected
            and (c.rank < 2 or _name_hint(c.path, family) >= 0)
        ]
        fitting.sort(
            key=lambda c: (
                not c.readable,  # whatever its rank: it could only be refused
                c.rank,
                sees_images(family) and not has_vision(c),
                -_name_hint(c.path, family),
                c.fp8,
                c.path.name.lower(),
            )
        )
        if fitting:
            chosen[component] = fitting[0]
        else:
            missing.append(role)
    return chosen, missing


# Families whose text encoder sees the input image too, through Qwen2.5-VL's vision tower (the
# edit pipelines' processor puts the image before the instruction): their part must hold it.
SEEING_FAMILIES = ("qwen-image-edit", "qwen-image-edit-plus")


def sees_images(family: Any) -> bool:
    """Whether a family's text encoder sees the input image (its pipeline takes a processor,
    and its text encoder part must hold the vision tower): the one rule for both."""
    return family.name in SEEING_FAMILIES


def has_vision(part: PartFile) -> bool:
    """Whether a Qwen2.5-VL part holds its vision tower (`visual.`): ComfyUI's
    qwen_2.5_vl_7b files do; llama.cpp's GGUF text encoders hold the language model alone
    (the vision tower is a separate mmproj file, which the studio does not read)."""
    if part.kind != "qwen" or part.is_gguf:
        return False
    try:
        header = safetensors_header(part.path)
    except Exception:  # noqa: BLE001 - read once already; unreadable now is none
        return False
    prefixes = (part.prefix + "visual.", part.prefix + "model.visual.")
    return any(key.startswith(prefixes) for key in header)


def vision_hint(path: Path, part: PartFile, family: Any) -> str:
    """One sentence: the text encoder found lacks the vision tower the family needs."""
    return (
        f"'{printable(part.path.name)}' holds Qwen2.5-VL's language model without its vision "
        f"tower, which {family.label} needs to see the input image: use ComfyUI's "
        "qwen_2.5_vl_7b.safetensors (or qwen_2.5_vl_7b_fp8_scaled.safetensors), which holds "
        f"both, or name it in '{printable(path.name)}.companion'."
    )


def is_tokenizer_folder(folder: Path) -> bool:
    return tokenizer_kind(folder) is not None


def tokenizer_kind(folder: Path) -> str | None:
    """What tokenizer a folder holds, from its files: "t5" (SentencePiece), "qwen"
    (byte-level BPE), "clip", or None."""
    config: dict[str, Any] = {}
    if is_regular_file(folder / "tokenizer_config.json"):
        try:
            config = json.loads((folder / "tokenizer_config.json").read_text(encoding="utf-8"))
        except (OSError, ValueError):
            config = {}
    named = str(config.get("tokenizer_class", "") if isinstance(config, dict) else "")
    # the class the folder names, where it names one; its files only where it does not (a
    # CLIP folder has vocab.json and merges.txt too, and would read as Qwen's)
    for word, kind in (("CLIP", "clip"), ("T5", "t5"), ("Qwen", "qwen")):
        if word in named:
            return kind
    if named:
        return None
    if is_regular_file(folder / "spiece.model"):
        return "t5"
    if is_regular_file(folder / "vocab.json") and is_regular_file(folder / "merges.txt"):
        return "qwen"
    tokenizer = folder / "tokenizer.json"
    if is_regular_file(tokenizer) and tokenizer.stat().st_size < 64 * 1024 * 1024:
        try:
            model = json.loads(tokenizer.read_text(encoding="utf-8")).get("model", {})
        except (OSError, ValueError, AttributeError):
            return None
        return {"Unigram": "t5", "BPE": "qwen"}.get(str(model.get("type")))
    return None


def find_tokenizer(info: FileInfo, sidecar: Sidecar | None) -> Path | None:
    """A folder with the tokenizer the studio cannot ship (T5's, Qwen's): named in
    `<file>.companion`; ComfyUI's or Forge's own copy in the tool folder the model lies in; a
    t5_tokenizer (qwen25_tokenizer) folder beside the model or among the text encoders; the
    family's repo or the text encoder's own in the local cache."""
    from studio.core import models_folder

    family = info.family
    assert family is not None
    slot, kind = FAMILY_TOKENIZER[files_family(family)]
    candidates = list(sidecar.tokenizers) if sidecar is not None else []
    tools = [parent for parent in list(info.path.parents)[:5] if _has_part_folders(parent)]
    chosen = models_folder.models_dir()
    if chosen is not None:
        tools.append(chosen)
    for tool in tools:
        for top in (tool, tool.parent):
            candidates += [top / relative for relative in TOOL_TOKENIZERS[kind]]
    for folder in [info.path.parent, *part_folders(info.path)]:
        candidates += [folder / name for name in TOKENIZER_FOLDERS[kind]]
    for candidate in candidates:
        if tokenizer_kind(candidate) == kind:
            return candidate
    for repo, subfolder in [(r, slot) for r in HUB_COMPANIONS.get(family.name, ())] + [
        (r, "") for r in TOKENIZER_HUB_REPOS[kind]
    ]:
        folder = _cached_file_folder(repo, f"{subfolder}/tokenizer_config.json".lstrip("/"))
        if folder is not None and tokenizer_kind(folder) == kind:
            return folder
    return None


def _cached_file_folder(repo: str, filename: str) -> Path | None:
    try:
        from huggingface_hub import try_to_load_from_cache

        found = try_to_load_from_cache(repo, filename)
    except Exception:  # noqa: BLE001 - no cache
        return None
    return Path(found).parent if isinstance(found, str) else None


def parts_hint(path: Path, family: Any, missing: list[str]) -> str:
    """One sentence: which separate parts were not found and where to put them."""
    names = " and ".join(ROLE_LABEL[role] for role in missing)
    name = printable(path.name)
    were = "was" if len(missing) == 1 else "were"
    return (
        f"'{name}' holds the {family.label} transformer only, and its {names} {were} not found: "
        "put them in the models folder's vae and text_encoders (or clip) folders as ComfyUI "
        f"keeps them, or beside the file, or name them in '{name}.companion' (one a line), "
        f"or put a diffusers folder of {family.label} beside it."
    )


def tokenizer_hint(path: Path, kind: str) -> str:
    """One sentence: the tokenizer the studio cannot ship, and where to put it."""
    name = printable(path.name)
    if kind == "qwen":
        return (
            "Qwen's tokenizer does not come with the studio (no package it installs carries "
            "it): write a folder that holds it (ComfyUI's comfy/text_encoders/qwen25_tokenizer, "
            f"or Qwen-Image's or Z-Image-Turbo's tokenizer folder) as a line into '{name}"
            ".companion', or have 'Qwen/Qwen2.5-VL-7B-Instruct' in the local Hugging Face cache."
        )
    return (
        "T5's tokenizer does not come with the studio (no package it installs carries it): "
        "write a folder that holds it (ComfyUI's comfy/text_encoders/t5_tokenizer, or "
        f"FLUX.1-dev's tokenizer_2) as a line into '{name}.companion', or "
        "have 'google/t5-v1_1-xxl' in the local Hugging Face cache."
    )


def read_part(part: PartFile, dtype: Any = None) -> dict[str, Any]:
    """A part's tensors, names without its prefix; ComfyUI's scaled fp8 files (a scale per
    weight) multiplied out."""
    if part.is_gguf:
        return read_gguf_text_encoder(part.path, part.kind, dtype)
    return scaled_fp8.read_tensors(part.path, part.prefix, dtype)


def load_part(part: PartFile, role: str, component: str, folder: Path, dtype: Any) -> Any:
    """One part from its file with diffusers' single-file loaders and the shipped config."""
    import importlib

    import diffusers
    from diffusers.loaders import single_file_utils as sfu

    tensors = read_part(part, dtype)
    if role == "qwen_vae":
        return _load_qwen_vae(tensors, folder, dtype)
    if role == "vae":
        if any(k.startswith("decoder.up_blocks.") for k in tensors):  # saved by diffusers
            vae = diffusers.AutoencoderKL.from_config(
                diffusers.AutoencoderKL.load_config(folder, subfolder="vae")
            )
            vae.load_state_dict(tensors)
            return vae.to(dtype).eval()
        vae = diffusers.AutoencoderKL.from_single_file(
            tensors, config=str(folder), subfolder="vae", local_files_only=True, dtype=dtype
        )
        return vae.eval()
    index = json.loads((folder / "model_index.json").read_text(encoding="utf-8"))
    library, class_name = index[component]
    cls = getattr(importlib.import_module(library), class_name)
    if role == "t5xxl":
        if "shared.weight" not in tensors:
            tensors["shared.weight"] = tensors["encoder.embed_tokens.weight"]
        quantised = _pop_quantised(tensors)  # a GGUF's: placed after diffusers' loader
        prefixed = {"text_encoders.t5xxl.transformer." + k: v for k, v in tensors.items()}
        model = sfu.create_diffusers_t5_model_from_checkpoint(
            cls, prefixed, subfolder=component, config=str(folder), torch_dtype=dtype,
            local_files_only=True,
        )  # fmt: skip
        _place_quantised(model, quantised, dtype)
        model.encoder.embed_tokens = model.shared  # tied, as in T5 (the files keep one copy)
        return model.eval()
    if ROLE_KIND[role] == "qwen":
        return load_language_model(cls, folder / component, tensors, dtype)
    # CLIP: as ComfyUI keeps it (transformers' names), placed where diffusers looks for it
    prefix = f"text_encoders.{role}.transformer."
    prefixed = {
        prefix + (k if k.startswith(("text_model.", "text_projection", "logit_scale")) else
                  "text_model." + k): v
        for k, v in tensors.items()
    }  # fmt: skip
    model = sfu.create_diffusers_clip_model_from_ldm(
        cls, prefixed, subfolder=component, config=str(folder), torch_dtype=dtype,
        local_files_only=True,
    )  # fmt: skip
    return model.eval()


def _load_qwen_vae(tensors: dict[str, Any], folder: Path, dtype: Any) -> Any:
    """Qwen-Image's VAE from Wan 2.1's original names (ComfyUI's qwen_image_vae) or
    diffusers' own."""
    import accelerate
    import diffusers

    config = diffusers.AutoencoderKLQwenImage.load_config(folder, subfolder="vae")
    if "decoder.conv_in.weight" not in tensors:
        tensors = wan_vae_to_diffusers(tensors, int(config.get("num_res_blocks", 2)))
    with accelerate.init_empty_weights():
        vae = diffusers.AutoencoderKLQwenImage.from_config(config)
    vae.load_state_dict({k: v.to(dtype) for k, v in tensors.items()}, strict=True, assign=True)
    return vae.eval()


_WAN_RESIDUAL = {
    "residual.0.gamma": "norm1.gamma",
    "residual.2.": "conv1.",
    "residual.3.gamma": "norm2.gamma",
    "residual.6.": "conv2.",
    "shortcut.": "conv_shortcut.",
}


def wan_vae_to_diffusers(checkpoint: dict[str, Any], num_res_blocks: int) -> dict[str, Any]:
    """A Wan 2.1-style VAE (Qwen-Image's) in its original names → diffusers'. diffusers' own
    conversion (convert_wan_vae_to_diffusers) assumes two residual blocks a level; this one
    takes their number from the config, so smaller models (tests) convert too."""

    def residual(rest: str) -> str:
        for old, new in _WAN_RESIDUAL.items():
            if rest.startswith(old):
                return new + rest[len(old) :]
        return rest

    per_level = num_res_blocks + 2  # the decoder's resnets, then its upsampler
    out: dict[str, Any] = {}
    for key, value in checkpoint.items():
        new = key
        if key.startswith(("conv1.", "conv2.")):
            new = ("quant_conv." if key.startswith("conv1.") else "post_quant_conv.") + key[6:]
        elif match := re.match(r"^(encoder|decoder)\.(.+)$", key):
            side, rest = match.groups()
            if rest.startswith("conv1."):
                rest = "conv_in." + rest[6:]
            elif rest.startswith("head.0."):
                rest = "norm_out." + rest[7:]
            elif rest.startswith("head.2."):
                rest = "conv_out." + rest[7:]
            elif found := re.match(r"^middle\.(\d+)\.(.+)$", rest):
                index, tail = int(found.group(1)), found.group(2)
                if index == 1:
                    rest = "mid_block.attentions.0." + tail
                else:
                    rest = f"mid_block.resnets.{index // 2}." + residual(tail)
            elif found := re.match(r"^downsamples\.(\d+)\.(.+)$", rest):
                rest = f"down_blocks.{found.group(1)}." + residual(found.group(2))
            elif found := re.match(r"^upsamples\.(\d+)\.(.+)$", rest):
                level, offset = divmod(int(found.group(1)), per_level)
                if offset <= num_res_blocks:
                    rest = f"up_blocks.{level}.resnets.{offset}." + residual(found.group(2))
                else:
                    rest = f"up_blocks.{level}.upsamplers.0." + found.group(2)
            new = f"{side}.{rest}"
        out[new] = value
    return out


def load_language_model(cls: Any, config_folder: Path, tensors: dict[str, Any], dtype: Any) -> Any:
    """A Qwen text encoder (Qwen2.5-VL for Qwen-Image, Qwen3 for Z-Image) from its tensors in
    any of the layouts files have: ComfyUI's and transformers 4's (`model.layers.`, `visual.`),
    transformers 5's (`model.language_model.`), a bare model's (`layers.`). Its weights are
    placed as they are (no random initialisation of a 4-8 B model first). Tensors the text
    prompt never reaches (the vision tower, the output head), if the file has none, are zeros."""
    import accelerate
    import torch

    config = cls.config_class.from_pretrained(config_folder)
    with accelerate.init_empty_weights():
        model = cls(config)
    targets = model.state_dict()
    placed: dict[str, Any] = {}
    for key, value in tensors.items():
        bare = key.removeprefix("model.").removeprefix("language_model.")
        for candidate in (
            key,
            bare,
            "model.language_model." + bare,
            "model." + key,  # visual. → model.visual.
        ):
            if candidate in targets:
                placed[candidate] = value if _is_quantised(value) else value.to(dtype)
                break
    missing = [k for k in targets if k not in placed]
    essential = [k for k in missing if not k.startswith(("model.visual.", "lm_head."))]
    if essential or not placed:
        raise KeyError(f"missing {essential[:3]}")
    quantised = _pop_quantised(placed)
    model.load_state_dict(placed, strict=False, assign=True)
    _place_quantised(model, quantised, dtype)
    for name in missing:
        module_name, _, attribute = name.rpartition(".")
        module = model.get_submodule(module_name)
        zeros = torch.zeros(targets[name].shape, dtype=dtype)
        setattr(module, attribute, torch.nn.Parameter(zeros, requires_grad=False))
    if missing:
        log.info("%s: %d tensors not in the file, left at zero (%s)", cls.__name__, len(missing),
                 missing[0])  # fmt: skip
    return model.eval()


def _is_quantised(value: Any) -> bool:
    """A GGUF text encoder's quantised weight (diffusers' GGUFParameter, as its
    dequantize_gguf_tensor tells them): placed as it is, never cast."""
    return hasattr(value, "quant_type")


def _pop_quantised(tensors: dict[str, Any]) -> dict[str, Any]:
    """The quantised weights taken out of `tensors`: torch's and diffusers' loaders check
    their shapes (bytes, not the layer's) and cast them."""
    return {k: tensors.pop(k) for k in [k for k, v in tensors.items() if _is_quantised(v)]}


def _place_quantised(model: Any, quantised: dict[str, Any], dtype: Any) -> None:
    if quantised:
        from studio.engine import gguf_weights

        gguf_weights.place(model, quantised, dtype)


# llama.cpp's tensor names (GGUF text encoders) → transformers' (T5's encoder; Qwen's language
# model in ComfyUI's and transformers 4's layout); `{}` is the block number.
_GGUF_T5_NAMES = {
    "token_embd": "shared",
    "enc.output_norm": "encoder.final_layer_norm",
    "enc.blk.{}.attn_q": "encoder.block.{}.layer.0.SelfAttention.q",
    "enc.blk.{}.attn_k": "encoder.block.{}.layer.0.SelfAttention.k",
    "enc.blk.{}.attn_v": "encoder.block.{}.layer.0.SelfAttention.v",
    "enc.blk.{}.attn_o": "encoder.block.{}.layer.0.SelfAttention.o",
    "enc.blk.{}.attn_rel_b": "encoder.block.{}.layer.0.SelfAttention.relative_attention_bias",
    "enc.blk.{}.attn_norm": "encoder.block.{}.layer.0.layer_norm",
    "enc.blk.{}.ffn_gate": "encoder.block.{}.layer.1.DenseReluDense.wi_0",
    "enc.blk.{}.ffn_up": "encoder.block.{}.layer.1.DenseReluDense.wi_1",
    "enc.blk.{}.ffn_down": "encoder.block.{}.layer.1.DenseReluDense.wo",
    "enc.blk.{}.ffn_norm": "encoder.block.{}.layer.1.layer_norm",
}
_GGUF_QWEN_NAMES = {
    "token_embd": "model.embed_tokens",
    "output_norm": "model.norm",
    "output": "lm_head",
    "blk.{}.attn_q": "model.layers.{}.self_attn.q_proj",
    "blk.{}.attn_k": "model.layers.{}.self_attn.k_proj",
    "blk.{}.attn_v": "model.layers.{}.self_attn.v_proj",
    "blk.{}.attn_output": "model.layers.{}.self_attn.o_proj",
    "blk.{}.attn_q_norm": "model.layers.{}.self_attn.q_norm",
    "blk.{}.attn_k_norm": "model.layers.{}.self_attn.k_norm",
    "blk.{}.attn_norm": "model.layers.{}.input_layernorm",
    "blk.{}.ffn_norm": "model.layers.{}.post_attention_layernorm",
    "blk.{}.ffn_gate": "model.layers.{}.mlp.gate_proj",
    "blk.{}.ffn_up": "model.layers.{}.mlp.up_proj",
    "blk.{}.ffn_down": "model.layers.{}.mlp.down_proj",
}


def read_gguf_text_encoder(path: Path, kind: str, dtype: Any = None) -> dict[str, Any]:
    """A GGUF text encoder's tensors under transformers' names, read with the gguf package
    (transformers reads neither Qwen2.5-VL's language model (qwen2vl) nor files in the
    studio's shipped configs): the quantised ones kept quantised (gguf_weights), the rest in
    `dtype`."""
    gguf_module()
    from studio.engine import gguf_weights

    names = _GGUF_T5_NAMES if kind == "t5" else _GGUF_QWEN_NAMES
    tensors: dict[str, Any] = {}
    unused: list[str] = []
    dequantised: set[str] = set()
    try:
        for tensor in _gguf_reader(path).tensors:
            stem, _, end = tensor.name.rpartition(".")
            block = re.search(r"\.(\d+)\.", f".{stem}.")
            pattern = stem.replace(f".{block.group(1)}.", ".{}.", 1) if block else stem
            if pattern not in names:
                unused.append(tensor.name)  # a T5 file's decoder, a Qwen file's output head
                continue
            target = names[pattern].format(block.group(1) if block else "")
            tensors[f"{target}.{end}"] = gguf_weights.read_tensor(tensor, dtype)
            if gguf_weights.dequantised_when_read(tensor):
                dequantised.add(tensor.tensor_type.name)
    except ModelError:
        raise
    except Exception:  # noqa: BLE001 - a damaged or truncated file, whatever gguf says
        raise _damaged_gguf(path) from None
    if unused:
        log.info("%s: %d tensors not used (%s, …)", path.name, len(unused), unused[0])
    if dequantised:
        log.info("%s: its %s tensors are dequantised when read, so they take full memory",
                 path.name, ", ".join(sorted(dequantised)))  # fmt: skip
    return tensors


# Qwen3's chat template as Z-Image uses it (a user turn, then the assistant's, thinking on),
# for a Qwen tokenizer folder that brings Qwen2.5's (ComfyUI's qwen25_tokenizer) or none.
QWEN3_CHAT_TEMPLATE = (
    "{%- for message in messages %}"
    "{{- '<|im_start|>' + message['role'] + '\\n' + message['content'] + '<|im_end|>\\n' }}"
    "{%- endfor %}"
    "{%- if add_generation_prompt %}{{- '<|im_start|>assistant\\n' }}"
    "{%- if enable_thinking is defined and enable_thinking is false %}"
    "{{- '<think>\\n\\n</think>\\n\\n' }}{%- endif %}{%- endif %}"
)


# -- shipped configs and tokenizers ---------------------------------------------------------


def bytes_to_unicode() -> dict[int, str]:
    """GPT-2/CLIP's reversible map of bytes to printable characters."""
    codes = (
        list(range(ord("!"), ord("~") + 1))
        + list(range(ord("¡"), ord("¬") + 1))
        + list(range(ord("®"), ord("ÿ") + 1))
    )
    chars = codes[:]
    n = 0
    for b in range(256):
        if b not in codes:
            codes.append(b)
            chars.append(256 + n)
            n += 1
    return dict(zip(codes, (chr(c) for c in chars), strict=True))


def clip_tokenizer_files() -> Path:
    """A folder with CLIP's vocab.json and merges.txt, built once from the shipped BPE list
    (the construction of OpenAI's and OpenCLIP's simple tokenizer)."""
    target = cache_dir() / "clip-tokenizer"
    if (target / "vocab.json").is_file() and (target / "merges.txt").is_file():
        return target
    lines = gzip.decompress(CLIP_VOCAB.read_bytes()).decode("utf-8").split("\n")
    merges = [tuple(line.split()) for line in lines[1 : 49152 - 256 - 2 + 1]]
    alphabet = list(bytes_to_unicode().values())
    tokens = alphabet + [c + "</w>" for c in alphabet] + ["".join(m) for m in merges]
    tokens += ["<|startoftext|>", "<|endoftext|>"]
    target.mkdir(parents=True, exist_ok=True)
    _write_atomic(target / "merges.txt", "#version: 0.2\n" + "\n".join(" ".join(m) for m in merges))
    _write_atomic(target / "vocab.json", json.dumps({t: i for i, t in enumerate(tokens)}))
    return target


def _write_atomic(path: Path, text: str) -> None:
    temporary = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    temporary.write_text(text, encoding="utf-8")
    os.replace(temporary, path)


def shipped_folder(variant: Variant, scheduler: dict[str, Any] | None = None) -> Path:
    """A diffusers config folder for a variant, in the cache: the shipped JSON files, CLIP
    tokenizers built from the shipped vocabulary, and scheduler changes if any."""
    source = CONFIGS_DIR / variant.name
    digest = hashlib.sha256(_BUILD_VERSION.encode())
    for file in sorted(source.rglob("*.json")):
        digest.update(str(file.relative_to(source)).encode() + file.read_bytes())
    digest.update(json.dumps(scheduler or {}, sort_keys=True).encode())
    target = cache_dir() / "single-file-configs" / f"{variant.name}-{digest.hexdigest()[:12]}"
    if (target / "model_index.json").is_file():
        return target
    building = target.with_name(f".{target.name}.{os.getpid()}")
    shutil.rmtree(building, ignore_errors=True)
    shutil.copytree(source, building)
    clip = clip_tokenizer_files()
    for tokenizer in building.glob("tokenizer*"):
        for name in ("vocab.json", "merges.txt"):
            shutil.copyfile(clip / name, tokenizer / name)
    if scheduler:
        config = building / "scheduler" / "scheduler_config.json"
        data = json.loads(config.read_text(encoding="utf-8"))
        config.write_text(json.dumps({**data, **scheduler}, indent=2), encoding="utf-8")
    try:
        os.replace(building, target)
    except OSError:  # another process built it first
        shutil.rmtree(building, ignore_errors=True)
    return target


# -- loading --------------------------------------------------------------------------------


def load(
    path: Path,
    pipeline_class: Any,
    dtype: Any,
    status: Callable[[str, float | None], None] | None = None,
) -> Any:
    """The text→image pipeline of a single file, built with no network."""
    import diffusers

    info = inspect(path)
    name = printable(path.name)
    generic = not hasattr(pipeline_class, "from_single_file")
    if not generic:  # a class asked for (the upscaler): diffusers' own way, offline
        return pipeline_class.from_single_file(str(path), dtype=dtype, local_files_only=True)
    if info.is_scaled:  # a format the studio cannot read is said before anything else
        scaled_fp8.check_formats(path)
    family = info.family
    if family is None:
        raise ModelError(
            f"'{name}' is not a checkpoint of a model family the studio knows (SD 1.x, SD 2.x, "
            "SDXL, SD 3.5, Flux.1, Chroma, Qwen-Image, Z-Image)."
        )
    _check_family_line(path, family)
    say = status or (lambda message, fraction: None)
    if family.name in _FULL_FAMILIES and not info.is_gguf:
        say(f"Loading {name} ({family.label})…", None)
        return _load_full(info, getattr(diffusers, family.checkpoint_class), dtype)
    if files_family(family) not in _DENOISERS:
        raise ModelError(
            f"{family.label} single files cannot be loaded yet: use a diffusers folder."
        )
    return _load_denoiser(info, dtype, say)


def _load_full(info: FileInfo, cls: Any, dtype: Any) -> Any:
    """SD 1.x, SD 2.x and SDXL: every weight from the file, configs shipped (or the
    companion's, for a file of other shapes)."""
    family, variant, path = info.family, info.variant, info.path
    assert family is not None
    unet_in = info.unet_inputs
    if unet_in == 9:  # an inpainting checkpoint (sd-v1-5-inpainting, SDXL inpainting)
        import diffusers

        cls = getattr(diffusers, family.pipelines["inpaint"])
    elif unet_in != 4:
        raise ModelError(
            f"'{printable(path.name)}' is an instruction-editing checkpoint ({unet_in}-channel "
            "UNet), which the studio does not load as a single file: use its diffusers folder."
        )
    companion = None
    if variant is not None and info.matches:
        scheduler = None
        if family.name == "sdxl" and "v_pred" in info.keys:  # v-prediction SDXL fine-tunes
            scheduler = {"prediction_type": "v_prediction", "rescale_betas_zero_snr": True}
        folder = shipped_folder(variant, scheduler)
        if not all(info.has(p) for p in variant.components.values()):
            companion = find_companion(path, family)
    else:
        companion = find_companion(path, family)
        if companion is None:
            raise ModelError(
                f"'{printable(path.name)}' is an {family.label} model of unusual shapes, whose "
                f"configuration the studio does not ship: {companion_hint(path, family)}."
            )
        folder = companion
    if companion is not None:
        check_model_folder(companion)  # before any library reads it: no code, no pickles
    if unet_in != 4:  # the configs of the model's inpainting version
        folder = with_unet_inputs(folder, unet_in, cls.__name__)
    # Parts the file lacks (a checkpoint saved without its VAE) come from the companion.
    parts: dict[str, Any] = {}
    for component, prefixes in (variant.components if variant else {}).items():
        if info.has(prefixes):
            continue
        if companion is None:
            raise ModelError(
                f"'{printable(path.name)}' has no {component.replace('_', ' ')}: "
                f"{companion_hint(path, family)}."
            )
        parts[component] = _component(companion, component, dtype)
    log.info("loading %s as %s with the configs of %s", path, family.name, folder)
    if info.is_scaled:
        return _full_from_tensors(info, cls, folder, dtype, parts)
    return cls.from_single_file(
        str(path), config=str(folder), local_files_only=True, dtype=dtype, **parts
    )


def _full_from_tensors(
    info: FileInfo, cls: Any, folder: Path, dtype: Any, parts: dict[str, Any]
) -> Any:
    """A full checkpoint diffusers cannot read as it is (ComfyUI's scaled fp8): its models
    built by diffusers' single-file loaders from the dequantised tensors (the pipeline's
    from_single_file takes a file, not tensors), its tokenizers and scheduler from `folder`."""
    import importlib

    import diffusers
    import transformers
    from diffusers.loaders.single_file import load_single_file_sub_model

    index = json.loads((folder / "model_index.json").read_text(encoding="utf-8"))
    tensors = _state_dict(info.path, dtype)
    models = dict(parts)
    for name, entry in index.items():
        if name in models or not isinstance(entry, list) or entry[0] is None:
            continue
        library, class_name = entry
        model_cls = getattr(importlib.import_module(library), class_name)
        if not issubclass(model_cls, (diffusers.ModelMixin, transformers.PreTrainedModel)):
            continue  # a tokenizer or the scheduler: the folder's
        models[name] = load_single_file_sub_model(
            library_name=library,
            class_name=class_name,
            name=name,
            checkpoint=tensors,
            pipelines=diffusers.pipelines,
            is_pipeline_module=False,
            cached_model_config_path=str(folder),
            local_files_only=True,
            torch_dtype=dtype,
        )
    del tensors  # the models hold what they use
    return cls.from_pretrained(folder, local_files_only=True, **models)


def with_unet_inputs(folder: Path, channels: int, pipeline_class: str) -> Path:
    """A copy of a config folder (JSON and tokenizer files only, in the cache) whose UNet
    takes `channels` input channels and whose pipeline is `pipeline_class`: the configs of
    the inpainting version of the model the folder describes."""
    digest = hashlib.sha256(f"{_BUILD_VERSION}{channels}{pipeline_class}".encode())
    files = []
    for file in sorted(folder.rglob("*")):
        relative = file.relative_to(folder)
        if (
            file.suffix in (".json", ".txt", ".model")
            and len(relative.parts) <= 2
            and is_regular_file(file)
            and file.stat().st_size < 16 * 1024 * 1024
        ):
            files.append(relative)
            digest.update(str(relative).encode() + file.read_bytes())
    target = cache_dir() / "single-file-configs" / f"inpaint-{digest.hexdigest()[:12]}"
    if (target / "model_index.json").is_file():
        return target
    building = target.with_name(f".{target.name}.{os.getpid()}")
    shutil.rmtree(building, ignore_errors=True)
    for relative in files:
        (building / relative).parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(folder / relative, building / relative)
    for name, changes in (
        ("unet/config.json", {"in_channels": channels}),
        ("model_index.json", {"_class_name": pipeline_class}),
    ):
        data = json.loads((building / name).read_text(encoding="utf-8"))
        (building / name).write_text(json.dumps({**data, **changes}, indent=2), encoding="utf-8")
    try:
        os.replace(building, target)
    except OSError:  # another process built it first
        shutil.rmtree(building, ignore_errors=True)
    return target


def _component(folder: Path, component: str, dtype: Any) -> Any:
    import importlib

    index = json.loads((folder / "model_index.json").read_text(encoding="utf-8"))
    library, class_name = index[component]
    cls = getattr(importlib.import_module(library), class_name)
    return cls.from_pretrained(
        folder, subfolder=component, dtype=dtype, local_files_only=True, use_safetensors=True
    )


def _load_denoiser(info: FileInfo, dtype: Any, say: Callable[[str, float | None], None]) -> Any:
    """SD 3.x, Flux.1, Chroma, Qwen-Image, Z-Image and GGUF files: the denoiser from the file,
    the rest of the pipeline from a companion folder or, for files of the published shapes,
    from separate part files (ComfyUI's ae, clip_l, clip_g, t5xxl, qwen_image_vae,
    qwen_2.5_vl_7b, qwen_3_4b)."""
    import diffusers

    family, variant, path = info.family, info.variant, info.path
    assert family is not None
    companion = find_companion(path, family, hub=False)
    missing: list[str] = []
    blind: str | None = None  # the parts' text encoder cannot see: said if nothing else serves
    if (
        companion is None
        and files_family(family) in FAMILY_PARTS
        and variant is not None
        and info.matches
    ):
        folder = shipped_folder(variant)
        sidecar = read_sidecar(path)
        chosen, missing = choose_parts(info, folder, sidecar)
        encoder = chosen.get("text_encoder")
        if encoder is not None and sees_images(family) and not has_vision(encoder):
            blind = vision_hint(path, encoder, family)
        elif not missing:
            tokenizer = find_tokenizer(info, sidecar)
            if tokenizer is None:
                raise ModelError(
                    f"'{printable(path.name)}' and its parts were found, but "
                    + tokenizer_hint(path, FAMILY_TOKENIZER[files_family(family)][1])
                )
            return _load_with_parts(info, folder, chosen, tokenizer, dtype, say)
    if companion is None:
        companion = cached_companion(family)
    what = "GGUF file" if info.is_gguf else "file"
    if companion is None:
        if blind is not None:
            raise ModelError(blind)
        if missing:
            raise ModelError(parts_hint(path, family, missing))
        raise ModelError(
            f"'{printable(path.name)}' holds the {family.label} transformer: its VAE and text "
            f"encoders come from a companion, so {companion_hint(path, family)}."
        )
    check_model_folder(companion)
    say(f"Loading {printable(path.name)} with the rest of {printable(companion.name)}…", None)
    if variant is not None and info.matches:
        config = CONFIGS_DIR / variant.name
    elif (companion / "transformer" / "config.json").is_file():
        config = companion
    else:
        raise ModelError(
            f"The {what} '{printable(path.name)}' has shapes the studio has no configuration "
            f"for, and its companion '{printable(companion.name)}' has no transformer config."
        )
    extra: dict[str, Any] = {"transformer": _denoiser(info, config, dtype)}
    if variant is not None and info.matches:
        scheduler_config = CONFIGS_DIR / variant.name / "scheduler" / "scheduler_config.json"
        if scheduler_config.is_file():
            extra["scheduler"] = diffusers.FlowMatchEulerDiscreteScheduler.from_pretrained(
                CONFIGS_DIR / variant.name, subfolder="scheduler"
            )
    pipeline_cls = getattr(diffusers, pipeline_name(family))
    if sees_images(family):
        extra["processor"] = _companion_processor(companion)
    log.info("loading %s as %s with the rest of %s", path, family.name, companion)
    return pipeline_cls.from_pretrained(
        companion,
        dtype=dtype,
        local_files_only=True,
        trust_remote_code=False,
        use_safetensors=True,
        **extra,
    )


def _companion_processor(companion: Path) -> Any:
    """An edit pipeline's processor (see qwen_vl): a Qwen-Image-Edit folder's own; for a
    Qwen-Image folder (the same Qwen2.5-VL text encoder, vision tower included, and
    tokenizer, but no processor) the shipped image processor config with its tokenizer."""
    own = qwen_vl.folder_components(companion)
    if own:
        return own["processor"]
    from transformers import Qwen2Tokenizer

    try:
        tokenizer = Qwen2Tokenizer.from_pretrained(
            companion, subfolder="tokenizer", local_files_only=True
        )
    except (OSError, ValueError, TypeError):
        raise ModelError(
            f"The companion '{printable(companion.name)}' has no readable Qwen tokenizer "
            "(its 'tokenizer' folder): use a Qwen-Image-Edit or Qwen-Image diffusers folder."
        ) from None
    return qwen_vl.processor(CONFIGS_DIR / "qwen-image" / "processor", tokenizer)


def _denoiser(info: FileInfo, config: Path, dtype: Any) -> Any:
    """The file's transformer, with the config of `config`/transformer."""
    import diffusers

    family, path = info.family, info.path
    assert family is not None
    denoiser_cls = getattr(diffusers, _DENOISERS[files_family(family)])
    kwargs: dict[str, Any] = {}
    if info.is_gguf:
        gguf_module()
        kwargs["quantization_config"] = diffusers.GGUFQuantizationConfig(compute_dtype=dtype)
    source: Any = str(path)
    if denoiser_cls.__name__ in ("FluxTransformer2DModel", "ChromaTransformer2DModel"):
        source = flux_to_diffusers(_state_dict(path, dtype))
    elif files_family(family) == "qwen-image" and any(k.startswith(UNET) for k in info.keys):
        # diffusers' names already, behind ComfyUI's prefix (which diffusers keeps)
        source = {k.removeprefix(UNET): v for k, v in _state_dict(path, dtype).items()}
    elif info.is_scaled:  # diffusers reads the file's names, but not its scales
        source = _state_dict(path, dtype)
    return denoiser_cls.from_single_file(
        source,
        config=str(config),
        subfolder="transformer",
        dtype=dtype,
        local_files_only=True,
        **kwargs,
        **_config_changes(info),
    )


def _config_changes(info: FileInfo) -> dict[str, Any]:
    """What the transformer's config says beyond its variant's shipped one, which the file's
    tensors cannot: Qwen-Image-Edit-2511 takes its input image at timestep zero."""
    assert info.family is not None
    if info.family.name == "qwen-image-edit-plus" and conditions_at_time_zero(
        info.keys, info.path.stem
    ):
        return {"zero_cond_t": True}
    return {}


def _load_with_parts(
    info: FileInfo,
    folder: Path,
    chosen: dict[str, PartFile],
    tokenizer_folder: Path,
    dtype: Any,
    say: Callable[[str, float | None], None],
) -> Any:
    """The pipeline of a transformer-only file and its separate parts, every config shipped:
    CLIP tokenizers built from the shipped vocabulary, T5's or Qwen's from the folder found."""
    import diffusers
    import transformers

    family, variant, path = info.family, info.variant, info.path
    assert family is not None and variant is not None
    names = ", ".join(dict.fromkeys(printable(p.path.name) for p in chosen.values()))
    say(f"Loading {printable(path.name)} with {names}…", None)
    log.info("loading %s as %s with %s and the tokenizer of %s", path, family.name,
             {c: str(p.path) for c, p in chosen.items()}, tokenizer_folder)  # fmt: skip
    components: dict[str, Any] = {
        "transformer": _denoiser(info, CONFIGS_DIR / variant.name, dtype),
        "scheduler": diffusers.FlowMatchEulerDiscreteScheduler.from_pretrained(
            folder, subfolder="scheduler"
        ),
    }
    roles = FAMILY_PARTS[files_family(family)]
    for component, part in chosen.items():
        try:
            components[component] = load_part(part, roles[component], component, folder, dtype)
        except ModelError:
            raise
        except (ValueError, KeyError, RuntimeError, AttributeError):
            raise ModelError(
                f"'{printable(part.path.name)}' is not the {ROLE_LABEL[roles[component]]} of "
                f"{family.label} it looks like (damaged, or another model's): replace it or "
                f"name the right file in '{printable(path.name)}.companion'."
            ) from None
    index = json.loads((folder / "model_index.json").read_text(encoding="utf-8"))
    for slot in (k for k, v in index.items() if k.startswith("tokenizer") and v[0]):
        components[slot] = transformers.CLIPTokenizer.from_pretrained(
            folder, subfolder=slot, local_files_only=True
        )
    slot, kind = FAMILY_TOKENIZER[files_family(family)]
    try:
        if kind == "t5":
            tokenizer = transformers.T5TokenizerFast.from_pretrained(
                tokenizer_folder, local_files_only=True
            )
        else:
            tokenizer = transformers.Qwen2Tokenizer.from_pretrained(
                tokenizer_folder, local_files_only=True
            )
            if family.name == "z-image" and "enable_thinking" not in str(tokenizer.chat_template):
                tokenizer.chat_template = QWEN3_CHAT_TEMPLATE  # Qwen2.5's would add a system turn
    except (OSError, ValueError, TypeError):
        raise ModelError(
            f"The folder '{printable(tokenizer_folder.name)}' does not hold a readable "
            f"{'T5' if kind == 't5' else 'Qwen'} tokenizer: " + tokenizer_hint(path, kind)
        ) from None
    components[slot] = tokenizer
    if sees_images(family):  # the tokenizer and the shipped image processor config
        components["processor"] = qwen_vl.processor(folder / "processor", tokenizer)
    return getattr(diffusers, pipeline_name(family))(**components)


def _state_dict(path: Path, dtype: Any = None) -> dict[str, Any]:
    """A model file's tensors: a GGUF file's as diffusers reads them (quantised), a
    .safetensors file's with its 8-bit weights dequantised to `dtype`."""
    if path.suffix.lower() == ".gguf":
        from diffusers.models.model_loading_utils import load_gguf_checkpoint

        return load_gguf_checkpoint(str(path))
    return scaled_fp8.read_tensors(path, dtype=dtype)


def flux_to_diffusers(checkpoint: dict[str, Any]) -> dict[str, Any]:
    """A Flux.1 (or Chroma) transformer's tensors in BFL's layout (as model sites and GGUF
    files have them) renamed and split into diffusers'. diffusers' own conversions assume the
    published width (3072); this one reads it from the file, so narrower models (tests)
    load too. Chroma is Flux without the per-block modulation and with a distilled guidance
    network (`distilled_guidance_layer.`) that computes it."""
    import torch

    sd = {k.removeprefix(UNET): v for k, v in checkpoint.items() if not k.startswith("vae.")}
    sd = {k: v for k, v in sd.items() if not k.startswith(("text_encoders.", "first_stage"))}
    inner = int(sd["img_in.weight"].shape[0])
    out: dict[str, Any] = {}

    def move(new: str, old: str) -> None:
        for end in ("weight", "bias"):
            if f"{old}.{end}" in sd:
                out[f"{new}.{end}"] = sd.pop(f"{old}.{end}")

    for new, old in (
        ("time_text_embed.timestep_embedder", "time_in"),
        ("time_text_embed.text_embedder", "vector_in"),
        ("time_text_embed.guidance_embedder", "guidance_in"),
    ):
        move(f"{new}.linear_1", f"{old}.in_layer")
        move(f"{new}.linear_2", f"{old}.out_layer")
    move("context_embedder", "txt_in")
    move("x_embedder", "img_in")
    approximator = "distilled_guidance_layer."  # Chroma's
    move(approximator + "in_proj", approximator + "in_proj")
    move(approximator + "out_proj", approximator + "out_proj")
    layers = sorted({int(k.split(".")[2]) for k in sd if k.startswith(approximator + "layers.")})
    for i in layers:
        move(f"{approximator}layers.{i}.linear_1", f"{approximator}layers.{i}.in_layer")
        move(f"{approximator}layers.{i}.linear_2", f"{approximator}layers.{i}.out_layer")
        out[f"{approximator}norms.{i}.weight"] = sd.pop(f"{approximator}norms.{i}.scale")
    doubles = sorted({int(k.split(".")[1]) for k in sd if k.startswith("double_blocks.")})
    for i in doubles:
        b, o = f"transformer_blocks.{i}.", f"double_blocks.{i}."
        move(b + "norm1.linear", o + "img_mod.lin")
        move(b + "norm1_context.linear", o + "txt_mod.lin")
        for end in ("weight", "bias"):
            for names, source in (
                (("to_q", "to_k", "to_v"), "img_attn.qkv"),
                (("add_q_proj", "add_k_proj", "add_v_proj"), "txt_attn.qkv"),
            ):
                parts = torch.chunk(sd.pop(f"{o}{source}.{end}"), 3, dim=0)
                for part_name, part in zip(names, parts, strict=True):
                    out[f"{b}attn.{part_name}.{end}"] = part
        for new, old in (
            ("attn.norm_q", "img_attn.norm.query_norm"),
            ("attn.norm_k", "img_attn.norm.key_norm"),
            ("attn.norm_added_q", "txt_attn.norm.query_norm"),
            ("attn.norm_added_k", "txt_attn.norm.key_norm"),
        ):
            out[f"{b}{new}.weight"] = sd.pop(f"{o}{old}.scale")
        move(b + "ff.net.0.proj", o + "img_mlp.0")
        move(b + "ff.net.2", o + "img_mlp.2")
        move(b + "ff_context.net.0.proj", o + "txt_mlp.0")
        move(b + "ff_context.net.2", o + "txt_mlp.2")
        move(b + "attn.to_out.0", o + "img_attn.proj")
        move(b + "attn.to_add_out", o + "txt_attn.proj")
    singles = sorted({int(k.split(".")[1]) for k in sd if k.startswith("single_blocks.")})
    for i in singles:
        b, o = f"single_transformer_blocks.{i}.", f"single_blocks.{i}."
        move(b + "norm.linear", o + "modulation.lin")
        for end in ("weight", "bias"):
            tensor = sd.pop(f"{o}linear1.{end}")
            mlp = int(tensor.shape[0]) - 3 * inner
            q, k, v, m = torch.split(tensor, (inner, inner, inner, mlp), dim=0)
            out.update(
                {
                    f"{b}attn.to_q.{end}": q,
                    f"{b}attn.to_k.{end}": k,
                    f"{b}attn.to_v.{end}": v,
                    f"{b}proj_mlp.{end}": m,
                }
            )
        out[f"{b}attn.norm_q.weight"] = sd.pop(f"{o}norm.query_norm.scale")
        out[f"{b}attn.norm_k.weight"] = sd.pop(f"{o}norm.key_norm.scale")
        move(b + "proj_out", o + "linear2")
    move("proj_out", "final_layer.linear")
    for end in ("weight", "bias"):
        if f"final_layer.adaLN_modulation.1.{end}" not in sd:
            continue  # Chroma's final modulation comes from its distilled guidance network
        shift, scale = torch.chunk(sd.pop(f"final_layer.adaLN_modulation.1.{end}"), 2, dim=0)
        out[f"norm_out.linear.{end}"] = torch.cat([scale, shift], dim=0)
    if sd:
        log.info("flux conversion left %d tensors unused: %s", len(sd), sorted(sd)[:5])
    return out
