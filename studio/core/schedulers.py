"""Scheduler (sampler) names as artists know them from AUTOMATIC1111, and the diffusers
class and settings each one runs as (the engine makes the object: `engine.schedulers`).

The names double as the `Sampler:` value written into PNG metadata, so files
round-trip through every tool that reads the A1111 format.
"""

from __future__ import annotations

from typing import Any

# name -> (diffusers class name, config overrides)
SCHEDULERS: dict[str, tuple[str, dict[str, Any]]] = {
    "Euler a": ("EulerAncestralDiscreteScheduler", {}),
    "Euler": ("EulerDiscreteScheduler", {}),
    "DPM++ 2M": ("DPMSolverMultistepScheduler", {}),
    "DPM++ 2M Karras": ("DPMSolverMultistepScheduler", {"use_karras_sigmas": True}),
    "DPM++ 2M SDE": ("DPMSolverMultistepScheduler", {"algorithm_type": "sde-dpmsolver++"}),
    "DPM++ 2M SDE Karras": (
        "DPMSolverMultistepScheduler",
        {"algorithm_type": "sde-dpmsolver++", "use_karras_sigmas": True},
    ),
    "DPM2": ("KDPM2DiscreteScheduler", {}),
    "DPM2 a": ("KDPM2AncestralDiscreteScheduler", {}),
    "Heun": ("HeunDiscreteScheduler", {}),
    "LMS": ("LMSDiscreteScheduler", {}),
    "LMS Karras": ("LMSDiscreteScheduler", {"use_karras_sigmas": True}),
    "DPM++ 3M SDE": (
        "DPMSolverMultistepScheduler",
        {"algorithm_type": "sde-dpmsolver++", "solver_order": 3},
    ),
    "DPM++ 3M SDE Karras": (
        "DPMSolverMultistepScheduler",
        {"algorithm_type": "sde-dpmsolver++", "solver_order": 3, "use_karras_sigmas": True},
    ),
    # As Stable Diffusion's own configs: no clipping of x0 to [-1, 1], which is wrong in
    # latent space, and no final alpha of one.
    "DDIM": ("DDIMScheduler", {"clip_sample": False, "set_alpha_to_one": False}),
    "PNDM": ("PNDMScheduler", {"skip_prk_steps": True}),  # as Stable Diffusion runs it
    "DDPM": ("DDPMScheduler", {"clip_sample": False}),
    "UniPC": ("UniPCMultistepScheduler", {}),
}

SCHEDULER_NAMES: tuple[str, ...] = tuple(SCHEDULERS)

# The samplers of distilled models and acceleration LoRAs (live mode's fast setting,
# `core.fast_setting`), which the engine runs besides the picker's: LCM's consistency sampler
# (LCM-LoRA, DMD2), and Euler with "trailing" timesteps, which start at the last training
# timestep as SDXL-Lightning, SDXL-Turbo and Hyper-SD were distilled to (A1111/Forge and
# ComfyUI call that schedule SGM Uniform). Not in SCHEDULER_NAMES: the picker does not offer
# them, and a sampler of these written into a file restores as its relative below.
FAST_SCHEDULERS: dict[str, tuple[str, dict[str, Any]]] = {
    "LCM": ("LCMScheduler", {}),
    "Euler SGM Uniform": ("EulerDiscreteScheduler", {"timestep_spacing": "trailing"}),
    "Euler a SGM Uniform": ("EulerAncestralDiscreteScheduler", {"timestep_spacing": "trailing"}),
}
RUNNABLE_SCHEDULERS: tuple[str, ...] = (*SCHEDULER_NAMES, *FAST_SCHEDULERS)


def a1111_sampler(name: str) -> tuple[str, str | None]:
    """The `Sampler:` and `Schedule type:` values A1111 (>= 1.6) writes for a scheduler."""
    if name.endswith(" SGM Uniform"):
        return name.removesuffix(" SGM Uniform"), "SGM Uniform"
    return name, None


# Rectified-flow models (SD 3, Flux, Qwen-Image…) run flow-matching samplers: the same
# names where the method is the same, none of the DDPM-family ones that cannot run them.
# The engine carries the model's shift into each (`engine.schedulers`).
FLOW_SCHEDULERS: dict[str, tuple[str, dict[str, Any]]] = {
    "Euler": ("FlowMatchEulerDiscreteScheduler", {}),
    "Heun": ("FlowMatchHeunDiscreteScheduler", {}),
    "DPM++ 2M": (
        "DPMSolverMultistepScheduler",
        {"use_flow_sigmas": True, "prediction_type": "flow_prediction"},
    ),
    "UniPC": (
        "UniPCMultistepScheduler",
        {"use_flow_sigmas": True, "prediction_type": "flow_prediction"},
    ),
}
FLOW_SAMPLERS: tuple[str, ...] = tuple(FLOW_SCHEDULERS)
# Pipelines that pass their own σ schedule (Flux's resolution-dependent shift) can only
# run the samplers that take one.
CUSTOM_SIGMA_SAMPLERS: tuple[str, ...] = ("Euler", "UniPC")

# Config keys that belong to one scheduler family and confuse another when carried over.
NOT_CARRIED = (
    "use_karras_sigmas",
    "algorithm_type",
    "solver_order",
    "skip_prk_steps",
    "clip_sample",
    "set_alpha_to_one",
)

# Samplers other tools write that the studio runs as a close relative (after
# `metadata.normalise_sampler` has put them in AUTOMATIC1111's spelling).
_RELATIVES = {
    "DPM++ SDE": "DPM++ 2M SDE",
    "DPM++ SDE Karras": "DPM++ 2M SDE Karras",
    "DPM++ 2S a": "Euler a",
    "DPM++ 2S a Karras": "Euler a",
    "DPM2 Karras": "DPM2",
    "DPM2 a Karras": "DPM2 a",
    "DPM fast": "DPM++ 2M",
    "DPM adaptive": "DPM++ 2M",
    "PLMS": "PNDM",
    "DEIS": "UniPC",
    "LCM": "Euler",
    "Euler SGM Uniform": "Euler",
    "Euler a SGM Uniform": "Euler a",
}
DEFAULT_SCHEDULER = "Euler a"


# What a sampler of the SD families is closest to among the flow samplers.
_FLOW_RELATIVES = {
    "Euler a": "Euler",
    "LMS": "Euler",
    "DDIM": "Euler",
    "DPM++ 2M Karras": "DPM++ 2M",
}


def closest_scheduler(name: str | None, offered: tuple[str, ...] = SCHEDULER_NAMES) -> str | None:
    """The studio's scheduler for a sampler name read from another tool's file: the same
    one, or its closest relative among those `offered` (a model family's); None when the
    studio has nothing close."""
    if not name:
        return None
    if offered != SCHEDULER_NAMES:
        near = closest_scheduler(name)
        if near in offered:
            return near
        if near is None:
            return None
        relative = _FLOW_RELATIVES.get(near) or _FLOW_RELATIVES.get(near.removesuffix(" Karras"))
        return relative if relative in offered else offered[0]
    name = name.strip()
    if name in SCHEDULERS:
        return name
    lowered = {n.lower(): n for n in (*SCHEDULERS, *_RELATIVES)}
    name = lowered.get(name.lower(), name)
    if name in SCHEDULERS:
        return name
    if name in _RELATIVES:
        return _RELATIVES[name]
    plain = name.removesuffix(" Karras")
    return plain if plain in SCHEDULERS else None


# Samplers that hold a half-run job's latents in the same terms on the same steps, so one
# can take over another's from a step (a branch's sampler change). The k-diffusion ones
# (Euler, Euler a, LMS) keep x0 + σ·ε; the multistep and DDIM-family ones keep α·x0 + σ·ε;
# Karras σs are other steps. Heun, DPM2 and PNDM take steps of their own (half steps, a
# warm-up) and take over from none. The engine checks that the steps are the same.
_TAKE_OVER_GROUPS: tuple[frozenset[str], ...] = (
    frozenset({"Euler", "Euler a", "LMS"}),
    frozenset({"DPM++ 2M", "DPM++ 2M SDE", "DPM++ 3M SDE", "UniPC", "DDIM", "DDPM"}),
    frozenset({"DPM++ 2M Karras", "DPM++ 2M SDE Karras", "DPM++ 3M SDE Karras"}),
)


def takes_over(parent: str, sampler: str) -> bool:
    """Whether `sampler` can continue a job that `parent` ran up to some step."""
    return parent == sampler or any({parent, sampler} <= g for g in _TAKE_OVER_GROUPS)
