"""The one frozen object that holds every input of a generation job.

A panel builds a `GenerationRequest`, the controller gives it a job id, the
engine runs it, and the saved PNG carries `request.to_dict()` so the exact job
can be restored and run again.
"""

from __future__ import annotations

import dataclasses
import enum
from dataclasses import dataclass, field, fields
from typing import Any

from PIL import Image

from studio.core.schedulers import SCHEDULER_NAMES

DEFAULT_MODEL = "studio-tiny"
DEFAULT_UPSCALE_MODEL = "studio-tiny-x4"
MAX_SIDE = 4096
MAX_BATCH = 64


class Mode(str, enum.Enum):
    TEXT_TO_IMAGE = "txt2img"
    IMAGE_TO_IMAGE = "img2img"
    INPAINT = "inpaint"
    UPSCALE = "upscale"

    @property
    def label(self) -> str:
        return _MODE_LABELS[self]


_MODE_LABELS = {
    Mode.TEXT_TO_IMAGE: "Text→Image",
    Mode.IMAGE_TO_IMAGE: "Image→Image",
    Mode.INPAINT: "Inpaint",
    Mode.UPSCALE: "Upscale",
}


class Upscaler(str, enum.Enum):
    """How a result is enlarged: a diffusion ×4 model, or "hires fix" (×2 then image→image)."""

    X4 = "x4"
    HIRES = "hires"


class RequestError(ValueError):
    """A request that cannot run; `problems` holds one sentence per problem."""

    def __init__(self, problems: list[str]) -> None:
        super().__init__(" ".join(problems))
        self.problems = problems


# Images are inputs, not parameters: they are compared by identity and left out of to_dict().
_IMAGE_FIELDS = ("init_image", "mask")


@dataclass(frozen=True)
class GenerationRequest:
    mode: Mode = Mode.TEXT_TO_IMAGE
    prompt: str = ""
    negative_prompt: str = ""
    model: str = DEFAULT_MODEL
    width: int = 64
    height: int = 64
    steps: int = 20
    cfg_scale: float = 7.0
    cfg_rescale: float = 0.0
    dynamic_thresholding: bool = False
    threshold_percentile: float = 99.5
    threshold_max: float = 2.5
    scheduler: str = "Euler a"
    seed: int = -1  # -1: a random seed, resolved by the engine and recorded in the result
    batch_size: int = 1
    init_image: Image.Image | None = field(default=None, compare=False, repr=False)
    strength: float = 0.75
    mask: Image.Image | None = field(default=None, compare=False, repr=False)
    mask_blur: int = 4
    inpaint_only_masked: bool = False
    inpaint_padding: int = 32
    upscaler: Upscaler | None = None
    upscale_model: str = DEFAULT_UPSCALE_MODEL
    upscale_strength: float = 0.35  # image→image strength of the hires fix pass
    upscale_noise_level: int = 20  # noise added to the input of a diffusion ×4 upscaler

    def __post_init__(self) -> None:
        # Accept plain strings (from JSON, the command line) for the enum fields.
        object.__setattr__(self, "mode", Mode(self.mode))
        if self.upscaler is not None:
            object.__setattr__(self, "upscaler", Upscaler(self.upscaler))

    def replace(self, **changes: Any) -> GenerationRequest:
        return dataclasses.replace(self, **changes)

    def problems(self) -> list[str]:
        """One clear sentence per problem; empty when the request can run."""
        return _validate(self)

    def validate(self) -> None:
        problems = self.problems()
        if problems:
            raise RequestError(problems)

    def to_dict(self) -> dict[str, Any]:
        """Every parameter as JSON-friendly values; images are left out."""
        data: dict[str, Any] = {}
        for f in fields(self):
            if f.name in _IMAGE_FIELDS:
                continue
            value = getattr(self, f.name)
            data[f.name] = value.value if isinstance(value, enum.Enum) else value
        return data

    @classmethod
    def from_dict(cls, data: dict[str, Any], **images: Image.Image | None) -> GenerationRequest:
        """Build a request from `to_dict()` output, ignoring unknown keys (newer files)."""
        known = {f.name: f for f in fields(cls)}
        kwargs: dict[str, Any] = {}
        for name, value in data.items():
            if name in known and name not in _IMAGE_FIELDS:
                kwargs[name] = value
        kwargs.update(images)
        return cls(**kwargs)


def _validate(r: GenerationRequest) -> list[str]:
    problems: list[str] = []
    needs_image = r.mode in (Mode.IMAGE_TO_IMAGE, Mode.INPAINT, Mode.UPSCALE)

    if r.mode is not Mode.UPSCALE and not (r.prompt.strip() or r.negative_prompt.strip()):
        problems.append("The prompt is empty: describe the image you want.")
    for name, value in (("Width", r.width), ("Height", r.height)):
        if value < 8 or value > MAX_SIDE:
            problems.append(f"{name} must be between 8 and {MAX_SIDE} pixels, not {value}.")
        elif value % 8:
            problems.append(
                f"{name} must be a multiple of 8 (got {value}; try {_nearest_multiple(value)})."
            )
    if not 1 <= r.steps <= 1000:
        problems.append(f"Steps must be between 1 and 1000, not {r.steps}.")
    if not 0 <= r.cfg_scale <= 100:
        problems.append(f"CFG scale must be between 0 and 100, not {r.cfg_scale:g}.")
    if not 0 <= r.cfg_rescale <= 1:
        problems.append(f"CFG rescale must be between 0 and 1, not {r.cfg_rescale:g}.")
    if r.dynamic_thresholding:
        if not 50 <= r.threshold_percentile <= 100:
            problems.append(
                "The thresholding percentile must be between 50 and 100, "
                f"not {r.threshold_percentile:g}."
            )
        if r.threshold_max <= 0:
            problems.append(f"The thresholding ceiling must be above 0, not {r.threshold_max:g}.")
    if r.scheduler not in SCHEDULER_NAMES:
        problems.append(
            f"Unknown scheduler '{r.scheduler}': choose one of {', '.join(SCHEDULER_NAMES)}."
        )
    if not -1 <= r.seed < 2**32:
        problems.append(f"The seed must be between 0 and {2**32 - 1}, or -1 for random.")
    if r.batch_size < 1:
        problems.append("The batch is empty: make at least one image.")
    elif r.batch_size > MAX_BATCH:
        problems.append(f"A batch holds at most {MAX_BATCH} images, not {r.batch_size}.")
    if not r.model.strip():
        problems.append("No model is chosen.")

    if needs_image and r.init_image is None:
        problems.append(f"{r.mode.label} needs an input image: open, paste or drop one.")
    if r.mode in (Mode.IMAGE_TO_IMAGE, Mode.INPAINT) and not 0 < r.strength <= 1:
        problems.append(f"Strength must be above 0 and at most 1, not {r.strength:g}.")
    if r.mode is Mode.INPAINT:
        problems.extend(_mask_problems(r))
    if r.upscaler is Upscaler.HIRES and not 0 < r.upscale_strength <= 1:
        problems.append(
            f"The hires fix strength must be above 0 and at most 1, not {r.upscale_strength:g}."
        )
    if not 0 <= r.upscale_noise_level <= 350:
        problems.append("The upscaler noise level must be between 0 and 350.")
    return problems


def _mask_problems(r: GenerationRequest) -> list[str]:
    if r.mask is None:
        return ["Inpainting needs a mask: paint over the area to repaint."]
    problems = []
    if r.init_image is not None and r.mask.size != r.init_image.size:
        mw, mh = r.mask.size
        iw, ih = r.init_image.size
        problems.append(f"The mask is {mw}×{mh} but the image is {iw}×{ih}: they must match.")
    elif r.mask.getbbox() is None or r.mask.convert("L").getextrema()[1] == 0:
        problems.append("The mask is empty: paint over the area to repaint.")
    if not 0 <= r.mask_blur <= 64:
        problems.append(f"Mask blur must be between 0 and 64 pixels, not {r.mask_blur}.")
    if r.inpaint_padding < 0:
        problems.append("Inpaint padding cannot be negative.")
    return problems


def _nearest_multiple(value: int, of: int = 8) -> int:
    return max(of, round(value / of) * of)
