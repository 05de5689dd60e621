"""Sampler names from other tools map onto schedulers the studio can run."""

from __future__ import annotations

import pytest

from studio.core.schedulers import SCHEDULER_NAMES, closest_scheduler
from studio.metadata import normalise_sampler


@pytest.mark.parametrize(
    ("written", "runs_as"),
    [
        ("DPM++ 2M Karras", "DPM++ 2M Karras"),
        ("DPM++ SDE", "DPM++ 2M SDE"),  # needs torchsde in diffusers: its closest relative
        ("DPM++ SDE Karras", "DPM++ 2M SDE Karras"),
        ("DPM++ 2S a", "Euler a"),
        ("DPM2 a Karras", "DPM2 a"),
        ("PLMS", "PNDM"),
        ("LCM", "Euler"),
        ("euler a", "Euler a"),
        ("Euler Karras", "Euler"),
        # ComfyUI's names reach it through the metadata reader's normalisation
        (normalise_sampler("dpmpp_2m", "karras"), "DPM++ 2M Karras"),
        (normalise_sampler("dpmpp_sde_gpu"), "DPM++ 2M SDE"),
    ],
)
def test_closest_scheduler(written: str, runs_as: str) -> None:
    assert closest_scheduler(written) == runs_as
    assert runs_as in SCHEDULER_NAMES


@pytest.mark.parametrize("written", ["Something new", "", None])
def test_nothing_close_is_none(written: str | None) -> None:
    assert closest_scheduler(written) is None
