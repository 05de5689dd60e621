"""Flux.1: a rectified-flow transformer on 16-channel latents packed as 2×2 patches.
dev is guidance-distilled (the guidance strength is an input, no negative prompt);
schnell is timestep-distilled (4 steps, unguided); Kontext edits an input image."""

from __future__ import annotations

from studio.core.families import ConfigReader, Family, Guidance
from studio.core.schedulers import FLOW_SAMPLERS


def _guidance_embedded(read: ConfigReader) -> bool:
    return bool(read("transformer").get("guidance_embeds", False))


def _guidance_in_file(keys: list[str]) -> bool:
    """dev takes the guidance strength as an input (its file has guidance_in.*); schnell
    has no such layer."""
    return any(k.removeprefix("model.diffusion_model.").startswith("guidance_in.") for k in keys)


_COMMON = {
    "denoiser": "transformer",
    "prediction": "flow",
    "latent_channels": 16,
    "layout": "packed",
    "timestep_per_sigma": 1.0,  # the pipeline passes t / 1000 = σ
    "native_size": 1024,
    "default_sampler": "Euler",
    "samplers": FLOW_SAMPLERS,
    # transformer-only files as model sites share them, and full checkpoints
    "checkpoint_prefixes": ("double_blocks.", "model.diffusion_model.double_blocks."),
    "checkpoint_class": "FluxPipeline",
}
_PIPELINES = {
    "txt2img": "FluxPipeline",
    "img2img": "FluxImg2ImgPipeline",
    "inpaint": "FluxInpaintPipeline",
}

FAMILIES = [
    Family(
        name="flux-kontext",
        label="Flux.1 Kontext",
        pipelines={"txt2img": "FluxKontextPipeline", "edit": "FluxKontextPipeline"},
        default_steps=28,
        guidance=Guidance("distilled", 2.5),
        index_classes=("FluxKontextPipeline",),
        **{**_COMMON, "checkpoint_prefixes": ()},
    ),
    Family(
        name="flux-dev",
        label="Flux.1 dev",
        pipelines=_PIPELINES,
        default_steps=28,
        guidance=Guidance("distilled", 3.5),
        index_classes=("FluxPipeline",),
        config_test=_guidance_embedded,
        checkpoint_test=_guidance_in_file,
        **_COMMON,
    ),
    Family(
        name="flux-schnell",
        label="Flux.1 schnell",
        pipelines=_PIPELINES,
        default_steps=4,
        guidance=Guidance("none", 0.0),
        index_classes=("FluxPipeline",),
        config_test=lambda read: not _guidance_embedded(read),
        checkpoint_test=lambda keys: not _guidance_in_file(keys),
        **_COMMON,
    ),
]
