"""The draft's rules, without a widget: where values come from and which one wins."""

from __future__ import annotations

from typing import Any

import pytest
from PIL import Image

from studio.core.draft import UPSCALE_METHOD, Draft, Source
from studio.core.request import MAX_SEED, Mode, Upscaler

CARDS: dict[str, dict[str, Any]] = {
    "tiny": {"width": 64, "height": 64, "steps": 25, "cfg_scale": 4.0, "scheduler": "DPM++ 2M"},
    "big": {"width": 1024, "height": 1024},
    "odd": {"steps": "many", "width": 512, "height": 512},
}
INSTALLED = {"tiny", "big", "odd", "studio-tiny", "studio-tiny-x4"}


@pytest.fixture
def draft() -> Draft:
    return Draft(
        model_defaults=lambda spec: CARDS.get(spec, {}),
        is_installed=INSTALLED.__contains__,
        exists=lambda spec: None if spec in INSTALLED else f"'{spec}' is gone.",
    )


def test_one_signal_per_application_with_what_changed(draft: Draft) -> None:
    seen: list[tuple[dict, Source]] = []
    draft.changed.connect(lambda values, source: seen.append((values, source)))
    draft.apply({"steps": 12, "cfg_scale": 5.5, "width": draft["width"]}, Source.USER)
    assert seen == [({"steps": 12, "cfg_scale": 5.5}, Source.USER)]
    draft.apply({"steps": 12}, Source.USER)  # nothing new: nothing emitted
    assert len(seen) == 1


def test_choosing_a_model_brings_its_defaults(draft: Draft) -> None:
    draft.apply({"steps": 7, "cfg_scale": 9.0}, Source.USER)
    brought: list[tuple[str, dict]] = []
    draft.defaultsApplied.connect(lambda spec, values: brought.append((spec, values)))
    applied = draft.set("model", "tiny")
    assert (draft["steps"], draft["cfg_scale"], draft["scheduler"]) == (25, 4.0, "DPM++ 2M")
    assert brought == [("tiny", CARDS["tiny"])] and applied.defaults == CARDS["tiny"]
    # a model stating only its size leaves the rest as the artist set it
    draft.set("cfg_scale", 6.5)
    draft.set("model", "big")
    assert (draft["width"], draft["height"], draft["cfg_scale"]) == (1024, 1024, 6.5)


def test_a_cards_odd_value_is_skipped_and_the_rest_applies(draft: Draft) -> None:
    draft.set("steps", 9)
    draft.set("model", "odd")
    assert draft["steps"] == 9 and draft["width"] == 512


def test_the_last_session_is_taken_as_it_was_without_defaults(draft: Draft) -> None:
    draft.apply({"model": "tiny", "cfg_scale": 8.5, "steps": 12}, Source.SESSION)
    assert (draft["model"], draft["cfg_scale"], draft["steps"]) == ("tiny", 8.5, 12)
    assert draft["scheduler"] != "DPM++ 2M"  # the card was not applied over the session


def test_restored_values_win_over_the_defaults_of_the_model_they_name(draft: Draft) -> None:
    draft.apply({"model": "tiny", "width": 96, "height": 64, "steps": 13}, Source.RESTORED)
    assert draft["model"] == "tiny"
    assert (draft["width"], draft["height"], draft["steps"]) == (96, 64, 13)
    assert draft["cfg_scale"] == 4.0  # what the file did not say comes from the model's card


def test_a_restored_file_never_switches_to_a_model_that_is_not_installed(draft: Draft) -> None:
    applied = draft.apply({"model": "stranger/model", "steps": 30}, Source.RESTORED)
    assert draft["model"] == "studio-tiny" and draft["steps"] == 30
    assert applied.notes == [
        "The model 'stranger/model' is not installed, so the current one stays: add it with "
        "Add model… to use it."
    ]
    # the artist may still pick any model they added on purpose
    draft.set("model", "stranger/model")
    assert draft["model"] == "stranger/model"


def test_a_restored_file_keeps_the_artists_mode(draft: Draft) -> None:
    """And says so, where the file was made in another mode (not "all parameters" quietly)."""
    draft.set("mode", Mode.INPAINT)
    applied = draft.apply({"mode": "txt2img", "steps": 5}, Source.RESTORED)
    assert draft.mode is Mode.INPAINT and draft["steps"] == 5
    assert applied.notes == ["It was made in Text→Image: the mode stays Inpaint."]
    assert draft.apply({"mode": "inpaint", "steps": 6}, Source.RESTORED).notes == []
    assert draft.apply({"mode": "sideways"}, Source.RESTORED).notes == []  # an odd file's


def test_an_upscale_files_upscaler_is_the_upscale_modes_method(draft: Draft) -> None:
    draft.apply({"mode": "upscale", "upscaler": "hires"}, Source.RESTORED)
    assert draft["upscaler"] is None and draft[UPSCALE_METHOD] == "hires"
    draft.set("mode", Mode.UPSCALE)
    assert draft.freeze(Image.new("RGB", (8, 8))).upscaler is Upscaler.HIRES
    draft.set("mode", Mode.TEXT_TO_IMAGE)
    assert draft.freeze().upscaler is None  # a generation is not upscaled behind your back


@pytest.mark.parametrize(
    ("values", "words"),
    [
        ({"steps": 5000}, "Steps must be between 1 and 1000, not 5000."),
        ({"cfg_scale": float("nan")}, "CFG scale must be between 0 and 100, not nan."),
        ({"threshold_max": float("inf")}, "The thresholding ceiling must be above 0"),
        ({"strength": 1e-9}, "Strength must be between 0.01 and 1"),
        ({"seed": MAX_SEED + 1}, "The seed must be between -1 and"),
        ({"width": "wide"}, "Width must be a number, not 'wide'."),
        ({"scheduler": "Warp drive"}, "The sampler 'Warp drive' is not available here."),
        ({"prompt": 42}, "The prompt is not text."),
    ],
)
def test_a_value_out_of_range_is_skipped_with_a_sentence(
    draft: Draft, values: dict, words: str
) -> None:
    before = draft.values()
    applied = draft.apply({**values, "batch_size": 3}, Source.RESTORED)
    assert len(applied.notes) == 1 and applied.notes[0].startswith(words)
    assert draft.values() == {**before, "batch_size": 3}  # the rest of the file still applies


def test_a_broken_last_session_loses_only_its_broken_values(draft: Draft) -> None:
    applied = draft.apply({"mode": "sculpt", "steps": -3, "cfg_scale": 3.0}, Source.SESSION)
    assert applied.notes == ["'sculpt' is not a mode.", "Steps must be between 1 and 1000, not -3."]
    assert draft.mode is Mode.TEXT_TO_IMAGE and draft["cfg_scale"] == 3.0


def test_numbers_written_as_text_by_other_tools_are_taken(draft: Draft) -> None:
    draft.apply(
        {"steps": "30", "cfg_scale": "6.5", "seed": "18446744073709551615"}, Source.RESTORED
    )
    assert (draft["steps"], draft["cfg_scale"], draft["seed"]) == (30, 6.5, MAX_SEED)


def test_the_seed_field_is_the_seed_used_and_the_last_one_is_a_click_away(draft: Draft) -> None:
    draft.set("seed", 1234)
    assert draft.freeze().seed == 1234
    draft.randomise_seed()
    assert draft.freeze().seed == -1
    seen: list[int] = []
    draft.lastSeedChanged.connect(seen.append)
    draft.set_last_seed(987654321)
    draft.reuse_last_seed()
    assert draft["seed"] == 987654321 and seen == [987654321]


def test_freeze_gives_each_mode_only_the_images_it_uses(draft: Draft) -> None:
    image, mask = Image.new("RGB", (64, 64)), Image.new("L", (64, 64), 255)
    draft.set("prompt", "  a red circle  ")
    assert draft.freeze(image, mask).init_image is None
    draft.set("mode", Mode.IMAGE_TO_IMAGE)
    request = draft.freeze(image, mask)
    assert request.init_image is image and request.mask is None
    assert request.prompt == "a red circle"
    draft.set("mode", Mode.INPAINT)
    assert draft.freeze(image, mask).mask is mask


def test_the_last_sessions_model_that_is_gone_is_not_taken(draft: Draft) -> None:
    applied = draft.apply({"model": "deleted-folder", "steps": 9}, Source.SESSION)
    assert draft["model"] == "studio-tiny" and draft["steps"] == 9
    assert applied.notes == ["'deleted-folder' is gone. The default model is used instead."]


def test_an_upscale_jobs_method_is_kept_apart_from_the_last_sessions_and_files_too(
    draft: Draft,
) -> None:
    # an older settings file kept the Upscale job's request: its upscaler is the method
    draft.apply({"mode": "upscale", "upscaler": "hires"}, Source.SESSION)
    assert draft.mode is Mode.UPSCALE and draft[UPSCALE_METHOD] == "hires"
    assert draft["upscaler"] is None
    # the draft's own values keep both choices apart
    again = Draft(model_defaults=lambda spec: {}, is_installed=lambda spec: True)
    again.apply(draft.values(), Source.SESSION)
    assert again[UPSCALE_METHOD] == "hires" and again["upscaler"] is None


def test_sizes_from_files_snap_to_what_a_latent_model_makes(draft: Draft) -> None:
    draft.apply({"width": 60, "height": 61}, Source.RESTORED)
    assert (draft["width"], draft["height"]) == (64, 64)
    assert draft.freeze().problems() == ["The prompt is empty: describe the image you want."]
