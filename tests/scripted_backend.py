"""A backend that runs nothing: tests script what the "remote" side does, as
krita-ai-diffusion tests its jobs against a mock client."""

from __future__ import annotations

import numpy as np
from PIL import Image

from studio.core.jobs import GenerationResult, Job, StepProgress
from studio.core.saving import save_job_result
from studio.core.settings import EngineSettings
from studio.ui.backends import Backend


class ScriptedBackend(Backend):
    """Runs nothing: records what it is asked and emits what the test tells it to."""

    def __init__(self) -> None:
        super().__init__()
        self.submitted: list[Job] = []
        self.cancelled_ids: list[int] = []
        self.settings: list[EngineSettings] = []
        self.running = False

    @property
    def is_running(self) -> bool:
        return self.running

    def start(self, preload_model: str = "") -> None:
        self.running = True
        self.engineReady.emit("Ready")

    def submit(self, job: Job) -> None:
        self.submitted.append(job)

    def cancel(self, job_id: int) -> None:
        self.cancelled_ids.append(job_id)

    def configure(self, settings: EngineSettings) -> None:
        self.settings.append(settings)

    def stop(self, timeout_ms: int = 2000) -> bool:
        self.running = False
        return True

    # -- what the test makes the "remote" side do ------------------------------------------

    def step(self, job: Job, step: int) -> None:
        preview = np.full((8, 8, 3), step, np.uint8)
        self.stepped.emit(job.id, StepProgress("generate", step, job.request.steps, 0.1, preview))

    def finish(self, job: Job) -> GenerationResult:
        image = Image.new("RGB", (job.request.width, job.request.height), "red")
        result = GenerationResult([image], job.request.replace(seed=5), [5])
        save_job_result(result, job)  # as every backend saves, before it says finished
        self.finished.emit(job.id, result)
        return result
