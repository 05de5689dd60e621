"""Making the scheduler object of a run from the studio's name for it."""

from __future__ import annotations

from typing import Any

from studio.core.schedulers import NOT_CARRIED, SCHEDULERS


def make_scheduler(name: str, base_config: Any) -> Any:
    """A fresh scheduler instance for one run, built from the model's own scheduler config."""
    import diffusers

    class_name, overrides = SCHEDULERS[name]
    config = {k: v for k, v in dict(base_config).items() if k not in NOT_CARRIED}
    config.update(overrides)
    return getattr(diffusers, class_name).from_config(config)
