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


def test_a_scheduler_does_not_depend_on_the_one_before() -> None:
    """Each run's scheduler is built from the previous run's config; the overrides that make
    a variant (Karras sigmas, SDE, third order, DDIM's clip_sample=False) must survive it."""
    import diffusers

    from studio.engine.schedulers import make_scheduler

    loaded = diffusers.DPMSolverMultistepScheduler(prediction_type="v_prediction").config
    # the studio-tiny default, an ancestral one, one with Karras sigmas, a DDPM-family one
    for before in ("DPM++ 2M", "Euler a", "LMS Karras", "DDIM"):
        previous = make_scheduler(before, loaded).config
        for name in SCHEDULER_NAMES:
            fresh = make_scheduler(name, loaded).config
            after = make_scheduler(name, previous).config
            for key in ("use_karras_sigmas", "algorithm_type", "solver_order", "clip_sample"):
                assert after.get(key) == fresh.get(key), (before, name, key)


def test_a_changed_scheduler_config_makes_a_scheduler_of_the_new_config() -> None:
    """The same config object, changed in place between two runs (a plain dict: a family's
    one-step config is one), gives a scheduler of its new values, not the first run's."""
    import diffusers

    from studio.engine.schedulers import make_scheduler

    config = dict(diffusers.EulerDiscreteScheduler(beta_end=0.012).config)
    assert make_scheduler("Euler", config).config.beta_end == 0.012
    config["beta_end"] = 0.02
    assert make_scheduler("Euler", config).config.beta_end == 0.02


@pytest.mark.parametrize("name", SCHEDULER_NAMES)
def test_the_taps_input_scaling_is_the_schedulers_own(name: str) -> None:
    """The guidance tap scales the latents as the scheduler does, at every step, to read the
    denoised estimate (previews, thresholding): bit for bit, though the Euler-type samplers'
    divisors are computed once per schedule."""
    import inspect

    import diffusers
    import torch

    from studio.engine.guidance import input_scaling
    from studio.engine.schedulers import make_scheduler

    config = diffusers.PNDMScheduler(beta_schedule="scaled_linear").config
    scheduler = make_scheduler(name, config)
    scale = input_scaling(scheduler)
    scheduler.set_timesteps(8)
    generator = torch.Generator().manual_seed(0)
    latents = torch.randn(1, 4, 8, 8, generator=generator) * scheduler.init_noise_sigma
    for t in scheduler.timesteps:
        expected = scheduler.scale_model_input(latents, t)  # what the pipeline does first
        assert torch.equal(scale(latents, t), expected), (name, t)
        prediction = torch.randn(1, 4, 8, 8, generator=generator)
        noisy = (
            {"generator": generator}
            if "generator" in inspect.signature(scheduler.step).parameters
            else {}
        )
        latents = scheduler.step(prediction, t, latents, **noisy).prev_sample
