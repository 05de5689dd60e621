"""Small RGB previews of the denoised estimate, cheap enough to make every step.

The linear method projects each latent pixel to RGB with a 4×3 matrix and a bias:
a few thousand multiply-adds at latent resolution, against a UNet call of billions.
The VAE method decodes properly, at the cost of a VAE decode per preview.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
import torch

# Projections of *scaled* latents (as the UNet sees them) to RGB in [-1, 1], per family.
# Published approximations for the Stable Diffusion VAEs; our own models carry a fitted
# set in latent_rgb.json beside their weights.
KNOWN_COEFFICIENTS: dict[str, tuple[list[list[float]], list[float]]] = {
    "sd1": (
        [
            [0.3512, 0.2297, 0.3227],
            [0.3250, 0.4974, 0.2350],
            [-0.2829, 0.1762, 0.2721],
            [-0.2120, -0.2616, -0.7177],
        ],
        [0.0, 0.0, 0.0],
    ),
    "sdxl": (
        [
            [0.3651, 0.4232, 0.4341],
            [-0.2533, -0.0042, 0.1068],
            [0.1076, 0.1111, -0.0362],
            [-0.3165, -0.2492, -0.2188],
        ],
        [0.1084, -0.0175, -0.0011],
    ),
}
KNOWN_COEFFICIENTS["sd2"] = KNOWN_COEFFICIENTS["sd1"]  # same VAE

COEFFICIENTS_FILE = "latent_rgb.json"


def load_coefficients(folder: Path | None) -> tuple[list[list[float]], list[float]] | None:
    if folder is None:
        return None
    path = Path(folder) / COEFFICIENTS_FILE
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
        return data["weights"], data["bias"]
    except (OSError, ValueError, KeyError):
        return None


def fit_coefficients(
    latents: torch.Tensor, images: torch.Tensor
) -> tuple[list[list[float]], list[float]]:
    """Least-squares latent→RGB projection.

    latents: (N, C, h, w) scaled latents; images: (N, 3, H, W) in [-1, 1], any H ≥ h.
    """
    small = torch.nn.functional.interpolate(images.float(), size=latents.shape[-2:], mode="area")
    x = latents.float().permute(0, 2, 3, 1).reshape(-1, latents.shape[1])
    y = small.permute(0, 2, 3, 1).reshape(-1, 3)
    x1 = torch.cat([x, torch.ones(len(x), 1)], dim=1)
    solution = torch.linalg.lstsq(x1, y).solution
    return solution[:-1].tolist(), solution[-1].tolist()


class PreviewCopy:
    """A preview on its way to the CPU.

    On a CUDA GPU the copy is queued behind the work already sent, and waiting for it at
    once would stall the denoising loop at every step: the GPU would idle while the CPU
    prepares the next step. So it is collected a step later, when it is done.
    """

    def __init__(self, rgb: torch.Tensor) -> None:
        self._done: Any = None
        if rgb.device.type == "cuda":
            self._host = rgb.to("cpu", non_blocking=True)  # into pinned memory, asynchronously
            self._done = torch.cuda.Event()
            self._done.record(torch.cuda.current_stream(rgb.device))
        else:
            self._host = rgb.cpu()

    @property
    def in_flight(self) -> bool:
        """Whether collecting it now could wait for the GPU."""
        return self._done is not None and not self._done.query()

    def collect(self) -> np.ndarray:
        """The batch side by side, (h, w·B, 3) uint8; waits for the copy if it is not done."""
        if self._done is not None:
            self._done.synchronize()
        return np.concatenate(list(self._host.numpy()), axis=1)


class Previewer:
    """Turns the denoised estimate of a batch into a preview: `start` makes it where x0 is and
    starts its copy to the CPU (`PreviewCopy.collect` gives the images side by side)."""

    def __init__(
        self,
        method: str,
        vae: Any = None,
        coefficients: tuple[list[list[float]], list[float]] | None = None,
    ) -> None:
        if method == "linear" and coefficients is None:
            method = "vae" if vae is not None else "none"
        self.method = method
        self.vae = vae
        self._weights: torch.Tensor | None = None
        self._bias: torch.Tensor | None = None
        if coefficients is not None:
            self._weights = torch.tensor(coefficients[0], dtype=torch.float32)
            self._bias = torch.tensor(coefficients[1], dtype=torch.float32)

    @property
    def enabled(self) -> bool:
        return self.method != "none"

    @torch.no_grad()
    def start(self, x0: torch.Tensor) -> PreviewCopy | None:
        """Make the preview where x0 is and start its copy to the CPU."""
        if self.method == "linear":
            rgb = self._linear(x0)
        elif self.method == "vae":
            rgb = self._decode(x0)
        else:
            return None
        # (B, h, w, 3) in [-1, 1] → uint8
        return PreviewCopy(((rgb.clamp(-1, 1) + 1) * 127.5).to(torch.uint8))

    def _linear(self, x0: torch.Tensor) -> torch.Tensor:
        assert self._weights is not None and self._bias is not None
        if self._weights.device != x0.device:
            self._weights = self._weights.to(x0.device)
            self._bias = self._bias.to(x0.device)
        return torch.einsum("bchw,cr->bhwr", x0.float(), self._weights) + self._bias

    def _decode(self, x0: torch.Tensor) -> torch.Tensor:
        vae = self.vae
        scaled = x0.to(vae.dtype) / vae.config.scaling_factor
        image = vae.decode(scaled, return_dict=False)[0]
        return image.float().permute(0, 2, 3, 1)
