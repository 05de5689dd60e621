"""ControlNets: a trainable copy of the denoiser's encoder, joined to it by zero-initialised
layers, that steers generation with a control image (edges, lines, a scribble).

A ControlNet is found from a spec (an embedded name, a diffusers folder, a hub id already
in the local cache, a name in the models folder's ControlNet folder, or a single file),
checked against the loaded model's family (its class and the widths it joins the denoiser
at), loaded once and kept while it is asked for. The family's ControlNet pipeline of the
job's mode is derived from the loaded pipeline with `from_pipe`, so the base weights are
shared, never loaded twice; several ControlNets run together (diffusers' Multi… models),
each with its image, conditioning scale and start/end fraction of the schedule. Union
ControlNets (one network for several kinds of control image) are told each image's kind
by its number in the model's own numbering (SDXL's ControlNet++ through diffusers' union
pipelines, Flux.1's through `control_mode`). The hires fix pass runs the ControlNets too.

The guidance tap, previews and cancel keep working: the derived pipeline has the same
denoiser and scheduler attributes as the base, and the ControlNet runs before the denoiser
at each step, whose hook sees the cancel.
"""

from __future__ import annotations

import inspect
import json
import logging
import tempfile
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from PIL import Image

from studio.core import families, preprocessors
from studio.core.catalog import ModelError
from studio.core.families import Family
from studio.core.paths import EMBEDDED_MODELS_DIR
from studio.core.request import Control, GenerationRequest, Mode
from studio.core.text import printable
from studio.engine.family_runtime import call_parameters, denoiser, family_of

log = logging.getLogger(__name__)

_FILE_SUFFIXES = (".safetensors", ".pth", ".ckpt", ".bin", ".pt")
# diffusers' model that runs several ControlNets of a class together
_MULTI = {
    "ControlNetModel": "MultiControlNetModel",
    "FluxControlNetModel": "FluxMultiControlNetModel",
    "SD3ControlNetModel": "SD3MultiControlNetModel",
    "QwenImageControlNetModel": "QwenImageMultiControlNetModel",
}
# Union ControlNets: one network for several kinds of control image, told each image's kind
# by its number. SDXL's ControlNet++ (xinsir; diffusers' ControlNetUnionModel, 6 kinds, 8 in
# ProMax) and Flux.1's union ControlNets (InstantX, Shakker-Labs: FluxControlNetModel with a
# num_mode) number them as their model cards say; a kind a model does not know is refused.
_UNION_TYPES: dict[str, dict[str, int]] = {
    "ControlNetUnionModel": {
        "pose": 0, "depth": 1, "scribble": 2, "softedge": 2, "canny": 3, "lineart": 3,
        "mlsd": 3, "normal": 4, "segment": 5, "tile": 6, "inpaint": 7,
    },
    "FluxControlNetModel": {
        "canny": 0, "tile": 1, "depth": 2, "blur": 3, "pose": 4, "gray": 5, "low-quality": 6,
    },
}  # fmt: skip
# ControlNet pipelines whose call prepares the control image of one ControlNet only (Qwen-
# Image's inpainting one takes a Multi model but leaves its images unprepared)
_ONE_AT_A_TIME = {"QwenImageControlNetInpaintPipeline"}
# Config entries a ControlNet shares with the denoiser it is joined to: the text width it
# attends to, SDXL's added embeddings, the widths of the residuals it adds (UNets), the
# transformer's text and pooled widths. A ControlNet of another size fails on the first one.
_JOINED = (
    "cross_attention_dim",
    "addition_embed_type",
    "block_out_channels",
    "layers_per_block",
    "joint_attention_dim",
    "pooled_projection_dim",
    "inner_width",
    "dim",  # Z-Image's transformer width
)


@dataclass(frozen=True)
class Source:
    spec: str
    kind: str  # "folder" (a diffusers ControlNet: config.json and weights) or "file"
    path: Path

    @property
    def name(self) -> str:
        return printable(self.spec)


def resolve(spec: str) -> Source:
    """Where a ControlNet spec points, without loading anything; a sentence when nowhere."""
    spec = spec.strip()
    if not spec:
        raise ModelError("A ControlNet has no model: name one.")
    embedded = EMBEDDED_MODELS_DIR / spec
    if "/" not in spec and (embedded / "config.json").is_file():
        return Source(spec, "folder", embedded)
    path = Path(spec).expanduser()
    if not path.exists():
        from studio.core import models_folder

        found = models_folder.find(spec, "controlnets")
        if found is not None:
            path = found
    if path.is_dir():
        if not (path / "config.json").is_file():
            raise ModelError(
                f"The folder '{printable(str(path))}' is not a diffusers ControlNet (it has no "
                "config.json)."
            )
        return Source(spec, "folder", path)
    if path.is_file() and path.suffix.lower() in _FILE_SUFFIXES:
        return Source(spec, "file", path)
    if path.exists():
        raise ModelError(f"'{printable(spec)}' is not a ControlNet file (.safetensors).")
    if spec.count("/") == 1 and not spec.startswith((".", "/", "~")):
        return Source(spec, "folder", _cached_repo(spec))
    raise ModelError(
        f"'{printable(spec)}' is not a ControlNet folder, file, models-folder name or hub id."
    )


def _cached_repo(repo: str) -> Path:
    """A hub ControlNet's folder in the local cache; the studio downloads none by itself."""
    try:
        from huggingface_hub import try_to_load_from_cache

        config = try_to_load_from_cache(repo, "config.json")
    except Exception:  # noqa: BLE001 - an unreadable cache holds nothing
        config = None
    if not isinstance(config, str):
        raise ModelError(
            f"The ControlNet '{printable(repo)}' is not in the local Hugging Face cache: "
            "download it first (huggingface-cli download) or name its folder."
        )
    return Path(config).parent


# -- fitting the loaded model ------------------------------------------------------------


def _inner_width(config: dict[str, Any]) -> int | None:
    """A transformer's width (heads × head width): the residuals a transformer ControlNet
    adds to the denoiser's hidden states have it."""
    heads, width = config.get("num_attention_heads"), config.get("attention_head_dim")
    if isinstance(heads, int) and isinstance(width, int):
        return heads * width
    return None


def _conditioning_factor(config: dict[str, Any]) -> int | None:
    """How many times smaller a UNet ControlNet's conditioning encoder makes the control
    image (one halving per width after the first), which must be the VAE's factor."""
    widths = config.get("conditioning_embedding_out_channels")
    return 2 ** (len(widths) - 1) if isinstance(widths, list | tuple) and widths else None


def check_fits(
    config: Any, name: str, family: Family, network: Any, vae_factor: int | None = None
) -> None:
    """Refuse, in one sentence, a ControlNet this model cannot run: of another family's
    class, a union ControlNet for another family, of another size of the family, or bringing
    the control image to another size than the model's latents (`vae_factor`: how many
    times smaller they are than the picture)."""
    config = dict(config)
    kind = config.get("_class_name", "")
    unions = {k for f in families.all_families() for k in f.controlnet_unions}
    union = kind in unions or bool(config.get("num_mode") or config.get("num_control_type"))
    if refusal := family.controlnet_refusal():
        raise ModelError(refusal)
    if union and kind not in (*family.controlnet_models, *family.controlnet_unions):
        owners = [f.label for f in families.all_families() if kind in f.controlnet_unions]
        made_for = " or ".join(dict.fromkeys(owners)) or "another kind of model"
        raise ModelError(
            f"'{name}' is a union ControlNet (one network for several control types) for "
            f"{made_for}, not for {family.label}: use a ControlNet made for {family.label}."
        )
    if kind not in (*family.controlnet_models, *family.controlnet_unions):
        owners = [f.label for f in families.all_families() if kind in f.controlnet_models]
        made_for = " or ".join(dict.fromkeys(owners)) or "another kind of model"
        raise ModelError(
            f"'{name}' is a ControlNet for {made_for} ({kind or 'unknown class'}), not for "
            f"{family.label}: use one made for {family.label}."
        )
    own = dict(network.config)
    config["inner_width"], own["inner_width"] = _inner_width(config), _inner_width(own)
    for key in _JOINED:
        mine, theirs = config.get(key), own.get(key)
        if mine is None or theirs is None:
            continue
        if (list(mine) if isinstance(mine, list | tuple) else mine) != (
            list(theirs) if isinstance(theirs, list | tuple) else theirs
        ):
            raise ModelError(
                f"'{name}' is a ControlNet for another kind of model than this {family.label} "
                f"one (its {key.replace('_', ' ')} is {mine}, the model's {theirs}): use a "
                f"ControlNet made for {family.label}."
            )
    factor = _conditioning_factor(config)
    if factor is not None and vae_factor is not None and factor != vae_factor:
        raise ModelError(
            f"'{name}' brings control images down {factor}× but this {family.label} model's "
            f"latents are {vae_factor}× smaller than its pictures (the ControlNet was made for "
            f"another model): use a ControlNet made for this one."
        )


# -- loading ---------------------------------------------------------------------------------


def load(
    source: Source, dtype: Any, family: Family, network: Any, vae_factor: int | None = None
) -> Any:
    """The ControlNet model of a spec, checked against the model before its weights load
    where its config says enough (a folder), after for a single file."""
    import diffusers

    try:
        if source.kind == "folder":
            config = json.loads((source.path / "config.json").read_text(encoding="utf-8"))
            if not isinstance(config, dict):
                raise ValueError("config.json is not an object")
            check_fits(config, source.name, family, network, vae_factor)
            cls = getattr(diffusers, config["_class_name"])
            model = cls.from_pretrained(
                source.path, torch_dtype=dtype, local_files_only=True, use_safetensors=True
            )
        else:
            model = _load_file(source, dtype, family, network, vae_factor)
            check_fits(model.config, source.name, family, network, vae_factor)
    except ModelError:
        raise
    except MemoryError:
        raise ModelError(
            f"There is not enough memory to load the ControlNet '{source.name}'."
        ) from None
    except Exception as e:  # noqa: BLE001 - a library's internals are never the message
        log.exception("loading the ControlNet %s failed", source.spec)
        raise ModelError(
            f"The ControlNet '{source.name}' could not be loaded ({e.__class__.__name__}): "
            "its files are damaged or of a kind the studio does not know."
        ) from None
    return model.eval()


def _load_file(
    source: Source, dtype: Any, family: Family, network: Any, vae_factor: int | None
) -> Any:
    """A single-file ControlNet, with no network. A UNet family's: its configuration is the
    loaded UNet's (a ControlNet is a copy of its encoder); diffusers' own tensor names load
    directly, the original layout goes through diffusers' from_single_file. A union one
    (SDXL's ControlNet++, Flux.1's) or one of a transformer family (Flux.1, SD 3.5, Qwen-
    Image, Z-Image): the shipped configuration, fitted to the file's tensors and the loaded
    model (`_file_config`), its tensors in diffusers' names (`_converted`)."""
    import diffusers

    from studio.engine.models import check_checkpoint_is_safe, check_safetensors_header

    if source.path.suffix.lower() == ".safetensors":
        keys = check_safetensors_header(source.path)
    else:
        keys = check_checkpoint_is_safe(source.path)  # refuses pickles that run code
    kind = _file_kind(keys)
    if kind is not None:
        state = _state_dict(source.path)
        config = _file_config(kind, state, network)
        check_fits(config, source.name, family, network, vae_factor)  # before it is built
        model = getattr(diffusers, kind).from_config(config)
        model.load_state_dict(_converted(kind, state, config), strict=True)
        return model.to(dtype)
    if "ControlNetModel" not in family.controlnet_models:
        if refusal := family.controlnet_refusal():
            raise ModelError(refusal)
        raise ModelError(
            f"'{source.name}' is no ControlNet file the studio knows for {family.label} (its "
            f"tensors are none of a {family.label} ControlNet's): use the ControlNet's diffusers "
            "folder, or a file of a ControlNet made for it."
        )
    config = _config_from_unet(network)
    if any(k.startswith("controlnet_cond_embedding.") for k in keys):
        state = _state_dict(source.path)
        widths = _conditioning_widths(state)
        if widths:  # the conditioning encoder's size is the file's, not a UNet's
            config["conditioning_embedding_out_channels"] = widths
        model = diffusers.ControlNetModel.from_config(config)
        model.load_state_dict(state, strict=True)
        return model.to(dtype)
    if not any("input_hint_block" in k for k in keys):
        raise ModelError(
            f"'{source.name}' is not a ControlNet (it has none of a ControlNet's tensors)."
        )
    with tempfile.TemporaryDirectory(prefix="studio-controlnet-") as folder:
        (Path(folder) / "config.json").write_text(json.dumps(config), encoding="utf-8")
        return diffusers.ControlNetModel.from_single_file(
            _original_checkpoint(source.path, keys, dtype),
            config=folder,
            torch_dtype=dtype,
            local_files_only=True,
        )


def _original_checkpoint(path: Path, keys: list[str], dtype: Any) -> str | dict[str, Any]:
    """What diffusers' from_single_file reads an original-layout (A1111/ComfyUI) ControlNet
    from: its path, or for one of ComfyUI's scaled files its tensors with the scales
    multiplied out (scaled_fp8.read_tensors, which also refuses the formats it cannot read
    in a sentence): diffusers knows no scales and would load the bare 8-bit values."""
    from studio.engine import scaled_fp8

    if path.suffix.lower() == ".safetensors" and scaled_fp8.is_scaled(keys):
        return scaled_fp8.read_tensors(path, dtype=dtype)
    return str(path)


# Single files whose configuration the studio ships (studio/resources/single_file_configs):
# their class → the folder of the published model's config.json
_SHIPPED = {
    "ControlNetUnionModel": "controlnet-union-sdxl",  # xinsir's ControlNet++ (ProMax)
    "FluxControlNetModel": "controlnet-union-flux",  # InstantX's Flux.1 union ControlNet
    "SD3ControlNetModel": "controlnet-sd3.5-large",  # Stability's SD 3.5 Large canny/depth/blur
    "QwenImageControlNetModel": "controlnet-qwen-image",  # InstantX's Qwen-Image union
    "ZImageControlNetModel": "controlnet-z-image",  # Alibaba's Z-Image-Turbo-Fun union 2.1
}


def _file_kind(keys: Any) -> str | None:
    """The ControlNet class of a file told by its tensor names, among those whose config is
    shipped: SDXL's ControlNet++ has its control-type embeddings and transformer (named
    `task_embedding`, `transformer_layes`, `control_add_embedding` as xinsir published them,
    and diffusers kept); a Flux.1 ControlNet, diffusers' names (InstantX's and Shakker-Labs'
    files: `controlnet_x_embedder` beside Flux's embedders; a union one has
    `controlnet_mode_embedder` too); a Qwen-Image one (InstantX's: `controlnet_x_embedder`
    beside Qwen-Image's `img_in` and `txt_in`); an SD 3 one, the control image's patch
    embedder `pos_embed_input` (Stability's SD 3.5 files in the original layout, InstantX's
    and alimama's in diffusers'); a Z-Image one, its `control_all_x_embedder` (Alibaba's
    Z-Image-Turbo-Fun ControlNets). None for the others."""
    names = set(keys)
    if "task_embedding" in names or any(
        k.startswith(("transformer_layes.", "control_add_embedding.")) for k in names
    ):
        return "ControlNetUnionModel"
    if {"controlnet_x_embedder.weight", "x_embedder.weight", "context_embedder.weight"} <= names:
        return "FluxControlNetModel"
    if {"controlnet_x_embedder.weight", "img_in.weight", "txt_in.weight"} <= names:
        return "QwenImageControlNetModel"
    if "pos_embed_input.proj.weight" in names:
        return "SD3ControlNetModel"
    if any(k.startswith("control_all_x_embedder.") for k in names):
        return "ZImageControlNetModel"
    return None


def _blocks(state: dict[str, Any], prefix: str) -> int:
    """How many numbered blocks a state dict holds under `prefix` (prefix.0., prefix.1., …)."""
    found = {k[len(prefix) :].split(".", 1)[0] for k in state if k.startswith(prefix)}
    return len([n for n in found if n.isdigit()])


def _file_config(kind: str, state: dict[str, Any], network: Any) -> dict[str, Any]:
    """The configuration of a single-file ControlNet whose config is shipped: the published
    model's, with what the file's tensors tell (its numbers of control types, blocks and
    widths) and, for what they cannot (how a width splits into attention heads), the loaded
    denoiser's where the widths agree. A file that fits no model of the family fails the
    usual check (check_fits) or the strict load, in a sentence."""
    from studio.engine import speedups
    from studio.engine.single_file import CONFIGS_DIR

    path = CONFIGS_DIR / _SHIPPED[kind] / "config.json"
    config = json.loads(path.read_text(encoding="utf-8"))
    return _FITTERS[kind](config, state, dict(speedups.eager(network).config))


def _fit_sdxl_union(
    config: dict[str, Any], state: dict[str, Any], own: dict[str, Any]
) -> dict[str, Any]:
    # a copy of the UNet's encoder: its shape is the loaded UNet's, as for SD ControlNets
    config.update(_unet_settings(own, "ControlNetUnionModel"))
    tasks = state["task_embedding"]
    config.update(
        num_control_type=int(tasks.shape[0]),
        num_trans_channel=int(tasks.shape[1]),
        num_trans_layer=_blocks(state, "transformer_layes."),
        num_proj_channel=int(state["spatial_ch_projs.weight"].shape[0]),
    )
    widths = _conditioning_widths(state)
    if widths:
        config["conditioning_embedding_out_channels"] = widths
    return config


def _fit_flux(config: dict[str, Any], state: dict[str, Any], own: dict[str, Any]) -> dict[str, Any]:
    width = int(state["x_embedder.weight"].shape[0])
    config.update(
        in_channels=int(state["x_embedder.weight"].shape[1]),
        num_layers=_blocks(state, "transformer_blocks."),
        num_single_layers=_blocks(state, "single_transformer_blocks."),
        joint_attention_dim=int(state["context_embedder.weight"].shape[1]),
        guidance_embeds=any(k.startswith("time_text_embed.guidance_embedder.") for k in state),
        num_mode=(
            int(state["controlnet_mode_embedder.weight"].shape[0])
            if "controlnet_mode_embedder.weight" in state
            else None
        ),
    )
    pooled = state.get("time_text_embed.text_embedder.linear_1.weight")
    if pooled is not None:
        config["pooled_projection_dim"] = int(pooled.shape[1])
    hint = state.get("input_hint_block.conv_out.weight")
    config["conditioning_embedding_channels"] = int(hint.shape[0]) if hint is not None else None
    return _heads_of(config, own, width, ("axes_dims_rope",))


def _fit_qwen_image(
    config: dict[str, Any], state: dict[str, Any], own: dict[str, Any]
) -> dict[str, Any]:
    embedder = state["img_in.weight"]
    width, inputs = int(embedder.shape[0]), int(embedder.shape[1])
    config.update(
        in_channels=inputs,
        num_layers=_blocks(state, "transformer_blocks."),
        joint_attention_dim=int(state["txt_in.weight"].shape[1]),
        # an inpainting one's condition has the mask's channels after the control image's
        extra_condition_channels=int(state["controlnet_x_embedder.weight"].shape[1]) - inputs,
    )
    return _heads_of(config, own, width, ("axes_dims_rope", "patch_size", "out_channels"))


def _fit_sd3(config: dict[str, Any], state: dict[str, Any], own: dict[str, Any]) -> dict[str, Any]:
    """Stability's SD 3.5 ControlNets (blocks of their own, no text stream: they borrow the
    transformer's patch embedder) or InstantX's and alimama's SD 3 ones (joint blocks with
    a text embedder and patch embedder of their own, a zero pooled text: diffusers' default
    for them)."""
    control = state["pos_embed_input.proj.weight"]  # width, channels, patch, patch
    width, patch = int(control.shape[0]), int(control.shape[-1])
    own_embedder = state.get("pos_embed.proj.weight")
    latents = own_embedder.shape[1] if own_embedder is not None else own.get("in_channels", 16)
    inputs = min(int(latents), int(control.shape[1]))
    context = state.get("context_embedder.weight")
    layers = _blocks(state, "transformer_blocks.")
    config.update(
        patch_size=patch,
        in_channels=inputs,
        out_channels=inputs,
        extra_conditioning_channels=int(control.shape[1]) - inputs,  # an inpainting one's mask
        num_layers=layers,
        pooled_projection_dim=int(state["time_text_embed.text_embedder.linear_1.weight"].shape[1]),
        joint_attention_dim=int(context.shape[1]) if context is not None else None,
        force_zeros_for_pooled_projection=context is not None,
        use_pos_embed=own_embedder is not None,
    )
    if context is not None:
        config["caption_projection_dim"] = int(context.shape[0])
        config["dual_attention_layers"] = [
            n for n in range(layers) if f"transformer_blocks.{n}.attn2.to_q.weight" in state
        ]
        if "transformer_blocks.0.attn.norm_q.weight" in state:
            config["qk_norm"] = "rms_norm"
    if own_embedder is not None:  # its own patch embedder, positions as the transformer's
        config.update(pos_embed_type="sincos", sample_size=own.get("sample_size", 128),
                      pos_embed_max_size=own.get("pos_embed_max_size"))  # fmt: skip
    return _heads_of(config, own, width)


def _fit_z_image(
    config: dict[str, Any], state: dict[str, Any], own: dict[str, Any]
) -> dict[str, Any]:
    """Alibaba's Z-Image-Turbo-Fun ControlNets: control blocks spread evenly over the
    transformer's layers (1.0: every 5th of 30, 2.x: every 2nd), the condition the control
    image's latents (2.x: then the mask's and the masked picture's), and a noise refiner:
    1.0's plain blocks, 2.1's control blocks, 2.0's unused (its projection into the refiner
    all zeros: diffusers drops it)."""
    embedders = [
        k for k in state if k.startswith("control_all_x_embedder.") and k.endswith(".weight")
    ]
    sizes = [k.split(".")[1].split("-") for k in embedders]  # "2-1": patch, frame patch
    first = state[embedders[0]]
    dim, patch, frames = int(first.shape[0]), int(sizes[0][0]), int(sizes[0][1])
    count = _blocks(state, "control_layers.")
    step = max(int(own.get("n_layers", 30)) // max(count, 1), 1)
    refiner = _blocks(state, "control_noise_refiner.")
    into = state.get("control_noise_refiner.0.before_proj.weight")
    if not refiner or (into is not None and not bool(into.any())):
        mode = "control_layers"  # 2.0
    elif into is not None:
        mode = "control_noise_refiner"  # 2.1
    else:
        mode = None  # 1.0
    refiners = refiner if mode != "control_layers" else int(own.get("n_refiner_layers", 2))
    config.update(
        all_patch_size=[int(p) for p, _ in sizes],
        all_f_patch_size=[int(f) for _, f in sizes],
        dim=dim,
        control_in_dim=int(first.shape[1]) // (patch * patch * frames),
        control_layers_places=[n * step for n in range(count)],
        add_control_noise_refiner=mode,
        n_refiner_layers=refiners,
        control_refiner_layers_places=list(range(refiners)) if mode else None,
        qk_norm="control_layers.0.attention.norm_q.weight" in state,
    )
    # its heads are the transformer's (a file of another width is refused by check_fits)
    config.update({k: own[k] for k in ("n_heads", "n_kv_heads", "norm_eps") if k in own})
    return config


def _heads_of(
    config: dict[str, Any], own: dict[str, Any], width: int, also: tuple[str, ...] = ()
) -> dict[str, Any]:
    """A transformer ControlNet's heads: the loaded transformer's when its width is the
    file's (with `also`, what goes with them), else the published head width's."""
    if _inner_width(own) == width:
        for key in ("num_attention_heads", "attention_head_dim", *also):
            if key in own:
                config[key] = own[key]
    else:
        config["num_attention_heads"] = max(width // int(config["attention_head_dim"]), 1)
    return config


_FITTERS = {
    "ControlNetUnionModel": _fit_sdxl_union,
    "FluxControlNetModel": _fit_flux,
    "QwenImageControlNetModel": _fit_qwen_image,
    "SD3ControlNetModel": _fit_sd3,
    "ZImageControlNetModel": _fit_z_image,
}

# Stability's SD 3.5 ControlNets name their blocks' layers as SD 3's original code does
_SD3_ORIGINAL = {
    ".adaLN_modulation.1.": ".norm1.linear.",
    ".attn.proj.": ".attn.to_out.0.",
    ".mlp.fc1.": ".ff.net.0.proj.",
    ".mlp.fc2.": ".ff.net.2.",
}


def _converted(kind: str, state: dict[str, Any], config: dict[str, Any]) -> dict[str, Any]:
    """A single file's tensors in diffusers' names: Z-Image's through diffusers' own
    converter (which drops 2.0's unused refiner), Stability's SD 3.5 ControlNets (original
    layout: fused qkv, `adaLN_modulation`, `mlp.fc1`; a `control_type` number) through the
    renaming of diffusers' convert_sd3_controlnet_to_diffusers script; the others as they
    are."""
    if kind == "ZImageControlNetModel":
        from diffusers.loaders.single_file_utils import (
            convert_z_image_controlnet_checkpoint_to_diffusers,
        )

        return convert_z_image_controlnet_checkpoint_to_diffusers(dict(state), config)
    if kind != "SD3ControlNetModel" or not any(".adaLN_modulation." in k for k in state):
        return state
    converted = {}
    for key, value in state.items():
        if key == "control_type":  # which control it was trained for: blur 0, canny 1, depth 2
            continue
        if ".attn.qkv." in key:
            for part, chunk in zip("qkv", value.chunk(3, dim=0), strict=True):
                converted[key.replace(".attn.qkv.", f".attn.to_{part}.")] = chunk
            continue
        for old, new in _SD3_ORIGINAL.items():
            key = key.replace(old, new)
        converted[key] = value
    return converted


def _diffusers_class(kind: str) -> Any:
    import diffusers

    return getattr(diffusers, kind)


def _config_from_unet(unet: Any, kind: str = "ControlNetModel") -> dict[str, Any]:
    from studio.engine import speedups

    return {"_class_name": kind, **_unet_settings(dict(speedups.eager(unet).config), kind)}


def _unet_settings(own: dict[str, Any], kind: str) -> dict[str, Any]:
    """The settings of a UNet's config (`own`) that a ControlNet of `kind` takes: its encoder
    is a copy of the UNet's. Its input is the 4 latent channels, whatever the UNet takes (an
    inpainting UNet's 9)."""
    accepted = inspect.signature(_diffusers_class(kind).__init__).parameters
    settings = {k: v for k, v in own.items() if k in accepted and k != "in_channels"}
    return {**settings, "in_channels": 4}


def _conditioning_widths(state: dict[str, Any]) -> list[int]:
    """The widths of a diffusers-named ControlNet's conditioning encoder, from its tensors:
    conv_in's, then each stride-2 block's (the odd ones) output channels."""
    prefix = "controlnet_cond_embedding."
    first = state.get(prefix + "conv_in.weight")
    if first is None:
        return []
    widths = [int(first.shape[0])]
    while (block := state.get(f"{prefix}blocks.{2 * len(widths) - 1}.weight")) is not None:
        widths.append(int(block.shape[0]))
    return widths


def _state_dict(path: Path) -> dict[str, Any]:
    if path.suffix.lower() == ".safetensors":  # ComfyUI's scaled fp8 files multiplied out
        from studio.engine import scaled_fp8

        return scaled_fp8.read_tensors(path)
    import torch

    data = torch.load(path, map_location="cpu", weights_only=True)
    return data.get("state_dict", data) if isinstance(data, dict) else {}


class ControlNets:
    """The ControlNet models loaded, by spec: kept while asked for (like the upscaler)."""

    def __init__(self) -> None:
        self.loaded: dict[str, Any] = {}

    def get(self, manager: Any, specs: Sequence[str], base: Any) -> list[Any]:
        """The models of these specs, in order, fitted to the base pipeline's family; the
        ones no longer asked for are let go. Each load counts in manager.weight_loads."""
        family = family_of(base)
        network = denoiser(base)
        vae_factor = getattr(base, "vae_scale_factor", None)
        for spec in [s for s in self.loaded if s not in specs]:
            del self.loaded[spec]
        models = []
        for spec in specs:
            model = self.loaded.get(spec)
            if model is None:
                source = resolve(spec)
                manager.status(f"Loading the ControlNet {source.name}…", None)
                model = load(source, base.dtype, family, network, vae_factor)
                model.to(manager.device)
                manager.weight_loads += 1
                self.loaded[spec] = model
            else:
                # the model changed?
                check_fits(model.config, printable(spec), family, network, vae_factor)
            models.append(model)
        return models

    def reset(self) -> None:
        self.loaded.clear()


def union_types(model: Any) -> dict[str, int] | None:
    """The control types a union ControlNet knows, by name, with its number for each; None
    for a ControlNet of one control type."""
    config = dict(model.config)
    kinds = _UNION_TYPES.get(type(model).__name__)
    count = config.get("num_control_type") or config.get("num_mode")
    if kinds is None or not count:
        return None
    return {name: number for name, number in kinds.items() if number < count}


def derive(base: Any, mode_name: str, models: list[Any]) -> Any:
    """The family's ControlNet pipeline of a mode, sharing every component of the loaded
    pipeline (from_pipe) and running these ControlNets."""
    import diffusers

    family = family_of(base)
    if refusal := family.controlnet_refusal(mode_name):
        raise ModelError(refusal)
    name = family.controlnet_pipelines[mode_name]
    if not hasattr(diffusers, name):  # a diffusers older than the family's table
        raise ModelError(
            f"{family.label} models have no ControlNet pipeline for {_mode_label(mode_name)} in "
            "this diffusers: generate without ControlNets, or in another mode."
        )
    unions = [type(m).__name__ in family.controlnet_unions for m in models]
    if any(unions):  # SDXL's union ControlNets have pipelines of their own
        if not all(unions):
            raise ModelError(
                f"{family.label} runs union ControlNets and ControlNets of one control type "
                "in different pipelines: use union ones only, or none."
            )
        name = name.replace("ControlNet", "ControlNetUnion")
        if not hasattr(diffusers, name):
            raise ModelError(
                f"{family.label} models have no union ControlNet pipeline for "
                f"{_mode_label(mode_name)} in diffusers: use a ControlNet of one control type."
            )
    if len(models) > 1 and name in _ONE_AT_A_TIME:
        raise ModelError(
            f"{family.label} runs one ControlNet at a time in {_mode_label(mode_name)}: remove "
            "the others."
        )
    if len(models) == 1:
        controlnet = models[0]
    elif all(unions):
        from diffusers.models.controlnets.multicontrolnet_union import MultiControlNetUnionModel

        controlnet = MultiControlNetUnionModel(models)
    else:
        multi = _MULTI.get(type(models[0]).__name__)
        if multi is None or not hasattr(diffusers, multi):
            raise ModelError(f"{family.label} runs one ControlNet at a time: remove the others.")
        controlnet = getattr(diffusers, multi)(models)
    # from_pipe casts the shared components to float32 unless told the dtype
    return getattr(diffusers, name).from_pipe(base, controlnet=controlnet, dtype=base.dtype)


def _mode_label(mode_name: str) -> str:
    return Mode(mode_name).label


def hires_note(pipe: Any) -> str | None:
    """Why the hires fix pass of a job with ControlNets runs without them, in a sentence;
    None when the family's image→image ControlNet pipeline runs them."""
    import diffusers

    family = family_of(pipe)
    name = family.controlnet_pipelines.get(Mode.IMAGE_TO_IMAGE.value)
    if name is not None and hasattr(diffusers, name):
        return None
    return (
        f"{family.label} models have no image→image ControlNet pipeline in diffusers: the "
        "hires fix pass ran without the ControlNets."
    )


# -- the call ------------------------------------------------------------------------------


def active(request: GenerationRequest) -> list[Control]:
    """The controls that do something: a ControlNet at weight 0 adds nothing, so it is not
    run (its model is still loaded and checked, so a wrong one is told all the same)."""
    return [c for c in request.controls if c.scale > 0]


@dataclass
class ControlCall:
    """The ControlNet entries of a pipeline call, for the job's size and, when inpainting
    only the masked area, for the crop of the canvas it repaints."""

    controls: list[Control]
    image_key: str  # "image" (SD text→image pipelines) or "control_image"
    # each control's number in its union ControlNet (None: a ControlNet of one type), and
    # how the pipeline takes them: "list" (SDXL's union pipelines: a list of images and of
    # numbers per ControlNet) or "number" (Flux: one number per ControlNet); "" when none
    modes: list[int | None] = field(default_factory=list)
    mode_style: str = ""
    ranged: bool = True  # whether the pipeline takes a start and end (Z-Image's does not)
    # an inpainting ControlNet's pipeline (SD 3, Qwen-Image, Z-Image): it takes the mask with
    # the control images and repaints the masked area from noise, with no strength; Z-Image's
    # takes the picture too (its ControlNets see it with the masked area blanked)
    repaints: bool = False
    with_picture: bool = False

    def ran_types(self, controls: Sequence[Control]) -> tuple[str, ...]:
        """Per control of the request: the type its union ControlNet runs it as, or ""."""
        numbers = {id(c): n for c, n in zip(self.controls, self.modes, strict=False)}
        return tuple(c.kind if numbers.get(id(c)) is not None else "" for c in controls)

    def repainting(self, call: dict[str, Any], mask: Image.Image, steps: int) -> dict[str, Any]:
        """An inpaint call for an inpainting ControlNet's pipeline: the mask goes to the
        ControlNets with the control images (and the picture, which they see with the masked
        area blanked) and every step runs from noise; the pasting back keeps the rest of the
        picture."""
        dropped = ("strength",) if self.with_picture else ("image", "mask_image", "strength")
        call = {k: v for k, v in call.items() if k not in dropped}
        mask_key = "mask_image" if self.with_picture else "control_mask"
        return {**call, mask_key: mask, "num_inference_steps": steps}

    def arguments(
        self,
        width: int,
        height: int,
        box: tuple[int, int, int, int] | None = None,
        canvas: tuple[int, int] | None = None,
    ) -> dict[str, Any]:
        """`box`: the part of the canvas (of size `canvas`) the job repaints, when it is
        not all of it; the control images are cut to it before they are brought to size."""
        images = [self._image(c, width, height, box, canvas) for c in self.controls]
        one = len(self.controls) == 1

        def values(name: str) -> Any:
            found = [float(getattr(c, name)) for c in self.controls]
            return found[0] if one else found

        found = {
            self.image_key: images[0] if one else images,
            "controlnet_conditioning_scale": values("scale"),
            "control_guidance_start": values("start"),
            "control_guidance_end": values("end"),
        }
        if self.mode_style == "list":  # the union pipeline wraps each item for its net
            found[self.image_key] = images
            found["control_mode"] = list(self.modes)
        elif self.mode_style == "number":
            found["control_mode"] = self.modes[0] if one else list(self.modes)
        if not self.ranged:
            del found["control_guidance_start"], found["control_guidance_end"]
        return found

    @staticmethod
    def _image(
        control: Control,
        width: int,
        height: int,
        box: tuple[int, int, int, int] | None,
        canvas: tuple[int, int] | None,
    ) -> Image.Image:
        assert control.image is not None
        image = control.image
        if box is not None and canvas is not None:  # a control image of another size: scaled
            sx, sy = image.width / canvas[0], image.height / canvas[1]
            left, top, right, bottom = box
            image = image.crop(
                (round(left * sx), round(top * sy), round(right * sx), round(bottom * sy))
            )
        return preprocessors.run(control.preprocessor, image, width, height)


def prepare(
    manager: Any, request: GenerationRequest, mode_pipe: Any, mode: Mode | None = None
) -> tuple[Any, ControlCall | None]:
    """The pipeline a job with ControlNets runs and its ControlNet entries; the mode's own
    pipeline and None when no ControlNet acts (every weight 0). `mode`: the pipeline's mode
    when it is not the job's (the hires fix pass runs image→image)."""
    models = manager.controlnets.get(manager, [c.model for c in request.controls], mode_pipe)
    acting = active(request)
    if not acting:
        return mode_pipe, None
    chosen = [models[i] for i, c in enumerate(request.controls) if c.scale > 0]
    counted = [n for n, c in enumerate(request.controls, 1) if c.scale > 0]
    family = family_of(mode_pipe)
    repaints = _repaints(family, mode or request.mode)
    # before the pipeline is derived: Z-Image's inpainting one refuses a plain ControlNet
    _check_inpainting(
        family.label, mode or request.mode, chosen, acting, counted, repaints, denoiser(mode_pipe)
    )
    pipe = manager.controlled(request.model, mode or request.mode, chosen)
    takes = call_parameters(pipe)
    key = "control_image" if "control_image" in takes else "image"
    ranged = "control_guidance_start" in takes
    for number, control in zip(counted, acting, strict=True):
        if not ranged and (control.start, control.end) != (0.0, 1.0):
            raise ModelError(
                f"{family_of(pipe).label}'s ControlNet pipeline acts at every step: set "
                f"ControlNet {number}'s range to all of the steps (0 to 1)."
            )
    with_picture = repaints and "control_mask" not in takes
    numbers = [_union_number(*found) for found in zip(chosen, acting, counted, strict=True)]
    if all(n is None for n in numbers):
        return pipe, ControlCall(
            acting, key, ranged=ranged, repaints=repaints, with_picture=with_picture
        )
    if "control_mode" not in takes:
        raise ModelError(
            f"The {family_of(pipe).label} ControlNet pipeline takes no control types: use "
            "ControlNets of one control type."
        )
    style = "list" if "Union" in type(pipe).__name__ else "number"
    if style == "number" and len(numbers) > 1 and None in numbers:
        raise ModelError(
            f"{family_of(pipe).label} runs a union ControlNet alone or with other union "
            "ones: remove the ControlNets of one control type, or the union one."
        )
    return pipe, ControlCall(acting, key, numbers, style, ranged, repaints, with_picture)


def _repaints(family: Family, mode: Mode) -> bool:
    """Whether the family's ControlNet pipeline of this mode is an inpainting ControlNet's:
    an inpaint one with no strength, which repaints the masked area from noise (SD 3's,
    Qwen-Image's, Z-Image's)."""
    import diffusers

    name = family.controlnet_pipelines.get(mode.value)
    cls = getattr(diffusers, name, None) if mode is Mode.INPAINT and name else None
    return cls is not None and "strength" not in call_parameters(cls)


def _inpainting(model: Any, network: Any) -> str:
    """How a ControlNet takes the mask: "only" for an inpainting one that runs in inpaint
    alone (an extra mask channel: SD 3's and Qwen-Image's, alimama's and InstantX's
    inpainting ControlNets); "too" for Z-Image's 2.x (Alibaba's Z-Image-Turbo-Fun-Controlnet-
    Union 2.x: the mask's and the masked picture's latents after the control image's, a
    control_in_dim beyond the transformer's input), whose text→image pipeline gives them
    zeros; "" for a ControlNet that takes no mask."""
    config = dict(model.config)
    if config.get("control_in_dim") is not None:
        return "too" if config["control_in_dim"] > network.config.in_channels else ""
    extra = config.get("extra_conditioning_channels") or config.get("extra_condition_channels")
    return "only" if extra else ""


def _check_inpainting(
    label: str,
    mode: Mode,
    models: list[Any],
    controls: list[Control],
    numbers: list[int],
    repaints: bool,
    network: Any,
) -> None:
    """An inpainting ControlNet's pipeline runs inpainting ControlNets only, and SD 3's and
    Qwen-Image's run in no other pipeline (their condition has the mask's channel): refused
    in a sentence."""
    for model, control, number in zip(models, controls, numbers, strict=True):
        name = printable(control.model)
        takes = _inpainting(model, network)
        if repaints and not takes:
            raise ModelError(
                f"{label} inpaints with inpainting ControlNets only (they take the mask): "
                f"ControlNet {number} ('{name}') is not one. Use an inpainting ControlNet, or "
                "inpaint without ControlNets."
            )
        if not repaints and takes == "only":
            raise ModelError(
                f"ControlNet {number} ('{name}') is an inpainting ControlNet: it runs in "
                f"Inpaint mode only, not in {mode.label}."
            )


def _union_number(model: Any, control: Control, number: int) -> int | None:
    """The union ControlNet's number for this control's kind (None: not a union one)."""
    kinds = union_types(model)
    if kinds is None:
        return None
    if control.kind not in kinds:
        given = "" if control.control_type else " (its image taken as one: no type was given)"
        raise ModelError(
            f"ControlNet {number} ('{printable(control.model)}') is a union ControlNet that "
            f"knows no control type '{control.kind}'{given}: give it one of {', '.join(kinds)}."
        )
    return kinds[control.kind]


# -- the same seed, the same noise ------------------------------------------------------------


class _Unwrap:
    """Undoes `steady_noise`: the pipeline's and the VAE's own methods back."""

    def __init__(self, *owned: tuple[Any, str]) -> None:
        self.owned = owned

    def remove(self) -> None:
        for owner, name in self.owned:
            owner.__dict__.pop(name, None)


def steady_noise(pipe: Any, call: dict[str, Any]) -> list[Any]:
    """diffusers' Flux and Qwen-Image ControlNet pipelines encode each control image with the
    VAE by *sampling* its latent distribution with the job's generator, before they draw the
    starting noise: the same seed would start from other noise with a ControlNet than
    without, so even a ControlNet acting at no step would change the picture. The control
    images' encodes (each call's first ones: counted again from the call's check_inputs, so
    a retry is the same) take the distribution's mean instead, which draws nothing. Returns
    handles to undo it ([] where nothing needs it: the UNet families condition on pixels,
    and ControlNets with their own hint encoder do not use the VAE)."""
    controlnet = getattr(pipe, "controlnet", None)
    if controlnet is None or "control_image" not in call or family_of(pipe).denoiser == "unet":
        return []
    if not hasattr(type(pipe), "check_inputs"):  # Z-Image's: it takes the mode itself
        return []
    nets = list(getattr(controlnet, "nets", [controlnet]))
    if any(getattr(net, "input_hint_block", None) is not None for net in nets):
        return []
    images = call["control_image"]
    count = len(images) if isinstance(images, list) else 1
    remaining = [count]
    vae = pipe.vae
    encode_original, check_original = vae.encode, pipe.check_inputs

    def check_inputs(*args: Any, **kwargs: Any) -> Any:
        remaining[0] = count  # a new call
        return check_original(*args, **kwargs)

    def encode(*args: Any, **kwargs: Any) -> Any:
        output = encode_original(*args, **kwargs)
        distribution = getattr(output, "latent_dist", None)
        if remaining[0] > 0 and distribution is not None:
            remaining[0] -= 1
            distribution.sample = lambda generator=None: distribution.mode()
        return output

    pipe.check_inputs = check_inputs
    vae.encode = encode
    return [_Unwrap((vae, "encode"), (pipe, "check_inputs"))]
