"""ControlNets through the engine: tiny ControlNets with random weights, built from the tiny
families' own denoisers as diffusers' tests build theirs, steer SD 1.x, SDXL and Flux.1 in
text→image, image→image and inpaint through pipelines derived from the loaded model."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from studio.core.catalog import ModelError
from studio.core.request import Control, GenerationRequest, Mode, RequestError
from studio.core.saving import parameters_of
from studio.core.settings import EngineSettings
from studio.engine.controlnets import union_types
from studio.engine.generate import Engine
from tests.engine.conftest import RecordingReporter
from tests.engine.tiny_families import build

SIZE = 64


pytestmark = pytest.mark.usefixtures("one_thread")  # tiny models: one thread is faster


def _loud(model: torch.nn.Module) -> None:
    """Random weights for the zero-initialised layers too, or the ControlNet adds nothing."""
    generator = torch.Generator().manual_seed(7)
    with torch.no_grad():
        for name, parameter in model.named_parameters():
            if "controlnet_" in name or "zero" in name:
                parameter.copy_(torch.randn(parameter.shape, generator=generator) * 0.2)


def _unet_controlnet(folder, unet, seed: int = 0):
    from diffusers import ControlNetModel

    torch.manual_seed(seed)
    model = ControlNetModel.from_unet(unet, conditioning_embedding_out_channels=(8, 8, 8, 16))
    _loud(model)
    model.save_pretrained(folder, safe_serialization=True)
    return str(folder)


def _flux_controlnet(folder, transformer):
    from diffusers import FluxControlNetModel

    torch.manual_seed(0)
    model = FluxControlNetModel.from_transformer(
        transformer, num_layers=1, num_single_layers=1, attention_head_dim=16,
        num_attention_heads=2,
    )  # fmt: skip
    _loud(model)
    model.save_pretrained(folder, safe_serialization=True)
    return str(folder)


@pytest.fixture(scope="module")
def models(tmp_path_factory: pytest.TempPathFactory) -> dict[str, str]:
    from diffusers import DiffusionPipeline

    root = tmp_path_factory.mktemp("controlnets")
    found = {}
    for family in ("sd1", "sdxl", "flux"):
        found[family] = str(build(family, root / family))
        pipe = DiffusionPipeline.from_pretrained(found[family])
        if family == "flux":
            found["flux-cn"] = _flux_controlnet(root / "flux-cn", pipe.transformer)
        else:
            found[f"{family}-cn"] = _unet_controlnet(root / f"{family}-cn", pipe.unet)
            found[f"{family}-cn2"] = _unet_controlnet(root / f"{family}-cn2", pipe.unet, 1)
    return found


@pytest.fixture(scope="module")
def engine() -> Engine:
    return Engine()


def _square() -> Image.Image:
    picture = np.zeros((SIZE, SIZE, 3), np.uint8)
    picture[16:48, 16:48] = 255
    return Image.fromarray(picture)


def _circle() -> Image.Image:
    y, x = np.mgrid[:SIZE, :SIZE]
    disc = ((x - 20) ** 2 + (y - 20) ** 2 < 12**2) * 255
    return Image.fromarray(np.dstack([disc] * 3).astype(np.uint8))


def _request(model: str, *controls: Control, **changes) -> GenerationRequest:  # noqa: ANN003
    base = GenerationRequest(
        prompt="a red circle", model=model, width=SIZE, height=SIZE, steps=3, seed=5,
        controls=controls,
    )  # fmt: skip
    return base.replace(**changes)


def _pixels(result) -> np.ndarray:  # noqa: ANN001
    return np.asarray(result.images[0], np.int16)


def _picture() -> Image.Image:
    rgb = np.zeros((SIZE, SIZE, 3), np.uint8)
    rgb[:, :, 2] = 200
    rgb[8:40, 24:56] = (230, 200, 30)
    return Image.fromarray(rgb)


def _mask() -> Image.Image:
    mask = np.zeros((SIZE, SIZE), np.uint8)
    mask[16:48, 16:48] = 255
    return Image.fromarray(mask)


MODES = {
    Mode.TEXT_TO_IMAGE: {},
    Mode.IMAGE_TO_IMAGE: {"init_image": _picture(), "strength": 0.8},
    Mode.INPAINT: {"init_image": _picture(), "mask": _mask(), "strength": 1.0},
}


@pytest.mark.parametrize("family", ["sd1", "sdxl"], scope="module")
@pytest.mark.parametrize("mode", list(MODES), ids=lambda m: m.value)
def test_the_control_image_steers_and_weight_0_or_no_step_gives_the_plain_picture(
    engine, models, family: str, mode: Mode
) -> None:
    model, cn = models[family], models[f"{family}-cn"]
    changes = {"mode": mode, **MODES[mode]}
    plain = _pixels(engine.run(_request(model, **changes)))
    square = _pixels(engine.run(_request(model, Control(cn, _square()), **changes)))
    circle = _pixels(engine.run(_request(model, Control(cn, _circle()), **changes)))
    assert np.abs(square - plain).mean() > 2 and np.abs(square - circle).mean() > 1
    # weight 0: the ControlNet adds nothing (it is not run)
    zero = _pixels(engine.run(_request(model, Control(cn, _square(), scale=0.0), **changes)))
    assert np.abs(zero - plain).max() <= 1
    # a range that holds no step: diffusers' ControlNet pipeline runs with the ControlNet's
    # residuals weighted 0 at every step, and gives the base pipeline's pixels
    late = Control(cn, _square(), start=0.95, end=1.0)
    assert np.abs(_pixels(engine.run(_request(model, late, **changes))) - plain).max() <= 1
    # a range that holds some of the steps that run acts (image→image runs 2 of 3 here)
    early = Control(cn, _square(), start=0.0, end=0.6)
    assert np.abs(_pixels(engine.run(_request(model, early, **changes))) - plain).mean() > 1


def test_the_derived_pipeline_shares_the_model_and_the_controlnet_is_kept(engine, models) -> None:
    model, cn = models["sd1"], models["sd1-cn"]
    engine.run(_request(model))
    loads = engine.models.weight_loads
    engine.run(_request(model, Control(cn, _square())))
    assert engine.models.weight_loads == loads + 1  # the ControlNet, not the model again
    engine.run(_request(model, Control(cn, _circle(), scale=0.5), mode=Mode.IMAGE_TO_IMAGE,
                        init_image=_picture()))  # fmt: skip
    assert engine.models.weight_loads == loads + 1  # kept while asked for
    base = engine.models.pipeline(model, Mode.TEXT_TO_IMAGE)
    network = engine.models.controlnets.loaded[cn]
    controlled = engine.models.controlled(model, Mode.TEXT_TO_IMAGE, [network])
    assert type(controlled).__name__ == "StableDiffusionControlNetPipeline"
    assert controlled.unet is base.unet and controlled.vae is base.vae
    assert controlled.text_encoder is base.text_encoder


def test_two_controlnets_at_once_each_with_its_image_weight_and_range(engine, models) -> None:
    model, first, second = models["sd1"], models["sd1-cn"], models["sd1-cn2"]
    one = _pixels(engine.run(_request(model, Control(first, _square()))))
    both = engine.run(
        _request(model, Control(first, _square()), Control(second, _circle(), 0.8, 0.0, 0.7))
    )
    assert np.abs(_pixels(both) - one).mean() > 1
    # the second one weighted 0 leaves the first's picture
    zero = Control(second, _circle(), scale=0.0)
    assert (
        np.abs(_pixels(engine.run(_request(model, Control(first, _square()), zero))) - one).max()
        <= 1
    )
    pipe = engine.models.controlled(
        model, Mode.TEXT_TO_IMAGE, [engine.models.controlnets.loaded[s] for s in (first, second)]
    )
    assert type(pipe.controlnet).__name__ == "MultiControlNetModel"


def test_previews_and_cancel_work_with_a_controlnet(models) -> None:
    engine = Engine(EngineSettings(preview_method="vae"))  # the VAE's preview is the picture
    model, cn = models["sdxl"], models["sdxl-cn"]
    reporter = RecordingReporter()
    result = engine.run(_request(model, Control(cn, _square()), steps=4), reporter)
    steps = [p for p in reporter.steps if p.stage == "generate"]
    assert [p.step for p in steps] == [1, 2, 3, 4] and all(p.preview is not None for p in steps)
    last = steps[-1].preview.astype(np.float32)
    small = np.asarray(result.images[0].resize(last.shape[1::-1], Image.Resampling.BOX), np.float32)
    assert np.abs(last - small).mean() < 3.0
    cancelling = RecordingReporter(cancel_at=2, engine=engine)
    cancelled = engine.run(_request(model, Control(cn, _square()), steps=6), cancelling)
    assert cancelled.cancelled and max(p.step for p in cancelling.steps) == 2


@pytest.mark.parametrize("mode", list(MODES), ids=lambda m: m.value)
def test_flux_runs_its_controlnet_in_every_mode(engine, models, mode: Mode) -> None:
    model, cn = models["flux"], models["flux-cn"]
    changes = {"mode": mode, "cfg_scale": 3.5, **MODES[mode]}
    plain = _pixels(engine.run(_request(model, **changes)))
    steered = engine.run(_request(model, Control(cn, _square()), **changes))
    assert np.abs(_pixels(steered) - plain).mean() > 1
    # diffusers' Flux ControlNet pipelines draw from the seed's generator to encode the
    # control image; the engine keeps the seed's noise, so no step steered = the plain picture
    late = Control(cn, _square(), start=0.95)
    assert np.abs(_pixels(engine.run(_request(model, late, **changes))) - plain).max() <= 1
    pipe = engine.models.controlled(model, mode, [engine.models.controlnets.loaded[cn]])
    assert type(pipe).__name__ == FLUX_PIPELINES[mode]
    assert pipe.transformer is engine.models.pipeline(model, Mode.TEXT_TO_IMAGE).transformer


FLUX_PIPELINES = {
    Mode.TEXT_TO_IMAGE: "FluxControlNetPipeline",
    Mode.IMAGE_TO_IMAGE: "FluxControlNetImg2ImgPipeline",
    Mode.INPAINT: "FluxControlNetInpaintPipeline",
}


def _sd3_with_two_blocks():
    """Tiny SD 3 with two blocks: SD 3 adds a ControlNet's residuals only to the blocks that
    are not the last (context_pre_only), which the one-block fixture does not have."""
    from diffusers import SD3ControlNetModel, SD3Transformer2DModel

    from tests.engine.tiny_families import make_pipeline

    pipe = make_pipeline("sd3")
    config = {k: v for k, v in pipe.transformer.config.items() if not k.startswith("_")}
    torch.manual_seed(0)
    pipe.register_modules(transformer=SD3Transformer2DModel(**{**config, "num_layers": 2}))
    network = SD3ControlNetModel.from_transformer(
        pipe.transformer, num_layers=1, num_extra_conditioning_channels=0
    )
    return pipe, network


def _qwen_image(folder):
    from diffusers import DiffusionPipeline, QwenImageControlNetModel

    pipe = DiffusionPipeline.from_pretrained(str(build("qwen_image", folder)))
    config = pipe.transformer.config
    torch.manual_seed(0)
    network = QwenImageControlNetModel.from_transformer(
        pipe.transformer,
        num_layers=1,
        attention_head_dim=config.attention_head_dim,
        num_attention_heads=config.num_attention_heads,
    )
    return pipe, network


@pytest.mark.parametrize("family", ["sd3", "qwen_image"])
def test_sd3_and_qwen_image_run_their_controlnets_in_text_to_image(family, tmp_path) -> None:
    engine = Engine()
    pipe, network = _sd3_with_two_blocks() if family == "sd3" else _qwen_image(tmp_path / "m")
    _loud(network)
    network.save_pretrained(tmp_path / "cn", safe_serialization=True)
    engine.models.adopt(f"tiny-{family}", pipe)
    cn = str(tmp_path / "cn")
    plain = _pixels(engine.run(_request(f"tiny-{family}", cfg_scale=4.0)))
    steered = engine.run(_request(f"tiny-{family}", Control(cn, _square()), cfg_scale=4.0))
    assert np.abs(_pixels(steered) - plain).mean() > 1
    late = Control(cn, _square(), start=0.95)
    late_pixels = _pixels(engine.run(_request(f"tiny-{family}", late, cfg_scale=4.0)))
    assert np.abs(late_pixels - plain).max() <= 1
    with pytest.raises(ModelError, match="no ControlNet pipeline for Image→Image"):
        engine.run(
            _request(
                f"tiny-{family}",
                Control(cn, _square()),
                mode=Mode.IMAGE_TO_IMAGE,
                init_image=_picture(),
            )
        )


def test_a_controlnet_of_another_family_is_refused_in_a_sentence(engine, models) -> None:
    for model, cn, said in (
        (models["sd1"], models["sdxl-cn"], "another kind of model than this SD 1.x one"),
        (models["sd1"], models["flux-cn"], "a ControlNet for Flux.1"),
        (models["flux"], models["sd1-cn"], "not for Flux.1 dev"),
    ):
        with pytest.raises(ModelError) as caught:
            engine.run(_request(model, Control(cn, _square())))
        assert said in str(caught.value) and "\n" not in str(caught.value)


def _sdxl_union(folder, unet, count: int = 6, heads: int = 2) -> str:
    from diffusers import ControlNetUnionModel

    torch.manual_seed(0)
    made = ControlNetUnionModel.from_unet(unet, conditioning_embedding_out_channels=(8, 8, 8, 16))
    width = unet.config.block_out_channels[0]  # the control-type transformer's, narrowed too
    narrow = {"num_control_type": count, "num_trans_channel": width, "num_proj_channel": width,
              "num_trans_head": heads}  # fmt: skip
    config = {k: v for k, v in made.config.items() if not k.startswith("_")}
    model = ControlNetUnionModel.from_config({**config, **narrow})
    own = model.state_dict()  # the UNet's encoder, copied
    copied = {k: v for k, v in made.state_dict().items() if v.shape == own[k].shape}
    model.load_state_dict(copied, strict=False)
    generator = torch.Generator().manual_seed(3)
    with torch.no_grad():  # loud: the zero layers and the control-type embeddings
        for name, parameter in model.named_parameters():
            if any(k in name for k in ("controlnet_", "task_", "control_add", "spatial_ch")):
                parameter.copy_(torch.randn(parameter.shape, generator=generator) * 0.3)
    model.save_pretrained(folder, safe_serialization=True)
    return str(folder)


def _flux_union(folder, transformer) -> str:
    from diffusers import FluxControlNetModel

    torch.manual_seed(0)
    made = FluxControlNetModel.from_transformer(
        transformer, num_layers=1, num_single_layers=1, attention_head_dim=16,
        num_attention_heads=2,
    )  # fmt: skip
    config = {k: v for k, v in made.config.items() if not k.startswith("_")}
    model = FluxControlNetModel.from_config({**config, "num_mode": 10})
    model.load_state_dict(made.state_dict(), strict=False)  # the mode embedding is new
    _loud(model)
    with torch.no_grad():
        model.controlnet_mode_embedder.weight.normal_(0, 10.0)  # a token the blocks heed
    model.save_pretrained(folder, safe_serialization=True)
    return str(folder)


@pytest.mark.parametrize("mode", list(MODES), ids=lambda m: m.value)
def test_sdxl_runs_a_union_controlnet_with_a_control_type_per_image(
    engine, models, tmp_path, mode: Mode
) -> None:
    from diffusers import DiffusionPipeline

    model = models["sdxl"]
    union = _sdxl_union(tmp_path / "union", DiffusionPipeline.from_pretrained(model).unet)
    changes = {"mode": mode, **MODES[mode]}
    plain = _pixels(engine.run(_request(model, **changes)))
    canny = _pixels(engine.run(_request(model, Control(union, _square(), control_type="canny"),
                                        **changes)))  # fmt: skip
    assert np.abs(canny - plain).mean() > 1
    told = _Told(engine.models.controlnets.loaded[union])
    for kind, number in (("depth", 1), ("pose", 0), ("softedge", 2)):  # ControlNet++'s numbers
        engine.run(_request(model, Control(union, _square(), control_type=kind), **changes))
        assert told.since_last() == {number}
    # no type: the preprocessor's (canny here), which is ControlNet++'s number 3 as "canny"
    by_preprocessor = Control(union, _square(), preprocessor="canny")
    preprocessed = _pixels(engine.run(_request(model, by_preprocessor, **changes)))
    typed = Control(union, _square(), preprocessor="canny", control_type="lineart")
    assert np.abs(_pixels(engine.run(_request(model, typed, **changes))) - preprocessed).max() <= 1
    zero = Control(union, _square(), scale=0.0, control_type="canny")
    assert np.abs(_pixels(engine.run(_request(model, zero, **changes))) - plain).max() <= 1
    network = engine.models.controlnets.loaded[union]
    pipe = engine.models.controlled(model, mode, [network])
    assert type(pipe).__name__ == SDXL_UNION_PIPELINES[mode]
    assert pipe.unet is engine.models.pipeline(model, Mode.TEXT_TO_IMAGE).unet


class _Told:
    """The control-type numbers a union ControlNet is given."""

    def __init__(self, network: torch.nn.Module) -> None:
        self.numbers: set[int] = set()
        network.register_forward_pre_hook(self._called, with_kwargs=True)

    def _called(self, module, args, kwargs) -> None:  # noqa: ANN001
        if "control_type_idx" in kwargs:  # SDXL's ControlNet++
            self.numbers.update(int(n) for n in kwargs["control_type_idx"])
        elif kwargs.get("controlnet_mode") is not None:  # Flux's union
            self.numbers.update(kwargs["controlnet_mode"].flatten().tolist())

    def since_last(self) -> set[int]:
        found, self.numbers = self.numbers, set()
        return found


SDXL_UNION_PIPELINES = {
    Mode.TEXT_TO_IMAGE: "StableDiffusionXLControlNetUnionPipeline",
    Mode.IMAGE_TO_IMAGE: "StableDiffusionXLControlNetUnionImg2ImgPipeline",
    Mode.INPAINT: "StableDiffusionXLControlNetUnionInpaintPipeline",
}


def test_two_images_on_sdxl_union_controlnets_and_types_they_do_not_know(
    engine, models, tmp_path
) -> None:
    from diffusers import DiffusionPipeline

    model = models["sdxl"]
    unet = DiffusionPipeline.from_pretrained(model).unet
    union = _sdxl_union(tmp_path / "union", unet)
    one = _pixels(engine.run(_request(model, Control(union, _square(), control_type="canny"))))
    both = engine.run(_request(model, Control(union, _square(), control_type="canny"),
                               Control(union, _circle(), 0.7, control_type="depth")))  # fmt: skip
    assert np.abs(_pixels(both) - one).mean() > 0.5
    # a tile image on a ControlNet++ of 6 types (tile is ProMax's 7th): refused in a sentence
    with pytest.raises(ModelError) as caught:
        engine.run(_request(model, Control(union, _square(), control_type="tile")))
    assert str(caught.value) == (
        f"ControlNet 1 ('{union}') is a union ControlNet that knows no control type 'tile': "
        "give it one of pose, depth, scribble, softedge, canny, lineart, mlsd, normal, segment."
    )
    promax = _sdxl_union(tmp_path / "promax", unet, count=8)
    tiled = _pixels(engine.run(_request(model, Control(promax, _square(), control_type="tile"))))
    assert np.abs(tiled - one).mean() > 0.5
    # a union and a plain ControlNet: SDXL runs them in different pipelines
    with pytest.raises(ModelError, match="union ControlNets and ControlNets of one control type"):
        engine.run(_request(model, Control(union, _square(), control_type="canny"),
                            Control(models["sdxl-cn"], _circle())))  # fmt: skip


def test_flux_runs_a_union_controlnet_with_its_control_mode(engine, models, tmp_path) -> None:
    from diffusers import DiffusionPipeline

    model = models["flux"]
    union = _flux_union(
        tmp_path / "flux-union", DiffusionPipeline.from_pretrained(model).transformer
    )
    changes = {"cfg_scale": 3.5}
    plain = _pixels(engine.run(_request(model, **changes)))
    canny = _pixels(engine.run(_request(model, Control(union, _square(), control_type="canny"),
                                        **changes)))  # fmt: skip
    assert np.abs(canny - plain).mean() > 1
    told = _Told(engine.models.controlnets.loaded[union])
    engine.run(_request(model, Control(union, _square(), control_type="depth"), **changes))
    assert told.since_last() == {2}  # the union's number for depth
    two = (Control(union, _square(), control_type="canny"),
           Control(union, _circle(), control_type="pose"))  # fmt: skip
    both = engine.run(_request(model, *two, **changes))
    assert np.abs(_pixels(both) - canny).mean() > 0.5
    assert told.since_last() == {0, 4}  # each image with its own
    # Flux's union ControlNets have no scribble: a map drawn as it is needs its type
    with pytest.raises(ModelError, match="knows no control type 'scribble' .its image taken"):
        engine.run(_request(model, Control(union, _square()), **changes))


def test_a_union_controlnet_for_another_family_is_refused(engine, models, tmp_path) -> None:
    union = tmp_path / "union"
    union.mkdir()
    config = json.loads((Path(models["sd1-cn"]) / "config.json").read_text())
    config["_class_name"] = "ControlNetUnionModel"
    config["num_control_type"] = 6
    (union / "config.json").write_text(json.dumps(config))
    with pytest.raises(ModelError) as caught:
        engine.run(_request(models["sd1"], Control(str(union), _square(), control_type="canny")))
    assert str(caught.value) == (
        f"'{union}' is a union ControlNet (one network for several control types) for SDXL, "
        "not for SD 1.x: use a ControlNet made for SD 1.x."
    )


def test_a_single_file_controlnet_loads_offline_from_the_models_unet(
    engine, models, tmp_path
) -> None:
    from diffusers import ControlNetModel, DiffusionPipeline
    from safetensors.torch import save_file

    # a file holds the default conditioning embedding (the UNet's config gives the rest)
    unet = DiffusionPipeline.from_pretrained(models["sd1"]).unet
    torch.manual_seed(0)
    network = ControlNetModel.from_unet(unet)
    _loud(network)
    path = tmp_path / "control_tiny_sd1.safetensors"
    save_file({k: v.contiguous() for k, v in network.state_dict().items()}, path)
    plain = _pixels(engine.run(_request(models["sd1"])))
    steered = engine.run(_request(models["sd1"], Control(str(path), _square())))
    assert np.abs(_pixels(steered) - plain).mean() > 1
    broken = tmp_path / "broken.safetensors"
    broken.write_bytes(b"not a safetensors file")
    with pytest.raises(ModelError, match="not a readable"):
        engine.run(_request(models["sd1"], Control(str(broken), _square())))


def test_a_plain_and_a_union_controlnet_copy_the_unets_settings_by_one_rule() -> None:
    """A single-file SD ControlNet's config (_config_from_unet) and a union one's
    (_fit_sdxl_union) take of the loaded UNet's config the settings their class takes, and
    4 input channels even from an inpainting UNet's 9."""
    from types import SimpleNamespace

    from studio.engine.controlnets import _config_from_unet, _fit_sdxl_union

    own = {"_class_name": "UNet2DConditionModel", "in_channels": 9, "out_channels": 4,
           "sample_size": 8, "block_out_channels": [32, 64], "cross_attention_dim": 48}  # fmt: skip
    state = {"task_embedding": torch.zeros(6, 16), "spatial_ch_projs.weight": torch.zeros(16, 16),
             "transformer_layes.0.weight": torch.zeros(1)}  # fmt: skip
    plain = _config_from_unet(SimpleNamespace(config=own))
    union = _fit_sdxl_union({"in_channels": 4, "num_control_type": 8}, state, dict(own))
    for config in (plain, union):
        assert config["in_channels"] == 4 and config["block_out_channels"] == [32, 64]
        assert config["cross_attention_dim"] == 48
        assert "out_channels" not in config and "sample_size" not in config
    assert plain["_class_name"] == "ControlNetModel"
    assert (union["num_control_type"], union["num_trans_channel"]) == (6, 16)


@pytest.mark.parametrize("family", ["sdxl", "flux"])
def test_a_single_file_union_controlnet_loads_offline_as_its_folder(
    engine, models, tmp_path, family: str
) -> None:
    """xinsir's ControlNet++ (diffusion_pytorch_model_promax.safetensors) and InstantX's Flux.1
    union ControlNet are published in these tensor names: the file alone, renamed as a
    models folder keeps it, loads with the shipped config fitted to its tensors."""
    import shutil

    from diffusers import DiffusionPipeline

    model = models[family]
    base = DiffusionPipeline.from_pretrained(model)
    if family == "sdxl":  # ProMax's 8 types; the published model's 8 heads (not in a file)
        folder = _sdxl_union(tmp_path / "union", base.unet, count=8, heads=8)
    else:
        folder = _flux_union(tmp_path / "union", base.transformer)
    path = tmp_path / f"controlnet-union-{family}.safetensors"
    shutil.copy(Path(folder) / "diffusion_pytorch_model.safetensors", path)
    changes = {"cfg_scale": 3.5} if family == "flux" else {}
    plain = _pixels(engine.run(_request(model, **changes)))
    from_folder = _pixels(
        engine.run(_request(model, Control(folder, _square(), control_type="tile"), **changes))
    )
    from_file = _pixels(
        engine.run(_request(model, Control(str(path), _square(), control_type="tile"), **changes))
    )
    assert np.array_equal(from_file, from_folder) and np.abs(from_file - plain).mean() > 1
    loaded = engine.models.controlnets.loaded[str(path)]
    assert type(loaded).__name__ == ("ControlNetUnionModel" if family == "sdxl" else
                                     "FluxControlNetModel")  # fmt: skip
    assert union_types(loaded) == union_types(type(loaded).from_pretrained(folder))
    if family == "sdxl":  # a union file for another family: refused before its weights load
        with pytest.raises(ModelError) as caught:
            engine.run(_request(models["sd1"], Control(str(path), _square())))
        assert str(caught.value) == (
            f"'{path}' is a union ControlNet (one network for several control types) for "
            "SDXL, not for SD 1.x: use a ControlNet made for SD 1.x."
        )


def _sd35_controlnet(transformer):  # noqa: ANN001, ANN202
    """A tiny SD 3.5 ControlNet as Stability's: blocks of its own with no text stream, the
    transformer's patch embedder borrowed, the pooled text kept."""
    from diffusers import SD3ControlNetModel

    config = transformer.config
    torch.manual_seed(0)
    return SD3ControlNetModel(
        patch_size=config.patch_size, in_channels=config.in_channels,
        out_channels=config.in_channels, num_layers=1, joint_attention_dim=None,
        num_attention_heads=config.num_attention_heads,
        attention_head_dim=config.attention_head_dim,
        pooled_projection_dim=config.pooled_projection_dim, pos_embed_max_size=None,
        pos_embed_type=None, use_pos_embed=False, force_zeros_for_pooled_projection=False,
    )  # fmt: skip


def _as_stability_published(state: dict) -> dict:
    """An SD 3.5 ControlNet's tensors in the layout of Stability's sd3.5_large_controlnet_*
    files (SD 3's original block names, fused qkv, the control type's number)."""
    names = {".norm1.linear.": ".adaLN_modulation.1.", ".attn.to_out.0.": ".attn.proj.",
             ".ff.net.0.proj.": ".mlp.fc1.", ".ff.net.2.": ".mlp.fc2."}  # fmt: skip
    found = {"control_type": torch.tensor(1.0)}  # canny
    for key, value in state.items():
        if ".attn.to_q." in key:
            parts = [state[key.replace("to_q", f"to_{p}")] for p in "qkv"]
            found[key.replace(".attn.to_q.", ".attn.qkv.")] = torch.cat(parts)
        elif ".attn.to_k." not in key and ".attn.to_v." not in key:
            for new, old in names.items():
                key = key.replace(new, old)
            found[key] = value
    return found


@pytest.mark.parametrize("family", ["sd3", "qwen_image", "z_image"])
def test_a_single_file_transformer_controlnet_loads_offline_as_its_folder(family, tmp_path) -> None:
    """The files artists download: Stability's sd3.5_large_controlnet_canny.safetensors
    (original layout), InstantX's Qwen-Image ControlNets (diffusers' names in one file),
    Alibaba's Z-Image-Turbo-Fun-Controlnet-Union-2.1.safetensors (2.1: a control noise
    refiner, the mask and the masked picture after the control image) load with the shipped
    config fitted to their tensors and give the folder's pixels."""
    from diffusers import DiffusionPipeline
    from safetensors.torch import save_file

    engine = Engine()
    if family == "z_image":
        from diffusers import ZImageControlNetModel

        pipe = DiffusionPipeline.from_pretrained(str(build("z_image", tmp_path / "m")))
        config = pipe.transformer.config
        torch.manual_seed(0)
        network = ZImageControlNetModel(
            control_layers_places=[0], control_refiner_layers_places=[0],
            add_control_noise_refiner="control_noise_refiner", control_in_dim=2 * 16 + 1,
            dim=config.dim, n_heads=config.n_heads, n_kv_heads=config.n_kv_heads,
            n_refiner_layers=config.n_refiner_layers, all_patch_size=(2,), all_f_patch_size=(1,),
        )  # fmt: skip
    elif family == "sd3":
        pipe, _ = _sd3_with_two_blocks()
        network = _sd35_controlnet(pipe.transformer)
    else:
        pipe, network = _qwen_image(tmp_path / "m")
    _loud(network)
    with torch.no_grad():  # loud: the condition's input layers and projections too
        for name, parameter in network.named_parameters():
            if name.startswith(("pos_embed_input", "controlnet_x_embedder")) or "_proj" in name:
                parameter.normal_(0, 0.5, generator=torch.Generator().manual_seed(1))
    network.save_pretrained(tmp_path / "cn", safe_serialization=True)
    state = dict(network.state_dict())
    state = _as_stability_published(state) if family == "sd3" else state
    path = tmp_path / f"{family}-controlnet.safetensors"
    save_file({k: v.contiguous() for k, v in state.items()}, path)
    model, changes = f"tiny-{family}", {"cfg_scale": 3.0 if family == "z_image" else 4.0}
    engine.models.adopt(model, pipe)
    plain = _pixels(engine.run(_request(model, **changes)))
    folder = _pixels(
        engine.run(_request(model, Control(str(tmp_path / "cn"), _square()), **changes))
    )
    from_file = _pixels(engine.run(_request(model, Control(str(path), _square()), **changes)))
    assert np.array_equal(from_file, folder) and np.abs(from_file - plain).mean() > 1
    loaded = engine.models.controlnets.loaded[str(path)]
    assert type(loaded) is type(network)
    other = tmp_path / "other.safetensors"  # a file of no ControlNet: one sentence
    save_file({"weight": torch.zeros(2)}, other)
    with pytest.raises(ModelError) as caught:
        engine.run(_request(model, Control(str(other), _square()), **changes))
    label = {"sd3": "SD 3.x", "qwen_image": "Qwen-Image", "z_image": "Z-Image"}[family]
    assert str(caught.value) == (
        f"'{other}' is no ControlNet file the studio knows for {label} (its tensors are none of "
        f"a {label} ControlNet's): use the ControlNet's diffusers folder, or a file of a "
        "ControlNet made for it."
    )


def test_controls_are_validated_in_sentences() -> None:
    bad = GenerationRequest(
        prompt="x",
        controls=(
            Control("cn", None),
            Control("cn", _square(), scale=3.0),
            Control("cn", _square(), start=0.6, end=0.4),
            Control("cn", _square(), preprocessor="depth"),
            Control("cn", _square(), control_type="sketch"),
        ),
    )
    problems = bad.problems()
    assert any(p.startswith("ControlNet 5's control type 'sketch' is unknown") for p in problems)
    assert "ControlNet 1 has no control image: draw, open or paste one." in problems
    assert any(
        p.startswith("ControlNet 2: a ControlNet's conditioning scale must be") for p in problems
    )
    assert any(p.startswith("ControlNet 3 acts from 0.6 to 0.4") for p in problems)
    assert any("'depth' is unknown" in p for p in problems)
    with pytest.raises(RequestError):
        bad.validate()
    assert GenerationRequest(prompt="x", controls=(Control("cn", _square()),)).problems() == []


def test_the_metadata_records_each_controlnet_as_a1111_does() -> None:
    from studio.metadata.a1111 import format_a1111

    request = GenerationRequest(
        prompt="x",
        controls=(
            Control("/models/ControlNet/control_v11p_sd15_canny.safetensors", _square(),
                    preprocessor="canny"),
            Control("lllyasviel/control_v11p_sd15_lineart", _square(), 0.5, 0.1, 0.8, "lineart"),
            Control("xinsir/controlnet-union-sdxl-1.0", _square(), control_type="depth"),
        ),
    )  # fmt: skip
    parameters = parameters_of(request, 5, _square())
    assert parameters.extras["ControlNet 0"] == (
        "Module: canny, Model: control_v11p_sd15_canny, Weight: 1, Guidance Start: 0, "
        "Guidance End: 1"
    )
    assert parameters.extras["ControlNet 1"] == (
        "Module: lineart_standard, Model: control_v11p_sd15_lineart, Weight: 0.5, "
        "Guidance Start: 0.1, Guidance End: 0.8"
    )
    text = format_a1111(parameters)
    assert 'ControlNet 0: "Module: canny, Model: control_v11p_sd15_canny, Weight: 1' in text
    # the studio's own request keeps the control parameters, not the image
    data = json.loads(json.dumps(request.to_dict()))
    assert data["controls"][1] == {
        "model": "lllyasviel/control_v11p_sd15_lineart",
        "scale": 0.5,
        "start": 0.1,
        "end": 0.8,
        "preprocessor": "lineart",
    }
    assert data["controls"][2]["control_type"] == "depth"  # a union ControlNet's image type
    restored = GenerationRequest.from_dict(data)
    assert restored.controls[1] == request.controls[1] and restored.controls[1].image is None
    assert restored.controls[2].control_type == "depth"


def test_a_union_controlnets_control_type_is_saved_and_restored(tmp_path) -> None:
    from studio.core.restore import plan_restore
    from studio.core.saving import save_image
    from studio.metadata import read_parameters
    from studio.metadata.a1111 import parse_a1111

    controls = (
        Control("xinsir/controlnet-union-sdxl-1.0", _square(), control_type="depth"),
        Control("/cn/controlnet-union-sdxl.safetensors", _circle(), 0.6, 0.0, 0.8, "canny",
                "lineart"),  # one of A1111's group "Hard Edge", kept exactly
        Control("InstantX/FLUX.1-dev-Controlnet-Union", _square(), control_type="low-quality"),
        Control("control_v11p_sd15_canny.safetensors", _square(), preprocessor="canny"),
    )  # fmt: skip
    request = GenerationRequest(prompt="a red circle", controls=controls)
    path = save_image(_square(), request, 5, tmp_path)
    text = Image.open(path).text["parameters"]  # what every other tool reads
    assert (
        'ControlNet 0: "Module: none, Model: controlnet-union-sdxl-1.0, Weight: 1, '
        'Guidance Start: 0, Guidance End: 1, Union Control Type: Depth"' in text
    )
    assert "Guidance End: 0.8, Union Control Type: Hard Edge, Studio Control Type: lineart" in text
    assert "Union Control Type: Unknown, Studio Control Type: low-quality" in text
    assert (  # no type chosen: none written
        'ControlNet 3: "Module: canny, Model: control_v11p_sd15_canny, Weight: 1, '
        'Guidance Start: 0, Guidance End: 1"' in text
    )
    # the parameters name a model by its file's or repository's name
    names = ("controlnet-union-sdxl-1.0", "controlnet-union-sdxl",
             "FLUX.1-dev-Controlnet-Union", "control_v11p_sd15_canny")  # fmt: skip
    wanted = [{**c.to_dict(), "model": n} for c, n in zip(controls, names, strict=True)]
    # the studio's own file gives every field back; the parameters alone give the same
    # (but a model's name), A1111's own names for the types included
    assert plan_restore(read_parameters(path)).values["controls"] == [c.to_dict() for c in controls]
    assert plan_restore(parse_a1111(text)).values["controls"] == wanted
    a1111 = parse_a1111(
        'x\nSteps: 20, ControlNet 0: "Module: none, Model: controlnet-union'
        '-sdxl-1.0 [0ba4fd21], Weight: 1, Union Control Type: OpenPose"'
    )
    assert plan_restore(a1111).values["controls"] == [
        {"model": "controlnet-union-sdxl-1.0", "preprocessor": "none", "scale": 1.0,
         "control_type": "pose"}
    ]  # fmt: skip


def test_the_command_line_takes_control_groups(tmp_path) -> None:
    from studio.cli import build_parser

    args = build_parser().parse_args(
        ["generate", "x", "--control", "a.png", "--control-scale", "0.5",
         "--control-range", "0.1:0.7", "--control-model", "cn1",
         "--control", "b.png", "--control-preprocessor", "canny", "--steps", "3",
         "--control", "c.png", "--control-type", "depth"]
    )  # fmt: skip
    assert args.controls == [
        {"image": Path("a.png"), "scale": 0.5, "range": (0.1, 0.7), "model": "cn1"},
        {"image": Path("b.png"), "preprocessor": "canny"},
        {"image": Path("c.png"), "control_type": "depth"},
    ]
    assert build_parser().parse_args(["generate", "x"]).controls == []


@pytest.mark.parametrize(
    "argv, said",
    [
        (["--control-scale", "0.5", "--control", "a.png"], "goes after the --control IMAGE"),
        (["--control", "a.png", "--control-scale", "1", "--control-scale", "2"], "given twice"),
        (["--control", "a.png", "--control-range", "0.5"], "is not START:END"),
        (["--control", "a.png", "--control-preprocessor", "depth"], "invalid choice"),
        (["--control", "a.png", "--control-type", "sketch"], "invalid choice"),
    ],
)
def test_misplaced_control_options_are_one_line(argv, said, capsys) -> None:
    from studio.cli import main

    with pytest.raises(SystemExit) as exited:
        main(["generate", "x", *argv])
    assert exited.value.code == 2
    err = capsys.readouterr().err
    assert said in err and err.count("\n") == 1


def test_generate_with_a_controlnet_from_the_command_line(models, tmp_path, capsys) -> None:
    from studio.cli import main
    from studio.metadata import read_parameters

    control = tmp_path / "square.png"
    _square().save(control)
    target = tmp_path / "out.png"
    common = ["generate", "a red circle", "--steps", "2", "--width", "64", "--height", "64",
              "--seed", "3"]  # fmt: skip
    code = main([*common, "--model", models["sd1"], "--out", str(target),
                 "--control", str(control), "--control-model", models["sd1-cn"],
                 "--control-scale", "0.8", "--control-range", "0:0.5",
                 "--control-preprocessor", "canny"])  # fmt: skip
    assert code == 0, capsys.readouterr().err
    parameters = read_parameters(target)
    assert parameters.extras["ControlNet 0"] == (
        "Module: canny, Model: sd1-cn, Weight: 0.8, Guidance Start: 0, Guidance End: 0.5"
    )
    capsys.readouterr()
    # with the embedded model and no --control-model, its own ControlNet
    embedded = tmp_path / "embedded.png"
    assert main([*common, "--control", str(control), "--out", str(embedded)]) == 0
    assert "Model: studio-tiny-controlnet," in read_parameters(embedded).extras["ControlNet 0"]


def test_a_hub_controlnet_comes_from_the_local_cache_only(
    engine, models, tmp_path, monkeypatch
) -> None:
    import shutil

    from huggingface_hub import constants

    snapshot = tmp_path / "models--studio-test--tiny-cn" / "snapshots" / "0123abcd"
    shutil.copytree(models["sd1-cn"], snapshot)
    (tmp_path / "models--studio-test--tiny-cn" / "refs").mkdir()
    (tmp_path / "models--studio-test--tiny-cn" / "refs" / "main").write_text("0123abcd")
    monkeypatch.setattr(constants, "HF_HUB_CACHE", str(tmp_path))
    plain = _pixels(engine.run(_request(models["sd1"])))
    steered = engine.run(_request(models["sd1"], Control("studio-test/tiny-cn", _square())))
    assert np.abs(_pixels(steered) - plain).mean() > 1
    with pytest.raises(ModelError, match="is not in the local Hugging Face cache"):
        engine.run(_request(models["sd1"], Control("studio-test/absent-cn", _square())))


def test_inpainting_only_the_masked_area_cuts_the_control_image_to_it(engine, models) -> None:
    from studio.engine.controlnets import ControlCall

    model, cn = models["sd1"], models["sd1-cn"]
    changes = {**MODES[Mode.INPAINT], "mode": Mode.INPAINT, "inpaint_only_masked": True}
    changes["inpaint_padding"] = 0
    plain = _pixels(engine.run(_request(model, **changes)))
    steered = _pixels(engine.run(_request(model, Control(cn, _square()), **changes)))
    assert np.abs(steered - plain).mean() > 1
    # the box is in the canvas's pixels: a control image of twice its size is cut alike
    big = _square().resize((2 * SIZE, 2 * SIZE), Image.Resampling.NEAREST)
    call = ControlCall([Control(cn, big)], "control_image")
    cut = call.arguments(SIZE, SIZE, box=(8, 8, 24, 24), canvas=(SIZE, SIZE))["control_image"]
    corner = np.asarray(cut.convert("L"), np.int16)
    assert corner[:28, :28].max() < 60 and corner[36:, 36:].min() > 200  # black, then white


def test_every_declared_controlnet_class_is_in_diffusers() -> None:
    import diffusers

    from studio.core import families

    declared = [f for f in families.all_families() if f.controlnet_pipelines]
    assert {f.name for f in declared} >= {"sd1", "sd2", "sdxl", "sd3", "flux-dev", "qwen-image"}
    for family in declared:
        assert set(family.controlnet_pipelines) <= set(family.pipelines)
        for name in (
            *family.controlnet_pipelines.values(),
            *family.controlnet_models,
            *family.controlnet_unions,
        ):
            assert hasattr(diffusers, name), (family.name, name)


def test_a_controlnet_of_another_size_is_refused_naming_its_file(engine, models, tmp_path) -> None:
    from diffusers import ControlNetModel, DiffusionPipeline, FluxControlNetModel

    sd1, flux = (DiffusionPipeline.from_pretrained(models[f]) for f in ("sd1", "flux"))
    halves_twice = ControlNetModel.from_unet(
        sd1.unet, conditioning_embedding_out_channels=(8, 8, 16)
    )
    config = {**dict(sd1.unet.config), "layers_per_block": 2}
    deeper = ControlNetModel.from_unet(
        type(sd1.unet).from_config(config), conditioning_embedding_out_channels=(8, 8, 8, 16)
    )
    narrower = FluxControlNetModel.from_transformer(
        flux.transformer, num_layers=1, num_single_layers=1, attention_head_dim=8,
        num_attention_heads=2, load_weights_from_transformer=False,
    )  # fmt: skip
    for model, network, name, said in (
        (models["sd1"], halves_twice, "cn-4x", "brings control images down 4× but this SD 1.x "
         "model's latents are 8× smaller"),
        (models["sd1"], deeper, "cn-deeper", "its layers per block is 2, the model's 1"),
        (models["flux"], narrower, "cn-narrow", "its inner width is 16, the model's 32"),
    ):  # fmt: skip
        folder = tmp_path / name
        network.save_pretrained(folder, safe_serialization=True)
        with pytest.raises(ModelError) as caught:
            engine.run(_request(model, Control(str(folder), _square())))
        message = str(caught.value)
        assert f"'{folder}'" in message and said in message, message
        assert "use a ControlNet made for" in message and "\n" not in message


def test_the_hires_pass_runs_the_controlnets_too(engine, models) -> None:
    from studio.core.request import Upscaler

    model, cn = models["sd1"], models["sd1-cn"]
    hires = {"upscaler": Upscaler.HIRES, "upscale_strength": 0.6}

    def hires_alone(picture: Image.Image) -> np.ndarray:
        """The hires pass of this picture with no ControlNet: an upscale job's hires fix."""
        job = _request(model, mode=Mode.UPSCALE, init_image=picture, **hires)
        return _pixels(engine.run(job))

    plain = engine.run(_request(model, **hires))
    # the way of comparing holds: with no ControlNet, the same pass on the same picture
    assert np.abs(_pixels(plain) - hires_alone(engine.run(_request(model)).images[0])).max() <= 1
    first = engine.run(_request(model, Control(cn, _square())))
    steered = engine.run(_request(model, Control(cn, _square()), **hires))
    assert steered.images[0].size == (2 * SIZE, 2 * SIZE)
    assert np.abs(_pixels(steered) - hires_alone(first.images[0])).mean() > 1
    stages = engine.models.controlled(
        model, Mode.IMAGE_TO_IMAGE, [engine.models.controlnets.loaded[cn]]
    )
    assert type(stages).__name__ == "StableDiffusionControlNetImg2ImgPipeline"


def test_a_hires_pass_without_an_image_to_image_controlnet_pipeline_says_so(tmp_path) -> None:
    from studio.core.request import Upscaler

    engine = Engine()
    pipe, network = _sd3_with_two_blocks()
    _loud(network)
    network.save_pretrained(tmp_path / "cn", safe_serialization=True)
    engine.models.adopt("tiny-sd3", pipe)
    reporter = RecordingReporter()
    job = _request("tiny-sd3", Control(str(tmp_path / "cn"), _square()), cfg_scale=4.0,
                   upscaler=Upscaler.HIRES, steps=2)  # fmt: skip
    result = engine.run(job, reporter)
    assert result.images[0].size == (2 * SIZE, 2 * SIZE)
    said = "SD 3.x models have no image→image ControlNet pipeline in diffusers: the hires fix "
    assert any(message.startswith(said) for message, _ in reporter.statuses)


def _z_image_controlnet(config, inputs: int):  # noqa: ANN001, ANN202
    """A tiny Z-Image ControlNet for the transformer of this config: `inputs` its control
    input's channels (the first version: the latents'; 2.x: then the mask's and the masked
    picture's latents)."""
    from diffusers import ZImageControlNetModel

    torch.manual_seed(0)
    network = ZImageControlNetModel(
        control_layers_places=[0], control_in_dim=inputs, dim=config.dim,
        n_heads=config.n_heads, n_kv_heads=config.n_kv_heads,
        n_refiner_layers=config.n_refiner_layers, all_patch_size=tuple(config.all_patch_size),
        all_f_patch_size=tuple(config.all_f_patch_size),
    )  # fmt: skip
    generator = torch.Generator().manual_seed(7)
    with torch.no_grad():  # loud: its zero-initialised projections too
        for key, parameter in network.named_parameters():
            if "_proj" in key:
                parameter.copy_(torch.randn(parameter.shape, generator=generator) * 0.5)
    return network


def test_z_image_runs_its_controlnet_in_text_to_image(engine, tmp_path) -> None:
    """Z-Image's ControlNets borrow the transformer's embedders (the pipeline joins them);
    its pipeline acts at every step and runs one ControlNet, which the studio says in
    sentences; diffusers has no image→image one."""
    from diffusers import DiffusionPipeline

    model = str(build("z_image", tmp_path / "z"))
    config = DiffusionPipeline.from_pretrained(model).transformer.config

    def controlnet(name: str, inputs: int) -> str:
        _z_image_controlnet(config, inputs).save_pretrained(tmp_path / name)
        return str(tmp_path / name)

    plain = _pixels(engine.run(_request(model, cfg_scale=3.0)))
    # the first version (the control image's latents alone) and 2.0 (then the mask's and
    # the picture's, zeros in text→image)
    for name, inputs in (("v1", config.in_channels), ("v2", 2 * config.in_channels + 1)):
        cn = controlnet(name, inputs)
        steered = _pixels(engine.run(_request(model, Control(cn, _square()), cfg_scale=3.0)))
        assert np.abs(steered - plain).mean() > 1, name
        zero = Control(cn, _square(), scale=0.0)
        assert np.abs(_pixels(engine.run(_request(model, zero, cfg_scale=3.0))) - plain).max() <= 1
    pipe = engine.models.controlled(
        model, Mode.TEXT_TO_IMAGE, [engine.models.controlnets.loaded[cn]]
    )
    assert type(pipe).__name__ == "ZImageControlNetPipeline"
    assert pipe.transformer is engine.models.pipeline(model, Mode.TEXT_TO_IMAGE).transformer
    with pytest.raises(ModelError) as caught:
        engine.run(_request(model, Control(cn, _square(), start=0.2), cfg_scale=3.0))
    assert str(caught.value) == (
        "Z-Image's ControlNet pipeline acts at every step: set ControlNet 1's range to all of "
        "the steps (0 to 1)."
    )
    with pytest.raises(ModelError, match="one ControlNet at a time"):
        engine.run(_request(model, Control(cn, _square()), Control(cn, _circle()), cfg_scale=3.0))
    img2img = {"mode": Mode.IMAGE_TO_IMAGE, "cfg_scale": 3.0, **MODES[Mode.IMAGE_TO_IMAGE]}
    with pytest.raises(ModelError, match="no ControlNet pipeline for Image→Image"):
        engine.run(_request(model, Control(cn, _square()), **img2img))


@pytest.mark.parametrize("family", ["sd3", "qwen_image", "z_image"])
def test_sd3_qwen_image_and_z_image_inpaint_with_an_inpainting_controlnet(family, tmp_path) -> None:
    """Their inpainting ControlNets (an extra mask channel: alimama's SD 3, InstantX's
    Qwen-Image; Z-Image's 2.x: the mask's and the masked picture's latents) run in
    diffusers' ControlNet inpainting pipelines, derived from the model."""
    from diffusers import DiffusionPipeline, QwenImageControlNetModel, SD3ControlNetModel

    engine = Engine()
    if family == "z_image":
        pipe = DiffusionPipeline.from_pretrained(str(build("z_image", tmp_path / "m")))
        config = pipe.transformer.config
        network = _z_image_controlnet(config, 2 * config.in_channels + 1)
    elif family == "sd3":
        pipe, _ = _sd3_with_two_blocks()
        torch.manual_seed(0)
        network = SD3ControlNetModel.from_transformer(
            pipe.transformer, num_layers=1, num_extra_conditioning_channels=1
        )
    else:
        pipe, _ = _qwen_image(tmp_path / "m")
        config = pipe.transformer.config
        torch.manual_seed(0)
        network = QwenImageControlNetModel.from_transformer(
            pipe.transformer, num_layers=1, attention_head_dim=config.attention_head_dim,
            num_attention_heads=config.num_attention_heads, extra_condition_channels=4,
        )  # fmt: skip  # the mask's channel, packed 2×2
    _loud(network)
    with torch.no_grad():  # loud: the condition's input layer (zero-initialised) too
        for name, parameter in network.named_parameters():
            if name.startswith(("pos_embed_input", "controlnet_x_embedder")):
                parameter.normal_(0, 1.0, generator=torch.Generator().manual_seed(1))
    network.save_pretrained(tmp_path / "cn", safe_serialization=True)
    model, cn = f"tiny-{family}", str(tmp_path / "cn")
    engine.models.adopt(model, pipe)
    inpaint = {"mode": Mode.INPAINT, "cfg_scale": 4.0, "mask_blur": 0, **MODES[Mode.INPAINT]}
    plain = _pixels(engine.run(_request(model, **inpaint)))
    # the control image is the picture (as the artist's "From picture" makes it): the
    # ControlNet sees it with the masked area blanked, and the mask
    picture = _pixels(engine.run(_request(model, Control(cn, _picture()), **inpaint)))
    circle = _pixels(engine.run(_request(model, Control(cn, _circle()), **inpaint)))
    inside = np.asarray(_mask()) > 0
    assert np.abs(picture - plain)[inside].mean() > 1
    # SD 3's and Qwen-Image's ControlNets see the control image with the hole blanked: another
    # picture around the hole reaches the hole through attention only. Tiny SD 3 carries it
    # well; tiny Qwen-Image (one block each, 2 heads) barely (a level at most), but it does
    # at a quarter of them. Z-Image's sees the whole control image (the picture blanked)
    changed = np.abs(picture - circle)[inside]
    assert changed.mean() > 1 if family != "qwen_image" else (changed > 0).mean() > 0.05
    original = np.asarray(_picture(), np.int16)
    for pixels in (picture, circle):  # the rest of the picture is kept exactly
        assert np.array_equal(pixels[~inside], original[~inside])
    zero = Control(cn, _square(), scale=0.0)  # not run: the plain inpaint pipeline's pixels
    assert np.abs(_pixels(engine.run(_request(model, zero, **inpaint))) - plain).max() <= 1
    # The inpainting ControlNet's pipeline repaints from noise and leaves the unmasked latents
    # free (the ControlNet alone holds them to the picture), where the plain one holds them
    # to the picture's at each step: acting at no step, it is not the plain inpaint but the
    # text→image picture of the seed, inside the mask
    # text→image picture of the seed, inside the mask. Z-Image's acts at every step: a
    # weight of almost 0 stands for no step there
    faint = {"scale": 1e-6} if family == "z_image" else {"start": 0.95}
    late = _pixels(engine.run(_request(model, Control(cn, _picture(), **faint), **inpaint)))
    free = _pixels(engine.run(_request(model, cfg_scale=4.0)))
    assert np.abs(late - free)[inside].max() <= 1
    assert np.abs(picture - late)[inside].mean() > 1  # so the ControlNet's steps steered
    pipeline = engine.models.controlled(model, Mode.INPAINT, [engine.models.controlnets.loaded[cn]])
    assert type(pipeline).__name__ == INPAINTING_PIPELINES[family]
    assert pipeline.transformer is engine.models.pipeline(model, Mode.TEXT_TO_IMAGE).transformer
    if family == "z_image":  # 2.x runs in text→image too (zeros for the mask and picture)
        first = tmp_path / "v1"  # the first version takes no mask: refused before it is joined
        _z_image_controlnet(config, config.in_channels).save_pretrained(first)
        with pytest.raises(ModelError) as caught:
            engine.run(_request(model, Control(str(first), _picture()), **inpaint))
        assert str(caught.value) == (
            f"Z-Image inpaints with inpainting ControlNets only (they take the mask): "
            f"ControlNet 1 ('{first}') is not one. Use an inpainting ControlNet, or inpaint "
            "without ControlNets."
        )
        return
    # and nowhere else: its condition has the mask's channel
    with pytest.raises(ModelError) as caught:
        engine.run(_request(model, Control(cn, _square()), cfg_scale=4.0))
    assert str(caught.value) == (
        f"ControlNet 1 ('{cn}') is an inpainting ControlNet: it runs in Inpaint mode only, not "
        "in Text→Image."
    )


INPAINTING_PIPELINES = {
    "sd3": "StableDiffusion3ControlNetInpaintingPipeline",
    "qwen_image": "QwenImageControlNetInpaintPipeline",
    "z_image": "ZImageControlNetInpaintPipeline",
}


def test_the_metadata_says_a_union_type_only_where_a_union_controlnet_ran_it(
    tmp_path,
    engine,
    models,  # noqa: ANN001
) -> None:
    """A control layer made by Canny carries its type; a ControlNet of one type runs it
    as it is, so the saved parameters name no union type (A1111's reader would set one)."""
    from studio.core.saving import save_image

    control = Control(models["sd1-cn"], _square(), control_type="canny")
    result = engine.run(_request(models["sd1"], control))
    assert [s.union_types for s in result.stages] == [("",)]
    path = save_image(
        result.images[0], result.request, result.seeds[0], tmp_path, stages=result.stages
    )
    text = Image.open(path).text["parameters"]
    assert "ControlNet 0:" in text and "Union Control Type" not in text


def test_an_inpaint_that_ran_no_strength_records_none() -> None:
    """An inpainting ControlNet's pipeline repaints from noise: the strength on the panel
    did not act, and the saved parameters do not claim it did."""
    from studio.core.jobs import Stage
    from studio.core.saving import parameters_of

    request = GenerationRequest(prompt="a cat", mode=Mode.INPAINT, strength=0.5)
    ran = {"name": "generate", "model": "m", "scheduler": "Euler", "steps": 20,
           "cfg_scale": 4.0, "width": 64, "height": 64}  # fmt: skip
    image = Image.new("RGB", (64, 64))
    assert parameters_of(request, 1, image, [Stage(**ran, strength=0.5)]).strength == 0.5
    assert parameters_of(request, 1, image, [Stage(**ran)]).strength is None


def test_a_scaled_original_layout_controlnet_file_is_read_with_its_scales(
    tmp_path, monkeypatch
) -> None:
    """An A1111/ComfyUI-layout ControlNet in ComfyUI's scaled fp8 reaches diffusers'
    from_single_file with its weights multiplied by their scales, and one in a format the
    studio cannot read (nvfp4) is refused in a sentence."""
    from types import SimpleNamespace

    import diffusers
    from safetensors.torch import save_file

    from studio.core import families
    from studio.engine.controlnets import Source, _load_file

    given: dict = {}
    monkeypatch.setattr(
        diffusers.ControlNetModel, "from_single_file",
        lambda checkpoint, **kwargs: given.setdefault("checkpoint", checkpoint),
    )  # fmt: skip
    family = families.by_name("sd1")
    network = SimpleNamespace(config={"block_out_channels": [32, 64], "cross_attention_dim": 48})
    stored = torch.tensor([[1.0, 2.0], [3.0, 4.0]])
    path = tmp_path / "control_scaled.safetensors"
    save_file({"input_hint_block.0.weight": stored.to(torch.float8_e4m3fn),
               "input_hint_block.0.scale_weight": torch.tensor(0.5),
               "scaled_fp8": torch.zeros(0, dtype=torch.float8_e4m3fn)}, path)  # fmt: skip
    _load_file(Source(str(path), "file", path), torch.float32, family, network, 8)
    assert torch.equal(given["checkpoint"]["input_hint_block.0.weight"], stored * 0.5)
    nvfp4 = tmp_path / "control_nvfp4.safetensors"
    quant = torch.tensor(list(b'{"format": "nvfp4"}'), dtype=torch.uint8)
    save_file({"input_hint_block.0.weight": torch.zeros(2, 1, dtype=torch.uint8),
               "input_hint_block.0.weight_scale": torch.ones(2, 1),
               "input_hint_block.0.comfy_quant": quant}, nvfp4)  # fmt: skip
    with pytest.raises(ModelError, match="'control_nvfp4.safetensors' is quantised in .*nvfp4"):
        _load_file(Source(str(nvfp4), "file", nvfp4), torch.float32, family, network, 8)
