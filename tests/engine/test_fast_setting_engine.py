"""The fast setting runs in the engine: an LCM-LoRA in the LoRA folder of an SD 1.x model gives
live mode its LoRA, 4 steps of diffusers' LCMScheduler and no CFG; the trailing Euler of
Lightning and Turbo starts at the last training timestep. The session's tiny random SD 1.x
pipeline."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from safetensors.torch import save_file

from studio.core import fast_setting, loras
from studio.core.request import GenerationRequest
from studio.engine.generate import Engine
from tests.engine.test_loras import _as_kohya, _peft_lora

pytestmark = pytest.mark.usefixtures("one_thread")


def test_an_lcm_lora_runs_as_live_modes_fast_setting(
    tiny_sd: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import diffusers

    model = tiny_sd
    folder = tmp_path / "loras"
    folder.mkdir()
    # kohya's layout, as latent-consistency/lcm-lora-sdv1-5 is published for A1111
    save_file(_as_kohya(_peft_lora(model, "sd1", 1)), folder / "lcm-lora-sdv1-5.safetensors")
    loras.use_lora_dir(folder)
    monkeypatch.setattr(loras, "_listed", None)
    try:
        panel = GenerationRequest(
            prompt="a red circle", model=model, width=64, height=64, steps=25, seed=3
        )
        setting = fast_setting.for_request(panel)
        assert (setting.label, setting.lora, setting.sampler) == (
            "LCM-LoRA",
            "lcm-lora-sdv1-5",
            "LCM",
        )
        live = setting.apply(panel)
        assert live.prompt == "a red circle <lora:lcm-lora-sdv1-5:1>"
        assert (live.steps, live.cfg_scale) == (4, 1.0)

        steps: list[int] = []
        original = diffusers.LCMScheduler.step

        def counted(scheduler, *args, **kwargs):  # noqa: ANN001, ANN002, ANN003, ANN202
            steps.append(1)
            return original(scheduler, *args, **kwargs)

        monkeypatch.setattr(diffusers.LCMScheduler, "step", counted)
        engine = Engine()
        with_lora = np.asarray(engine.run(live).images[0], np.int16)
        assert len(steps) == 4  # LCM's sampler ran the 4 steps
        without = np.asarray(engine.run(live.replace(prompt="a red circle")).images[0], np.int16)
        assert np.abs(with_lora - without).mean() > 0.5  # and the LoRA was applied

        # Lightning's and Turbo's Euler: trailing timesteps, the first at the last training one
        from studio.engine.schedulers import make_scheduler

        # as SD 1.5 and SDXL ship theirs: "leading" steps, which end short of the last one
        pipe_config = diffusers.EulerDiscreteScheduler(
            timestep_spacing="leading", steps_offset=1
        ).config
        for name in ("Euler SGM Uniform", "Euler a SGM Uniform"):
            trailing = make_scheduler(name, pipe_config)
            trailing.set_timesteps(4)
            assert int(trailing.timesteps[0]) == 999, name
            plain = make_scheduler(name.removesuffix(" SGM Uniform"), pipe_config)
            plain.set_timesteps(4)
            assert int(plain.timesteps[0]) < 999
        engine.run(live.replace(scheduler="Euler SGM Uniform", steps=2))
    finally:
        loras.use_lora_dir(None)
