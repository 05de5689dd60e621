"""Rewind and branch: what each denoising step keeps so another job can continue from it
exactly, and how a pipeline is made to continue from such a state.

After every step of a one-image generate stage, `StepRecorder` keeps what the next step
reads: the latents the scheduler returned, the scheduler's own attributes (multistep
samplers keep earlier predictions, second-order ones a half-finished step) and the state
of the job's noise generators (the ancestral and SDE samplers draw noise at every step).
Scheduler tensors are never changed in place by diffusers' schedulers, so a step's record
keeps references to them and copies only the lists that hold them.

Continuing from step k runs the same pipeline call: the pipeline's own `interrupt` check
skips iterations 0..k-2 without running anything, and iteration k-1 runs and then has its
result replaced by the record of step k — the scheduler's attributes, the latents and the
generators put back as they were — so from iteration k on the pipeline computes exactly
what the parent computed, with whatever the branch changed (prompt, guidance, LoRAs).
"""

from __future__ import annotations

import collections
import hashlib
import json
import math
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import torch
from PIL import Image

from studio.core.jobs import StepsKept
from studio.core.request import GenerationRequest
from studio.engine.schedulers import own_containers


class ReachedStep(Exception):
    """Raised inside the loop once a replay has recorded the step it was asked for."""


@dataclass
class StepState:
    """What continuing after one step needs."""

    latents: torch.Tensor  # the scheduler's output (before an inpaint pipeline's blending)
    scheduler: dict[str, Any]  # the scheduler's attributes after the step
    generators: list[torch.Tensor]  # the noise generators' states after the step
    sampler: tuple[str, Any]  # the scheduler's class and config (`_sampler`)
    estimate: tuple[Any, ...] | None  # the guidance tap's last (latents, prediction, t)

    def tensors(self) -> list[torch.Tensor]:
        """What this record keeps alive beyond the scheduler's own tables (σs, timesteps,
        ᾱ: the same tensors in every record of a job): the latents, the generators' states,
        the predictions a multistep sampler holds in lists, the last estimate."""
        found = [self.latents, *self.generators]
        for value in self.scheduler.values():
            if type(value) is list:
                found.extend(v for v in value if isinstance(v, torch.Tensor))
        if self.estimate is not None:
            found.extend(v for v in self.estimate if isinstance(v, torch.Tensor))
        return found


def _bytes(states: list[StepState]) -> int:
    """Memory held by a job's records; tensors several records share count once."""
    seen: dict[int, int] = {}
    for state in states:
        for tensor in state.tensors():
            # a view keeps its base's memory alive: counted as its base (asking a tensor for
            # its storage costs microseconds, and a job has a hundred tensors or more)
            while tensor._base is not None:
                tensor = tensor._base
            seen[tensor.data_ptr()] = tensor.nbytes
    return sum(seen.values())


class StateStore:
    """The step records of recent jobs, newest last; past the budget the oldest jobs' go."""

    def __init__(self, budget_bytes: int) -> None:
        self.budget_bytes = budget_bytes
        self.id = uuid.uuid4().hex  # tells one engine's kept jobs from another's
        self._jobs: collections.OrderedDict[str, tuple[list[StepState], int]] = (
            collections.OrderedDict()
        )

    def put(self, key: str, states: list[StepState]) -> None:
        if not states:
            return
        self._jobs.pop(key, None)
        self._jobs[key] = (states, _bytes(states))
        self._fit()

    def get(self, key: str, step: int) -> StepState | None:
        """The state after step `step` (from 1) of the job `key`, if it is still kept."""
        states = self._jobs.get(key, ([], 0))[0]
        if not 1 <= step <= len(states):
            return None
        self._jobs.move_to_end(key)  # used: kept longest
        return states[step - 1]

    def steps_kept(self, key: str) -> int:
        return len(self._jobs.get(key, ([], 0))[0])

    def kept(self, job: str = "") -> StepsKept:
        """What is kept now, for the window's timeline (`job`: the key of the job just run)."""
        return StepsKept(self.id, job, {key: len(s) for key, (s, _) in self._jobs.items()})

    @property
    def bytes_used(self) -> int:
        return sum(size for _, size in self._jobs.values())

    def set_budget(self, budget_bytes: int) -> None:
        self.budget_bytes = budget_bytes
        self._fit()

    def _fit(self) -> None:
        while self._jobs and self.bytes_used > self.budget_bytes:
            self._jobs.popitem(last=False)


def fingerprint(request: GenerationRequest) -> str:
    """What decides a one-image generate stage's steps: every parameter but what runs after
    generating, and the input images' pixels."""
    values = request.to_dict()
    for name in (
        "upscaler",
        "upscale_model",
        "upscale_strength",
        "upscale_steps",
        "upscale_noise_level",
    ):
        values.pop(name, None)
    values.update(batch_size=1, branch=None)
    digest = hashlib.blake2b(json.dumps(values, sort_keys=True, default=str).encode())
    images: list[Image.Image | None] = [request.init_image, request.mask, *request.references]
    images += [c.image for c in request.controls]
    for image in images:
        if image is not None:
            digest.update(f"{image.mode}{image.size}".encode())
            digest.update(image.tobytes())
    return digest.hexdigest()


def snapshot(scheduler: Any) -> dict[str, Any]:
    """The scheduler's attributes: plain lists and dicts copied, the rest shared."""
    state = own_containers(vars(scheduler))
    state.pop("step", None)  # a wrapper of ours, not the scheduler's state
    return state


def restore(scheduler: Any, state: dict[str, Any]) -> None:
    """Put the scheduler's attributes back as `snapshot` took them (the record stays as
    it is, for the next branch from the same step)."""
    for name in [n for n in vars(scheduler) if n not in state and n != "step"]:
        delattr(scheduler, name)
    vars(scheduler).update(own_containers(state))


class StepRecorder:
    """Wraps a pipeline's scheduler for one stage: records each step's state, skips to a
    recorded state when resuming, and stops once a replay reaches the step it needs."""

    def __init__(
        self,
        tap: Any,
        record: bool = True,
        resume: StepState | None = None,
        resume_after: int = 0,
        noise_seed: int | None = None,
        stop_after: int | None = None,
        vary: float = 0.0,
    ) -> None:
        """`resume`: continue after step `resume_after` from this state (its noise reseeded
        with `noise_seed` when given); `stop_after`: end the stage after recording that step."""
        self.tap = tap
        self.record = record
        self.resume = resume
        self.resume_after = resume_after if resume is not None else 0
        self.noise_seed = noise_seed
        self.stop_after = stop_after
        self.vary = vary
        self.states: list[StepState] = []
        self._generators: list[torch.Generator] = []
        self._iteration = 0
        self._to_skip = 0
        self._sampler: tuple[str, Any] | None = None  # the stage's: read once, not each step

    def _sampler_of(self, scheduler: Any) -> tuple[str, Any]:
        if self._sampler is None:
            self._sampler = _sampler(scheduler)
        return self._sampler

    def begin(self, generators: list[torch.Generator]) -> None:
        """A new attempt of the stage's call (a retry starts over), with its generators."""
        self._generators = generators
        self.states = []
        self._iteration = 0
        self._to_skip = max(0, self.resume_after - 1)
        self._sampler = None

    def attach(self, pipe: Any) -> list[Any]:
        scheduler = pipe.scheduler
        inner = scheduler.step

        def step(*args: Any, **kwargs: Any) -> Any:
            return self._step(scheduler, inner, args, kwargs)

        step.__signature__ = _signature(inner)  # the pipeline reads it for generator, eta
        scheduler.step = step
        handles: list[Any] = [_PopStep(scheduler)]
        if self.resume is not None:
            handles.append(_Skipping(pipe, self._skip))
        return handles

    def _skip(self) -> bool:
        """The pipeline's `interrupt` check, once at the top of each iteration."""
        if self._to_skip > 0:
            self._to_skip -= 1
            self._iteration += 1
            return True
        return False

    def _step(self, scheduler: Any, inner: Callable[..., Any], args: tuple, kwargs: dict) -> Any:
        taking_over = None
        resume = self.resume
        if resume is not None and self._iteration + 1 == self.resume_after:  # noqa: SIM102
            if _sampler(scheduler) != resume.sampler:
                taking_over = snapshot(scheduler)  # the new sampler as it starts, unstepped
        output = inner(*args, **kwargs)
        self._iteration += 1
        done = self._iteration  # steps done after this one
        if self.resume is not None and done == self.resume_after:
            output = self._restore(scheduler, output, taking_over)
        elif self.record and done > self.resume_after:
            latents = _prev_sample(output)
            estimate = getattr(self.tap, "_last", None)
            self.states.append(
                StepState(
                    # the scheduler's own output, not a copy: neither diffusers' pipelines nor
                    # their schedulers change latents in place (the tap's estimate relies on
                    # it too), and the next step's estimate then shares this memory
                    latents=latents,
                    scheduler=snapshot(scheduler),
                    sampler=self._sampler_of(scheduler),
                    generators=[g.get_state() for g in self._generators],
                    estimate=estimate,
                )
            )
        if self.stop_after is not None and done >= self.stop_after:
            raise ReachedStep
        return output

    def _restore(self, scheduler: Any, output: Any, taking_over: dict[str, Any] | None) -> Any:
        """Iteration k-1's result replaced by the state after step k. `taking_over`: another
        sampler continues (the branch changed it), from its own unstepped state."""
        state = self.resume
        assert state is not None
        if taking_over is None:
            restore(scheduler, state.scheduler)
        else:
            _take_over(scheduler, taking_over, state.scheduler, self.resume_after)
        for generator, saved in zip(self._generators, state.generators, strict=False):
            generator.set_state(saved)
        if self.noise_seed is not None:
            for number, generator in enumerate(self._generators):
                generator.manual_seed(self.noise_seed + number)
        if state.estimate is not None:
            self.tap._last = state.estimate  # the step's preview is the parent's
        latents = state.latents.clone()
        if self.vary > 0 and state.estimate is not None:
            latents = self._varied(scheduler, latents, state.estimate)
        return _with_prev_sample(output, latents)

    def _varied(self, scheduler: Any, latents: torch.Tensor, estimate: tuple) -> torch.Tensor:
        """The latents with part of their noise replaced: x = a·x0 + b·ε at the next
        timestep (a and b read off the scheduler's own noising), ε turned towards fresh
        noise by the angle vary·π/2, so the noise keeps its size and x0 stays."""
        x0 = self.tap.denoised.to_x0(*estimate).to(latents.dtype)
        t = scheduler.timesteps[min(scheduler.step_index or 0, len(scheduler.timesteps) - 1)]
        a = _noised(scheduler, torch.ones_like(latents), torch.zeros_like(latents), t)
        b = _noised(scheduler, torch.zeros_like(latents), torch.ones_like(latents), t)
        if a is None or b is None or not bool((b.abs() > 1e-6).all()):
            return latents  # no way to tell the noise apart here: kept as it is
        noise = (latents - a * x0) / b
        generator = torch.Generator("cpu").manual_seed(self.noise_seed or 0)
        fresh = torch.randn(latents.shape, generator=generator).to(latents.device, latents.dtype)
        angle = self.vary * math.pi / 2
        return a * x0 + b * (noise * math.cos(angle) + fresh * math.sin(angle))


def _sampler(scheduler: Any) -> tuple[str, Any]:
    """What decides how a scheduler steps: its class and its config."""
    # as a plain dict: a FrozenDict is ordered, and the same config can come in any order
    return type(scheduler).__name__, dict(getattr(scheduler, "_internal_dict", {}))


class SamplerTakeOverFailed(Exception):
    """The new sampler takes other steps than the parent's: it cannot continue them."""


def _take_over(
    scheduler: Any, unstepped: dict[str, Any], parent: dict[str, Any], done: int
) -> None:
    """Make `scheduler`, as it was before stepping (`unstepped`), continue a run another
    sampler made up to `done` steps (`parent`: that sampler's attributes): the same steps
    (checked here; the latents' terms are checked by `schedulers.takes_over`), its step
    counter moved on, and no history of its own — a multistep sampler starts again at first
    order, as it does at the start of a run."""
    if not _same_values(unstepped, parent, "timesteps", required=True) or not _same_values(
        unstepped, parent, "sigmas", required=False
    ):
        raise SamplerTakeOverFailed
    restore(scheduler, unstepped)
    if "_step_index" in unstepped:  # DDIM and DDPM step from the timestep alone
        # image→image starts at `_begin_index`; the next step is `done` steps after it
        scheduler._step_index = (unstepped.get("_begin_index") or 0) + done


def _same_values(ours: dict[str, Any], theirs: dict[str, Any], name: str, required: bool) -> bool:
    """Whether two schedulers' tables `name` (timesteps, σs) hold the same values; one
    without the table (DDIM has no σs) agrees unless it is `required`."""
    a, b = ours.get(name), theirs.get(name)
    if a is None or b is None:
        return not required
    a, b = (torch.as_tensor(v).detach().to("cpu", torch.float64).flatten() for v in (a, b))
    return a.shape == b.shape and torch.allclose(a, b, rtol=1e-4)


def _noised(scheduler: Any, x0: torch.Tensor, noise: torch.Tensor, t: Any) -> Any:
    """The scheduler's own noising of x0 with `noise` at `t`, in its latents' terms."""
    timestep = torch.as_tensor(t).reshape(1)
    if hasattr(scheduler, "add_noise"):
        return scheduler.add_noise(x0, noise, timestep)
    if hasattr(scheduler, "scale_noise"):  # the flow-matching samplers
        return scheduler.scale_noise(x0, timestep, noise)
    return None


_SIGNATURES: dict[Any, Any] = {}


def _signature(function: Callable[..., Any]) -> Any:
    """The signature of a scheduler's step (or of a wrapper of it), read once per function."""
    import inspect

    key = getattr(function, "__wrapped__", function)
    key = getattr(key, "__func__", key)  # a bound method: its function, the same every run
    found = _SIGNATURES.get(key)
    if found is None:
        found = _SIGNATURES[key] = inspect.signature(function)
    return found


def _prev_sample(output: Any) -> torch.Tensor:
    return output[0] if isinstance(output, tuple) else output.prev_sample


def _with_prev_sample(output: Any, latents: torch.Tensor) -> Any:
    if isinstance(output, tuple):
        return (latents, *output[1:])
    output.prev_sample = latents
    return output


class _PopStep:
    def __init__(self, scheduler: Any) -> None:
        self.scheduler = scheduler

    def remove(self) -> None:
        self.scheduler.__dict__.pop("step", None)


_SKIPPING_CLASSES: dict[type, type] = {}


def _skipping_class(cls: type) -> type:
    """`cls` with an `interrupt` that also asks the instance's `_studio_skip`: diffusers'
    pipelines check it once at the top of every iteration and skip the iteration when it
    is true, which is how a branch passes over the steps its state already holds."""
    found = _SKIPPING_CLASSES.get(cls)
    if found is None:
        own = cls.__dict__.get("interrupt") or getattr(cls, "interrupt", None)

        def interrupt(self: Any) -> bool:
            skip = self.__dict__.get("_studio_skip")
            asked = own.fget(self) if isinstance(own, property) else False
            return bool(asked) or (skip is not None and skip())

        found = type(cls.__name__, (cls,), {"interrupt": property(interrupt)})
        found.__module__ = cls.__module__
        found.__qualname__ = cls.__qualname__
        _SKIPPING_CLASSES[cls] = found
    return found


class _Skipping:
    """Gives a pipeline the skipping `interrupt` for one call; `remove` undoes it."""

    def __init__(self, pipe: Any, skip: Callable[[], bool]) -> None:
        if not isinstance(getattr(type(pipe), "interrupt", None), property):
            raise BranchUnsupported(type(pipe).__name__)
        self.pipe = pipe
        self.cls = type(pipe)
        pipe.__class__ = _skipping_class(self.cls)
        pipe._studio_skip = skip

    def remove(self) -> None:
        self.pipe.__class__ = self.cls
        self.pipe.__dict__.pop("_studio_skip", None)


class BranchUnsupported(Exception):
    """A pipeline with no `interrupt` check: its steps cannot be skipped."""
