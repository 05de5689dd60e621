"""Latent-space bookkeeping for the studio-tiny VAE: standardising it, and the preview fit."""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from diffusers import AutoencoderKL

from studio.tiny.models import SCALING_FACTOR


@torch.no_grad()
def encode_mean(vae: AutoencoderKL, images: torch.Tensor, batch: int = 256) -> torch.Tensor:
    """Posterior means of images in [-1, 1] (raw latents, before the scaling factor)."""
    device = next(vae.parameters()).device
    out = [
        vae.encode(images[i : i + batch].to(device)).latent_dist.mean.cpu()
        for i in range(0, len(images), batch)
    ]
    return torch.cat(out)


@torch.no_grad()
def standardise(vae: AutoencoderKL, images: torch.Tensor) -> dict[str, list[float]]:
    """Rewrite the VAE's 1x1 in/out convolutions so raw latents have zero mean and std
    1/SCALING_FACTOR per channel. The decoder's output is unchanged; only the latent
    coordinates move, so that scaled latents (what the UNet sees) have unit variance."""
    z = encode_mean(vae, images)
    mean = z.mean(dim=(0, 2, 3))
    std = z.std(dim=(0, 2, 3))
    k = (1.0 / SCALING_FACTOR) / std
    c = mean.numel()
    qc, pqc = vae.quant_conv, vae.post_quant_conv
    qc.weight[:c] *= k.view(c, 1, 1, 1)
    qc.bias[:c] = (qc.bias[:c] - mean) * k
    qc.bias[c:] += 2 * torch.log(k)
    # post_quant_conv(z) with z = z_new / k + mean
    pqc.bias += (pqc.weight[:, :, 0, 0] @ mean).to(pqc.bias.dtype)
    pqc.weight /= k.view(1, c, 1, 1)
    return {"mean": mean.tolist(), "std": std.tolist(), "log_k": [math.log(v) for v in k.tolist()]}


@torch.no_grad()
def fit_latent_rgb(vae: AutoencoderKL, images: torch.Tensor) -> dict[str, list]:
    """Least squares from scaled latents to the image averaged down to latent resolution:
    the engine's live preview multiplies each latent pixel by these weights."""
    z = encode_mean(vae, images) * SCALING_FACTOR
    target = F.adaptive_avg_pool2d(images.float(), z.shape[-2:])
    x = z.permute(0, 2, 3, 1).reshape(-1, z.shape[1])
    y = target.permute(0, 2, 3, 1).reshape(-1, 3)
    x1 = torch.cat([x, torch.ones(len(x), 1)], dim=1)
    sol = torch.linalg.lstsq(x1.double(), y.double()).solution.float()
    residual = (x1 @ sol - y).abs().mean().item()
    return {
        "weights": [[round(v, 6) for v in row] for row in sol[:-1].tolist()],
        "bias": [round(v, 6) for v in sol[-1].tolist()],
        "mean_abs_error": round(residual, 4),
    }
