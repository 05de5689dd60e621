"""The noising view: what image→image starts from at a strength — the forward process
q(x_t | x_0) of the seed documents applied to the input image with the job's seed, shown
before anything is denoised."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from studio.core import imaging
from studio.core.catalog import is_installed
from studio.core.errors import UserError
from studio.core.request import GenerationRequest, Mode
from studio.core.settings import EngineSettings
from studio.engine.generate import steps_for_strength
from studio.engine.schedulers import make_scheduler
from tests.pictures import yellow_square_on_blue as _input

pytestmark = [
    pytest.mark.skipif(not is_installed("studio-tiny"), reason="the embedded model is not built"),
    pytest.mark.usefixtures("one_thread"),
]


def _request(strength: float, seed: int = 7, scheduler: str = "DPM++ 2M") -> GenerationRequest:
    return GenerationRequest(
        mode=Mode.IMAGE_TO_IMAGE,
        prompt="a yellow square",
        init_image=_input(),
        strength=strength,
        steps=10,
        seed=seed,
        scheduler=scheduler,
    )


@pytest.fixture(scope="module")
def engine():
    from studio.engine.generate import Engine

    return Engine(EngineSettings(preview_method="vae"))


def test_the_view_is_the_schedulers_add_noise_at_the_first_timestep(engine) -> None:
    strength, seed = 0.6, 7
    pipe, latents = engine.noised_start(_request(strength, seed))
    # q(x_t | x_0) as diffusers' image→image builds it: the input's latents (sampled with the
    # job's generator), then the noise from the same generator, mixed at image→image's first t
    generator = torch.Generator("cpu").manual_seed(seed)
    pixels = pipe.image_processor.preprocess(imaging.fit(_input(), 64, 64))
    with torch.inference_mode():
        x0 = pipe.vae.encode(pixels).latent_dist.sample(generator)
    x0 = x0 * pipe.vae.config.scaling_factor
    noise = torch.randn(x0.shape, generator=generator)
    scheduler = make_scheduler("DPM++ 2M", pipe.scheduler.config)
    steps = steps_for_strength(10, strength)
    scheduler.set_timesteps(steps)
    first = scheduler.timesteps[steps - int(steps * strength)]
    expected = scheduler.add_noise(x0, noise, first.reshape(1))
    assert torch.allclose(latents, expected, atol=1e-5)


def test_how_much_of_the_input_survives_follows_the_strength(engine) -> None:
    target = np.asarray(_input(), dtype=np.float32)
    differences = [
        np.abs(engine.noising_view(_request(s)).astype(np.float32) - target).mean()
        for s in (0.1, 0.4, 0.7, 1.0)
    ]
    assert differences == sorted(differences), differences
    assert differences[0] < 40 < differences[-1]  # the square shows at 0.1; only noise at 1
    same = engine.noising_view(_request(0.5))
    assert np.array_equal(same, engine.noising_view(_request(0.5)))  # the seed decides
    assert not np.array_equal(same, engine.noising_view(_request(0.5, seed=8)))


def test_text_to_image_has_no_noised_input(engine) -> None:
    with pytest.raises(UserError, match="Only image→image and inpaint start from a noised"):
        engine.noising_view(_request(0.5).replace(mode=Mode.TEXT_TO_IMAGE, init_image=None))
