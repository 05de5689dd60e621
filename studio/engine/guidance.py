"""Guidance on the UNet's output: CFG, CFG rescale and Imagen's dynamic thresholding.

A forward hook on the UNet sees every denoising call of every pipeline (text→image,
image→image, inpaint, ×4 upscale) at the one place where the noise prediction, the
noisy latents and the timestep are all at hand. From them it derives the denoised
estimate x0 (kept for the live preview) and, when asked, reshapes the guided
prediction. The pipeline then combines the two CFG halves itself; we hand it the
guided prediction in both halves so its `uncond + g * (cond - uncond)` returns it exactly.
"""

from __future__ import annotations

import threading
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

    @property
    def reshapes_prediction(self) -> bool:
        return self.dynamic_thresholding or (self.cfg_scale > 1 and self.cfg_rescale > 0)


class GuidanceTap:
    """The UNet forward hook. `latest_x0()` is the denoised estimate of the last call.

    It never reads a GPU value back to the CPU (that would stall the pipeline every step),
    and when it does not reshape the prediction it only keeps references: the guided
    prediction and x0 are computed in `latest_x0()`, when a preview asks for them.
    """

    def __init__(
        self,
        settings: GuidanceSettings,
        alphas_cumprod: torch.Tensor,
        prediction_type: str,
        latent_channels: int,
        cancel: threading.Event,
        copy_output: bool = False,
    ) -> None:
        self.settings = settings
        # A UNet replayed as a CUDA graph writes every call's output into the same memory;
        # a scheduler that keeps raw outputs across steps (PNDM) needs its own copy.
        self.copy_output = copy_output
        self.alphas_cumprod = alphas_cumprod.float()
        self.prediction_type = prediction_type
        self.latent_channels = latent_channels
        self.cancel = cancel
        self.calls = 0
        self._last: tuple[torch.Tensor, torch.Tensor, torch.Tensor | None, Any] | None = None

    def attach(self, unet: torch.nn.Module) -> Any:
        pre = unet.register_forward_pre_hook(self._before, with_kwargs=True)
        post = unet.register_forward_hook(self._after, with_kwargs=True)
        return pre, post

    def _before(self, module: Any, args: tuple, kwargs: dict) -> None:
        if self.cancel.is_set():
            raise GenerationCancelled

    def _after(self, module: Any, args: tuple, kwargs: dict, output: Any) -> Any:
        self.calls += 1
        sample = args[0] if args else kwargs["sample"]
        timestep = args[1] if len(args) > 1 else kwargs["timestep"]
        prediction = output[0] if isinstance(output, tuple) else output.sample
        latents = sample[:, : self.latent_channels]
        with_cfg = self.settings.cfg_scale > 1 and prediction.shape[0] % 2 == 0
        if with_cfg:
            uncond, cond = prediction.chunk(2)
            latents = latents[: uncond.shape[0]]
        else:
            uncond, cond = None, prediction
        if not self.settings.reshapes_prediction:
            self._last = (latents, cond, uncond, timestep)
            if not self.copy_output:
                return None  # the pipeline's own CFG gives the same prediction: leave it be
            return _with_sample(output, prediction.clone())

        guided = self._guided(cond, uncond)
        if self.settings.dynamic_thresholding:
            alpha = self._alpha_cumprod(timestep, latents.device)
            x0 = to_x0(latents, guided, alpha, self.prediction_type)
            x0 = dynamic_threshold(
                x0, self.settings.threshold_percentile, self.settings.threshold_max
            )
            guided = from_x0(latents, x0, alpha, self.prediction_type).to(prediction.dtype)
        self._last = (latents, guided, None, timestep)
        return _with_sample(output, torch.cat([guided] * (2 if with_cfg else 1)))

    def _guided(self, cond: torch.Tensor, uncond: torch.Tensor | None) -> torch.Tensor:
        if uncond is None:
            return cond
        guided = uncond + self.settings.cfg_scale * (cond - uncond)
        if self.settings.cfg_rescale > 0:
            guided = rescale_cfg(guided, cond, self.settings.cfg_rescale)
        return guided

    def latest_x0(self) -> torch.Tensor | None:
        if self._last is None:
            return None
        latents, cond, uncond, timestep = self._last
        alpha = self._alpha_cumprod(timestep, latents.device)
        return to_x0(latents, self._guided(cond, uncond), alpha, self.prediction_type)

    def _alpha_cumprod(self, timestep: Any, device: torch.device) -> torch.Tensor:
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


def _with_sample(output: Any, sample: torch.Tensor) -> Any:
    """The UNet's output (a tuple or an output object) with `sample` in its place."""
    return (sample,) if isinstance(output, tuple) else type(output)(sample=sample)


def to_x0(
    latents: torch.Tensor, prediction: torch.Tensor, alpha: torch.Tensor, kind: str
) -> torch.Tensor:
    """The denoised estimate from the noisy latents and the model's prediction."""
    a, s = alpha.sqrt(), (1 - alpha).sqrt()
    x = latents.float()
    p = prediction.float()
    if kind == "v_prediction":
        return a * x - s * p
    if kind == "sample":
        return p
    return (x - s * p) / a


def from_x0(
    latents: torch.Tensor, x0: torch.Tensor, alpha: torch.Tensor, kind: str
) -> torch.Tensor:
    """The model prediction that gives `x0` from the noisy latents (inverse of to_x0)."""
    a, s = alpha.sqrt(), (1 - alpha).sqrt()
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
