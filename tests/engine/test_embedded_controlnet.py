"""studio-tiny-controlnet, the embedded ControlNet: a circle scribbled at the left, right,
top or bottom puts the prompt's circle there, with the same prompt and seed; training's
starting point (zero convolutions) does not; the shipped folder and its training command."""

from __future__ import annotations

import json

import numpy as np
import pytest
from PIL import Image, ImageDraw

from studio.core.catalog import ModelError
from studio.core.paths import EMBEDDED_MODELS_DIR
from studio.core.request import EMBEDDED_CONTROLNETS, Control, GenerationRequest
from studio.engine.generate import Engine
from studio.tiny.evaluate_controlnet import centre, object_mask

NAME = EMBEDDED_CONTROLNETS["studio-tiny"]
FOLDER = EMBEDDED_MODELS_DIR / NAME
PROMPT = "a large red circle on a blue background"  # no place: the scribble says where

pytestmark = pytest.mark.usefixtures("one_thread")


@pytest.fixture(scope="module")
def engine() -> Engine:
    return Engine()


def _scribble(x: int, y: int) -> Image.Image:
    """A circle drawn with a 2-pixel line on the control layer (64×64), centred at (x, y)."""
    image = Image.new("RGB", (64, 64))
    ImageDraw.Draw(image).ellipse((x - 12, y - 12, x + 12, y + 12), outline="white", width=2)
    return image


PLACES = {"left": (16, 32), "right": (48, 32), "top": (32, 16), "bottom": (32, 48)}


def _centres(engine: Engine, spec: str) -> dict[str, tuple[float, float]]:
    """Where the object is, with no control image and with a circle scribbled at each place;
    the same prompt and seed every time."""
    found = {}
    for place, where in {"none": None, **PLACES}.items():
        controls = (Control(spec, _scribble(*where)),) if where else ()
        request = GenerationRequest(prompt=PROMPT, width=64, height=64, seed=7, controls=controls)
        found[place] = centre(object_mask(engine.run(request).images[0]))
        assert found[place] is not None, f"no object in the picture ({place})"
    return found


def test_a_scribbled_circle_puts_the_circle_where_it_is_drawn(engine) -> None:
    found = _centres(engine, NAME)
    for place, (x, y) in PLACES.items():
        fx, fy = found[place]
        assert abs(fx - x) < 6 and abs(fy - y) < 6, (place, found)
    # the prompt alone puts it elsewhere (at the top right for this seed)
    assert max(abs(a - b) for a, b in zip(found["none"], PLACES["left"], strict=True)) > 20


def test_training_s_starting_point_does_not_move_the_circle(engine, tmp_path) -> None:
    """The measure above is the ControlNet's doing: the same network with its zero
    convolutions at zero (as training starts) leaves the object where the prompt alone
    puts it, wherever the circle is scribbled."""
    from diffusers import UNet2DConditionModel

    from studio.tiny.train_controlnet import make_controlnet

    unet = UNet2DConditionModel.from_pretrained(EMBEDDED_MODELS_DIR / "studio-tiny" / "unet")
    make_controlnet(unet).save_pretrained(tmp_path / "zero", safe_serialization=True)
    found = _centres(engine, str(tmp_path / "zero"))
    for place in PLACES:
        assert np.allclose(found[place], found["none"], atol=0.5), (place, found)


def test_the_shipped_folder_records_its_one_training_command() -> None:
    config = json.loads((FOLDER / "config.json").read_text())
    assert config["_class_name"] == "ControlNetModel"
    # two halvings of the control map: studio-tiny's latents are 4× smaller than its pictures
    assert len(config["conditioning_embedding_out_channels"]) == 3
    weights = FOLDER / "diffusion_pytorch_model.safetensors"
    assert weights.stat().st_size < 6_000_000  # fp16
    record = json.loads((FOLDER / "training.json").read_text())
    assert record["command"].startswith("python -m studio.tiny.train_controlnet")
    assert record["command"] in (FOLDER / "README.md").read_text()
    shipped = sum(p.stat().st_size for p in EMBEDDED_MODELS_DIR.parent.rglob("*") if p.is_file())
    assert shipped <= 40 * 2**20  # resources/ within the 40 MB budget


def test_a_controlnet_for_another_vae_is_refused_naming_its_file(engine, tmp_path) -> None:
    from diffusers import ControlNetModel, UNet2DConditionModel

    unet = UNet2DConditionModel.from_pretrained(EMBEDDED_MODELS_DIR / "studio-tiny" / "unet")
    ControlNetModel.from_unet(unet).save_pretrained(tmp_path / "sd-sized")  # SD's 8× encoder
    control = Control(str(tmp_path / "sd-sized"), _scribble(16, 32))
    request = GenerationRequest(prompt=PROMPT, width=64, height=64, steps=2, controls=(control,))
    with pytest.raises(ModelError) as caught:
        engine.run(request)
    assert str(caught.value) == (
        f"'{tmp_path / 'sd-sized'}' brings control images down 8× but this SD 1.x model's "
        "latents are 4× smaller than its pictures (the ControlNet was made for another model): "
        "use a ControlNet made for this one."
    )


def test_two_steps_of_the_training_command_are_the_same_twice(tmp_path) -> None:
    from safetensors.torch import load_file

    from studio.engine import controlnets
    from studio.tiny import train_controlnet

    for run in ("a", "b"):
        train_controlnet.main(["--quick", "--out", str(tmp_path / run)])
    record = json.loads((tmp_path / "a" / "training.json").read_text())
    assert record["steps"] == 2 and record["threads"] == 1
    first, second = (
        load_file(tmp_path / run / "diffusion_pytorch_model.safetensors") for run in ("a", "b")
    )
    assert first.keys() == second.keys()
    assert all((first[k] == second[k]).all() for k in first)  # seeded: bit for bit
    assert any(first[k].abs().max() > 0 for k in first if k.startswith("controlnet_down"))
    assert controlnets.resolve(str(tmp_path / "a")).kind == "folder"
