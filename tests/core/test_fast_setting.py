"""Live mode's fast setting: a distilled model's own steps/CFG/sampler, else an acceleration
LoRA of the model's family from the LoRA folder, else a short schedule and a sentence saying
how to get a fast setting."""

from __future__ import annotations

from pathlib import Path

import pytest

from studio.core.families import by_name
from studio.core.fast_setting import (
    FEW_STEP_CFG,
    FEW_STEP_SAMPLER,
    LIVE_STEPS,
    fast_setting,
    fits,
)
from studio.core.loras import family_from_name
from studio.core.request import GenerationRequest

SD1, SDXL, FLUX_DEV = by_name("sd1"), by_name("sdxl"), by_name("flux-dev")


@pytest.mark.parametrize(
    ("model", "family", "label", "steps", "cfg", "sampler"),
    [
        ("stabilityai/sdxl-turbo", SDXL, "SDXL-Turbo", 4, 1.0, "Euler a SGM Uniform"),
        ("stabilityai/sd-turbo", None, "SD-Turbo", 4, 1.0, "Euler a SGM Uniform"),
        ("/m/sdxl_lightning_4step.safetensors", SDXL, "Lightning", 4, 1.0, "Euler SGM Uniform"),
        ("/m/realvisxlV40_v40LightningBakedvae.safetensors", SDXL, "Lightning", 4, 1.0, None),
        ("/m/Hyper-SDXL-8steps", SDXL, "Hyper-SD", 8, 1.0, "Euler SGM Uniform"),
        ("SimianLuo/LCM_Dreamshaper_v7", SD1, "LCM", 4, 1.0, "LCM"),
        ("/m/dreamshaper_8LCM.safetensors", SD1, "LCM", 4, 1.0, "LCM"),
        ("/m/FLUX.1-schnell", by_name("flux-schnell"), "Flux.1 schnell", 4, 0.0, "Euler"),
        ("black-forest-labs/FLUX.1-schnell", None, "Flux.1 schnell", 4, 0.0, "Euler"),
        ("/m/flux2-klein-4b", by_name("flux2-klein"), "Flux.2 Klein", 4, 1.0, "Euler"),
        ("Tongyi-MAI/Z-Image-Turbo", by_name("z-image"), "Z-Image-Turbo", 8, 1.0, "Euler"),
        ("/m/stable-diffusion-3.5-large-turbo", by_name("sd3"), "SD 3.5 Turbo", 4, 1.0, "Euler"),
        ("/m/fluxTurboMix_v2.safetensors", FLUX_DEV, "Turbo", 8, 3.5, "Euler"),
        ("/m/flux1-dev.safetensors", FLUX_DEV, None, None, None, None),  # none: not distilled
        ("/m/HyperMix_v3.safetensors", SD1, None, None, None, None),  # "hyper…" but no Hyper-SD
        ("/m/hyperdetailedAnime.safetensors", SD1, None, None, None, None),
    ],
)
def test_a_distilled_model_gets_its_publishers_setting(  # noqa: PLR0913
    model, family, label, steps, cfg, sampler
) -> None:
    setting = fast_setting(model, family, [("lcm-lora-sdxl", "SDXL")])
    if label is None:
        assert not setting.found
        return
    assert (setting.label, setting.steps, setting.cfg_scale) == (label, steps, cfg)
    assert sampler is None or setting.sampler == sampler
    assert setting.found and not setting.lora  # its own setting: no LoRA added


@pytest.mark.parametrize(
    ("family", "loras", "label", "lora", "steps", "cfg", "sampler", "weight"),
    [
        (SD1, [("lcm-lora-sdv1-5", "")], "LCM-LoRA", "lcm-lora-sdv1-5", 4, 1.0, "LCM", 1.0),
        (SDXL, [("lcm-lora-sdxl", "SD 1.x")], "LCM-LoRA", "lcm-lora-sdxl", 4, 1.0, "LCM", 1.0),
        # Lightning beats LCM; of two Lightning LoRAs the 4-step one
        (
            SDXL,
            [
                ("lcm-lora-sdxl", ""),
                ("sdxl_lightning_8step_lora", ""),
                ("sdxl_lightning_4step_lora", ""),
            ],
            "Lightning LoRA",
            "sdxl_lightning_4step_lora",
            4,
            1.0,
            "Euler SGM Uniform",
            1.0,
        ),
        (
            SDXL,
            [("Hyper-SDXL-8steps-CFG-lora", "")],
            "Hyper-SD LoRA",
            "Hyper-SDXL-8steps-CFG-lora",
            8,
            5.0,
            "Euler SGM Uniform",
            1.0,
        ),
        (SDXL, [("dmd2_sdxl_4step_lora", "")], "DMD2 LoRA", "dmd2_sdxl_4step_lora", 4, 1, "LCM", 1),
        # a renamed LCM-LoRA: the family its header shows decides
        (SD1, [("my-lcm-lora", "SD 1.x")], "LCM-LoRA", "my-lcm-lora", 4, 1.0, "LCM", 1.0),
        # Flux.1 dev keeps its distilled guidance and flow sampler; Hyper's weight is 0.125
        (
            FLUX_DEV,
            [("Hyper-FLUX.1-dev-8steps-lora", "")],
            "Hyper-SD LoRA",
            "Hyper-FLUX.1-dev-8steps-lora",
            8,
            3.5,
            "Euler",
            0.125,
        ),
        (
            by_name("qwen-image"),
            [("Qwen-Image-Lightning-8steps-V1.0", "")],
            "Lightning LoRA",
            "Qwen-Image-Lightning-8steps-V1.0",
            8,
            1.0,
            "Euler",
            1.0,
        ),
    ],
)
def test_an_acceleration_lora_of_the_models_family_is_added(  # noqa: PLR0913
    family, loras, label, lora, steps, cfg, sampler, weight
) -> None:
    setting = fast_setting("/m/some-finetune.safetensors", family, loras)
    assert (setting.label, setting.lora, setting.steps) == (label, lora, steps)
    assert (setting.cfg_scale, setting.sampler, setting.lora_weight) == (cfg, sampler, weight)
    assert setting.found


@pytest.mark.parametrize(
    ("family", "loras"),
    [
        (SDXL, []),  # none
        (SDXL, [("lcm-lora-sdv1-5", "SD 1.x")]),  # another family's, by its name
        (SDXL, [("my-lcm-lora", "SD 1.x")]),  # another family's, by its header
        (SDXL, [("my-lcm-lora", "")]),  # a family nothing shows: not risked
        (SDXL, [("lcm-lora-ssd-1b", "SDXL")]),  # SSD-1B's: fits no full SDXL model
        (SDXL, [("lightning_bolts_style", "SDXL")]),  # a style LoRA, not a Lightning one
        (SD1, [("hyperrealism", "SD 1.x")]),
        (FLUX_DEV, [("sdxl_lightning_4step_lora", "")]),
    ],
)
def test_without_one_a_short_schedule_and_a_sentence_on_how_to_get_one(family, loras) -> None:
    setting = fast_setting("/m/juggernautXL_v9.safetensors", family, loras)
    assert not setting.found and not setting.lora and setting.label == "no fast setting"
    assert setting.steps == LIVE_STEPS and setting.at_most
    if family is FLUX_DEV:  # a flow model keeps its sampler and its distilled guidance
        assert setting.sampler == "Euler" and setting.cfg_scale is None
        assert "Lightning, Hyper-SD or Turbo LoRA for Flux.1 dev" in setting.hint
    else:
        assert (setting.sampler, setting.cfg_scale) == (FEW_STEP_SAMPLER, FEW_STEP_CFG)
        assert f"LCM, Lightning or Hyper-SD LoRA for {family.label} to your LoRA folder" in (
            setting.hint
        )
    assert setting.hint.endswith(".") and ". " not in setting.hint  # one sentence


def test_studio_tiny_keeps_its_short_schedule_of_the_panels_sampler() -> None:
    from studio.core import catalog

    card = catalog.read_model_card(Path(catalog.resolve("studio-tiny").location))  # as shipped
    setting = fast_setting("studio-tiny", SD1, [("lcm-lora-sdv1-5", "")], card)
    assert setting.found and setting.label == "short schedule" and setting.at_most
    assert (setting.steps, setting.cfg_scale, setting.sampler, setting.lora) == (6, None, None, "")
    request = GenerationRequest(
        prompt="a red circle", steps=20, cfg_scale=4.0, scheduler="DPM++ 2M"
    )
    live = setting.apply(request)
    assert (live.steps, live.cfg_scale, live.scheduler, live.prompt) == (
        6,
        4.0,
        "DPM++ 2M",
        "a red circle",
    )


def test_applying_a_lora_setting_adds_its_tag_and_keeps_the_artists_weight() -> None:
    setting = fast_setting("/m/x.safetensors", SDXL, [("sdxl_lightning_4step_lora", "")])
    request = GenerationRequest(prompt="a cat <lora:style:0.6>", steps=30, cfg_scale=7.0)
    live = setting.apply(request)
    assert live.prompt == "a cat <lora:style:0.6> <lora:sdxl_lightning_4step_lora:1>"
    assert (live.steps, live.cfg_scale, live.scheduler) == (4, 1.0, "Euler SGM Uniform")
    assert not live.problems()  # the fast sampler is one a request may ask for
    mine = request.replace(prompt="a cat <lora:sdxl_lightning_4step_lora:0.8>")
    assert setting.apply(mine).prompt == mine.prompt
    # the one the prompt already names wins over a better-ranked one
    both = [("sdxl_lightning_4step_lora", ""), ("lcm-lora-sdxl", "")]
    chosen = fast_setting("/m/x.safetensors", SDXL, both, prompt="a cat <lora:lcm-lora-sdxl:1>")
    assert chosen.lora == "lcm-lora-sdxl"


@pytest.mark.parametrize(
    ("name", "family"),
    [
        ("lcm-lora-sdv1-5", "SD 1.x"),
        ("lcm-lora-sdxl", "SDXL"),
        ("Hyper-SD15-8steps-lora", "SD 1.x"),
        ("Hyper-SD3-8steps-CFG-lora", "SD 3.x"),
        ("sdxl_lightning_4step_lora", "SDXL"),
        ("Qwen-Image-Edit-Lightning-4steps", "Qwen-Image-Edit"),
        ("FLUX.1-Turbo-Alpha", "Flux.1"),
        ("pytorch_lora_weights", ""),
    ],
)
def test_a_loras_name_says_its_family(name, family) -> None:
    assert family_from_name(name) == family


def test_a_lora_whose_header_says_nothing_has_its_names_family(tmp_path) -> None:  # noqa: ANN001
    """The panel's description and the fast setting read a LoRA's family by one rule: its
    name's, when its header (no metadata, keys of no known layout) shows none."""
    import numpy as np
    from safetensors.numpy import save_file

    from studio.core import loras

    path = tmp_path / "Hyper-SD15-8steps-lora.safetensors"
    save_file({"a.lora_down.weight": np.zeros((4, 8), np.float32)}, str(path))
    pickled = tmp_path / "lcm-lora-sdxl.pt"  # no header read at all
    pickled.write_bytes(b"")
    assert loras.describe(path).family == loras.family(path) == "SD 1.x"
    assert loras.describe(pickled).family == loras.family(pickled) == "SDXL"


def test_a_unet_only_sdxl_lora_is_read_as_sdxl(tmp_path) -> None:  # noqa: ANN001
    """LCM-LoRA, Lightning and Hyper-SD LoRAs for SDXL carry no second text encoder's layers:
    their UNet's stacked transformer blocks say SDXL (SD 1.x has one a layer)."""
    import numpy as np
    from safetensors.numpy import save_file

    from studio.core.loras import describe

    def lora(name: str, blocks: int) -> str:
        keys = {}
        for block in range(blocks):
            module = f"lora_unet_down_blocks_1_attentions_0_transformer_blocks_{block}_attn1_to_q"
            keys[f"{module}.lora_down.weight"] = np.zeros((4, 8), np.float32)
            keys[f"{module}.alpha"] = np.ones((), np.float32)
        save_file(keys, str(tmp_path / f"{name}.safetensors"))
        return describe(tmp_path / f"{name}.safetensors").family

    assert lora("pytorch_lora_weights", 2) == "SDXL"
    assert lora("sd15_lora", 1) == "SD 1.x"


def test_a_fast_sampler_is_written_as_a1111_writes_it_and_restores_as_its_relative() -> None:
    from PIL import Image

    from studio.core.saving import parameters_of
    from studio.core.schedulers import closest_scheduler
    from studio.metadata import format_a1111

    request = GenerationRequest(
        prompt="a cat", steps=4, cfg_scale=1.0, scheduler="Euler SGM Uniform"
    )
    text = format_a1111(parameters_of(request, 3, Image.new("RGB", (64, 64))))
    assert "Sampler: Euler, " in text and "Schedule type: SGM Uniform" in text
    assert closest_scheduler("Euler SGM Uniform") == "Euler"
    assert closest_scheduler("LCM") == "Euler"


def test_the_short_schedule_caps_the_panels_cfg_and_never_raises_it() -> None:
    setting = fast_setting("/m/dreamshaper_8.safetensors", SD1)
    assert not setting.found and setting.cfg_scale == FEW_STEP_CFG
    for panel, live in ((7.0, FEW_STEP_CFG), (2.0, 2.0)):
        request = GenerationRequest(prompt="a cat", steps=30, cfg_scale=panel)
        assert setting.apply(request).cfg_scale == live


def test_a_flux2_dev_lora_is_not_offered_to_klein() -> None:
    klein = by_name("flux2-klein")
    assert not fast_setting("/m/klein.safetensors", by_name("flux2-klein-base"), [
        ("Flux.2-dev-Turbo-lora", "")
    ]).lora  # fmt: skip
    assert family_from_name("flux2-klein-turbo-lora") == "Flux.2 Klein"
    assert fits(family_from_name("flux2-klein-turbo-lora"), klein)
