"""Every validation rule answers with one clear sentence."""

from __future__ import annotations

import pytest
from PIL import Image

from studio.core.request import GenerationRequest, Mode, RequestError, Upscaler

IMAGE = Image.new("RGB", (64, 64), "blue")
MASK = Image.new("L", (64, 64), 0)
MASK.paste(255, (10, 10, 30, 30))


def only_problem(request: GenerationRequest) -> str:
    problems = request.problems()
    assert len(problems) == 1, problems
    assert problems[0].endswith(".") and "\n" not in problems[0]
    return problems[0]


def test_default_request_with_a_prompt_is_valid() -> None:
    assert GenerationRequest(prompt="a red circle").problems() == []


def test_an_image_to_image_or_inpaint_may_have_no_prompt() -> None:
    """As in A1111: an object painted out is filled from what surrounds it."""
    assert GenerationRequest(mode=Mode.IMAGE_TO_IMAGE, init_image=IMAGE).problems() == []
    inpaint = GenerationRequest(mode=Mode.INPAINT, init_image=IMAGE, mask=MASK)
    assert inpaint.problems() == []


@pytest.mark.parametrize(
    ("changes", "words"),
    [
        ({"prompt": "  "}, "prompt is empty"),
        ({"mode": Mode.EDIT, "init_image": IMAGE, "prompt": " "}, "The instruction is empty"),
        ({"width": 100}, "Width must be a multiple of 8 (got 100; try 104)"),
        ({"height": 61}, "Height must be a multiple of 8"),
        ({"width": 0}, "Width must be between 8 and 4096"),
        ({"steps": 0}, "Steps must be between 1 and 1000"),
        ({"cfg_scale": -1.0}, "CFG scale must be between 0 and 100"),
        ({"cfg_rescale": 1.5}, "CFG rescale must be between 0 and 1"),
        ({"dynamic_thresholding": True, "threshold_percentile": 10.0}, "percentile"),
        ({"dynamic_thresholding": True, "threshold_max": 0.0}, "ceiling must be above 0"),
        ({"scheduler": "Warp drive"}, "Unknown scheduler 'Warp drive'"),
        ({"seed": -5}, "The seed must be between 0"),
        ({"batch_size": 0}, "The batch is empty"),
        ({"batch_size": 1000}, "A batch holds at most 64 images"),
        ({"model": ""}, "No model is chosen"),
        ({"mode": Mode.IMAGE_TO_IMAGE}, "Image→Image needs an input image"),
        ({"mode": Mode.UPSCALE, "prompt": ""}, "Upscale needs an input image"),
        ({"mode": Mode.IMAGE_TO_IMAGE, "init_image": IMAGE, "strength": 1.5}, "Strength must be"),
        ({"mode": Mode.INPAINT, "init_image": IMAGE}, "Inpainting needs a mask"),
        (
            {"mode": Mode.INPAINT, "init_image": IMAGE, "mask": Image.new("L", (32, 32), 255)},
            "The mask is 32×32 but the image is 64×64",
        ),
        (
            {"mode": Mode.INPAINT, "init_image": IMAGE, "mask": Image.new("L", (64, 64), 0)},
            "The mask is empty",
        ),
        (
            {"mode": Mode.INPAINT, "init_image": IMAGE, "mask": MASK, "mask_blur": 100},
            "Mask blur must be between 0 and 64",
        ),
        ({"upscaler": Upscaler.HIRES, "upscale_strength": 0.0}, "hires fix strength"),
    ],
)
def test_each_problem_has_its_own_sentence(changes: dict, words: str) -> None:
    request = GenerationRequest(prompt="a red circle").replace(**changes)
    assert words in only_problem(request)


def test_validate_raises_with_every_problem() -> None:
    request = GenerationRequest(prompt="", width=30, steps=0)
    with pytest.raises(RequestError) as caught:
        request.validate()
    assert len(caught.value.problems) == 3


def test_dict_round_trip_keeps_every_parameter_and_leaves_images_out() -> None:
    request = GenerationRequest(
        mode=Mode.INPAINT,
        prompt="a red circle",
        init_image=IMAGE,
        mask=MASK,
        upscaler=Upscaler.X4,
        seed=7,
        dynamic_thresholding=True,
    )
    data = request.to_dict()
    assert "init_image" not in data and "mask" not in data
    assert data["mode"] == "inpaint" and data["upscaler"] == "x4"
    again = GenerationRequest.from_dict({**data, "from_the_future": 1}, init_image=IMAGE, mask=MASK)
    assert again == request
    assert again.init_image is IMAGE
