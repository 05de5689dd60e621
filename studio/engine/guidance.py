"""Guidance and the denoised estimate, for every model family.

Two taps see each denoising step:
- a hook on the denoising network (UNet or transformer) stops a cancelled job before each
  call and, where CFG runs as one batched call, applies CFG rescale: it needs both halves
  of the prediction, and hands the pipeline the rescaled prediction in both halves so its
  own `uncond + g · (cond − uncond)` returns it exactly;
- a wrapper of the scheduler's `step` sees the final, guided prediction of every pipeline
  in the scheduler's own terms (ε or v for the SD families, the flow velocity for SD 3,
  Flux, Qwen-Image…), with the latents and the timestep. From them it derives the
  denoised estimate x0 (kept for the live preview) and applies dynamic thresholding.
"""

from __future__ import annotations

import functools
import math
import threading
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import torch


class GenerationCancelled(Exception):
    """Raised inside the denoising loop to stop a cancelled job within one step."""


@dataclass(frozen=True)
class GuidanceSettings:
    cfg_scale: float
    cfg_rescale: float = 0.0
    dynamic_thresholding: bool = False
    threshold_percentile: float = 99.5
    threshold_max: float = 2.5


class Denoised:
    """x0 from (latents, prediction, timestep) and back, in a scheduler's parametrisation."""

    def to_x0(self, latents: torch.Tensor, prediction: torch.Tensor, t: Any) -> torch.Tensor:
        raise NotImplementedError

    def from_x0(self, latents: torch.Tensor, x0: torch.Tensor, t: Any) -> torch.Tensor:
        raise NotImplementedError


class AlphaDenoised(Denoised):
    """The SD families: ε, v or x0 prediction on a ᾱ schedule."""

    def __init__(self, alphas_cumprod: torch.Tensor, kind: str) -> None:
        self.alphas_cumprod = alphas_cumprod.float()
        self.kind = kind
        # ᾱ as plain numbers, for timesteps read without waiting (CPU values): the previews
        # ask at every step, and interpolating on tensors takes a dozen small operations
        self._plain: list[float] | None = None

    def to_x0(self, latents: torch.Tensor, prediction: torch.Tensor, t: Any) -> torch.Tensor:
        return to_x0(latents, prediction, *self._roots_at(t, latents.device), self.kind)

    def from_x0(self, latents: torch.Tensor, x0: torch.Tensor, t: Any) -> torch.Tensor:
        return from_x0(latents, x0, *self._roots_at(t, latents.device), self.kind)

    def _roots_at(self, t: Any, device: torch.device) -> tuple[Any, Any]:
        """√ᾱ and √(1−ᾱ) at `t`: plain numbers for a CPU timestep, else tensors on its device
        (a GPU value is never read back)."""
        value = _cpu_value(t)
        if value is None:
            alpha = self._alpha(t, device)
            return alpha.sqrt(), (1 - alpha).sqrt()
        if self._plain is None:
            self._plain = self.alphas_cumprod.detach().cpu().double().tolist()
        table = self._plain
        value = min(max(float(value), 0.0), len(table) - 1.0)
        low = int(value)
        high = min(low + 1, len(table) - 1)
        alpha = table[low] + (table[high] - table[low]) * (value - low)
        return math.sqrt(alpha), math.sqrt(1 - alpha)

    def _alpha(self, timestep: Any, device: torch.device) -> torch.Tensor:
        """ᾱ at a possibly fractional timestep, interpolated on the device: nothing is read back."""
        if self.alphas_cumprod.device != device:
            self.alphas_cumprod = self.alphas_cumprod.to(device)
        table = self.alphas_cumprod
        t = torch.as_tensor(timestep, device=device).flatten()[:1].float()
        t = t.clamp(0, len(table) - 1)
        low = t.floor().long()
        high = (low + 1).clamp(max=len(table) - 1)
        frac = t - low
        # index_select with a one-element index: indexing with a 0-dim tensor reads it back
        # to the CPU (`.item()`), which waits for the GPU
        return table.index_select(0, low) * (1 - frac) + table.index_select(0, high) * frac


class FlowDenoised(Denoised):
    """Rectified flow: x_t = (1 − σ)·x0 + σ·ε and the prediction is v = ε − x0, so
    x0 = x_t − σ·v. The flow schedulers' timestep is σ times their training steps."""

    def __init__(self, num_train_timesteps: int = 1000) -> None:
        self.scale = float(num_train_timesteps)

    def _sigma(self, t: Any, device: torch.device) -> Any:
        """σ at `t`: a plain number for a CPU timestep, else a tensor where `t` is (a GPU
        value is never read back)."""
        plain = _cpu_value(t)
        if plain is not None:
            return plain / self.scale
        return torch.as_tensor(t, device=device).flatten()[:1].float() / self.scale

    def to_x0(self, latents: torch.Tensor, prediction: torch.Tensor, t: Any) -> torch.Tensor:
        sigma = self._sigma(t, latents.device)
        if isinstance(sigma, float):  # one operation: the previews ask at every step
            return latents.float().sub(prediction.float(), alpha=sigma)
        return latents.float() - sigma * prediction.float()

    def from_x0(self, latents: torch.Tensor, x0: torch.Tensor, t: Any) -> torch.Tensor:
        # σ is never 0 at a step the network runs (the last σ is after the last step)
        sigma = self._sigma(t, latents.device)
        sigma = max(sigma, 1e-6) if isinstance(sigma, float) else sigma.clamp(min=1e-6)
        return (latents.float() - x0) / sigma


def _cpu_value(t: Any) -> float | None:
    """A timestep as a plain number when reading it waits for nothing (a Python number, a
    CPU tensor through numpy: no read-back operation at all); None for a GPU tensor."""
    if not isinstance(t, torch.Tensor):
        return float(t)
    if t.device.type != "cpu":
        return None
    if t.requires_grad:
        t = t.detach()
    if t.dtype == torch.bfloat16:  # numpy has no bfloat16
        t = t.float()
    values = t.numpy()
    return float(values.item() if values.ndim == 0 else values.flat[0])  # numpy's item


def denoised_for(scheduler: Any) -> Denoised:
    """The parametrisation of a scheduler's `step` inputs."""
    config = scheduler.config
    flow = config.get("use_flow_sigmas") or type(scheduler).__name__.startswith("FlowMatch")
    if flow or config.get("prediction_type") == "flow_prediction":
        return FlowDenoised(config.get("num_train_timesteps", 1000))
    return AlphaDenoised(scheduler.alphas_cumprod, config.get("prediction_type", "epsilon"))


class GuidanceTap:
    """Attached to a pipeline for one call: `latest_x0()` is the denoised estimate of the
    last step. It never reads a GPU value back to the CPU (that would stall the pipeline
    every step), and when no control reshapes the prediction it only keeps references."""

    def __init__(
        self,
        settings: GuidanceSettings,
        denoised: Denoised,
        cancel: threading.Event,
        batched_cfg: bool = False,
        latent_channels: int = 4,
        copy_output: bool = False,
        classifier: Any = None,
    ) -> None:
        """`batched_cfg`: the pipeline runs CFG as one call on [uncond, cond] (the SD
        families, SD 3), so the network hook can rescale it. `copy_output`: the network is
        replayed as a CUDA graph, which writes every call's output into the same memory;
        a scheduler that keeps predictions across steps (PNDM) gets its own copy."""
        self.settings = settings
        self.denoised = denoised
        self.cancel = cancel
        self.batched_cfg = batched_cfg and settings.cfg_scale > 1
        self.latent_channels = latent_channels
        self.copy_output = copy_output
        # classifier guidance (classifier_guidance.ClassifierGuide): shifts the final,
        # CFG-combined prediction towards a class, before thresholding and the step
        self.classifier = classifier
        self.calls = 0
        self._last: tuple[torch.Tensor, torch.Tensor, Any] | None = None
        self._scaled: Any = None  # the scheduler's scale_model_input, where it has one

    def attach(self, denoiser: torch.nn.Module, scheduler: Any) -> list[Any]:
        """Hook the network and wrap the scheduler's step; the handles undo both."""
        rescales = self.batched_cfg and self.settings.cfg_rescale > 0
        handles: list[Any] = [_Around(denoiser, self._before, self._after if rescales else None)]
        original = scheduler.step
        # The Euler-type schedulers keep their latents as x0 + σ·ε; the network sees, and
        # ᾱ describes, the scaled x_t = √ᾱ·x0 + √(1−ᾱ)·ε. Their own scaling converts.
        if isinstance(self.denoised, AlphaDenoised):
            self._scaled = input_scaling(scheduler)

        # the pipeline reads the step's signature to pass a generator and eta: keep it
        @functools.wraps(original)
        def step(
            prediction: torch.Tensor,
            timestep: Any,
            latents: torch.Tensor,
            *args: Any,
            **kwargs: Any,
        ) -> Any:  # noqa: E501
            prediction = self.scheduler_step(prediction, timestep, latents)
            return original(prediction, timestep, latents, *args, **kwargs)

        scheduler.step = step
        handles.append(_Unwrap(scheduler))
        return handles

    def _before(self) -> None:
        if self.cancel.is_set():
            raise GenerationCancelled

    def _after(self, output: Any) -> Any:
        """CFG rescale on a batched [uncond, cond] prediction."""
        prediction = output[0] if isinstance(output, tuple) else output.sample
        if prediction.shape[0] % 2:
            return output
        uncond, cond = prediction.chunk(2)
        guided = uncond + self.settings.cfg_scale * (cond - uncond)
        guided = rescale_cfg(guided, cond, self.settings.cfg_rescale).to(prediction.dtype)
        return _with_sample(output, torch.cat([guided, guided]))

    def scheduler_step(
        self, prediction: torch.Tensor, timestep: Any, latents: torch.Tensor
    ) -> torch.Tensor:
        """The guided prediction the scheduler will use (thresholded when asked)."""
        self.calls += 1
        if self._scaled is not None:
            latents = self._scaled(latents, timestep)
        if self.classifier is not None:
            prediction = self.classifier(latents, prediction, timestep, self.denoised)
        if self.settings.dynamic_thresholding:
            x0 = self.denoised.to_x0(latents, prediction, timestep)
            x0 = dynamic_threshold(
                x0, self.settings.threshold_percentile, self.settings.threshold_max
            )
            prediction = self.denoised.from_x0(latents, x0, timestep).to(prediction.dtype)
        elif self.copy_output:
            prediction = prediction.clone()
        self._last = (latents, prediction, timestep)
        return prediction

    def latest_estimate(self) -> tuple[torch.Tensor, torch.Tensor, Any] | None:
        """The last step's (latents, prediction, timestep), as references: `x0_of` makes
        the denoised estimate of it when it is wanted. Neither diffusers' pipelines nor
        their schedulers change these tensors in place after the step."""
        return self._last

    def x0_of(self, estimate: tuple[torch.Tensor, torch.Tensor, Any]) -> torch.Tensor:
        return self.denoised.to_x0(*estimate)

    def latest_x0(self) -> torch.Tensor | None:
        return None if self._last is None else self.x0_of(self._last)


# Samplers whose scale_model_input divides by √(σ²+1) at σ = sigmas[step_index], and
# nothing else (KDPM2's alternate between two tables: not among them)
_DIVIDED_BY_SIGMA = frozenset(
    (
        "EulerDiscreteScheduler",
        "EulerAncestralDiscreteScheduler",
        "LMSDiscreteScheduler",
        "HeunDiscreteScheduler",
    )
)


def input_scaling(scheduler: Any) -> Callable[[torch.Tensor, Any], torch.Tensor]:
    """The scheduler's `scale_model_input`, for the Euler-type samplers with its divisors
    computed once per schedule, as diffusers computes each (float32, the same operations):
    the same latents for one operation a step where it takes five, which a tiny model's
    step notices. Anything else, or σs on a GPU (never read back), asks the scheduler."""
    if type(scheduler).__name__ not in _DIVIDED_BY_SIGMA:
        return scheduler.scale_model_input
    kept: list[Any] = [None, []]  # the σ table and its divisors

    def scale(sample: torch.Tensor, timestep: Any) -> torch.Tensor:
        sigmas, index = scheduler.sigmas, scheduler.step_index
        if index is None or sigmas.device.type != "cpu":
            return scheduler.scale_model_input(sample, timestep)
        if kept[0] is not sigmas:
            kept[0], kept[1] = sigmas, ((sigmas**2 + 1) ** 0.5).tolist()
        return sample / kept[1][index]

    return scale


class _Around:
    """Runs `before` ahead of each call of a network and passes its output through `after`,
    for one pipeline call; `remove` puts the network's own forward back. A wrapper of the
    forward rather than module hooks: a module with hooks takes torch's slow call path,
    some microseconds a call, which a tiny model's step of a few milliseconds notices."""

    def __init__(
        self,
        module: torch.nn.Module,
        before: Callable[[], None],
        after: Callable[[Any], Any] | None = None,
    ) -> None:
        self.module = module
        # a forward set on the instance (accelerate's offload hooks, a compiled wrapper's)
        self.kept = module.__dict__.get("forward")
        inner = module.forward

        @functools.wraps(inner)  # pipelines read the forward's signature
        def forward(*args: Any, **kwargs: Any) -> Any:
            before()
            output = inner(*args, **kwargs)
            return output if after is None else after(output)

        module.forward = forward

    def remove(self) -> None:
        if self.kept is None:
            self.module.__dict__.pop("forward", None)
        else:
            self.module.forward = self.kept


class _Unwrap:
    """A handle that puts a scheduler's own `step` back."""

    def __init__(self, scheduler: Any) -> None:
        self.scheduler = scheduler

    def remove(self) -> None:
        self.scheduler.__dict__.pop("step", None)


def _with_sample(output: Any, sample: torch.Tensor) -> Any:
    """The UNet's output (a tuple or an output object) with `sample` in its place."""
    return (sample,) if isinstance(output, tuple) else type(output)(sample=sample)


def to_x0(
    latents: torch.Tensor, prediction: torch.Tensor, a: Any, s: Any, kind: str
) -> torch.Tensor:
    """The denoised estimate from the noisy latents and the model's prediction (a = √ᾱ,
    s = √(1−ᾱ))."""
    x = latents.float()
    p = prediction.float()
    if kind == "sample":
        return p
    if isinstance(s, float):  # plain numbers (a CPU timestep): fewer operations a step
        if kind == "v_prediction":
            return torch.mul(x, a).sub_(p, alpha=s)
        return x.sub(p, alpha=s).div_(a)
    if kind == "v_prediction":
        return a * x - s * p
    return (x - s * p) / a


def from_x0(latents: torch.Tensor, x0: torch.Tensor, a: Any, s: Any, kind: str) -> torch.Tensor:
    """The model prediction that gives `x0` from the noisy latents (inverse of to_x0)."""
    x = latents.float()
    if kind == "v_prediction":
        return (a * x - x0) / s
    if kind == "sample":
        return x0
    return (x - a * x0) / s


def dynamic_threshold(x0: torch.Tensor, percentile: float, ceiling: float) -> torch.Tensor:
    """Imagen's dynamic thresholding with a ceiling in place of Imagen's fixed 1.

    s is the given percentile of |x0| per image, never below the ceiling; x0 is clipped
    to [-s, s] and brought back to [-ceiling, ceiling]. Saturated values are pulled in
    instead of piling up at the edge, which is what keeps high CFG scales usable.
    """
    flat = x0.abs().flatten(1).float()
    s = torch.quantile(flat, percentile / 100.0, dim=1).clamp(min=ceiling)
    s = s.view(-1, *([1] * (x0.dim() - 1)))
    return torch.clamp(x0, -s, s) * (ceiling / s)


def rescale_cfg(guided: torch.Tensor, cond: torch.Tensor, phi: float) -> torch.Tensor:
    """CFG rescale (Lin et al. 2023, §3.4): match the guided prediction's spread to the
    conditional one, then blend by phi; it tames the over-exposure of high CFG."""
    dims = list(range(1, guided.dim()))
    std_cond = cond.std(dim=dims, keepdim=True)
    std_guided = guided.std(dim=dims, keepdim=True)
    rescaled = guided * (std_cond / std_guided)
    return phi * rescaled + (1 - phi) * guided
