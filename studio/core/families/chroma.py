"""Chroma: Flux.1's architecture without the guidance input, T5 only, real CFG with a
negative prompt (two calls a step)."""

from __future__ import annotations

from studio.core.families import Family, Guidance
from studio.core.families.flux import FLUX_VAE_PREVIEW
from studio.core.schedulers import CUSTOM_SIGMA_SAMPLERS

FAMILIES = [
    Family(
        name="chroma",
        label="Chroma",
        pipelines={
            "txt2img": "ChromaPipeline",
            "img2img": "ChromaImg2ImgPipeline",
            "inpaint": "ChromaInpaintPipeline",
        },
        denoiser="transformer",
        prediction="flow",
        latent_channels=16,
        layout="packed",
        native_size=1024,
        default_steps=26,
        default_sampler="Euler",
        samplers=CUSTOM_SIGMA_SAMPLERS,  # the pipeline passes its own σ schedule
        guidance=Guidance("true_cfg", 4.0),
        preview=FLUX_VAE_PREVIEW,  # Flux.1's VAE
        index_classes=("ChromaPipeline",),
        # its distilled modulation replaces Flux's per-block one: only Chroma has this
        checkpoint_prefixes=("distilled_guidance_layer.",),
        checkpoint_class="ChromaPipeline",
    ),
]
