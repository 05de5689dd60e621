"""The seam between the controller and wherever jobs run.

A backend takes `Job`s and reports back by Qt signals delivered on the UI thread:
status lines while it starts or loads a model, each step's progress with its preview,
and exactly one ending per job it accepted — finished (with the result, its images
already saved), failed (one sentence) or cancelled. A backend with several places to run
may say where a job runs (placed; again if it moves). Cancelling is thread-safe and acts
within one step; a job cancelled before its turn never runs.
"""

from __future__ import annotations

from PySide6.QtCore import QObject, Signal

from studio.core.jobs import Job
from studio.core.request import GenerationRequest
from studio.core.settings import EngineSettings

UNKNOWN_FRACTION = -1.0  # status fraction when progress cannot be measured


class JobSignals(QObject):
    """The reports of whatever runs jobs: a backend, and the worker behind the local one."""

    statusChanged = Signal(str, float)  # message, fraction done (UNKNOWN_FRACTION: unknown)
    engineReady = Signal(str)  # a one-line summary ("Ready", or why the preload failed)
    stepped = Signal(int, object)  # job id, StepProgress
    finished = Signal(int, object)  # job id, GenerationResult with its paths
    failed = Signal(int, str)  # job id, one sentence
    cancelled = Signal(int)  # job id
    placed = Signal(int, str)  # job id, where it runs ("studio-engine-1 (10.0.0.7)")

    NAMES = (
        "statusChanged",
        "engineReady",
        "stepped",
        "finished",
        "failed",
        "cancelled",
        "placed",
    )


class Backend(JobSignals):
    """What the controller needs from a place that runs jobs."""

    # the noising view (`show_noising`): its token, and the picture (H×W×3 uint8) or None
    noised = Signal(int, object)

    @property
    def is_running(self) -> bool:
        raise NotImplementedError

    @property
    def capacity(self) -> int:
        """How many jobs it runs at once: one here, one per engine of a cluster."""
        return 1

    def start(self, preload_model: str = "") -> None:
        """Get ready (import the engine, load `preload_model` if given) without blocking."""
        raise NotImplementedError

    def submit(self, job: Job) -> None:
        """Run a job after the ones already submitted."""
        raise NotImplementedError

    def cancel(self, job_id: int) -> None:
        """Stop a job within one step, or make it end unrun; thread-safe."""
        raise NotImplementedError

    def configure(self, settings: EngineSettings) -> None:
        """New engine settings, from the next job on."""
        raise NotImplementedError

    def show_noising(self, token: int, request: GenerationRequest) -> None:
        """Make the noising view of an image→image or inpaint request: what its denoising
        starts from (Engine.noising_view), answered by `noised` with the same token; only
        the latest token asked for is answered. A backend that cannot answers None."""
        self.noised.emit(token, None)

    def stop(self, timeout_ms: int = 2000) -> bool:
        """Cancel everything and end; False when it did not end in time."""
        raise NotImplementedError
