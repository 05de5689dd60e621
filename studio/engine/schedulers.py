"""Making the scheduler object of a run from the studio's name for it."""

from __future__ import annotations

import json
from typing import Any

from studio.core.schedulers import FAST_SCHEDULERS, FLOW_SCHEDULERS, NOT_CARRIED, SCHEDULERS

# Pristine schedulers by (name, flow, config): a run gets a copy of one, which is what
# from_config would build (the same config, no steps taken) in a small part of the time:
# from_config took 1.7-2.4 ms a run and a deep copy 0.2-0.4 ms, which the tiny models' runs
# of 50-150 ms noticed. The copy shares the template's tensors and config, as the branch
# records do (`own_containers`).
_TEMPLATES: dict[tuple[str, bool, str], Any] = {}
MAX_TEMPLATES = 32


MODEL_CONFIG = "_studio_model_config"


def own_containers(values: dict[str, Any]) -> dict[str, Any]:
    """A scheduler's attributes with its plain lists and dicts copied and the rest shared:
    diffusers' schedulers change their lists and dicts in place (a multistep sampler's
    predictions) but replace their tensors and config, never change them, so this is a
    state of its own at the cost of a few list copies."""
    kinds = set(map(type, values.values()))  # asked at C speed: a branch records every step
    if list not in kinds and dict not in kinds:  # the flow samplers: numbers and tensors
        return dict(values)
    return {
        name: type(value)(value) if type(value) is list or type(value) is dict else value
        for name, value in values.items()
    }


def scheduler_for(pipe: Any, name: str, flow: bool = False, steps: int | None = None) -> Any:
    """A fresh scheduler for a run of `pipe` (of `steps` steps), built from the model's own
    scheduler config however many runs have swapped theirs in since (each keeps the model's
    beside its own): the sampler a run gets must not depend on the one before it."""
    base = getattr(pipe.scheduler, MODEL_CONFIG, None) or pipe.scheduler.config
    config = base
    if steps == 1 and base.get("shift_terminal"):
        # Stretching the schedule to end at `shift_terminal` (Qwen-Image's 0.02) divides by
        # one minus the last σ, which a single step's σ of 1 makes 0: diffusers' σ becomes
        # NaN and so does the picture. One step from pure noise has nothing to stretch.
        config = {**base, "shift_terminal": None}
    scheduler = make_scheduler(name, config, flow)
    setattr(scheduler, MODEL_CONFIG, base)
    return scheduler


def make_scheduler(name: str, base_config: Any, flow: bool = False) -> Any:
    """A fresh scheduler instance for one run, built from the model's own scheduler config
    (`flow`: a rectified-flow model's, whose samplers are the flow-matching ones)."""
    key = (name, flow, _config_text(base_config))
    template = _TEMPLATES.get(key)
    if template is None:
        if len(_TEMPLATES) >= MAX_TEMPLATES:
            _TEMPLATES.clear()
        template = _TEMPLATES[key] = _build_scheduler(name, base_config, flow)
    scheduler = object.__new__(type(template))  # copy.copy's shallow copy, by hand: its
    vars(scheduler).update(own_containers(vars(template)))  # protocol took half the time
    if scheduler.config.get("use_flow_sigmas"):
        _sigmas_as_arrays(scheduler)
    return scheduler


# The last config's text, with a copy to tell that config unchanged: every run asks with the
# model's own config, and writing it out is a third of a run's scheduler set-up.
_LAST_CONFIG: list[Any] = [None, None, ""]  # the config, its copy, its text


def _config_text(config: Any) -> str:
    kept, copied, text = _LAST_CONFIG
    if config is not kept or dict(config) != copied:
        text = json.dumps(dict(config), sort_keys=True, default=repr)
        _LAST_CONFIG[:] = [config, dict(config), text]
    return text


def _build_scheduler(name: str, base_config: Any, flow: bool) -> Any:
    import diffusers

    if flow:
        return _flow_scheduler(name, dict(base_config))
    class_name, overrides = SCHEDULERS.get(name) or FAST_SCHEDULERS[name]
    config = dict(base_config)
    # Keys the previous scheduler took from its class defaults: from_config would drop them
    # (and with them our overrides: Karras sigmas, the SDE variant, third order, DDIM's and
    # DDPM's clip_sample=False) in favour of the new class's defaults. Drop them here, before
    # the overrides, to the same effect.
    defaulted = set(config.pop("_use_default_values", ()))
    config = {k: v for k, v in config.items() if k not in NOT_CARRIED and k not in defaulted}
    config.update(overrides)
    return getattr(diffusers, class_name).from_config(config)


def _sigmas_as_arrays(scheduler: Any) -> None:
    """Z-Image's pipeline passes its σ schedule as a list; the multistep samplers' flow
    branch shifts it with array arithmetic (a list fails: "can't multiply sequence by
    non-int of type 'float'"). Hand them an array, as the other pipelines pass."""
    import functools

    import numpy as np

    original = scheduler.set_timesteps

    @functools.wraps(original)
    def set_timesteps(*args: Any, **kwargs: Any) -> Any:
        sigmas = kwargs.get("sigmas")  # only where the sampler takes a σ schedule at all
        if sigmas is not None and not isinstance(sigmas, np.ndarray):
            kwargs["sigmas"] = np.asarray(sigmas, dtype=np.float64)
        return original(*args, **kwargs)

    scheduler.set_timesteps = set_timesteps


def _flow_scheduler(name: str, config: dict[str, Any]) -> Any:
    """A flow-matching sampler carrying the model's shift: a fixed `shift`, or the
    resolution-dependent one (`use_dynamic_shifting`, whose μ the pipeline passes)."""
    import diffusers

    class_name, overrides = FLOW_SCHEDULERS[name]
    config.pop("_use_default_values", None)
    if class_name != config.get("_class_name"):
        shift = config.get("shift", 1.0)
        config = {
            "num_train_timesteps": config.get("num_train_timesteps", 1000),
            "flow_shift": shift,
            "shift": shift,
            "use_dynamic_shifting": config.get("use_dynamic_shifting", False),
            **(
                {"time_shift_type": config["time_shift_type"]}
                if "time_shift_type" in config
                else {}
            ),
        }
    config.update(overrides)
    return getattr(diffusers, class_name).from_config(config)
