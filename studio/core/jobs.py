"""What a run reports and returns; free of torch so the UI thread can use these types."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Protocol

import numpy as np
from PIL import Image

from studio.core.request import GenerationRequest


class GenerationError(Exception):
    """A job that failed for a reason the user can act on; str() is one sentence."""


@dataclass(frozen=True)
class StepProgress:
    stage: str  # "generate", "upscale" or "hires"
    step: int  # 1-based
    total: int
    elapsed: float  # seconds since this stage started
    preview: np.ndarray | None  # (h, w, 3) uint8, the batch side by side

    @property
    def steps_per_second(self) -> float:
        return self.step / self.elapsed if self.elapsed > 0 else 0.0

    @property
    def seconds_left(self) -> float:
        rate = self.steps_per_second
        return (self.total - self.step) / rate if rate > 0 else 0.0


class Reporter(Protocol):
    def status(self, message: str, fraction: float | None) -> None: ...

    def step(self, progress: StepProgress) -> None: ...


class NullReporter:
    def status(self, message: str, fraction: float | None) -> None:
        pass

    def step(self, progress: StepProgress) -> None:
        pass


@dataclass
class GenerationResult:
    images: list[Image.Image]
    request: GenerationRequest  # with the seed resolved
    seeds: list[int]
    timings: dict[str, float] = field(default_factory=dict)
    cancelled: bool = False
