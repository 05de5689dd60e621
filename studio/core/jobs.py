"""Jobs and what they report and give back; free of torch and Qt, so every layer (the
engine, a backend, the controller, the command line) speaks these types.

A `Job` is a request with an id and the folder its images go to. While it runs, the
engine reports `StepProgress` (with a preview) and status lines through a `Reporter`.
It ends as a `GenerationResult`: the images, the request with its seed resolved, one seed
per image, timings and, once saved, the paths of the files. The controller keeps a
`JobRecord` per job: its state, its step previews (the timeline) and its result.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass, field
from pathlib import Path
from typing import Protocol

import numpy as np
from PIL import Image

from studio.core.errors import UserError
from studio.core.formats import PNG, SaveFormat
from studio.core.request import GenerationRequest


class GenerationError(UserError):
    """A job that failed for a reason the user can act on; str() is one sentence."""


@dataclass(frozen=True)
class Job:
    """One unit of work for a backend: the request, where its images go and as what."""

    id: int
    request: GenerationRequest
    output_dir: Path
    save_as: SaveFormat = PNG
    keep: bool = True  # saved to the output folder (live mode's drafts are not)


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


# A window shows at most this many frames a second (its repaints are coalesced to it):
# an engine may hand it several steps at once, each with its own preview, that often.
FRAMES_PER_SECOND = 30


class Reporter(Protocol):
    """Where a running job reports. A reporter may say how often it can show a frame, as
    `frame_interval` (seconds, see `frame_interval_of`): it then gets every step, with
    every preview, in batches at most that often, the steps of a batch made in one go."""

    def status(self, message: str, fraction: float | None) -> None: ...

    def step(self, progress: StepProgress) -> None: ...


def frame_interval_of(reporter: object) -> float:
    """Seconds between the batches of steps a reporter wants: 0 (each step as it ends)
    unless it says otherwise."""
    return float(getattr(reporter, "frame_interval", 0.0))


class NullReporter:
    def status(self, message: str, fraction: float | None) -> None:
        pass

    def step(self, progress: StepProgress) -> None:
        pass


@dataclass(frozen=True)
class Stage:
    """What one stage of a job ran: the record its metadata is written from."""

    name: str  # "generate", "hires" or "upscale"
    model: str
    scheduler: str
    steps: int  # the denoising steps that ran
    cfg_scale: float
    width: int  # the stage's output size
    height: int
    strength: float | None = None  # how much of the input was re-noised (image→image)
    noise_level: int | None = None  # the ×4 upscaler's noise on its input
    # per ControlNet of the request: the type a union ControlNet ran it as, "" for one that
    # ran none (a ControlNet of one type, or none acting); None when the stage ran none
    union_types: tuple[str, ...] | None = None
    # image→image: the schedule's length, of which the last `steps` ran (A1111 writes it as
    # its "Hires steps" and runs int(it × strength) of it)
    scheduled: int | None = None

    def to_dict(self) -> dict[str, object]:
        return {k: v for k, v in self.__dict__.items() if v is not None}


@dataclass(frozen=True)
class StepsKept:
    """Which jobs' steps an engine still keeps to continue from (rewind and branch), as it
    stood when a job ended: older jobs' go first once the memory budget is spent."""

    store: str  # the engine's own id: each engine keeps its own jobs' steps
    job: str  # the key of the job that just ended ("" for a batch, which keeps none)
    jobs: dict[str, int]  # every kept job's key and how many of its steps are kept


@dataclass
class GenerationResult:
    """A finished (or cancelled) run; `paths` are filled once its images are saved, which
    happens before anyone is told the job is done."""

    images: list[Image.Image]
    request: GenerationRequest  # with the seed resolved
    seeds: list[int]
    timings: dict[str, float] = field(default_factory=dict)
    cancelled: bool = False
    paths: list[Path] = field(default_factory=list)
    stages: list[Stage] = field(default_factory=list)  # in the order they ran
    kept: StepsKept | None = None  # what the engine keeps to continue from, after this job
    # why its images are not on disk, in a sentence ("" once saved): the pictures are still
    # shown, and can be exported elsewhere, rather than lost with the job
    unsaved: str = ""


class JobState(str, enum.Enum):
    QUEUED = "queued"
    RUNNING = "running"
    DONE = "done"
    CANCELLED = "cancelled"
    FAILED = "failed"

    @property
    def is_over(self) -> bool:
        return self not in (JobState.QUEUED, JobState.RUNNING)


@dataclass
class JobRecord:
    """What the window may ask about a job: its request, state, step previews and result."""

    id: int
    request: GenerationRequest
    state: JobState = JobState.QUEUED
    frames: list[StepProgress] = field(default_factory=list)  # every step with a preview
    result: GenerationResult | None = None
    error: str = ""
    parent: int | None = None  # the job a branch continues
    live: bool = False  # a live mode draft: shown beside the canvas, never saved
    shared: list[StepProgress] = field(default_factory=list)  # the parent's steps it starts with

    def timeline(self) -> list[StepProgress]:
        """Every step the job's picture went through: a branch's parent's first, then its own."""
        return [*self.shared, *self.frames]

    def branchable_step(self, index: int) -> int | None:
        """The step a branch from the timeline's frame `index` continues after, if any: a
        step of the generate stage of a finished one-image job, before its last."""
        frames = self.timeline()
        if self.result is None or len(self.result.images) != 1 or not 0 <= index < len(frames):
            return None
        frame = frames[index]
        if frame.stage != "generate" or not 1 <= frame.step < frame.total:
            return None
        return frame.step
