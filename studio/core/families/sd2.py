"""Stable Diffusion 2.x: the SD 1.x pipelines with an OpenCLIP text encoder; the 768 px
models predict v (their scheduler config says so, which the engine reads)."""

from __future__ import annotations

from studio.core.families import Family, Guidance, is_sd2
from studio.core.families.sd1 import SD_CONTROLNET_PIPELINES, SD_PIPELINES, SD_VAE_PREVIEW

FAMILIES = [
    Family(
        name="sd2",
        label="SD 2.x",
        pipelines=SD_PIPELINES,
        native_size=768,
        default_steps=25,
        guidance=Guidance("cfg", 7.0),
        preview=SD_VAE_PREVIEW,  # the same VAE as SD 1.x
        index_classes=("StableDiffusionPipeline",),
        config_test=is_sd2,
        checkpoint_prefixes=("cond_stage_model.model.",),
        checkpoint_class="StableDiffusionPipeline",
        controlnet_models=("ControlNetModel",),
        controlnet_pipelines=SD_CONTROLNET_PIPELINES,
    ),
]
