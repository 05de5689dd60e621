"""Flux.1: a rectified-flow transformer on 16-channel latents packed as 2×2 patches.
dev is guidance-distilled (the guidance strength is an input, no negative prompt);
schnell is timestep-distilled (4 steps, unguided); Kontext edits an input image."""

from __future__ import annotations

from studio.core.families import ConfigReader, Family, Guidance
from studio.core.schedulers import FLOW_SAMPLERS

# A published approximation of the Flux.1 VAE's latents, as the network sees them (shifted,
# scaled and unpacked), to RGB: one row per latent channel, and a bias. Chroma shares it.
FLUX_VAE_PREVIEW = (
    (
        (-0.0346, 0.0244, 0.0681),
        (0.0034, 0.0210, 0.0687),
        (0.0275, -0.0668, -0.0433),
        (-0.0174, 0.0160, 0.0617),
        (0.0859, 0.0721, 0.0329),
        (0.0004, 0.0383, 0.0115),
        (0.0405, 0.0861, 0.0915),
        (-0.0236, -0.0185, -0.0259),
        (-0.0245, 0.0250, 0.1180),
        (0.1008, 0.0755, -0.0421),
        (-0.0515, 0.0201, 0.0011),
        (0.0428, -0.0012, -0.0036),
        (0.0817, 0.0765, 0.0749),
        (-0.1264, -0.0522, -0.1103),
        (-0.0280, -0.0881, -0.0499),
        (-0.1262, -0.0982, -0.0778),
    ),
    (-0.0329, -0.0718, -0.0851),
)


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
    # Flux's pipelines pass their own σ schedule to every sampler but those that make their
    # own flow σs (DPM++ 2M, UniPC); flow Heun takes neither and fails before the first step
    "samplers": tuple(name for name in FLOW_SAMPLERS if name != "Heun"),
    "preview": FLUX_VAE_PREVIEW,
    # transformer-only files as model sites share them, and full checkpoints
    "checkpoint_prefixes": ("double_blocks.", "model.diffusion_model.double_blocks."),
    "checkpoint_class": "FluxPipeline",
}
# Flux.1 dev and schnell run FluxControlNetModel (a union one is the same class with a
# num_mode in its config, given a control mode per image); Kontext has no ControlNet pipeline
_CONTROLNETS = {
    "controlnet_models": ("FluxControlNetModel",),
    "controlnet_pipelines": {
        "txt2img": "FluxControlNetPipeline",
        "img2img": "FluxControlNetImg2ImgPipeline",
        "inpaint": "FluxControlNetInpaintPipeline",
    },
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
        checkpoint_test=lambda keys, name: _guidance_in_file(keys),
        **_COMMON,
        **_CONTROLNETS,
    ),
    Family(
        name="flux-schnell",
        label="Flux.1 schnell",
        pipelines=_PIPELINES,
        default_steps=4,
        guidance=Guidance("none", 0.0),
        index_classes=("FluxPipeline",),
        config_test=lambda read: not _guidance_embedded(read),
        checkpoint_test=lambda keys, name: not _guidance_in_file(keys),
        **_COMMON,
        **_CONTROLNETS,
    ),
]
