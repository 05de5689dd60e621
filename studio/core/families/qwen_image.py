"""Qwen-Image: a 20 B rectified-flow transformer on a Wan-style VAE's 16-channel latents
(per-channel statistics, packed 2×2), with Qwen2.5-VL as text encoder and true CFG.
Qwen-Image-Edit is its instruction-editing sibling."""

from __future__ import annotations

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

FAMILIES = [
    Family(
        name="qwen-image-edit",
        label="Qwen-Image-Edit",
        pipelines={"edit": "QwenImageEditPipeline"},
        index_classes=("QwenImageEditPipeline",),
        **_COMMON,
    ),
    Family(
        name="qwen-image-edit-plus",
        label="Qwen-Image-Edit Plus (2509 and later)",
        pipelines={"edit": "QwenImageEditPlusPipeline"},
        index_classes=("QwenImageEditPlusPipeline",),
        edit_references=2,  # up to three images in all
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
        checkpoint_prefixes=("transformer_blocks.0.img_mod.", "model.diffusion_model.txt_norm."),
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
