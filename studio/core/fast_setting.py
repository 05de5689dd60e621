"""A model's fast setting: the steps, CFG, sampler and LoRA that make a good picture in a few
steps, which live mode runs (`ui.live_mode`). The one home of the rule; torch- and Qt-free.

In order:

1. A distilled model, known by its family (Flux.1 schnell and the distilled Flux.2 Klein run
   unguided in a few steps) or by its name, as its publishers name them: SDXL-Turbo and
   SD-Turbo (1-4 steps, no CFG; Euler a on trailing timesteps, their own scheduler),
   SDXL-Lightning and its merges (the step count in the name, no CFG, Euler on trailing
   timesteps), Hyper-SD (the same, DDIM on trailing timesteps, which is that Euler), LCM
   and DMD2 models (4 steps, LCM's sampler), SD 3.5 Large Turbo (4 steps, no CFG),
   Z-Image-Turbo (8 steps, no CFG). Our own models' cards name theirs (`live_steps`): a
   short schedule of the panel's sampler and CFG (studio-tiny: 6 steps).
2. Otherwise an acceleration LoRA in the LoRA folders made for the model's family: an
   SDXL-Lightning or Qwen-Image-Lightning LoRA (`sdxl_lightning_4step_lora`), a Hyper-SD one
   (`Hyper-SDXL-8steps-lora`), DMD2's, an LCM-LoRA (`lcm-lora-sdv1-5`, `lcm-lora-sdxl`), or
   FLUX.1-Turbo-Alpha; live mode adds it to the prompt (`<lora:NAME:1>`) with its steps, CFG
   and sampler. Its family is the one `loras.family` tells (its name's, else its header's).
3. Otherwise a short schedule with the sampler and CFG that suit few steps, and a sentence
   on how to get a fast setting.

"No CFG" is a scale of 1 (the pipelines skip the unconditional half at 1 or less: half the
work, and the negative prompt does nothing), or a guidance-distilled family's own scale.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from studio.core import loras
from studio.core.prompt_tags import set_lora_weight, split_lora_tags
from studio.core.request import GenerationRequest

# Steps of a live picture with no fast setting: studio-tiny draws its shapes in 6 steps of
# DPM++ 2M (4 blur them), ~0.1 s on a 2-core CPU.
LIVE_STEPS = 6
CFG_OFF = 1.0
# No fast setting: a second-order sampler on Karras σs converges in the fewest steps of the
# picker's, and a CFG above ~4 burns a picture that has had only a few steps to settle.
FEW_STEP_SAMPLER = "DPM++ 2M Karras"
FEW_STEP_CFG = 4.0


@dataclass(frozen=True)
class FastSetting:
    """What a live job runs instead of the panel's steps, CFG and sampler."""

    label: str  # shown in the live view: "LCM-LoRA", "SDXL-Turbo", "short schedule"
    steps: int
    cfg_scale: float | None = None  # None: the panel's
    sampler: str | None = None  # None: the panel's
    lora: str = ""  # a LoRA (its file name without suffix) the live job adds, at lora_weight
    lora_weight: float = 1.0
    at_most: bool = False  # steps and CFG are caps on the panel's (a short schedule)
    hint: str = ""  # no fast setting found: how to get one, in one sentence

    @property
    def found(self) -> bool:
        return not self.hint

    def apply(self, request: GenerationRequest) -> GenerationRequest:
        """The request with this setting's steps, CFG, sampler and LoRA."""
        changes: dict[str, Any] = {
            "steps": min(request.steps, self.steps) if self.at_most else self.steps
        }
        if self.cfg_scale is not None:
            cfg = self.cfg_scale
            changes["cfg_scale"] = min(request.cfg_scale, cfg) if self.at_most else cfg
        if self.sampler is not None:
            changes["scheduler"] = self.sampler
        if self.lora and not _has_tag(request.prompt, self.lora):  # the artist's weight stays
            changes["prompt"] = set_lora_weight(request.prompt, self.lora, self.lora_weight)
        return request.replace(**changes)

    def caption(self, steps: int) -> str:
        """ "LCM-LoRA, 4 steps"."""
        return f"{self.label}, {steps} steps" if self.label else f"{steps} steps"


def _has_tag(prompt: str, name: str) -> bool:
    return any(tag.name.lower() == name.lower() for tag in split_lora_tags(prompt)[1])


# -- the rule, on plain facts (table-tested) ---------------------------------------------------


def fast_setting(
    model: str,
    family: Any,
    loras: Sequence[tuple[str, str]] = (),
    card: dict[str, Any] | None = None,
    panel_sampler: str = "",
    prompt: str = "",
) -> FastSetting:
    """The fast setting of a model named `model` (its spec or file path) of `family`
    (`core.families.Family`, None when unknown), with the LoRA files found as (name,
    family label or ""), the model's card (studio.json) when it has one, and the panel's
    sampler and prompt (an acceleration LoRA the prompt already names is the one used)."""
    card = card or {}
    if card.get("live_steps"):  # our own models
        return FastSetting("short schedule", int(card["live_steps"]), at_most=True)
    distilled = _distilled(model, family)
    if distilled is not None:
        return distilled
    if family is not None:
        lora = _best_lora(family, loras, prompt)
        if lora is not None:
            return lora
    return _short_schedule(family, panel_sampler)


def _steps_in(name: str, default: int) -> int:
    """The step count a distilled model's or LoRA's name gives ("…_4step_lora", "8steps")."""
    match = re.search(r"(\d+)[-_ ]?steps?", name)
    return max(1, min(int(match.group(1)), 16)) if match else default


def _flow(family: Any, name: str) -> bool:
    if family is not None:
        return bool(family.is_flow)
    return bool(re.search(r"flux|sd3|sd-3|stable-diffusion-3|z-image|qwen|klein|chroma", name))


def _off(family: Any) -> float:
    """The scale that turns CFG off: 1 for the CFG families, a distilled-guidance family's
    own scale (Flux.1 dev's 3.5 is an input of the model, not CFG)."""
    if family is not None and family.guidance.kind in ("distilled", "none"):
        return float(family.guidance.default_scale)
    return CFG_OFF


def _sampler(family: Any, name: str, wanted: str) -> str:
    """`wanted` on the SD families; a flow model runs its family's own sampler (Euler)."""
    if _flow(family, name):
        return family.default_sampler if family is not None else "Euler"
    return wanted


def _model_name(model: str) -> str:
    """A model's own name: a hub id's or a path's last part, without a checkpoint suffix (a
    folder keeps its dots: "FLUX.1-schnell")."""
    name = model.replace("\\", "/").rstrip("/").rsplit("/", 1)[-1].lower()
    for suffix in (".safetensors", ".gguf", ".ckpt", ".pt", ".pth", ".bin"):
        name = name.removesuffix(suffix)
    return name


def _distilled(model: str, family: Any) -> FastSetting | None:
    name = _model_name(model)
    if family is not None and family.guidance.kind == "none":  # schnell, Klein (distilled)
        return FastSetting(
            family.label,
            family.default_steps,
            float(family.guidance.default_scale),
            family.default_sampler,
        )
    if family is None and "schnell" in name:  # a hub model not in the cache yet
        return FastSetting("Flux.1 schnell", 4, 0.0, "Euler")
    if family is None and "klein" in name and "base" not in name:
        return FastSetting("Flux.2 Klein", 4, 1.0, "Euler")
    if "turbo" in name:
        if "z-image" in name or (family is not None and family.name == "z-image"):
            return FastSetting("Z-Image-Turbo", 8, CFG_OFF, "Euler")
        if _flow(family, name):  # SD 3.5 Large Turbo: 4 steps; Flux merges: 8
            sd3 = (family is not None and family.name == "sd3") or "3.5" in name or "sd3" in name
            return FastSetting(
                "SD 3.5 Turbo" if sd3 else "Turbo",
                4 if sd3 else 8,
                _off(family),
                _sampler(family, name, "Euler"),
            )
        label = "Turbo"
        if re.search(r"sdxl[-_]?turbo|sd[-_]turbo", name):
            label = "SDXL-Turbo" if "xl" in name else "SD-Turbo"
        return FastSetting(label, 4, CFG_OFF, "Euler a SGM Uniform")
    if "lightning" in name:
        steps = _steps_in(name, 4 if not _flow(family, name) else 8)
        return FastSetting(
            "Lightning", steps, _off(family), _sampler(family, name, "Euler SGM Uniform")
        )
    if re.search(r"hyper[-_ ]?(sd|flux)", name):  # not any "hyper…" (HyperMix, hyperdetailed)
        return FastSetting(
            "Hyper-SD",
            _steps_in(name, 6),
            _off(family),
            _sampler(family, name, "Euler SGM Uniform"),
        )
    if re.search(r"dmd2|(^|[^a-z])lcm([^a-z]|$)", name) and not _flow(family, name):
        return FastSetting("DMD2" if "dmd2" in name else "LCM", 4, CFG_OFF, "LCM")
    return None


# Acceleration LoRAs, by the names their publishers give them: (pattern, label, default
# steps, sampler on the SD families, weight on a flow model). Hyper-SD's Flux and SD 3 LoRAs
# are published for a weight of 0.125.
_LORA_KINDS: tuple[tuple[str, str, int, str, float], ...] = (
    (
        r"lightning.*\d+[-_ ]?steps?|\d+[-_ ]?steps?.*lightning",
        "Lightning LoRA",
        4,
        "Euler SGM Uniform",
        1.0,
    ),
    (r"hyper[-_ ]?(sd|flux)", "Hyper-SD LoRA", 8, "Euler SGM Uniform", 0.125),
    (r"dmd2", "DMD2 LoRA", 4, "LCM", 1.0),
    (r"(^|[^a-z])lcm([^a-z]|$)", "LCM-LoRA", 4, "LCM", 1.0),
    (r"flux.*turbo", "Turbo LoRA", 8, "Euler", 1.0),
)


def fits(lora_family: str, family: Any) -> bool:
    """Whether a LoRA made for `lora_family` fits a model of `family` (its label, or a variant
    of it: an "SDXL" LoRA fits "SDXL inpainting", a "Flux.1" one "Flux.1 dev")."""
    label = family.label
    return bool(lora_family) and (label == lora_family or label.startswith(lora_family + " "))


def _best_lora(
    family: Any, candidates: Sequence[tuple[str, str]], prompt: str
) -> FastSetting | None:
    named = {tag.name.lower() for tag in split_lora_tags(prompt)[1]}
    found = []
    for name, described in candidates:
        lowered = name.lower()
        for rank, (pattern, label, steps, sampler, flow_weight) in enumerate(_LORA_KINDS):
            if not re.search(pattern, lowered):
                continue
            if not fits(loras.family_from_name(name) or described, family):
                break
            steps = _steps_in(lowered, steps)
            cfg = 5.0 if re.search(r"(^|[^a-z])cfg([^a-z]|$)", lowered) else _off(family)
            setting = FastSetting(
                label,
                steps,
                cfg,
                _sampler(family, lowered, sampler),
                lora=name,
                lora_weight=flow_weight if family.is_flow else 1.0,
            )
            # one the prompt names, the best kind, the step count nearest 4 (the fewest that
            # look finished)
            found.append(((lowered not in named, rank, abs(steps - 4), lowered), setting))
            break
    return min(found, key=lambda pair: pair[0])[1] if found else None


def _short_schedule(family: Any, panel_sampler: str) -> FastSetting:
    """No fast setting: the short schedule, with a sampler and CFG that suit it, and how to
    get a fast setting."""
    label = family.label if family is not None else "this model"
    if family is None or not family.samplers:  # the SD families
        sampler: str | None = FEW_STEP_SAMPLER
        cfg: float | None = FEW_STEP_CFG
        how = f"add an LCM, Lightning or Hyper-SD LoRA for {label} to your LoRA folder"
    else:
        sampler = panel_sampler if panel_sampler in family.samplers else family.default_sampler
        cfg = FEW_STEP_CFG if family.guidance.kind in ("cfg", "true_cfg", "cfg_list") else None
        how = f"add a Lightning, Hyper-SD or Turbo LoRA for {label} to your LoRA folder"
    return FastSetting(
        "no fast setting",
        LIVE_STEPS,
        cfg,
        sampler,
        at_most=True,
        hint=(
            f"No fast setting found for {label}, so live pictures are {LIVE_STEPS} rough "
            f"steps: {how}, or pick a Turbo or Lightning model."
        ),
    )


# -- the rule on this machine's files ---------------------------------------------------------


def for_request(request: GenerationRequest) -> FastSetting:
    """The fast setting of a request's model with the LoRA folders as they are now."""
    key = (request.model, tuple(loras.available()))
    facts = _FACTS.get(key)
    if facts is None:
        facts = _facts(*key)
        if (
            facts[1] is not None
        ):  # a model not there yet (a hub id before its download): asked again
            if len(_FACTS) >= FACTS_KEPT:
                _FACTS.clear()
            _FACTS[key] = facts
    name, family, candidates, card = facts
    return fast_setting(name, family, candidates, card, request.scheduler, request.prompt)


# What `_facts` found, by model spec and LoRA files: live mode asks at every keystroke
_FACTS: dict[tuple[str, tuple[Path, ...]], tuple[str, Any, list[tuple[str, str]], dict]] = {}
FACTS_KEPT = 16


def _facts(spec: str, found: tuple[Path, ...]) -> tuple[str, Any, list[tuple[str, str]], dict]:
    """What the rule needs to know of a model and the LoRA files."""
    from studio.core import catalog

    card: dict[str, Any] = {}
    name = spec
    try:
        source = catalog.resolve(spec)
    except catalog.ModelError:
        source = None
    if source is not None:
        name = source.location if source.kind != "hub" else spec
        if source.kind in ("embedded", "folder"):
            card = catalog.read_model_card(Path(source.location))
    family = catalog.model_family(spec)
    candidates = [
        (path.stem, loras.family(path))
        for path in found
        if any(re.search(kind[0], path.stem.lower()) for kind in _LORA_KINDS)
    ]
    return name, family, candidates, card
