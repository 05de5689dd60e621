"""Stable Diffusion 1.x (and the embedded studio-tiny, which has its architecture)."""

from __future__ import annotations

from studio.core.families import Family, Guidance, is_sd2

# A published approximation of the SD 1.x VAE's latents (scaled) as RGB.
SD_VAE_PREVIEW = (
    (
        (0.3512, 0.2297, 0.3227),
        (0.3250, 0.4974, 0.2350),
        (-0.2829, 0.1762, 0.2721),
        (-0.2120, -0.2616, -0.7177),
    ),
    (0.0, 0.0, 0.0),
)

SD_PIPELINES = {
    "txt2img": "StableDiffusionPipeline",
    "img2img": "StableDiffusionImg2ImgPipeline",
    "inpaint": "StableDiffusionInpaintPipeline",
}

SD_CONTROLNET_PIPELINES = {
    "txt2img": "StableDiffusionControlNetPipeline",
    "img2img": "StableDiffusionControlNetImg2ImgPipeline",
    "inpaint": "StableDiffusionControlNetInpaintPipeline",
}

FAMILIES = [
    Family(
        name="sd1",
        label="SD 1.x",
        pipelines=SD_PIPELINES,
        native_size=512,
        default_steps=25,
        guidance=Guidance("cfg", 7.0),
        preview=SD_VAE_PREVIEW,
        index_classes=("StableDiffusionPipeline", "StableDiffusionInpaintPipeline"),
        # SD 2.x shares the class; its text encoder is 1024 wide (SD 1.x: 768; tiny: any)
        config_test=lambda read: not is_sd2(read),
        checkpoint_prefixes=("cond_stage_model.transformer.",),
        checkpoint_class="StableDiffusionPipeline",
        controlnet_models=("ControlNetModel",),
        controlnet_pipelines=SD_CONTROLNET_PIPELINES,
    ),
]
