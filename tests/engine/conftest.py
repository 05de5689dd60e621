"""Engine test fixtures: one engine for the session, and a reporter that keeps everything."""

from __future__ import annotations

import pytest


@pytest.fixture(scope="session")
def engine():
    """One engine for the session, as the studio has one worker: tests share its loaded models."""
    from studio.engine.generate import Engine

    return Engine()


class RecordingReporter:
    """Keeps every status message and step report of a run."""

    def __init__(self, cancel_at: int | None = None, engine=None) -> None:
        self.statuses: list[tuple[str, float | None]] = []
        self.steps: list = []
        self.cancel_at = cancel_at
        self.engine = engine

    def status(self, message: str, fraction: float | None) -> None:
        self.statuses.append((message, fraction))

    def step(self, progress) -> None:
        self.steps.append(progress)
        if self.cancel_at is not None and progress.step == self.cancel_at:
            self.engine.cancel()
