"""Engine test fixtures: tiny random-weight pipelines, built once per session."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.fixtures import build_tiny_sd, build_tiny_upscaler


@pytest.fixture(scope="session")
def tiny_sd(tmp_path_factory: pytest.TempPathFactory) -> str:
    return str(build_tiny_sd(tmp_path_factory.mktemp("tiny-sd")))


@pytest.fixture(scope="session")
def tiny_upscaler(tmp_path_factory: pytest.TempPathFactory) -> str:
    return str(build_tiny_upscaler(tmp_path_factory.mktemp("tiny-x4")))


@pytest.fixture(scope="session")
def engine():
    """One engine for the session, as the studio has one worker: tests share its loaded models."""
    from studio.engine.generate import Engine

    return Engine()


@pytest.fixture(autouse=True)
def _isolated_folders(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("LATENT_STUDIO_OUTPUT", str(tmp_path / "out"))
    monkeypatch.setenv("LATENT_STUDIO_CONFIG", str(tmp_path / "config"))
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")


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
