"""Qwen-Image: a 20 B rectified-flow transformer on a Wan-style VAE's 16-channel latents
(per-channel statistics, packed 2×2), with Qwen2.5-VL as text encoder and true CFG.
Qwen-Image-Edit is its instruction-editing sibling."""

from __future__ import annotations

import re

from studio.core.families import Family, Guidance
from studio.core.schedulers import CUSTOM_SIGMA_SAMPLERS

_COMMON = {
    "denoiser": "transformer",
    "prediction": "flow",
    "latent_channels": 16,
    "layout": "packed",
    "native_size": 1328,
    "default_steps": 50,
    "default_sampler": "Euler",
    "samplers": CUSTOM_SIGMA_SAMPLERS,
    "guidance": Guidance("true_cfg", 4.0),
    "preview_vae_blocks": (),  # a Wan-style VAE: fitted from the model's own
}

# Qwen-Image-Edit's single files (ComfyUI's qwen_image_edit_2509_fp8_e4m3fn, GGUF
# conversions) hold Qwen-Image's tensors, name for name and shape for shape: their names say
# which they are. ComfyUI marks 2511's files with an empty tensor of this name (a buffer of its
# model), which diffusers' 2511 config says as zero_cond_t.
EDIT_2511_MARKER = "__index_timestep_zero__"
_CHECKPOINT_PREFIXES = ("transformer_blocks.0.img_mod.", "model.diffusion_model.txt_norm.")


def name_words(name: str) -> list[str]:
    """A file name's words, lowercased: split at separators, digits and camel case
    ("qwenImageEditRemix_v10" → qwen, image, edit, remix, v, 10)."""
    return [w.lower() for w in re.findall(r"[A-Z]+(?![a-z])|[A-Z]?[a-z]+|\d+", name)]


def _releases(words: list[str]) -> list[int]:
    """Release numbers in a name: Qwen's editions are dated YYMM (2509, 2511)."""
    return [int(w) for w in words if len(w) == 4 and w.isdigit() and 1 <= int(w) % 100 <= 12]


def _marked_2511(keys: list[str]) -> bool:
    return any(key.endswith(EDIT_2511_MARKER) for key in keys)


def is_edit_plus_file(keys: list[str], name: str) -> bool:
    """Qwen-Image-Edit 2509 and later (QwenImageEditPlusPipeline): 2511's mark, or an edit
    model's name with plus or an edition from 2509 on."""
    words = name_words(name)
    edition = "plus" in words or any(r >= 2509 for r in _releases(words))
    return _marked_2511(keys) or ("edit" in words and edition)


def is_edit_file(keys: list[str], name: str) -> bool:
    """The first Qwen-Image-Edit (QwenImageEditPipeline): a name that says edit, no later
    edition."""
    return "edit" in name_words(name) and not is_edit_plus_file(keys, name)


def conditions_at_time_zero(keys: list[str], name: str) -> bool:
    """Whether the edit model takes its input image's tokens at timestep zero (2511's
    zero_cond_t, a flag of the config: no tensor tells it but ComfyUI's mark)."""
    return _marked_2511(keys) or 2511 in _releases(name_words(name))


FAMILIES = [
    Family(
        name="qwen-image-edit",
        label="Qwen-Image-Edit",
        pipelines={"edit": "QwenImageEditPipeline"},
        index_classes=("QwenImageEditPipeline",),
        checkpoint_prefixes=_CHECKPOINT_PREFIXES,
        checkpoint_test=is_edit_file,
        **_COMMON,
    ),
    Family(
        name="qwen-image-edit-plus",
        label="Qwen-Image-Edit Plus (2509 and later)",
        pipelines={"edit": "QwenImageEditPlusPipeline"},
        index_classes=("QwenImageEditPlusPipeline",),
        edit_references=2,  # up to three images in all
        checkpoint_prefixes=_CHECKPOINT_PREFIXES,
        checkpoint_test=is_edit_plus_file,
        **_COMMON,
    ),
    Family(
        name="qwen-image",
        label="Qwen-Image",
        pipelines={
            "txt2img": "QwenImagePipeline",
            "img2img": "QwenImageImg2ImgPipeline",
            "inpaint": "QwenImageInpaintPipeline",
        },
        index_classes=("QwenImagePipeline",),
        checkpoint_prefixes=_CHECKPOINT_PREFIXES,
        checkpoint_class="QwenImagePipeline",
        controlnet_models=("QwenImageControlNetModel",),
        # inpaint: for inpainting ControlNets only (an extra mask channel), which repaint the
        # masked area from noise with the control image's rest and the mask as condition
        controlnet_pipelines={
            "txt2img": "QwenImageControlNetPipeline",
            "inpaint": "QwenImageControlNetInpaintPipeline",
        },
        **_COMMON,
    ),
]
