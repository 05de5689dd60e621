"""Qwen-Image-Edit single files as ComfyUI keeps them: the transformer (Qwen-Image's tensors,
told apart by its name or 2511's mark), qwen_image_vae, and qwen_2.5_vl_7b with its vision
tower, offline; Edit mode on them draws what the same model as a diffusers folder draws."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from studio.cli import main
from studio.core import catalog, families
from studio.core.catalog import ModelError
from studio.core.request import GenerationRequest, Mode
from studio.engine import single_file
from studio.engine.generate import Engine
from studio.metadata import read_parameters
from tests.engine.conftest import RecordingReporter
from tests.engine.test_single_file import (
    _as_shipped,
    _save,
    comfy_qwen,
    diffusers_to_wan_vae,
    offline,  # noqa: F401 - the autouse fixture: no network, empty caches
    text_encoder_to_gguf,
)
from tests.sparse_files import sparse_safetensors

SIZE = 64
pytestmark = pytest.mark.usefixtures("one_thread")  # tiny models: one thread is faster

# ComfyUI's names for the published files, and the family each is
EDIT_NAMES = {
    "qwen_image_edit_fp8_e4m3fn": "qwen-image-edit",
    "qwen_image_edit_2509_fp8_e4m3fn": "qwen-image-edit-plus",
    "Qwen-Image-Edit-2509-Q4_K_M": "qwen-image-edit-plus",
    "qwen_image_edit_2511_bf16": "qwen-image-edit-plus",
    "qwnImageEdit_v16Bf16": "qwen-image-edit",  # a community fine-tune, camel case
    "qwen_image_fp8_e4m3fn": "qwen-image",
    "qwen_image_2512_fp8_e4m3fn": "qwen-image",  # Qwen-Image 2512 draws, it does not edit
    "credit_qwen_image": "qwen-image",  # no word "edit"
}
# the tensors Qwen-Image's files are told by (a block's modulation) and matched by
SIGNATURE = {
    **single_file.VARIANTS["qwen-image"].signature,
    "transformer_blocks.0.img_mod.1.weight": (18432, 3072),
}
PIPELINES = {
    "qwen-image-edit": "QwenImageEditPipeline",
    "qwen-image-edit-plus": "QwenImageEditPlusPipeline",
}


@pytest.mark.parametrize(("name", "family"), EDIT_NAMES.items())
def test_a_qwen_image_file_is_the_edit_model_its_name_says(
    name: str, family: str, tmp_path: Path
) -> None:
    """Their tensors are alike: the name tells, in the model picker and the loader alike."""
    path = sparse_safetensors(tmp_path / f"{name}.safetensors", SIGNATURE)
    assert catalog.model_family(str(path)).name == family
    info = single_file.inspect(path)
    assert info.family.name == family and info.variant.name == "qwen-image" and info.matches


def test_2511s_mark_or_a_companion_line_names_the_edit_model(tmp_path: Path) -> None:
    marked = dict(SIGNATURE, __index_timestep_zero__=(0,))
    path = sparse_safetensors(tmp_path / "renamed.safetensors", marked)
    assert catalog.model_family(str(path)).name == "qwen-image-edit-plus"
    # 2511 takes the input image at timestep zero: a flag of its config, which its mark (or
    # its name) says; 2509 does not
    assert single_file._config_changes(single_file.inspect(path)) == {"zero_cond_t": True}
    named = sparse_safetensors(tmp_path / "qwen_image_edit_2509_bf16.safetensors", SIGNATURE)
    assert single_file._config_changes(single_file.inspect(named)) == {}
    plain = sparse_safetensors(tmp_path / "my_model.safetensors", SIGNATURE)
    assert catalog.model_family(str(plain)).name == "qwen-image"
    (tmp_path / "my_model.safetensors.companion").write_text("family: qwen-image-edit\n")
    assert catalog.model_family(str(plain)).name == "qwen-image-edit"
    assert single_file.inspect(plain).family.name == "qwen-image-edit"
    # a family whose files look otherwise is not taken from a companion line
    (tmp_path / "my_model.safetensors.companion").write_text("family: flux-dev\n")
    assert catalog.model_family(str(plain)).name == "qwen-image"


def test_a_mistyped_family_line_is_logged_and_refused_naming_the_valid_ones(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """`family: qwen-image-edit-pluss` is no family: the picker keeps the family the file
    says and the log tells; loading it is one sentence naming the families it can be."""
    from diffusers import DiffusionPipeline

    path = sparse_safetensors(tmp_path / "my_model.safetensors", SIGNATURE)
    (tmp_path / "my_model.safetensors.companion").write_text("family: qwen-image-edit-pluss\n")
    assert catalog.model_family(str(path)).name == "qwen-image"
    assert "names the family 'qwen-image-edit-pluss', which no family is" in caplog.text
    with pytest.raises(ModelError) as caught:
        single_file.load(path, DiffusionPipeline, torch.float32)
    assert str(caught.value) == (
        "'my_model.safetensors.companion' names the family 'qwen-image-edit-pluss', which the "
        "studio does not know: for this file write one of qwen-image, qwen-image-edit, "
        "qwen-image-edit-plus."
    )


def test_the_edit_families_use_qwen_images_file_tables_through_one_helper() -> None:
    """Their files are Qwen-Image's: the tables of file layouts hold no copies for them, and
    each is looked up by the family it shares files with (single_file.files_family)."""
    for name in PIPELINES:
        family = families.by_name(name)
        assert single_file.files_family(family) == "qwen-image"
        for table in (single_file._DENOISERS, single_file.FAMILY_PARTS):
            assert name not in table
        assert name not in single_file.FAMILY_TOKENIZER


# -- Edit mode on tiny files ---------------------------------------------------------------


@pytest.fixture(scope="module")
def tiny_edit(tmp_path_factory: pytest.TempPathFactory) -> dict:
    """The tiny Qwen-Image pipeline as an edit model: a diffusers folder (Qwen-Image-Edit's
    layout, its processor folder included) and ComfyUI's files of the same weights."""
    from tests.engine.tiny_families import make_pipeline

    base = make_pipeline("qwen_image")
    root = tmp_path_factory.mktemp("qwen-edit")
    folder = root / "Qwen-Image-Edit-tiny"
    base.save_pretrained(folder, safe_serialization=True)
    index = json.loads((folder / "model_index.json").read_text())
    index.update(
        _class_name=PIPELINES["qwen-image-edit"], processor=["transformers", "Qwen2VLProcessor"]
    )
    (folder / "model_index.json").write_text(json.dumps(index))
    base.tokenizer.save_pretrained(folder / "processor")
    preprocessor = single_file.CONFIGS_DIR / "qwen-image" / "processor" / "preprocessor_config.json"
    shutil.copyfile(preprocessor, folder / "processor" / "preprocessor_config.json")

    comfy = root / "ComfyUI"
    models = comfy / "models"
    for sub in ("diffusion_models", "vae", "text_encoders"):
        (models / sub).mkdir(parents=True)
    state = base.transformer.state_dict()
    transformer = {f"model.diffusion_model.{k}": v.contiguous() for k, v in state.items()}
    vae = diffusers_to_wan_vae(base.vae.state_dict(), base.vae.config.num_res_blocks)
    _save(vae, models / "vae" / "qwen_image_vae.safetensors")
    encoder = _save(
        comfy_qwen(base.text_encoder), models / "text_encoders" / "qwen_2.5_vl_7b.safetensors"
    )
    assert any(k.startswith("visual.") for k in single_file.safetensors_shapes(encoder))
    base.tokenizer.save_pretrained(comfy / "comfy" / "text_encoders" / "qwen25_tokenizer")
    shapes = {
        k.removeprefix("model.diffusion_model."): tuple(v.shape) for k, v in transformer.items()
    }
    return {
        "base": base,
        "folder": folder,
        "models": models,
        "transformer": transformer,
        "signature": {k: shapes[k] for k in single_file.VARIANTS["qwen-image"].signature},
    }


@pytest.fixture
def job_sized_conditions(monkeypatch: pytest.MonkeyPatch) -> None:
    """The edit pipelines give the vision tower and the VAE the input at about a megapixel
    (their own constants), whatever the job's size: seconds of a tiny model on a CPU. Here
    they take it at the job's size, the folder and the file alike."""
    from diffusers.pipelines.qwenimage import pipeline_qwenimage_edit as edit
    from diffusers.pipelines.qwenimage import pipeline_qwenimage_edit_plus as plus

    for module in (edit, plus):
        sized = module.calculate_dimensions
        monkeypatch.setattr(module, "calculate_dimensions", lambda _, r, f=sized: f(SIZE**2, r))


def _picture(colour: tuple[int, int, int]) -> Image.Image:
    rgb = np.zeros((SIZE, SIZE, 3), np.uint8)
    rgb[:] = colour
    rgb[16:48, 16:48] = (230, 200, 30)
    return Image.fromarray(rgb)


def _edit(model: str, **changes) -> GenerationRequest:  # noqa: ANN003
    request = GenerationRequest(
        mode=Mode.EDIT,
        prompt="make the square blue",
        model=model,
        init_image=_picture((20, 40, 200)),
        width=SIZE,
        height=SIZE,
        steps=2,
        seed=11,
    )
    return request.replace(**changes)


def _as_family(folder: Path, family: str, zero_cond_t: bool, target: Path) -> Path:
    """A copy of the tiny edit folder as the given edit model (2511: zero_cond_t)."""
    shutil.copytree(folder, target)
    index = json.loads((target / "model_index.json").read_text())
    (target / "model_index.json").write_text(
        json.dumps({**index, "_class_name": PIPELINES[family]})
    )
    config = json.loads((target / "transformer" / "config.json").read_text())
    config["zero_cond_t"] = zero_cond_t
    (target / "transformer" / "config.json").write_text(json.dumps(config))
    return target


@pytest.mark.usefixtures("job_sized_conditions")
@pytest.mark.parametrize(
    ("name", "family", "marked"),
    [
        ("qwen_image_edit_fp8_e4m3fn", "qwen-image-edit", False),
        ("qwen_image_edit_2511_bf16", "qwen-image-edit-plus", True),  # ComfyUI's mark
    ],
)
def test_a_comfyui_qwen_image_edit_file_edits_as_its_folder_does(
    tiny_edit: dict,
    name: str,
    family: str,
    marked: bool,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Offline, Edit mode on the file with ComfyUI's VAE, Qwen2.5-VL (vision tower included)
    and tokenizer: every step previewed, cancel within a step, the same pixels again from the
    command line with the seed and the mode in the image's metadata, and the same pixels as
    the folder (both built with the studio's own processor: the vision tower sees the same)."""
    _as_shipped(monkeypatch, tmp_path, "qwen-image", tiny_edit["folder"], tiny_edit["signature"])
    transformer = dict(tiny_edit["transformer"])
    if marked:
        transformer["model.diffusion_model.__index_timestep_zero__"] = torch.zeros(0)
    path = _save(transformer, tiny_edit["models"] / "diffusion_models" / f"{name}.safetensors")
    folder = _as_family(tiny_edit["folder"], family, marked, tmp_path / "folder")
    try:
        engine = Engine()
        reporter = RecordingReporter()
        result = engine.run(_edit(str(path)), reporter)
        pipe = engine.models.pipeline(str(path), Mode.EDIT)
        assert type(pipe).__name__ == PIPELINES[family]
        assert pipe.transformer.config.zero_cond_t == marked
        assert [p.step for p in reporter.steps] == [1, 2]
        assert all(p.preview is not None for p in reporter.steps)
        assert result.seeds == [11] and not result.cancelled
        cancelling = RecordingReporter(cancel_at=1, engine=engine)
        cancelled = engine.run(_edit(str(path), steps=4), cancelling)
        assert cancelled.cancelled and cancelled.images == []
        assert max(p.step for p in cancelling.steps) == 1
        engine.models.unload()
        drawn = _from_the_command_line(path, tmp_path)
        expected = Engine().run(_edit(str(folder))).images[0]
    finally:
        path.unlink()
    # the command line's engine runs with its own settings (threads): a level or so apart
    assert np.abs(_pixels(drawn) - _pixels(result.images[0])).max() <= 2
    np.testing.assert_array_equal(np.asarray(result.images[0]), np.asarray(expected))


def _pixels(image: Image.Image) -> np.ndarray:
    return np.asarray(image, np.int16)


def _from_the_command_line(path: Path, folder: Path) -> Image.Image:
    """The edit of `_edit` by `studio generate --edit`, its metadata checked."""
    source, target = folder / "in.png", folder / "out.png"
    _picture((20, 40, 200)).save(source)
    size = ["--width", str(SIZE), "--height", str(SIZE), "--steps", "2", "--seed", "11"]
    args = ["generate", "make the square blue", "--model", str(path), "--edit", str(source)]
    assert main([*args, *size, "--out", str(target)]) == 0
    parameters = read_parameters(target)
    assert parameters.extras.get("Mode") == "edit" and parameters.seed == 11
    assert path.stem in str(parameters.model)
    return Image.open(target).convert("RGB")


def test_a_text_encoder_without_its_vision_tower_says_which_file_to_use(
    tiny_edit: dict, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A GGUF Qwen2.5-VL (the language model alone) with an edit model: passed over for
    ComfyUI's file with the vision tower when both are there; alone, one sentence naming the
    file to use, before anything is loaded."""
    from diffusers import DiffusionPipeline

    _as_shipped(monkeypatch, tmp_path, "qwen-image", tiny_edit["folder"], tiny_edit["signature"])
    models = tmp_path / "ComfyUI" / "models"
    shutil.copytree(tiny_edit["models"], models)
    text_encoder_to_gguf(
        tiny_edit["base"].text_encoder, models / "text_encoders" / "Qwen2.5-VL-7B-Q8_0.gguf", False
    )
    edit = _save(
        tiny_edit["transformer"],
        models / "diffusion_models" / "qwen_image_edit_2509_Q8.safetensors",
    )
    info = single_file.inspect(edit)
    configs = single_file.shipped_folder(info.variant)
    chosen, _ = single_file.choose_parts(info, configs, None)
    assert chosen["text_encoder"].path.name == "qwen_2.5_vl_7b.safetensors"
    (models / "text_encoders" / "qwen_2.5_vl_7b.safetensors").unlink()
    with pytest.raises(ModelError) as caught:
        single_file.load(edit, DiffusionPipeline, torch.float32)
    message = str(caught.value)
    assert (
        "'Qwen2.5-VL-7B-Q8_0.gguf' holds Qwen2.5-VL's language model without its vision tower"
        in message
    )
    assert "qwen_2.5_vl_7b.safetensors" in message and "\n" not in message
    assert families.by_name("qwen-image-edit-plus").label in message


def test_a_text_encoder_without_its_vision_tower_gives_way_to_a_cached_companion(
    tiny_edit: dict, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Parts whose only text encoder cannot see do not stop an edit file that has the edit
    model in the local cache: the cached folder gives the rest."""
    from diffusers import DiffusionPipeline

    _as_shipped(monkeypatch, tmp_path, "qwen-image", tiny_edit["folder"], tiny_edit["signature"])
    models = tmp_path / "ComfyUI" / "models"
    shutil.copytree(tiny_edit["models"], models)
    (models / "text_encoders" / "qwen_2.5_vl_7b.safetensors").unlink()
    text_encoder_to_gguf(
        tiny_edit["base"].text_encoder, models / "text_encoders" / "Qwen2.5-VL-7B-Q8_0.gguf", False
    )
    edit = _save(
        tiny_edit["transformer"], models / "diffusion_models" / "qwen_image_edit_Q8.safetensors"
    )
    monkeypatch.setattr(single_file, "cached_companion", lambda family: tiny_edit["folder"])
    pipe = single_file.load(edit, DiffusionPipeline, torch.float32)
    assert type(pipe).__name__ == "QwenImageEditPipeline"
    assert any(".visual." in f".{k}" for k in pipe.text_encoder.state_dict())


def test_a_qwen_image_folder_named_as_an_edit_files_companion_gets_the_processor(
    tiny_edit: dict, tmp_path: Path
) -> None:
    """A plain Qwen-Image folder (no processor) named in an edit file's `.companion` gives
    the edit pipeline its text encoder, and the processor is built from the shipped image
    processor config and the folder's tokenizer, as for separate parts."""
    from diffusers import DiffusionPipeline

    tiny_edit["base"].save_pretrained(tmp_path / "Qwen-Image", safe_serialization=True)
    path = _save(tiny_edit["transformer"], tmp_path / "qwen_image_edit_Q8_0.safetensors")
    (tmp_path / "qwen_image_edit_Q8_0.safetensors.companion").write_text("Qwen-Image\n")
    pipe = single_file.load(path, DiffusionPipeline, torch.float32)
    assert type(pipe).__name__ == "QwenImageEditPipeline"
    assert type(pipe.processor).__name__ == "ImageQwen2VLProcessor"
    assert pipe.processor.tokenizer.get_vocab() == tiny_edit["base"].tokenizer.get_vocab()


def test_a_qwen_image_edit_file_takes_the_rest_from_an_edit_folder_beside_it(
    tiny_edit: dict, tmp_path: Path
) -> None:
    """A diffusers folder of Qwen-Image-Edit beside the file is its companion: the edit
    pipeline, its processor built as the studio builds it, the file's transformer."""
    from diffusers import DiffusionPipeline

    shutil.copytree(tiny_edit["folder"], tmp_path / "Qwen-Image-Edit")
    path = _save(tiny_edit["transformer"], tmp_path / "qwen_image_edit_Q8_0.safetensors")
    pipe = single_file.load(path, DiffusionPipeline, torch.float32)
    assert type(pipe).__name__ == "QwenImageEditPipeline"
    assert type(pipe.processor).__name__ == "ImageQwen2VLProcessor"
    weight = tiny_edit["transformer"]["model.diffusion_model.img_in.weight"]
    assert torch.equal(pipe.transformer.img_in.weight, weight)
