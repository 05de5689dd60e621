"""Small RGB previews of the denoised estimate, cheap enough to make every step.

The linear method projects each latent pixel to RGB with a 4×3 matrix and a bias:
a few thousand multiply-adds at latent resolution, against a UNet call of billions.
The VAE method decodes properly, at the cost of a VAE decode per preview.
"""

from __future__ import annotations

import json
import logging
import weakref
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import torch

from studio.core import families

log = logging.getLogger(__name__)

# Projections of *scaled* latents (as the network sees them) to RGB in [-1, 1], per family:
# published approximations in each family's declaration; our own models carry a fitted set
# in latent_rgb.json beside their weights.
KNOWN_COEFFICIENTS: dict[str, tuple[list[list[float]], list[float]]] = {
    family.name: ([list(row) for row in family.preview[0]], list(family.preview[1]))
    for family in families.all_families()
    if family.preview is not None
}

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


def coefficients_for(pipe: Any) -> tuple[list[list[float]], list[float]] | None:
    """The model's own fitted projection, else its family's published one, else one fitted
    from its VAE on first use and kept (`fitted_coefficients`)."""
    from studio.engine.family_runtime import family_of

    found = load_coefficients(getattr(pipe, "_studio_folder", None))
    if found is not None:
        return found
    family = family_of(pipe)
    if family.preview_fits(pipe.vae.config):
        return KNOWN_COEFFICIENTS[family.name]
    return fitted_coefficients(pipe.vae, family.layout)


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
            self._host = rgb if rgb.is_cpu else rgb.cpu()

    @property
    def in_flight(self) -> bool:
        """Whether collecting it now could wait for the GPU."""
        return self._done is not None and not self._done.query()

    def collect(self) -> np.ndarray:
        """The batch side by side, (h, w·B, 3) uint8; waits for the copy if it is not done."""
        return self.frames(1)[0]

    def frames(self, count: int) -> list[np.ndarray]:
        """The previews of `count` steps made in one go (their batches one after another):
        each step's batch side by side; waits for the copy if it is not done."""
        if self._done is not None:
            self._done.synchronize()
        images = self._host.numpy()
        size = len(images) // count
        groups = [images[size * n : size * (n + 1)] for n in range(count)]
        return [g[0] if size == 1 else np.concatenate(list(g), axis=1) for g in groups]


class Previewer:
    """Turns the denoised estimate of a batch into a preview: `start` makes it where x0 is and
    starts its copy to the CPU (`PreviewCopy.collect` gives the images side by side)."""

    def __init__(
        self,
        method: str,
        decode: Callable[[torch.Tensor], torch.Tensor] | None = None,
        coefficients: tuple[list[list[float]], list[float]] | None = None,
        unpack: Callable[[torch.Tensor], torch.Tensor] | None = None,
        tokens: tuple[int, int, int] | None = None,
    ) -> None:
        """`decode`: network latents (B, C, h, w) to pixels (B, 3, H, W) in [-1, 1];
        `unpack`: the pipeline's latents to (B, C, h, w) (packed families); `tokens`: where
        those are tokens, their grid (`family_runtime.token_grid`), for projecting them as
        they are."""
        if method == "linear" and coefficients is None:
            method = "vae" if decode is not None else "none"
        self.method = method
        self.decode = decode
        self.unpack = unpack or (lambda latents: latents)
        self.tokens = tokens
        # (weights, bias) of a latent pixel, and of a token where the latents are tokens
        self._projections: list[tuple[torch.Tensor, torch.Tensor]] = []
        if coefficients is not None:
            # scaled once so the projection lands in 0..255 itself: one matrix product and
            # a clamp a step, where [-1, 1] → bytes took four more small operations
            weights = torch.tensor(coefficients[0], dtype=torch.float32) * 127.5
            bias = (torch.tensor(coefficients[1], dtype=torch.float32) + 1) * 127.5
            self._projections.append((weights, bias))
            if tokens is not None:
                self._projections.append(_per_token(weights, bias, tokens[2]))

    @property
    def enabled(self) -> bool:
        return self.method != "none"

    def start(self, x0: torch.Tensor) -> PreviewCopy | None:
        """Make the preview where x0 is and start its copy to the CPU."""
        if self.method == "none":
            return None
        if torch.is_grad_enabled():  # the loop runs in inference mode: no context a step
            with torch.no_grad():
                return self.start(x0)
        if self.method == "linear":
            return PreviewCopy(self._linear(x0))
        # (B, h, w, 3) in [-1, 1] → uint8
        x0 = self.unpack(x0)
        return PreviewCopy(((self._decode(x0).clamp(-1, 1) + 1) * 127.5).to(torch.uint8))

    def _linear(self, x0: torch.Tensor) -> torch.Tensor:
        """(B, h, w, 3) uint8: every latent pixel (or token) times the weights, plus the
        bias, in one matrix product."""
        if self._projections[0][0].device != x0.device:
            self._projections = [(w.to(x0.device), b.to(x0.device)) for w, b in self._projections]
        if self.tokens is not None and x0.dim() == 3:
            rows, columns, patch = self.tokens
            weights, bias = self._projections[1]
            flat = x0.reshape(-1, x0.shape[-1])
        else:
            grid = self.unpack(x0)
            (_, channels, rows, columns), patch = grid.shape, 1
            weights, bias = self._projections[0]
            flat = grid.permute(0, 2, 3, 1).reshape(-1, channels)
        rgb = torch.addmm(bias, flat.float(), weights).clamp_(0, 255)
        if patch == 1:
            return rgb.to(torch.uint8).view(-1, rows, columns, 3)
        # to bytes and each token's p×p pixels into their rows, in one copy
        tokens = rgb.view(-1, rows, columns, patch, patch, 3).transpose(2, 3)
        pixels = tokens.to(torch.uint8, memory_format=torch.contiguous_format)
        return pixels.view(-1, rows * patch, columns * patch, 3)

    def _decode(self, x0: torch.Tensor) -> torch.Tensor:
        assert self.decode is not None
        return self.decode(x0).float().permute(0, 2, 3, 1)


def _per_token(
    weights: torch.Tensor, bias: torch.Tensor, patch: int
) -> tuple[torch.Tensor, torch.Tensor]:
    """The projection of a token of p×p latent pixels (channel-major: channel·p² + pixel) to
    its p² RGB pixels: the pixel's own weights on its own channels, nothing across pixels."""
    pixels = patch * patch
    # (C, p², p², 3): [c, j, l, k] = weights[c, k] where the token pixel j is the output l
    block = torch.einsum("ck,jl->cjlk", weights, torch.eye(pixels))
    return block.reshape(weights.shape[0] * pixels, pixels * 3), bias.repeat(pixels)


FIT_SIZE = 64  # pixels of each synthetic picture: enough for colours, cheap to encode
_fitted: dict[str, tuple[list[list[float]], list[float]]] = {}


def fitted_coefficients(
    vae: Any, layout: str = "plain"
) -> tuple[list[list[float]], list[float]] | None:
    """A latent→RGB projection fitted from a VAE of no known projection: it encodes a small
    set of synthetic pictures (plain colours, gradients, blocks), then least squares maps
    its latents back to their colours. Done once per VAE (kept in memory and in the config
    folder), so a family nobody published coefficients for still previews in colour."""
    known = _fitted_by_vae.get(vae)
    if known is not None:  # this very VAE: no fingerprint (its state_dict) every run
        return known
    key = _vae_fingerprint(vae)
    if key in _fitted:
        _fitted_by_vae[vae] = _fitted[key]
        return _fitted[key]
    cached = _read_fit_cache().get(key)
    if cached is not None:
        _fitted[key] = cached
        _fitted_by_vae[vae] = cached
        return cached
    try:
        found = _fit_from_vae(vae, layout)
    except Exception:  # noqa: BLE001 - a VAE that cannot encode previews by decoding
        log.warning("could not fit preview coefficients for %s", type(vae).__name__, exc_info=True)
        return None
    _fitted[key] = found
    _fitted_by_vae[vae] = found
    _write_fit_cache(key, found)
    return found


def synthetic_pictures(size: int = FIT_SIZE) -> torch.Tensor:
    """(N, 3, size, size) in [-1, 1]: the corners of the RGB cube, greys, two-colour
    gradients and blocks, so every direction of colour is seen."""
    corners = torch.tensor(
        [[r, g, b] for r in (-1.0, 1.0) for g in (-1.0, 1.0) for b in (-1.0, 1.0)]
    )
    greys = torch.linspace(-0.6, 0.6, 3).unsqueeze(1).repeat(1, 3)
    colours = torch.cat([corners, greys])
    plain = colours.view(-1, 3, 1, 1).expand(-1, 3, size, size)
    ramp = torch.linspace(0, 1, size).view(1, 1, 1, size)
    gradients = torch.stack(
        [
            (
                colours[i].view(3, 1, 1) * (1 - ramp[0]) + colours[-1 - i].view(3, 1, 1) * ramp[0]
            ).expand(3, size, size)
            for i in range(4)
        ]
    )
    generator = torch.Generator().manual_seed(0)
    blocks = (
        (torch.rand(4, 3, 4, 4, generator=generator) * 2 - 1)
        .repeat_interleave(size // 4, dim=2)
        .repeat_interleave(size // 4, dim=3)
    )
    return torch.cat([plain, gradients, blocks]).clamp(-1, 1)


@torch.no_grad()
def _fit_from_vae(vae: Any, layout: str) -> tuple[list[list[float]], list[float]]:
    from studio.engine.family_runtime import _is_video_vae, from_vae

    pictures = synthetic_pictures().to(vae.device, vae.dtype)
    batch = pictures.unsqueeze(2) if _is_video_vae(vae) else pictures
    latents = vae.encode(batch).latent_dist.mean
    network = from_vae(vae, latents, layout)
    return fit_coefficients(network.float().cpu(), pictures.float().cpu())


_fitted_by_vae: weakref.WeakKeyDictionary[Any, Any] = weakref.WeakKeyDictionary()


def _vae_fingerprint(vae: Any) -> str:
    import hashlib

    config = json.dumps(dict(vae.config), sort_keys=True, default=str)
    digest = hashlib.sha256(config.encode())
    for _name, tensor in list(vae.state_dict().items())[:4]:  # tells random weights apart
        digest.update(tensor.detach().float().flatten()[:64].cpu().numpy().tobytes())
    return f"{type(vae).__name__}-{digest.hexdigest()[:16]}"


def _fit_cache_path() -> Path:
    from studio.core.paths import config_dir

    return config_dir() / "preview-coefficients.json"


def _read_fit_cache() -> dict[str, Any]:
    try:
        data = json.loads(_fit_cache_path().read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return {}
    if not isinstance(data, dict):
        return {}
    return {k: (v[0], v[1]) for k, v in data.items() if isinstance(v, list) and len(v) == 2}


def _write_fit_cache(key: str, coefficients: tuple[list[list[float]], list[float]]) -> None:
    from studio.core.saving import write_atomically

    data = {k: list(v) for k, v in _read_fit_cache().items()}
    data[key] = [coefficients[0], coefficients[1]]
    try:
        path = _fit_cache_path()
        path.parent.mkdir(parents=True, exist_ok=True)
        payload = json.dumps(data).encode("utf-8")
        write_atomically(path, lambda handle: handle.write(payload))
    except OSError:
        log.info("could not keep the fitted preview coefficients", exc_info=True)
