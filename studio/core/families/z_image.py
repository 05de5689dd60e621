"""Z-Image (and Z-Image-Turbo): a single-stream rectified-flow transformer on Flux's VAE
latents, Qwen3 as text encoder, batched CFG (Turbo runs unguided, at 8 steps)."""

from __future__ import annotations

from studio.core.families import Family, Guidance
from studio.core.schedulers import CUSTOM_SIGMA_SAMPLERS

FAMILIES = [
    Family(
        name="z-image",
        label="Z-Image",
        pipelines={
            "txt2img": "ZImagePipeline",
            "img2img": "ZImageImg2ImgPipeline",
            "inpaint": "ZImageInpaintPipeline",
        },
        denoiser="transformer",
        prediction="flow",
        latent_channels=16,
        native_size=1024,
        default_steps=8,
        default_sampler="Euler",
        samplers=CUSTOM_SIGMA_SAMPLERS,  # the pipeline passes its own σ schedule
        # CFG as one batched call, but on a list of latents: CFG rescale does not reach it
        guidance=Guidance("cfg_list", 1.0),
        index_classes=("ZImagePipeline",),
        checkpoint_prefixes=("cap_embedder.", "model.diffusion_model.cap_embedder."),
        checkpoint_class="ZImagePipeline",
        # Z-Image's ControlNets (VideoX-Fun's) borrow the transformer's embedders and refiners
        # (the pipeline joins them), act at every step and run one at a time. inpaint: for
        # inpainting-capable ControlNets only (2.x: the mask's and the masked picture's
        # latents after the control image's), which repaint the masked area from noise;
        # diffusers has no image→image one
        controlnet_models=("ZImageControlNetModel",),
        controlnet_pipelines={
            "txt2img": "ZImageControlNetPipeline",
            "inpaint": "ZImageControlNetInpaintPipeline",
        },
    ),
]
