"""Sampler names from other tools map onto schedulers the studio can run."""

from __future__ import annotations

import pytest

from studio.core.schedulers import SCHEDULER_NAMES, closest_scheduler


@pytest.mark.parametrize(
    ("written", "runs_as"),
    [
        ("DPM++ 2M Karras", "DPM++ 2M Karras"),
        ("DPM++ SDE", "DPM++ 2M SDE"),  # needs torchsde in diffusers: its closest relative
        ("PLMS", "PNDM"),
        ("DPM2 a Karras", "DPM2 a"),
        ("euler a", "Euler a"),
        ("Something new", "Euler a"),
        (None, "Euler a"),
    ],
)
def test_closest_scheduler(written: str | None, runs_as: str) -> None:
    assert closest_scheduler(written) == runs_as
    assert runs_as in SCHEDULER_NAMES
