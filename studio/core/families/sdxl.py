"""SDXL and its fine-tunes (Pony, Illustrious, NoobAI): two text encoders, 1024 px."""

from __future__ import annotations

from studio.core.families import Family, Guidance

FAMILIES = [
    Family(
        name="sdxl",
        label="SDXL",
        pipelines={
            "txt2img": "StableDiffusionXLPipeline",
            "img2img": "StableDiffusionXLImg2ImgPipeline",
            "inpaint": "StableDiffusionXLInpaintPipeline",
        },
        native_size=1024,
        default_steps=25,
        default_sampler="DPM++ 2M Karras",
        guidance=Guidance("cfg", 6.0),
        # a published approximation of the SDXL VAE's latents as RGB
        preview=(
            (
                (0.3651, 0.4232, 0.4341),
                (-0.2533, -0.0042, 0.1068),
                (0.1076, 0.1111, -0.0362),
                (-0.3165, -0.2492, -0.2188),
            ),
            (0.1084, -0.0175, -0.0011),
        ),
        index_classes=("StableDiffusionXLPipeline", "StableDiffusionXLInpaintPipeline"),
        # only SDXL checkpoints have a second text encoder under this prefix
        checkpoint_prefixes=("conditioner.embedders.1.",),
        checkpoint_class="StableDiffusionXLPipeline",
        controlnet_models=("ControlNetModel",),
        controlnet_pipelines={
            "txt2img": "StableDiffusionXLControlNetPipeline",
            "img2img": "StableDiffusionXLControlNetImg2ImgPipeline",
            "inpaint": "StableDiffusionXLControlNetInpaintPipeline",
        },
        # ControlNet++ (one network, a control type per image): run by diffusers' union
        # pipelines of each mode (StableDiffusionXLControlNetUnion…Pipeline)
        controlnet_unions=("ControlNetUnionModel",),
    ),
]
