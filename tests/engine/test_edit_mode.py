"""Edit mode: an instruction applied to the input image, on the families that edit
(Flux.1 Kontext, Flux.2 Klein with reference images, Qwen-Image-Edit), through the engine
and the command line; a family that does not edit says so in one sentence."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from studio.cli import main
from studio.core import families
from studio.core.catalog import ModelError
from studio.core.jobs import GenerationError
from studio.core.request import GenerationRequest, Mode
from studio.engine.generate import Engine, guidance_arguments
from studio.metadata import read_parameters
from tests.engine.conftest import RecordingReporter
from tests.engine.tiny_families import build

SIZE = 64


pytestmark = pytest.mark.usefixtures("one_thread")  # tiny models: one thread is faster


@pytest.fixture(scope="module")
def kontext(tmp_path_factory: pytest.TempPathFactory) -> str:
    """A tiny Flux.1 Kontext: Flux's components under Kontext's pipeline class, as the real
    Kontext folders are."""
    folder = build("flux", tmp_path_factory.mktemp("kontext") / "flux")
    index_file = folder / "model_index.json"
    index = json.loads(index_file.read_text())
    index["_class_name"] = "FluxKontextPipeline"
    index_file.write_text(json.dumps(index))
    return str(folder)


@pytest.fixture(scope="module")
def klein(tmp_path_factory: pytest.TempPathFactory) -> str:
    return str(build("flux2_klein", tmp_path_factory.mktemp("klein") / "klein"))


@pytest.fixture(scope="module")
def engine() -> Engine:
    return Engine()


def _picture(colour: tuple[int, int, int]) -> Image.Image:
    rgb = np.zeros((SIZE, SIZE, 3), np.uint8)
    rgb[:] = colour
    rgb[16:48, 16:48] = (230, 200, 30)
    return Image.fromarray(rgb)


def _edit(model: str, image: Image.Image, **changes) -> GenerationRequest:  # noqa: ANN003
    request = GenerationRequest(
        mode=Mode.EDIT,
        prompt="make the square blue",
        model=model,
        init_image=image,
        width=SIZE,
        height=SIZE,
        steps=3,
        seed=11,
    )
    return request.replace(**changes)


def _pixels(image: Image.Image) -> np.ndarray:
    return np.asarray(image, np.int16)


def test_kontext_edits_the_input_with_a_preview_at_every_step(engine, kontext) -> None:
    assert families.of_folder(Path(kontext)).name == "flux-kontext"
    reporter = RecordingReporter()
    blue, red = _picture((20, 40, 200)), _picture((200, 30, 20))
    result = engine.run(_edit(kontext, blue), reporter)
    assert result.images[0].size == (SIZE, SIZE)
    # every step runs (no strength), each with its preview
    assert [p.step for p in reporter.steps] == [1, 2, 3]
    assert all(p.preview is not None for p in reporter.steps)
    # the edit starts from the input: another input, another picture (random tiny weights
    # barely attend to it, so the change is small but never none)
    other = engine.run(_edit(kontext, red)).images[0]
    assert not np.array_equal(_pixels(other), _pixels(result.images[0]))

    # what the engine draws is what Kontext itself draws from the same input and seed
    pipe = engine.models.pipeline(kontext, Mode.EDIT)
    assert type(pipe).__name__ == "FluxKontextPipeline"
    bare = pipe(
        image=blue,
        prompt="make the square blue",
        width=SIZE,
        height=SIZE,
        num_inference_steps=3,
        generator=[torch.Generator("cpu").manual_seed(11)],
        _auto_resize=False,
        max_area=SIZE * SIZE,
        **guidance_arguments(pipe, 7.0, ""),
    ).images[0]
    assert np.abs(_pixels(bare) - _pixels(result.images[0])).max() <= 2


def test_klein_takes_reference_images_and_says_how_many(engine, klein) -> None:
    image = _picture((20, 40, 200))
    reference = _picture((20, 200, 40)).rotate(90)
    alone = engine.run(_edit(klein, image)).images[0]
    with_reference = engine.run(_edit(klein, image, references=(reference,))).images[0]
    assert not np.array_equal(_pixels(alone), _pixels(with_reference))
    family = families.of_folder(Path(klein))
    too_many = (reference,) * (family.edit_references + 1)
    with pytest.raises(GenerationError, match=f"at most {family.edit_references} reference"):
        engine.run(_edit(klein, image, references=too_many))


def test_kontext_edits_one_image(engine, kontext) -> None:
    with pytest.raises(GenerationError, match="edits one image"):
        engine.run(_edit(kontext, _picture((0, 0, 0)), references=(_picture((9, 9, 9)),)))


def test_a_model_that_does_not_edit_says_which_do(engine, tiny_sd) -> None:
    with pytest.raises(ModelError) as error:
        engine.run(_edit(tiny_sd, _picture((0, 0, 0))))
    message = str(error.value)
    assert "do not edit" in message and "Flux.1 Kontext" in message and "\n" not in message


def test_the_command_line_edits_and_records_the_mode(kontext, tmp_path, capsys) -> None:
    source, target = tmp_path / "in.png", tmp_path / "out.png"
    _picture((20, 40, 200)).save(source)
    args = ["generate", "make the square blue", "--model", kontext, "--edit", str(source)]
    size = ["--width", str(SIZE), "--height", str(SIZE)]  # else the input at native area
    code = main([*args, *size, "--steps", "2", "--seed", "3", "--out", str(target)])
    assert code == 0, capsys.readouterr().err
    parameters = read_parameters(target)
    assert parameters.extras.get("Mode") == "edit"
    assert (parameters.width, parameters.height, parameters.steps) == (SIZE, SIZE, 2)
    # a reference without --edit, or --edit with --mask, is a usage error
    code = main(["generate", "x", "--model", kontext, "--reference", str(source)])
    assert code == 2 and "--reference goes with --edit" in capsys.readouterr().err
