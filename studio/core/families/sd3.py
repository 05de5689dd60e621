"""Stable Diffusion 3 and 3.5: a rectified-flow transformer (MMDiT) on 16-channel latents,
three text encoders, batched CFG with a negative prompt."""

from __future__ import annotations

from studio.core.families import Family, Guidance
from studio.core.schedulers import FLOW_SAMPLERS

FAMILIES = [
    Family(
        name="sd3",
        label="SD 3.x",
        pipelines={
            "txt2img": "StableDiffusion3Pipeline",
            "img2img": "StableDiffusion3Img2ImgPipeline",
            "inpaint": "StableDiffusion3InpaintPipeline",
        },
        denoiser="transformer",
        prediction="flow",
        latent_channels=16,
        timestep_per_sigma=1000.0,  # the pipeline passes the scheduler's t = 1000·σ
        native_size=1024,
        default_steps=28,
        default_sampler="Euler",
        samplers=FLOW_SAMPLERS,
        guidance=Guidance("cfg", 4.5),
        index_classes=("StableDiffusion3Pipeline",),
        checkpoint_prefixes=("model.diffusion_model.joint_blocks.", "joint_blocks."),
        checkpoint_class="StableDiffusion3Pipeline",
    ),
]
