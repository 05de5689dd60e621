"""Classifier guidance (Dhariwal & Nichol 2021, §4): steer each denoising step with the
gradient of a noise-aware classifier, g = ∇_{x_t} log p(y | x_t), scaled by s.

The classifier sees the noisy latents x_t = √ᾱ·x0 + √(1−ᾱ)·ε of the model's own DDPM
schedule and the timestep, and has two heads: the main object's shape and its colour. A
target "red star" adds both heads' log-probabilities; "star" or "red" uses one head.

Where a model's classifier lives: the sibling folder `<model>-classifier`
(studio/core/classifiers.py; studio-tiny → resources/models/studio-tiny-classifier).

How the step is shifted, once for every scheduler: the tap hands us the final (CFG-combined)
prediction in the scheduler's own terms (ε, v or x0), the noisy latents x_t (already brought
to the DDPM scale for Euler-type schedulers) and the timestep. Dhariwal & Nichol shift the
noise prediction, ε̂' = ε̂ − s·√(1−ᾱ)·g. Since x0 = (x_t − √(1−ᾱ)·ε̂)/√ᾱ with x_t fixed,
that is the same as moving the denoised estimate by x0' = x0 + s·(1−ᾱ)/√ᾱ·g. So we convert
the prediction to x0 (to_x0), move x0, and convert back (from_x0): for ε, v and x0
prediction alike, and every scheduler (DDIM, Euler, Euler a, DPM++ 2M…) then steps from the
shifted prediction as if the network had made it.
"""

from __future__ import annotations

import json
import math
import threading
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from studio.core import classifiers


def timestep_embedding(t: torch.Tensor, dim: int, scale: float = 1000.0) -> torch.Tensor:
    """Sinusoidal features of a (possibly fractional) timestep in [0, scale)."""
    half = dim // 2
    freqs = torch.exp(-math.log(10000.0) * torch.arange(half, device=t.device) / half)
    args = t.float()[:, None] * freqs[None] * (1000.0 / scale)
    return torch.cat([torch.sin(args), torch.cos(args)], dim=1)


class _Block(nn.Module):
    def __init__(self, channels: int, emb: int) -> None:
        super().__init__()
        self.norm1 = nn.GroupNorm(8, channels)
        self.conv1 = nn.Conv2d(channels, channels, 3, padding=1)
        self.film = nn.Linear(emb, 2 * channels)
        self.norm2 = nn.GroupNorm(8, channels)
        self.conv2 = nn.Conv2d(channels, channels, 3, padding=1)

    def forward(self, x: torch.Tensor, emb: torch.Tensor) -> torch.Tensor:
        h = self.conv1(F.silu(self.norm1(x)))
        scale, shift = self.film(emb)[:, :, None, None].chunk(2, dim=1)
        h = self.norm2(h) * (1 + scale) + shift
        return x + self.conv2(F.silu(h))


class NoisyLatentClassifier(nn.Module):
    """Shape and colour of the main object from noisy latents and the timestep."""

    def __init__(
        self,
        shapes: list[str],
        colours: list[str],
        latent_channels: int = 4,
        channels: int = 48,
        blocks: int = 3,
        emb: int = 64,
    ) -> None:
        super().__init__()
        self.shapes = list(shapes)
        self.colours = list(colours)
        self.emb_dim = emb
        self.time = nn.Sequential(nn.Linear(emb, emb), nn.SiLU(), nn.Linear(emb, emb))
        self.stem = nn.Conv2d(latent_channels, channels, 3, padding=1)
        # 64 px pictures are 16×16 latents: one strided convolution halves them, the blocks
        # then run at 8×8 (cheap enough for a gradient at every step on a CPU)
        self.down = nn.Conv2d(channels, channels, 4, stride=2, padding=1)
        self.blocks = nn.ModuleList(_Block(channels, emb) for _ in range(blocks))
        self.out_norm = nn.GroupNorm(8, channels)
        self.shape_head = nn.Linear(2 * channels, len(self.shapes))
        self.colour_head = nn.Linear(2 * channels, len(self.colours))

    def forward(self, x: torch.Tensor, t: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        t = torch.as_tensor(t, device=x.device).float().flatten()
        if t.numel() == 1:
            t = t.expand(x.shape[0])
        emb = self.time(timestep_embedding(t, self.emb_dim))
        h = self.down(F.silu(self.stem(x.float())))
        for block in self.blocks:
            h = block(h, emb)
        h = F.silu(self.out_norm(h))
        pooled = torch.cat([h.mean(dim=(2, 3)), h.amax(dim=(2, 3))], dim=1)
        return self.shape_head(pooled), self.colour_head(pooled)

    def config(self) -> dict[str, Any]:
        return {
            "shapes": self.shapes,
            "colours": self.colours,
            "latent_channels": self.stem.in_channels,
            "channels": self.stem.out_channels,
            "blocks": len(self.blocks),
            "emb": self.emb_dim,
        }


# -- loading ---------------------------------------------------------------------------


_cache: dict[Path, NoisyLatentClassifier] = {}
_lock = threading.Lock()


def load_classifier(folder: Path) -> NoisyLatentClassifier:
    """The classifier in `folder`, loaded once (outside inference mode: its weights must be
    ordinary tensors, for the gradient)."""
    from safetensors.torch import load_file

    folder = Path(folder).resolve()
    with _lock:
        if folder not in _cache:
            with torch.inference_mode(False):
                config = json.loads((folder / "config.json").read_text())
                keys = ("shapes", "colours", "latent_channels", "channels", "blocks", "emb")
                net = NoisyLatentClassifier(**{k: config[k] for k in keys if k in config})
                net.load_state_dict(load_file(str(folder / "model.safetensors")))
                net.eval().requires_grad_(False)
            _cache[folder] = net
        return _cache[folder]


@dataclass(frozen=True)
class Target:
    shape: int | None  # index into the classifier's shapes; None = any
    colour: int | None


# -- the guide the tap calls --------------------------------------------------------------


class ClassifierGuide:
    """Called by the GuidanceTap on each step's final prediction; returns the shifted one."""

    def __init__(self, classifier: NoisyLatentClassifier, target: Target, scale: float) -> None:
        self.classifier = classifier
        self.target = target
        self.scale = float(scale)

    def log_prob(self, x: torch.Tensor, t: Any) -> torch.Tensor:
        """Σ over the targeted heads of log p(y | x_t), per image."""
        shape_logits, colour_logits = self.classifier(x, t)
        total = x.new_zeros(x.shape[0])
        if self.target.shape is not None:
            total = total + F.log_softmax(shape_logits, dim=1)[:, self.target.shape]
        if self.target.colour is not None:
            total = total + F.log_softmax(colour_logits, dim=1)[:, self.target.colour]
        return total

    def gradient(self, latents: torch.Tensor, timestep: Any) -> torch.Tensor:
        """g = ∇_{x_t} log p(y | x_t) through the classifier only, on a detached copy (the
        rest of the run stays under inference mode)."""
        t = torch.as_tensor(timestep).flatten()[:1].float().cpu()
        with torch.inference_mode(False), torch.enable_grad():
            x = latents.detach().float().clone().requires_grad_(True)
            if next(self.classifier.parameters()).device != x.device:
                self.classifier.to(x.device)
            (grad,) = torch.autograd.grad(self.log_prob(x, t.to(x.device)).sum(), x)
        return grad.detach()

    def __call__(
        self, latents: torch.Tensor, prediction: torch.Tensor, timestep: Any, denoised: Any
    ) -> torch.Tensor:
        """`latents`: x_t on the DDPM scale; `prediction`: in the scheduler's terms;
        `denoised`: the tap's AlphaDenoised (to_x0/from_x0 and ᾱ at the timestep)."""
        if self.scale == 0:
            return prediction
        if not hasattr(denoised, "alphas_cumprod"):
            raise classifiers.ClassifierGuidanceError(
                "Classifier guidance works on ᾱ-schedule models (ε or v prediction), "
                "not on flow-matching ones."
            )
        g = self.gradient(latents, timestep)
        alpha = denoised._alpha(timestep, latents.device)
        x0 = denoised.to_x0(latents, prediction, timestep)
        # ε̂' = ε̂ − s·√(1−ᾱ)·g  ⇔  x0' = x0 + s·(1−ᾱ)/√ᾱ·g   (x_t fixed; see the module doc)
        x0 = x0 + self.scale * (1 - alpha) / alpha.sqrt() * g
        return denoised.from_x0(latents, x0, timestep).to(prediction.dtype)


def guide_for(model: str, target: str, scale: float) -> ClassifierGuide:
    """The guide for a request's model spec and target; one sentence (a BadInput) when the
    model has no classifier or the target is not one of its classes."""
    found = classifiers.require(model, target)
    shape, colour = classifiers.parse_target(target, found.shapes, found.colours)
    return ClassifierGuide(load_classifier(found.folder), Target(shape, colour), scale)


def for_request(request: Any) -> ClassifierGuide | None:
    """The request's guide, or None when classifier guidance is off (scale 0)."""
    if not request.classifier_scale or not request.classifier_class.strip():
        return None
    return guide_for(request.model, request.classifier_class, request.classifier_scale)
