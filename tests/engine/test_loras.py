"""LoRAs named in the prompt (`<lora:NAME:WEIGHT>`), in the layouts artists download: the
diffusers/PEFT layout and kohya's (A1111's), on tiny SD 1.x, SDXL and Flux pipelines.
Weight 0 draws the base picture, weights combine, none active gives the base model's pixels
back exactly, and a file that does not fit is refused with a sentence and changes nothing."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from safetensors.torch import save_file

from studio.core import loras
from studio.core.catalog import ModelError
from studio.core.request import GenerationRequest
from studio.engine.generate import Engine
from tests.engine.tiny_families import build

SIZE = 64
TARGETS = {
    "sd1": ["to_q", "to_k", "to_v", "to_out.0"],
    "sdxl": ["to_q", "to_v"],
    "flux": ["to_q", "to_v"],
}


pytestmark = pytest.mark.usefixtures("one_thread")  # tiny models: one thread is faster


@pytest.fixture(scope="module")
def models(tmp_path_factory: pytest.TempPathFactory) -> dict[str, str]:
    root = tmp_path_factory.mktemp("lora-models")
    return {name: str(build(name, root / name)) for name in TARGETS}


@pytest.fixture(scope="module")
def lora_dir(tmp_path_factory: pytest.TempPathFactory, models: dict[str, str]) -> Path:
    """LoRA files of each family and layout, as an artist's LoRA folder holds them."""
    folder = tmp_path_factory.mktemp("loras")
    for family, model in models.items():
        for seed in (1, 2):
            state = _peft_lora(model, family, seed)
            save_file(state, folder / f"{family}-peft-{seed}.safetensors")
            if family != "flux":
                save_file(_as_kohya(state), folder / f"{family}-kohya-{seed}.safetensors")
    return folder


@pytest.fixture(autouse=True)
def lora_folder(lora_dir: Path):
    loras.use_lora_dir(lora_dir)
    yield lora_dir
    loras.use_lora_dir(None)


@pytest.fixture(scope="module")
def engine() -> Engine:
    return Engine()


def _peft_lora(model: str, family: str, seed: int) -> dict[str, torch.Tensor]:
    """A LoRA on the model's denoiser with random (non-zero) weights, in diffusers' layout."""
    from diffusers import DiffusionPipeline
    from peft import LoraConfig
    from peft.utils import get_peft_model_state_dict

    pipe = DiffusionPipeline.from_pretrained(model)
    denoiser_name = "transformer" if family == "flux" else "unet"
    denoiser = getattr(pipe, denoiser_name)
    torch.manual_seed(seed)
    config = LoraConfig(r=4, lora_alpha=4, target_modules=TARGETS[family], init_lora_weights=False)
    denoiser.add_adapter(config, adapter_name="made")
    state = get_peft_model_state_dict(denoiser, adapter_name="made")
    # strong enough to show on a tiny random model
    return {f"{denoiser_name}.{k}": v.detach().clone() * 4 for k, v in state.items()}


def _as_kohya(state: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """The same LoRA as kohya's sd-scripts (and so A1111) write it: module paths with
    underscores under lora_unet_, lora_down/lora_up, and an alpha per module."""
    kohya: dict[str, torch.Tensor] = {}
    for key, tensor in state.items():
        module, kind = key.removeprefix("unet.").rsplit(".lora_", 1)
        name = "lora_unet_" + module.replace(".", "_")
        kohya[f"{name}.{'lora_down' if kind.startswith('A') else 'lora_up'}.weight"] = tensor
        if kind.startswith("A"):
            kohya[f"{name}.alpha"] = torch.tensor(float(tensor.shape[0]))
    return kohya


def _run(engine: Engine, model: str, prompt: str = "a red circle") -> np.ndarray:
    request = GenerationRequest(
        prompt=prompt, model=model, width=SIZE, height=SIZE, steps=2, seed=3
    )
    return np.asarray(engine.run(request).images[0], np.int16)


@pytest.mark.parametrize("family", list(TARGETS))
def test_a_lora_in_the_prompt_changes_the_picture_by_its_weight(engine, models, family) -> None:
    model = models[family]
    base = _run(engine, model)
    layout = "peft" if family == "flux" else "kohya"
    one = _run(engine, model, f"a red circle <lora:{family}-{layout}-1:1>")
    assert np.abs(one - base).mean() > 0.5
    # weight 0 is the base picture, a negative weight pushes the other way
    assert np.array_equal(_run(engine, model, f"a red circle <lora:{family}-{layout}-1:0>"), base)
    negative = _run(engine, model, f"a red circle <lora:{family}-{layout}-1:-1>")
    assert not np.array_equal(negative, base) and not np.array_equal(negative, one)
    # two at once are neither alone
    both = _run(engine, model, f"a red circle <lora:{family}-peft-1:1> <lora:{family}-peft-2:1>")
    two = _run(engine, model, f"a red circle <lora:{family}-peft-2:1>")
    assert not np.array_equal(both, one) and not np.array_equal(both, two)
    # and none active gives the base model's pixels back, bit for bit, with nothing reloaded
    loads = engine.models.weight_loads
    assert np.array_equal(_run(engine, model), base)
    assert engine.models.weight_loads == loads and engine.models.loras.loaded == 0


def test_kohyas_layout_draws_what_the_same_weights_draw_in_diffusers_layout(engine, models) -> None:
    peft = _run(engine, models["sd1"], "a red circle <lora:sd1-peft-1:0.8>")
    kohya = _run(engine, models["sd1"], "a red circle <lora:sd1-kohya-1:0.8>")
    assert np.abs(peft - kohya).max() <= 1


def test_a_lora_that_does_not_fit_is_refused_and_changes_nothing(
    engine, models, lora_folder
) -> None:
    model = models["sd1"]
    base = _run(engine, model)
    with pytest.raises(ModelError, match="does not fit SD 1.x") as error:
        _run(engine, model, "a red circle <lora:flux-peft-1:1>")
    assert "\n" not in str(error.value)
    assert np.array_equal(_run(engine, model), base)

    damaged = lora_folder / "damaged.safetensors"
    damaged.write_bytes((lora_folder / "sd1-peft-1.safetensors").read_bytes()[:5000])
    with pytest.raises(ModelError, match="damaged or incomplete"):
        _run(engine, model, "<lora:damaged> a red circle")
    pickled = lora_folder / "pickled.pt"
    torch.save({"weights": torch.zeros(2), "code": Path("x")}, pickled)
    with pytest.raises(ModelError, match="holds code"):
        _run(engine, model, "<lora:pickled> a red circle")
    with pytest.raises(ModelError, match="No LoRA called 'nowhere'"):
        _run(engine, model, "<lora:nowhere:0.7> a red circle")
    assert np.array_equal(_run(engine, model), base)


def test_a_lora_named_twice_runs_at_the_sum_of_its_weights_and_says_so(engine, models) -> None:
    """As A1111, which applies it twice: the picture of the summed weight."""
    from tests.engine.conftest import RecordingReporter

    model = models["sd1"]
    reporter = RecordingReporter()
    request = GenerationRequest(
        prompt="a red circle <lora:sd1-peft-1:0.3> <lora:sd1-peft-1:0.8>",
        model=model, width=SIZE, height=SIZE, steps=2, seed=3,
    )  # fmt: skip
    twice = np.asarray(engine.run(request, reporter).images[0], np.int16)
    assert np.array_equal(twice, _run(engine, model, "a red circle <lora:sd1-peft-1:1.1>"))
    assert any("'sd1-peft-1' is named 2 times" in m for m, _ in reporter.statuses)


def test_the_tag_is_not_read_by_the_text_encoder(engine, models) -> None:
    """The prompt with a LoRA at weight 0 is the prompt without the tag."""
    model = models["sd1"]
    assert np.array_equal(
        _run(engine, model, "a red circle, <lora:sd1-peft-1:0>, blue"),
        _run(engine, model, "a red circle, blue"),
    )


def test_the_command_line_and_the_metadata_name_each_lora_with_its_hash(  # noqa: ANN001
    models, lora_folder, tmp_path, capsys
) -> None:
    from studio.cli import main
    from studio.core.restore import plan_restore
    from studio.metadata import read_parameters

    target = tmp_path / "out.png"
    args = ["generate", "a red circle", "--model", models["sd1"], "--lora", "sd1-peft-1:0.7"]
    size = ["--width", str(SIZE), "--height", str(SIZE), "--steps", "2", "--seed", "3"]
    assert main([*args, "--lora", "sd1-kohya-2", *size, "--out", str(target)]) == 0, (
        capsys.readouterr().err
    )
    # a --lora not here names the option to leave out (it asked to remove a prompt's tag)
    missing = [*args, "--lora", "nowhere:0.5", *size, "--out", str(tmp_path / "no.png")]
    assert main(missing) == 2
    assert (
        capsys.readouterr()
        .err.splitlines()[-1]
        .endswith("add the file there or leave out --lora nowhere.")
    )
    assert not (tmp_path / "no.png").exists()
    saved = read_parameters(target)
    # the prompt keeps its tags, and the hashes are A1111's: 12 digits of the tensors' SHA-256
    assert saved.prompt == "a red circle <lora:sd1-peft-1:0.7> <lora:sd1-kohya-2:1>"
    short = loras.short_hash(lora_folder / "sd1-peft-1.safetensors")
    assert len(short) == 12
    assert saved.extras["Lora hashes"].startswith(f"sd1-peft-1: {short}, sd1-kohya-2: ")

    # restoring on a machine where the file has another name finds it by its hash; one
    # found neither way is named
    renamed = saved.__class__(**{**saved.__dict__, "request": None})
    renamed.prompt = "x <lora:my old name:0.5> <lora:gone:1>"
    renamed.extras = {"Lora hashes": f"my old name: {short}, gone: 0123456789ab"}
    plan = plan_restore(renamed)
    assert plan.values["prompt"] == "x <lora:sd1-peft-1:0.5> <lora:gone:1>"
    assert any("'my old name' is here as 'sd1-peft-1'" in note for note in plan.notes)
    assert any("Not in your LoRA folders: 'gone'" in note for note in plan.notes)


def test_a_lycoris_kind_diffusers_cannot_convert_is_named(engine, models, lora_folder) -> None:
    """LoHa (and LoKr) files: diffusers 0.42 converts neither for SD 1.x; the artist is told
    which kind it is, and the model stays as it was."""
    model = models["sd1"]
    base = _run(engine, model)
    module = "lora_unet_down_blocks_1_attentions_0_transformer_blocks_0_attn1_to_q"
    width = 8
    loha = {
        f"{module}.hada_w1_a": torch.randn(width, 2),
        f"{module}.hada_w1_b": torch.randn(2, width),
        f"{module}.hada_w2_a": torch.randn(width, 2),
        f"{module}.hada_w2_b": torch.randn(2, width),
        f"{module}.alpha": torch.tensor(2.0),
    }
    save_file(loha, lora_folder / "style-loha.safetensors")
    with pytest.raises(ModelError, match="LyCORIS kind that diffusers cannot convert"):
        _run(engine, model, "a red circle <lora:style-loha:1>")
    assert np.array_equal(_run(engine, model), base)


TRANSFORMER_FAMILIES = ("sd3", "chroma", "qwen_image", "z_image", "flux2_klein")


@pytest.fixture(scope="module")
def transformer_models(tmp_path_factory: pytest.TempPathFactory) -> dict[str, str]:
    root = tmp_path_factory.mktemp("lora-transformers")
    return {name: str(build(name, root / name)) for name in TRANSFORMER_FAMILIES}


@pytest.mark.parametrize("family", TRANSFORMER_FAMILIES)
def test_every_family_with_a_lora_loader_takes_a_lora(  # noqa: ANN001
    engine, transformer_models, lora_folder, family
) -> None:
    """The transformer families' LoRAs (diffusers' layout, on the attention projections):
    the picture moves, weight 0 and no tag give the base pixels, nothing is reloaded."""
    from diffusers import DiffusionPipeline
    from peft import LoraConfig
    from peft.utils import get_peft_model_state_dict

    model = transformer_models[family]
    transformer = DiffusionPipeline.from_pretrained(model).transformer
    torch.manual_seed(1)
    config = LoraConfig(r=4, lora_alpha=4, target_modules=["to_q", "to_v"], init_lora_weights=False)
    transformer.add_adapter(config, adapter_name="made")
    state = get_peft_model_state_dict(transformer, adapter_name="made")
    name = f"{family}-lora"
    save_file(
        {f"transformer.{k}": v.detach().clone() * 4 for k, v in state.items()},
        lora_folder / f"{name}.safetensors",
    )
    base = _run(engine, model)
    loads = engine.models.weight_loads
    assert not np.array_equal(_run(engine, model, f"a red circle <lora:{name}:1>"), base)
    assert np.array_equal(_run(engine, model, f"a red circle <lora:{name}:0>"), base)
    assert np.array_equal(_run(engine, model), base)
    assert engine.models.weight_loads == loads
