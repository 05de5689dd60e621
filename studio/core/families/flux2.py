"""Flux.2 Klein: a rectified-flow transformer on Flux.2's 32-channel VAE latents, patched
2×2 and batch-normalised into 128-channel tokens, with Qwen3 as text encoder. The distilled
Klein models run a few unguided steps; the base ones use CFG as two calls a step. Given
reference images, the same pipeline edits."""

from __future__ import annotations

from studio.core.families import ConfigReader, Family, Guidance
from studio.core.schedulers import CUSTOM_SIGMA_SAMPLERS


def _distilled(read: ConfigReader) -> bool:
    return bool(read("").get("is_distilled", False))  # the pipeline's own config says


_COMMON = {
    "pipelines": {
        "txt2img": "Flux2KleinPipeline",
        "inpaint": "Flux2KleinInpaintPipeline",
        "edit": "Flux2KleinPipeline",
    },
    "denoiser": "transformer",
    "prediction": "flow",
    "latent_channels": 128,
    "layout": "flux2",
    "native_size": 1024,
    "default_sampler": "Euler",
    "samplers": CUSTOM_SIGMA_SAMPLERS,
    "preview_vae_blocks": (),  # fitted from the model's own VAE
    "index_classes": ("Flux2KleinPipeline",),
    "edit_references": 3,  # Klein takes a list of images: the input and up to 3 more
}

FAMILIES = [
    Family(
        name="flux2-klein",
        label="Flux.2 Klein",
        default_steps=4,
        guidance=Guidance("none", 1.0),
        config_test=_distilled,
        **_COMMON,
    ),
    Family(
        name="flux2-klein-base",
        label="Flux.2 Klein base",
        default_steps=50,
        guidance=Guidance("true_cfg", 4.0),
        config_test=lambda read: not _distilled(read),
        **_COMMON,
    ),
]
