"""Stable Diffusion 3 and 3.5: a rectified-flow transformer (MMDiT) on 16-channel latents,
three text encoders, batched CFG with a negative prompt."""

from __future__ import annotations

from studio.core.families import Family, Guidance
from studio.core.schedulers import FLOW_SAMPLERS

# A published approximation of the SD 3 VAE's latents, as the network sees them (shifted
# and scaled), to RGB: one row per latent channel, and a bias.
SD3_VAE_PREVIEW = (
    (
        (-0.0922, -0.0175, 0.0749),
        (0.0311, 0.0633, 0.0954),
        (0.1994, 0.0927, 0.0458),
        (0.0856, 0.0339, 0.0902),
        (0.0587, 0.0272, -0.0496),
        (-0.0006, 0.1104, 0.0309),
        (0.0978, 0.0306, 0.0427),
        (-0.0042, 0.1038, 0.1358),
        (-0.0194, 0.0020, 0.0669),
        (-0.0488, 0.0130, -0.0268),
        (0.0922, 0.0988, 0.0951),
        (-0.0278, 0.0524, -0.0542),
        (0.0332, 0.0456, 0.0895),
        (-0.0069, -0.0030, -0.0810),
        (-0.0596, -0.0465, -0.0293),
        (-0.1448, -0.1463, -0.1189),
    ),
    (0.2394, 0.2135, 0.1925),
)

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
        preview=SD3_VAE_PREVIEW,
        index_classes=("StableDiffusion3Pipeline",),
        checkpoint_prefixes=("model.diffusion_model.joint_blocks.", "joint_blocks."),
        checkpoint_class="StableDiffusion3Pipeline",
        controlnet_models=("SD3ControlNetModel",),
        # inpaint: for inpainting ControlNets only (an extra mask channel), which repaint the
        # masked area from noise with the control image's rest and the mask as condition
        controlnet_pipelines={
            "txt2img": "StableDiffusion3ControlNetPipeline",
            "inpaint": "StableDiffusion3ControlNetInpaintingPipeline",
        },
    ),
]
