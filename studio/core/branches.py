"""Branches: a job that continues another from one of its denoising steps.

The first k steps of a branch are its parent's; from step k on, the branch runs with what
the artist changed since. Only what the denoising can take mid-way may change — the text,
the guidance controls, LoRA weights (tags in the prompt), ControlNet scales, the sampler
where the new one can take over the parent's (`schedulers.takes_over`) and what runs after
generating; the rest (model, size, steps, seed, input images) is the parent's, since the
state at step k was made with it.

A branch request carries the parent's values of the fields it changed (`Branch.parent`),
so the parent is rebuilt from the branch alone: from the branch's saved file, or when the
parent's state at step k is no longer kept and the engine must compute it again.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from typing import Any

from studio.core.request import Branch, Control, GenerationRequest
from studio.core.schedulers import takes_over

# What a branch may change, as a request's fields.
BRANCH_FIELDS: tuple[str, ...] = (
    "prompt",
    "negative_prompt",
    "cfg_scale",
    "cfg_rescale",
    "clip_skip",
    "dynamic_thresholding",
    "threshold_percentile",
    "threshold_max",
    "classifier_class",
    "classifier_scale",
    "controls",
    "scheduler",  # when the new sampler takes over the parent's: see branch_of
    "upscaler",
    "upscale_model",
    "upscale_strength",
    "upscale_steps",
    "upscale_noise_level",
)

# What a branch keeps from its parent however the panel is set, with the words for a note.
KEPT_FIELDS: dict[str, str] = {
    "model": "model",
    "mode": "mode",
    "width": "size",
    "height": "size",
    "steps": "steps",
    "scheduler": "sampler",
    "seed": "seed",
    "strength": "strength",
}


@dataclass(frozen=True)
class BranchPlan:
    """The request a "Continue from here" sends, and what it kept of the parent."""

    request: GenerationRequest
    changed: tuple[str, ...]  # the fields that differ from the parent's
    kept: tuple[str, ...] = field(default=())  # words for what the panel changed but can't

    def note(self) -> str:
        """One sentence for the artist when the panel asked for what a branch can't change."""
        if not self.kept:
            return ""
        return f"A branch keeps its parent's {', '.join(self.kept)}: those changes wait."


def branch_of(
    parent: GenerationRequest,
    wanted: GenerationRequest,
    at_step: int,
    noise_seed: int | None = None,
    parent_image: str = "",
    vary: float = 0.0,
) -> BranchPlan:
    """The branch of `parent` after step `at_step` with what of `wanted` a branch can take.

    `parent` is the request as it ran (its seed resolved, one image: a batch's image k is
    its own seed run alone); `wanted` is what the panel holds now; `parent_image` the
    parent's file name; `vary` how much fresh noise (drawn with `noise_seed`) replaces the
    noise left at the step."""
    parent = parent.replace(batch_size=1)
    while parent.branch is not None and at_step <= parent.branch.at_step:
        parent = parent_of(parent)  # those steps are the grandparent's: branch from it
    changes = {name: getattr(wanted, name) for name in BRANCH_FIELDS}
    if not takes_over(parent.scheduler, wanted.scheduler):
        changes["scheduler"] = parent.scheduler
    if wanted.controls and parent.controls:
        # the ControlNets and their images are the parent's; only their steering may change
        changes["controls"] = _steering_of(parent.controls, wanted.controls)
    else:
        changes["controls"] = parent.controls
    changed = tuple(n for n in BRANCH_FIELDS if _differs(getattr(parent, n), changes[n]))
    values = {name: _plain(getattr(parent, name)) for name in changed}
    if parent.branch is not None:  # a branch of a branch: the parent rebuilds from its own
        values["branch"] = parent.branch.to_dict()
    branch = Branch(at_step, values, noise_seed, parent_image=parent_image, vary=vary)
    request = parent.replace(**{n: changes[n] for n in changed}, branch=branch)
    kept = []
    for name, words in KEPT_FIELDS.items():
        if name == "seed" and wanted.seed in (-1, parent.seed):
            continue  # a random seed in the panel asks for nothing
        if getattr(wanted, name) != getattr(request, name) and words not in kept:
            kept.append(words)
    return BranchPlan(request, changed, tuple(kept))


def parent_of(request: GenerationRequest) -> GenerationRequest:
    """The request whose first steps a branch shares (its images are the branch's)."""
    branch = request.branch
    assert branch is not None, "not a branch"
    values = dict(branch.parent)
    grandparent = values.pop("branch", None)
    if "controls" in values:  # the parent's steering of the same ControlNets and images
        steering = tuple(Control.from_dict(c) for c in values["controls"])
        values["controls"] = _steering_of(request.controls, steering)
    return request.replace(**values, branch=grandparent)


def _steering_of(base: tuple[Any, ...], steering: tuple[Any, ...]) -> tuple[Any, ...]:
    """`base`'s ControlNets (models, images, preprocessors) with `steering`'s scale, start
    and end, control by control."""
    out = []
    for number, control in enumerate(base):
        if number < len(steering):
            other = steering[number]
            control = dataclasses.replace(
                control, scale=other.scale, start=other.start, end=other.end
            )
        out.append(control)
    return tuple(out)


def _differs(a: Any, b: Any) -> bool:
    return _plain(a) != _plain(b)


def _plain(value: Any) -> Any:
    """A value as JSON keeps it (enums as their values, ControlNets as their parameters)."""
    if isinstance(value, tuple):
        return [_plain(v) for v in value]
    if hasattr(value, "to_dict"):
        return value.to_dict()
    return getattr(value, "value", value)
