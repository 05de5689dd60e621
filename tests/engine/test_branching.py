"""Rewind and branch: a job continued from one of its steps.

The test that holds the feature: continuing from step k with nothing changed gives the
parent's pixels bit for bit, for every sampler the studio offers, in text→image,
image→image and inpaint (the other families' samplers: tests/engine/test_families.py),
whether the parent's state at step k was kept or has to be computed again. Around it: a
changed prompt changes only what comes after step k, the memory the kept steps take stays
within its budget, and a branch rebuilds from its file.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from studio.core.branches import branch_of, parent_of
from studio.core.catalog import is_installed
from studio.core.errors import BadInput
from studio.core.jobs import GenerationError
from studio.core.request import Branch, GenerationRequest, Mode
from studio.core.schedulers import SCHEDULER_NAMES
from studio.core.settings import EngineSettings
from studio.engine.branching import fingerprint
from tests.engine.conftest import RecordingReporter
from tests.pictures import box_mask
from tests.pictures import yellow_square_on_blue as _input

pytestmark = [
    pytest.mark.skipif(not is_installed("studio-tiny"), reason="the embedded model is not built"),
    pytest.mark.usefixtures("one_thread"),
]

STEPS = 6
PROMPT = "a large yellow square in the centre on a blue background"


def _request(mode: str, scheduler: str = "DPM++ 2M") -> GenerationRequest:
    base = GenerationRequest(prompt=PROMPT, scheduler=scheduler, steps=STEPS, seed=77)
    if mode == "img2img":
        return base.replace(mode=Mode.IMAGE_TO_IMAGE, init_image=_input(), strength=0.7)
    if mode == "inpaint":
        return base.replace(
            mode=Mode.INPAINT, init_image=_input(), mask=box_mask((8, 8, 40, 55)), strength=0.9
        )
    return base


def _pixels(result) -> np.ndarray:  # noqa: ANN001
    assert not result.cancelled and result.images
    return np.asarray(result.images[0].convert("RGB"), dtype=np.int16)


@pytest.fixture(scope="module")
def engine():
    from studio.engine.generate import Engine

    return Engine(EngineSettings(preview_method="none"))


@pytest.mark.parametrize("mode", ["txt2img", "img2img", "inpaint"])
@pytest.mark.parametrize("scheduler", SCHEDULER_NAMES)
def test_continuing_with_nothing_changed_gives_the_parents_pixels(
    engine, scheduler: str, mode: str
) -> None:
    parent = engine.run(_request(mode, scheduler))
    # image→image runs the tail of the schedule: 4 of 6 steps at 0.7, 5 at 0.9
    at = 2 if mode == "txt2img" else 3
    branch = branch_of(parent.request, parent.request, at).request
    assert branch.branch == Branch(at_step=at)  # nothing changed, nothing recorded
    assert engine.states.steps_kept(fingerprint(parent.request)) >= at  # kept: no replay
    assert np.array_equal(_pixels(engine.run(branch)), _pixels(parent))


@pytest.mark.parametrize("scheduler", ["Euler a", "DPM++ 2M SDE", "DPM++ 3M SDE", "UniPC"])
def test_a_parent_no_longer_kept_is_computed_again_to_the_same_pixels(
    engine, scheduler: str
) -> None:
    parent = engine.run(_request("inpaint", scheduler))
    engine.states.set_budget(0)  # every kept step dropped
    try:
        assert engine.states.steps_kept(fingerprint(parent.request)) == 0
        reporter = RecordingReporter()
        branch = engine.run(branch_of(parent.request, parent.request, 2).request, reporter)
    finally:
        engine.states.set_budget(engine.settings.branch_memory_mb * 2**20)
    assert np.array_equal(_pixels(branch), _pixels(parent))
    assert any("first 2 steps of the parent again" in m for m, _ in reporter.statuses)


def test_a_changed_prompt_changes_only_the_steps_after_the_branch(engine) -> None:
    parent_request = _request("txt2img", "Euler")
    parent_steps = RecordingReporter()
    from studio.engine.generate import Engine

    previews = Engine(EngineSettings(preview_method="linear"), models=engine.models)
    parent = previews.run(parent_request, parent_steps)
    wanted = parent.request.replace(prompt="a small red circle at the top left")
    distances = []
    for at in (1, 3, 5):
        reporter = RecordingReporter()
        plan = branch_of(parent.request, wanted, at)
        assert plan.changed == ("prompt",)
        result = previews.run(plan.request, reporter)
        # the branch reports its own steps only, numbered as the parent's, from step k
        assert [p.step for p in reporter.steps] == list(range(at, STEPS + 1))
        shared = parent_steps.steps[at - 1].preview
        assert np.array_equal(np.asarray(reporter.steps[0].preview), np.asarray(shared))
        distances.append(np.abs(_pixels(result) - _pixels(parent)).mean())
    # the later the branch, the more of the parent's picture it keeps
    assert distances[0] > distances[1] > distances[2] > 0, distances


def test_a_new_noise_seed_redraws_only_the_remaining_noise(engine) -> None:
    parent = engine.run(_request("txt2img", "Euler a"))
    reseeded = [
        _pixels(engine.run(branch_of(parent.request, parent.request, 3, noise_seed=9).request))
        for _ in range(2)
    ]
    assert np.array_equal(reseeded[0], reseeded[1])  # reproducible
    assert not np.array_equal(reseeded[0], _pixels(parent))


@pytest.mark.parametrize("scheduler", ["DPM++ 2M", "Euler", "UniPC"])
def test_vary_replaces_a_share_of_the_noise_left_at_the_step(engine, scheduler: str) -> None:
    parent = engine.run(_request("txt2img", scheduler).replace(steps=8))
    distance = []
    for vary in (0.0, 0.3, 1.0):
        plan = branch_of(parent.request, parent.request, 2, noise_seed=9, vary=vary)
        varied = _pixels(engine.run(plan.request))
        distance.append(np.abs(varied - _pixels(parent)).mean())
        if vary == 0.3:
            assert np.array_equal(varied, _pixels(engine.run(plan.request)))  # reproducible
    # none keeps the parent's picture; more fresh noise, a picture further from it
    assert distance[0] == 0 < distance[1] < distance[2], distance
    other = branch_of(parent.request, parent.request, 2, noise_seed=10, vary=0.3).request
    assert not np.array_equal(_pixels(engine.run(other)), varied)


@pytest.mark.parametrize(("first", "then"), [("Euler", "Euler a"), ("DPM++ 2M", "UniPC")])
def test_a_sampler_of_the_same_kind_takes_over_after_the_step(
    engine, first: str, then: str
) -> None:
    parent = engine.run(_request("txt2img", first).replace(steps=8))
    alone = _pixels(engine.run(parent.request.replace(scheduler=then)))
    distances, switched = [], {}
    for at in (1, 4, 6):  # the last step lands on x0 whatever the sampler
        plan = branch_of(parent.request, parent.request.replace(scheduler=then), at)
        assert plan.changed == ("scheduler",) and not plan.note()
        result = engine.run(plan.request)
        assert [s.scheduler for s in result.stages] == [then]  # what the metadata says ran
        switched[at] = _pixels(result)
        distances.append(np.abs(switched[at] - _pixels(parent)).mean())
    # the later the switch, the more of the parent's picture; switching at step 1 is near
    # what the new sampler makes alone from the same seed
    assert distances[0] > distances[1] > distances[2] > 0, distances
    assert np.abs(switched[1] - alone).mean() < distances[0]
    # the parent rebuilt with its own sampler: the same pixels as from its kept steps
    engine.states.set_budget(0)
    try:
        plan = branch_of(parent.request, parent.request.replace(scheduler=then), 4)
        assert np.array_equal(_pixels(engine.run(plan.request)), switched[4])
    finally:
        engine.states.set_budget(engine.settings.branch_memory_mb * 2**20)


def test_the_sampler_taking_over_starts_with_no_history_of_its_own(engine) -> None:
    """UniPC taking over DPM++ 2M's steps: its first step is its own first-order step from
    the parent's latents, untouched by the iteration the branch ran only to be replaced."""
    import torch

    from studio.engine.schedulers import make_scheduler

    parent = engine.run(_request("txt2img", "DPM++ 2M"))
    plan = branch_of(parent.request, parent.request.replace(scheduler="UniPC"), 3)
    branch = engine.run(plan.request)
    key = fingerprint(branch.request)
    at, after = engine.states.get(key, 3), engine.states.get(key, 4)
    assert at is not None and after is not None and after.estimate is not None
    pipe = engine.models.pipeline(branch.request.model, branch.request.mode)
    fresh = make_scheduler("UniPC", pipe.scheduler.config)
    fresh.set_timesteps(STEPS)
    fresh._step_index = 3
    _, prediction, timestep = after.estimate  # the guided prediction step 4 was given
    expected = fresh.step(prediction, timestep, at.latents).prev_sample
    assert torch.equal(after.latents, expected)


def test_a_sampler_of_another_kind_is_kept_and_refused_by_hand(engine) -> None:
    parent = _request("txt2img", "Euler").replace(seed=5)
    plan = branch_of(parent, parent.replace(scheduler="DPM++ 2M"), 2)  # α·x0 + σε, not x0 + σε
    assert plan.request.scheduler == "Euler" and plan.changed == ()
    assert plan.note() == "A branch keeps its parent's sampler: those changes wait."
    by_hand = parent.replace(scheduler="Heun", branch=Branch(2, {"scheduler": "Euler"}))
    with pytest.raises(GenerationError, match="Heun cannot take over the steps Euler ran"):
        engine.run(by_hand)


def test_a_lora_weight_changed_at_the_step_acts_on_the_rest_only(engine) -> None:
    heart = "a large red heart in the centre on a blue background"
    parent = engine.run(
        _request("txt2img", "DPM++ 2M").replace(prompt=f"{heart} <lora:studio-tiny-heart:1>")
    )
    same = engine.run(branch_of(parent.request, parent.request, 3).request)
    assert np.array_equal(_pixels(same), _pixels(parent))  # the LoRA active on both sides
    distances = []
    for at in (1, 4):  # the LoRA switched off after step k
        wanted = parent.request.replace(prompt=f"{heart} <lora:studio-tiny-heart:0>")
        plan = branch_of(parent.request, wanted, at)
        assert plan.changed == ("prompt",)
        distances.append(np.abs(_pixels(engine.run(plan.request)) - _pixels(parent)).mean())
    assert distances[0] > distances[1] > 0, distances


def test_a_controlnet_scale_changed_at_the_step_keeps_its_images() -> None:
    from studio.core.request import Control

    scribble = box_mask().convert("RGB")
    parent = _request("txt2img").replace(
        controls=(Control(model="some-controlnet", image=scribble, scale=1.0),)
    )
    wanted = parent.replace(controls=(Control(model="other", image=None, scale=0.4, end=0.5),))
    plan = branch_of(parent, wanted, 2)
    assert plan.changed == ("controls",)
    (control,) = plan.request.controls
    assert (control.model, control.scale, control.end) == ("some-controlnet", 0.4, 0.5)
    assert control.image is scribble  # the parent's control image, whatever the panel holds
    (before,) = parent_of(plan.request).controls
    assert (before.scale, before.end, before.image) == (1.0, 1.0, scribble)


def test_a_branch_of_a_branch_rebuilds_from_its_request_alone(engine) -> None:
    parent = engine.run(_request("img2img", "UniPC"))
    first = branch_of(parent.request, parent.request.replace(cfg_scale=9.0), 1).request
    middle = engine.run(first)
    second = branch_of(middle.request, middle.request, 3).request
    assert parent_of(second) == middle.request
    expected = _pixels(middle)
    engine.states.set_budget(0)  # neither the parent's steps nor the middle's are kept
    try:
        assert np.array_equal(_pixels(engine.run(second)), expected)
    finally:
        engine.states.set_budget(engine.settings.branch_memory_mb * 2**20)


def test_kept_steps_stay_within_the_memory_budget_oldest_jobs_first(engine) -> None:
    engine.states.set_budget(0)  # nothing kept from earlier tests
    engine.states.set_budget(engine.settings.branch_memory_mb * 2**20)
    one = engine.run(_request("txt2img", "DPM++ 2M").replace(seed=1))
    used = engine.states.bytes_used
    two = engine.run(_request("txt2img", "DPM++ 2M").replace(seed=2))
    per_job = engine.states.bytes_used - used
    assert per_job > 0
    engine.states.set_budget(engine.states.bytes_used - 1)  # one job too many
    try:
        assert engine.states.bytes_used <= engine.states.budget_bytes
        assert engine.states.steps_kept(fingerprint(one.request)) == 0  # the oldest went
        assert engine.states.steps_kept(fingerprint(two.request)) == STEPS
    finally:
        engine.states.set_budget(engine.settings.branch_memory_mb * 2**20)


def test_what_a_branch_cannot_change_is_kept_and_said() -> None:
    parent = _request("txt2img").replace(seed=5)
    wanted = parent.replace(scheduler="Euler", steps=30, width=128, prompt="a blue circle")
    plan = branch_of(parent, wanted, 2)  # DPM++ 2M's steps: Euler cannot take them over
    assert plan.request.scheduler == parent.scheduler and plan.request.steps == STEPS
    assert plan.request.prompt == "a blue circle" and plan.changed == ("prompt",)
    assert plan.note() == "A branch keeps its parent's size, steps, sampler: those changes wait."
    with pytest.raises(BadInput, match="between 1 and 5, not after 6"):
        plan.request.replace(branch=Branch(at_step=6)).validate()
    restored = GenerationRequest.from_dict(plan.request.to_dict())
    assert restored.branch == plan.request.branch and parent_of(restored) == parent


def test_the_command_line_continues_a_saved_image(tmp_path: Path, engine, capsys) -> None:  # noqa: ARG001
    from studio.cli import main
    from studio.metadata import read_parameters

    parent = tmp_path / "parent.png"
    assert main(["generate", PROMPT, "--steps", "6", "--seed", "4", "--sampler", "Euler a",
                 "--out", str(parent)]) == 0  # fmt: skip
    same, changed = tmp_path / "same.png", tmp_path / "changed.png"
    assert main(["generate", "--from", str(parent), "--at-step", "3", "--out", str(same)]) == 0
    assert np.array_equal(np.asarray(Image.open(same)), np.asarray(Image.open(parent)))
    args = ["generate", "a red circle", "--from", str(parent), "--at-step", "3", "--cfg", "9"]
    assert main([*args, "--out", str(changed)]) == 0
    assert not np.array_equal(np.asarray(Image.open(changed)), np.asarray(Image.open(parent)))
    recorded = read_parameters(changed)
    assert recorded.request["branch"]["at_step"] == 3
    assert recorded.request["branch"]["parent"] == {"prompt": PROMPT, "cfg_scale": 4.0}
    assert "Branch from step: 3" in Image.open(changed).text["parameters"]
    assert recorded.request["branch"]["parent_image"] == "parent.png"
    # saved without --out: named after its parent, so it lists beside it
    varied = tmp_path / "varied.png"
    args = ["generate", "--from", str(parent), "--at-step", "2", "--vary", "0.5"]
    assert main([*args, "--noise-seed", "3", "--out", str(varied)]) == 0
    assert read_parameters(varied).request["branch"]["vary"] == 0.5
    assert not np.array_equal(np.asarray(Image.open(varied)), np.asarray(Image.open(parent)))
    folder = tmp_path / "branches"
    assert main(["generate", "--from", str(parent), "--at-step", "2", "--out", str(folder)]) == 0
    assert [p.name for p in folder.iterdir()] == ["parent-step2.png"]
    # a sampler of Euler a's kind takes over; one of another kind is kept, and said
    capsys.readouterr()
    for sampler, ran in (("Euler", "Euler"), ("DPM++ 2M", "Euler a")):
        out = tmp_path / f"{ran}.png"
        args = ["generate", "--from", str(parent), "--at-step", "3", "--sampler", sampler]
        assert main([*args, "--out", str(out)]) == 0
        assert read_parameters(out).request["scheduler"] == ran
    assert read_parameters(tmp_path / "Euler.png").request["branch"]["parent"] == {
        "scheduler": "Euler a"
    }
    assert "A branch keeps its parent's sampler" in capsys.readouterr().err


def test_the_command_line_says_what_a_branch_needs(tmp_path: Path, capsys) -> None:
    from PIL import PngImagePlugin

    from studio.cli import main

    foreign = tmp_path / "foreign.png"  # AUTOMATIC1111's: parameters, but no steps' state
    info = PngImagePlugin.PngInfo()
    info.add_text("parameters", "a cat\nSteps: 20, Sampler: Euler, CFG scale: 7, Seed: 1")
    Image.new("RGB", (8, 8)).save(foreign, pnginfo=info)
    assert main(["generate", "--from", str(foreign), "--at-step", "2"]) != 0
    assert "holds no Latent Studio record" in capsys.readouterr().err
    assert main(["generate", "--at-step", "2"]) != 0
    assert "--from IMAGE.png and --at-step K go together" in capsys.readouterr().err
