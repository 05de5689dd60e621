"""Making the scheduler object of a run from the studio's name for it."""

from __future__ import annotations

from typing import Any

from studio.core.schedulers import NOT_CARRIED, SCHEDULERS


def make_scheduler(name: str, base_config: Any) -> Any:
    """A fresh scheduler instance for one run, built from the model's own scheduler config."""
    import diffusers

    class_name, overrides = SCHEDULERS[name]
    config = dict(base_config)
    # Keys the previous scheduler took from its class defaults: from_config would drop them
    # (and with them our overrides: Karras sigmas, the SDE variant, third order, DDIM's and
    # DDPM's clip_sample=False) in favour of the new class's defaults. Drop them here, before
    # the overrides, to the same effect.
    defaulted = set(config.pop("_use_default_values", ()))
    config = {k: v for k, v in config.items() if k not in NOT_CARRIED and k not in defaulted}
    config.update(overrides)
    return getattr(diffusers, class_name).from_config(config)
