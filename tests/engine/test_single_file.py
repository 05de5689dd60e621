"""Single-file checkpoints load with no network (studio.engine.single_file).

Tiny checkpoints are written in the ORIGINAL layouts (CompVis/A1111/kohya `model.diffusion_model.`,
`first_stage_model.`, `cond_stage_model.`, `conditioner.embedders.N.`; BFL's Flux names, in
safetensors and GGUF) from tiny diffusers folders, by the reverse of diffusers' conversion (the
mapping of diffusers' `convert_diffusers_to_original_*` scripts, written out here), and must
load offline — HF_HUB_OFFLINE=1 and an empty Hugging Face cache — to the same pixels as the
folder they were written from. Being tiny, they take their configs from the folder beside them
(the companion); the shipped configs of the published models are exercised by building every
model they describe on the meta device and checking the shapes the studio recognises them by.
"""

from __future__ import annotations

import json
import sys
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest
import torch

from studio.core import catalog
from studio.core.catalog import ModelError, model_defaults, resolve
from studio.core.request import GenerationRequest, Mode
from studio.engine import single_file
from studio.engine.family_runtime import family_of
from studio.engine.models import ModelManager
from tests.engine.conftest import RecordingReporter
from tests.engine.tiny_families import build
from tests.sparse_files import sparse_safetensors

SIZE = 64


@pytest.fixture(autouse=True)
def offline(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    """No network and nothing in the Hugging Face cache; the studio's own cache is fresh."""
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setenv("HF_HOME", str(tmp_path / "hf-home"))
    monkeypatch.setenv("HF_HUB_CACHE", str(tmp_path / "hf-home" / "hub"))
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg-cache"))
    import huggingface_hub.constants

    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_CACHE", str(tmp_path / "hf-home/hub"))


pytestmark = pytest.mark.usefixtures("one_thread")  # tiny models: one thread is faster


# -- diffusers → original layouts (the reverse of diffusers' single-file conversion) -------


def unet_to_original(state: dict, config) -> dict:  # noqa: ANN001
    """UNet2DConditionModel → `model.diffusion_model.*` (CompVis openaimodel names)."""
    n, per = len(config.block_out_channels), config.layers_per_block
    fixed = {
        "time_embedding.linear_1": "time_embed.0",
        "time_embedding.linear_2": "time_embed.2",
        "add_embedding.linear_1": "label_emb.0.0",
        "add_embedding.linear_2": "label_emb.0.2",
        "conv_in": "input_blocks.0.0",
        "conv_norm_out": "out.0",
        "conv_out": "out.2",
    }
    prefixes: list[tuple[str, str]] = []
    for i in range(n):
        for j in range(per):
            at = (per + 1) * i + j + 1
            prefixes += [
                (f"down_blocks.{i}.resnets.{j}.", f"input_blocks.{at}.0."),
                (f"down_blocks.{i}.attentions.{j}.", f"input_blocks.{at}.1."),
            ]
        prefixes.append(
            (f"down_blocks.{i}.downsamplers.0.conv.", f"input_blocks.{(per + 1) * (i + 1)}.0.op.")
        )
        for j in range(per + 1):
            at = (per + 1) * i + j
            prefixes += [
                (f"up_blocks.{i}.resnets.{j}.", f"output_blocks.{at}.0."),
                (f"up_blocks.{i}.attentions.{j}.", f"output_blocks.{at}.1."),
            ]
        attention = any(k.startswith(f"up_blocks.{i}.attentions.") for k in state)
        up_at = f"output_blocks.{(per + 1) * i + per}.{2 if attention else 1}."
        prefixes.append((f"up_blocks.{i}.upsamplers.0.", up_at))
    prefixes += [
        ("mid_block.resnets.0.", "middle_block.0."),
        ("mid_block.attentions.0.", "middle_block.1."),
        ("mid_block.resnets.1.", "middle_block.2."),
    ]
    resnet = {
        "norm1": "in_layers.0",
        "conv1": "in_layers.2",
        "norm2": "out_layers.0",
        "conv2": "out_layers.3",
        "time_emb_proj": "emb_layers.1",
        "conv_shortcut": "skip_connection",
    }
    out = {}
    for key, value in state.items():
        module, end = key.rsplit(".", 1)
        if module in fixed:
            out[f"{fixed[module]}.{end}"] = value
            continue
        hf, sd = next((hf, sd) for hf, sd in prefixes if key.startswith(hf))
        rest = key[len(hf) :]
        if ".resnets." in hf:
            head, tail = rest.split(".", 1)
            rest = f"{resnet[head]}.{tail}"
        out[sd + rest] = value
    return {"model.diffusion_model." + k: v for k, v in out.items()}


def vae_to_original(state: dict, config) -> dict:  # noqa: ANN001
    """AutoencoderKL → `first_stage_model.*` (attention projections as 1×1 convolutions)."""
    n, per = len(config.block_out_channels), config.layers_per_block
    prefixes = []
    for i in range(n):
        for j in range(per):
            prefixes.append(
                (f"encoder.down_blocks.{i}.resnets.{j}.", f"encoder.down.{i}.block.{j}.")
            )
        prefixes.append(
            (f"encoder.down_blocks.{i}.downsamplers.0.", f"encoder.down.{i}.downsample.")
        )
        for j in range(per + 1):
            prefixes.append(
                (f"decoder.up_blocks.{i}.resnets.{j}.", f"decoder.up.{n - 1 - i}.block.{j}.")
            )
        prefixes.append(
            (f"decoder.up_blocks.{i}.upsamplers.0.", f"decoder.up.{n - 1 - i}.upsample.")
        )
    for part in ("encoder", "decoder"):
        prefixes += [
            (f"{part}.mid_block.resnets.0.", f"{part}.mid.block_1."),
            (f"{part}.mid_block.resnets.1.", f"{part}.mid.block_2."),
            (f"{part}.mid_block.attentions.0.", f"{part}.mid.attn_1."),
            (f"{part}.conv_norm_out.", f"{part}.norm_out."),
        ]
    attention = {
        "group_norm": "norm",
        "to_q": "q",
        "to_k": "k",
        "to_v": "v",
        "to_out.0": "proj_out",
    }
    out = {}
    for key, value in state.items():
        hf, sd = next(((hf, sd) for hf, sd in prefixes if key.startswith(hf)), ("", ""))
        rest = key[len(hf) :]
        if hf.endswith("resnets.0.") or hf.endswith("resnets.1.") or ".resnets." in hf:
            rest = rest.replace("conv_shortcut", "nin_shortcut")
        if hf.endswith("attentions.0."):
            module, end = rest.rsplit(".", 1)
            rest = f"{attention[module]}.{end}"
            if value.ndim == 2:
                value = value[:, :, None, None]
        out[sd + rest] = value
    return {"first_stage_model." + k: v for k, v in out.items()}


def clip_to_original(model, prefix: str) -> dict:  # noqa: ANN001
    """transformers' CLIPTextModel as A1111 stores it (`<prefix>text_model.*`)."""
    state = model.state_dict()
    return {
        prefix + (k if k.startswith("text_model.") else "text_model." + k): v
        for k, v in state.items()
    }


def open_clip_to_original(model, prefix: str) -> dict:  # noqa: ANN001
    """CLIPTextModelWithProjection as OpenCLIP stores it (SDXL's second text encoder)."""
    state = {k.removeprefix("text_model."): v for k, v in model.state_dict().items()}
    out = {
        "token_embedding.weight": state.pop("embeddings.token_embedding.weight"),
        "positional_embedding": state.pop("embeddings.position_embedding.weight"),
        "ln_final.weight": state.pop("final_layer_norm.weight"),
        "ln_final.bias": state.pop("final_layer_norm.bias"),
        "text_projection": state.pop("text_projection.weight").T.contiguous(),
    }
    state.pop("embeddings.position_ids", None)
    names = {"layer_norm1": "ln_1", "layer_norm2": "ln_2", "mlp.fc1": "mlp.c_fc"}
    names |= {"mlp.fc2": "mlp.c_proj", "self_attn.out_proj": "attn.out_proj"}
    layers = sorted({int(k.split(".")[2]) for k in state if k.startswith("encoder.layers.")})
    for i in layers:
        layer = f"encoder.layers.{i}."
        for end in ("weight", "bias"):
            qkv = [state.pop(f"{layer}self_attn.{p}_proj.{end}") for p in "qkv"]
            out[f"transformer.resblocks.{i}.attn.in_proj_{end}"] = torch.cat(qkv)
            for new, old in names.items():
                out[f"transformer.resblocks.{i}.{old}.{end}"] = state.pop(f"{layer}{new}.{end}")
    assert not state, sorted(state)
    return {prefix + k: v for k, v in out.items()}


def flux_to_original(state: dict) -> dict:
    """FluxTransformer2DModel → BFL's names (as flux1-dev.safetensors and GGUF files have)."""
    s = dict(state)
    out = {}

    def move(old: str, new: str) -> None:
        for end in ("weight", "bias"):
            if f"{new}.{end}" in s:
                out[f"{old}.{end}"] = s.pop(f"{new}.{end}")

    for old, new in (
        ("time_in", "time_text_embed.timestep_embedder"),
        ("vector_in", "time_text_embed.text_embedder"),
        ("guidance_in", "time_text_embed.guidance_embedder"),
    ):
        move(f"{old}.in_layer", f"{new}.linear_1")
        move(f"{old}.out_layer", f"{new}.linear_2")
    move("txt_in", "context_embedder")
    move("img_in", "x_embedder")
    doubles = {int(k.split(".")[1]) for k in s if k.startswith("transformer_blocks.")}
    for i in sorted(doubles):
        b, o = f"transformer_blocks.{i}.", f"double_blocks.{i}."
        move(o + "img_mod.lin", b + "norm1.linear")
        move(o + "txt_mod.lin", b + "norm1_context.linear")
        for end in ("weight", "bias"):
            img = [s.pop(f"{b}attn.to_{p}.{end}") for p in "qkv"]
            txt = [s.pop(f"{b}attn.add_{p}_proj.{end}") for p in "qkv"]
            out[f"{o}img_attn.qkv.{end}"] = torch.cat(img)
            out[f"{o}txt_attn.qkv.{end}"] = torch.cat(txt)
        for old, new in (
            ("img_attn.norm.query_norm", "attn.norm_q"),
            ("img_attn.norm.key_norm", "attn.norm_k"),
            ("txt_attn.norm.query_norm", "attn.norm_added_q"),
            ("txt_attn.norm.key_norm", "attn.norm_added_k"),
        ):
            out[f"{o}{old}.scale"] = s.pop(f"{b}{new}.weight")
        move(o + "img_mlp.0", b + "ff.net.0.proj")
        move(o + "img_mlp.2", b + "ff.net.2")
        move(o + "txt_mlp.0", b + "ff_context.net.0.proj")
        move(o + "txt_mlp.2", b + "ff_context.net.2")
        move(o + "img_attn.proj", b + "attn.to_out.0")
        move(o + "txt_attn.proj", b + "attn.to_add_out")
    singles = {int(k.split(".")[1]) for k in s if k.startswith("single_transformer_blocks.")}
    for i in sorted(singles):
        b, o = f"single_transformer_blocks.{i}.", f"single_blocks.{i}."
        move(o + "modulation.lin", b + "norm.linear")
        for end in ("weight", "bias"):
            parts = [s.pop(f"{b}attn.to_{p}.{end}") for p in "qkv"] + [s.pop(f"{b}proj_mlp.{end}")]
            out[f"{o}linear1.{end}"] = torch.cat(parts)
        out[f"{o}norm.query_norm.scale"] = s.pop(f"{b}attn.norm_q.weight")
        out[f"{o}norm.key_norm.scale"] = s.pop(f"{b}attn.norm_k.weight")
        move(o + "linear2", b + "proj_out")
    move("final_layer.linear", "proj_out")
    for end in ("weight", "bias"):
        scale, shift = torch.chunk(s.pop(f"norm_out.linear.{end}"), 2)
        out[f"final_layer.adaLN_modulation.1.{end}"] = torch.cat([shift, scale])
    assert not s, sorted(s)
    return out


def sd_checkpoint(pipe) -> dict:  # noqa: ANN001
    """A whole SD 1.x or SDXL pipeline as one A1111 checkpoint."""
    state = unet_to_original(pipe.unet.state_dict(), pipe.unet.config)
    state |= vae_to_original(pipe.vae.state_dict(), pipe.vae.config)
    if getattr(pipe, "text_encoder_2", None) is None:
        state |= clip_to_original(pipe.text_encoder, "cond_stage_model.transformer.")
    else:
        state |= clip_to_original(pipe.text_encoder, "conditioner.embedders.0.transformer.")
        state |= open_clip_to_original(pipe.text_encoder_2, "conditioner.embedders.1.model.")
    return {k: v.contiguous() for k, v in state.items()}


def _build_sdxl(folder: Path) -> Path:
    """The tiny SDXL fixture with its two text encoders of different widths (32 and 64), as
    in the real model: diffusers tells CLIP-L's tensors from OpenCLIP-G's by their width."""
    from diffusers import StableDiffusionXLPipeline, UNet2DConditionModel

    from studio.bench import tiny_families as tiny

    tokenizer = tiny.clip_tokenizer()
    torch.manual_seed(0)
    unet = UNet2DConditionModel(
        sample_size=8,
        block_out_channels=(16, 32),
        layers_per_block=1,
        down_block_types=("DownBlock2D", "CrossAttnDownBlock2D"),
        up_block_types=("CrossAttnUpBlock2D", "UpBlock2D"),
        cross_attention_dim=96,
        attention_head_dim=(2, 4),
        norm_num_groups=8,
        use_linear_projection=True,
        addition_embed_type="text_time",
        addition_time_embed_dim=8,
        projection_class_embeddings_input_dim=6 * 8 + 64,
    )
    pipe = StableDiffusionXLPipeline(
        vae=tiny._kl_vae(4, 0.13025, None, quant_conv=True),
        text_encoder=tiny._clip(tokenizer),
        text_encoder_2=tiny._clip(tokenizer, hidden=64, projection=64, act="gelu", seed=2),
        tokenizer=tokenizer,
        tokenizer_2=tiny.clip_tokenizer(),
        unet=unet,
        scheduler=tiny._sd_scheduler("sdxl"),
        force_zeros_for_empty_prompt=True,
    )
    pipe.save_pretrained(folder, safe_serialization=True)
    return folder


@pytest.fixture(scope="module")
def tiny(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    root = tmp_path_factory.mktemp("single-file-tiny")
    return {
        "sd1": Path(build("sd1", root / "sd1")),
        "sdxl": _build_sdxl(root / "sdxl"),
        "flux": Path(build("flux", root / "flux")),
    }


def _pixels(pipe, **extra) -> np.ndarray:  # noqa: ANN001, ANN003
    generator = torch.Generator().manual_seed(7)
    return pipe(
        "a red circle",
        num_inference_steps=2,
        height=SIZE,
        width=SIZE,
        generator=generator,
        output_type="np",
        **extra,
    ).images[0]


def _save(state: dict, path: Path) -> Path:
    from safetensors.torch import save_file

    save_file(state, str(path))
    return path


def _folder_pipe(folder: Path):  # noqa: ANN202
    from diffusers import DiffusionPipeline

    return DiffusionPipeline.from_pretrained(folder, local_files_only=True)


# -- the shipped configurations ---------------------------------------------------------------


def test_the_clip_tokenizer_is_built_from_the_shipped_vocabulary() -> None:
    from transformers import CLIPTokenizer

    sd1 = single_file.shipped_folder(single_file.VARIANTS["sd1"])
    tokenizer = CLIPTokenizer.from_pretrained(sd1, subfolder="tokenizer", local_files_only=True)
    assert tokenizer("a cat").input_ids == [49406, 320, 2368, 49407]
    assert len(tokenizer) == 49408 and tokenizer.model_max_length == 77
    assert tokenizer.pad_token_id == 49407  # SD 1.x pads with the end token
    sdxl = single_file.shipped_folder(single_file.VARIANTS["sdxl"])
    second = CLIPTokenizer.from_pretrained(sdxl, subfolder="tokenizer_2", local_files_only=True)
    assert second.pad_token_id == 0  # OpenCLIP pads with "!"
    assert second("a photo of a cat").input_ids == [49406, 320, 1125, 539, 320, 2368, 49407]


@pytest.mark.parametrize("variant", sorted(single_file.VARIANTS))
def test_every_shipped_config_builds_the_published_model(variant: str) -> None:
    """Each shipped JSON is read by its library's config class and builds its model (on the
    meta device: no memory), whose tensors have the shapes the studio recognises it by."""
    import diffusers
    import transformers

    folder = single_file.CONFIGS_DIR / variant
    built = {}
    for config in sorted(folder.glob("*/config.json")):
        data = json.loads(config.read_text())
        with torch.device("meta"):  # nothing is computed or allocated
            if "_class_name" in data:
                cls = getattr(diffusers, data["_class_name"])
                built[config.parent.name] = cls.from_config(cls.load_config(config.parent))
            else:
                cls = getattr(transformers, data["architectures"][0])
                built[config.parent.name] = cls(cls.config_class.from_pretrained(config.parent))
    scheduler = folder / "scheduler" / "scheduler_config.json"
    data = json.loads(scheduler.read_text())
    getattr(diffusers, data["_class_name"]).from_pretrained(folder, subfolder="scheduler")
    shapes = {}
    if "unet" in built:
        unet = built["unet"]
        shapes[single_file.UNET + "input_blocks.0.0.weight"] = unet.conv_in.weight.shape
        attention = unet.down_blocks[1].attentions[0].proj_in.weight.shape  # input_blocks.4.1
        assert attention[0] == 640
    if "vae" in built and "unet" in built:  # a full checkpoint's VAE
        shapes["first_stage_model.encoder.conv_in.weight"] = built[
            "vae"
        ].encoder.conv_in.weight.shape
    if "transformer" in built:
        model = built["transformer"]
        if variant.startswith("flux"):
            shapes["img_in.weight"] = model.x_embedder.weight.shape
            shapes["txt_in.weight"] = model.context_embedder.weight.shape
            assert (
                len(model.transformer_blocks) == 19 and len(model.single_transformer_blocks) == 38
            )
            assert model.config.guidance_embeds == (variant == "flux-dev")
        elif variant == "chroma":
            shapes["img_in.weight"] = model.x_embedder.weight.shape
            shapes["txt_in.weight"] = model.context_embedder.weight.shape
            approximator = model.distilled_guidance_layer.in_proj.weight.shape
            shapes["distilled_guidance_layer.in_proj.weight"] = approximator
        elif variant == "qwen-image":
            shapes["img_in.weight"] = model.img_in.weight.shape
            shapes["txt_in.weight"] = model.txt_in.weight.shape
            assert len(model.transformer_blocks) == 60
        elif variant == "z-image":
            shapes["x_embedder.weight"] = model.all_x_embedder["2-1"].weight.shape
            shapes["cap_embedder.1.weight"] = model.cap_embedder[1].weight.shape
            assert len(model.layers) == 30
        else:
            shapes["x_embedder.proj.weight"] = model.pos_embed.proj.weight.shape
            shapes["pos_embed"] = model.pos_embed.pos_embed.shape
    for component, model in built.items():
        if type(model).__name__ == "T5EncoderModel":  # T5-XXL's encoder (Flux, SD 3.x, Chroma)
            assert (model.config.vocab_size, model.config.d_model) == (32128, 4096)
            assert len(model.encoder.block) == 24
        elif variant in ("qwen-image", "z-image") and component == "text_encoder":
            embedding = model.get_input_embeddings().weight.shape  # Qwen2.5-VL-7B, Qwen3-4B
            assert tuple(embedding) == (
                (152064, 3584) if variant == "qwen-image" else (151936, 2560)
            )
            config = json.loads((folder / component / "config.json").read_text())
            assert single_file._expected_shape(config, "qwen") == tuple(embedding)
        elif component.startswith("text_encoder"):
            width = model.config.hidden_size
            assert model.config.vocab_size == 49408 and width in (768, 1024, 1280)
    if variant == "qwen-image":  # a Wan-style VAE, told by its decoder's input
        config = json.loads((folder / "vae" / "config.json").read_text())
        expected_shape = single_file._expected_shape(config, "qwen_vae")
        assert tuple(built["vae"].decoder.conv_in.weight.shape) == expected_shape
    elif variant.startswith(("flux", "sd3", "chroma", "z-image")):  # ComfyUI's separate parts
        vae = built["vae"]
        assert vae.config.latent_channels == 16 and not vae.config.use_quant_conv
        flux = not variant.startswith("sd3")  # Chroma and Z-Image use Flux.1's VAE
        expected = (0.3611, 0.1159) if flux else (1.5305, 0.0609)
        assert (vae.config.scaling_factor, vae.config.shift_factor) == expected
    if variant.startswith(("flux", "sd3")):
        assert built["text_encoder"].config.hidden_size == 768  # CLIP-L
        if variant.startswith("sd3"):
            assert built["text_encoder_2"].config.hidden_size == 1280  # OpenCLIP bigG
    signature = single_file.VARIANTS[variant].signature
    assert shapes and all(tuple(shape) == signature[key] for key, shape in shapes.items())
    if (folder / "model_index.json").is_file():  # a complete pipeline: every part is there
        index = json.loads((folder / "model_index.json").read_text())
        parts = [k for k, v in index.items() if isinstance(v, list) and v[0] is not None]
        assert all((folder / p).is_dir() for p in parts)


def test_sd2_v_or_epsilon_follows_the_yaml_else_the_name(tmp_path: Path) -> None:
    model = tmp_path / "dreamy-v21.safetensors"
    assert single_file.sd2_predicts_v(model)  # an SD 2.x fine-tune: 768 px v
    assert not single_file.sd2_predicts_v(tmp_path / "sd21-base-512.safetensors")
    (tmp_path / "dreamy-v21.yaml").write_text('model:\n  params:\n    parameterization: "v"\n')
    assert single_file.sd2_predicts_v(model)
    (tmp_path / "dreamy-v21.yaml").write_text("model:\n  params:\n    linear_start: 0.00085\n")
    assert not single_file.sd2_predicts_v(model)


@pytest.mark.parametrize(
    ("name", "extra", "variant", "prediction"),
    [
        ("sd1", {}, "sd1", "epsilon"),
        ("sd2", {}, "sd2-v", "v_prediction"),
        ("sd2-512-base", {}, "sd2-base", "epsilon"),
        ("sdxl", {}, "sdxl", "epsilon"),
        ("sdxl-vpred", {"v_pred": ()}, "sdxl", "v_prediction"),
    ],
)
def test_a_published_checkpoint_is_built_with_the_shipped_configs(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, name: str, extra: dict, variant: str,
    prediction: str,
) -> None:  # fmt: skip
    """The loading decision for real models (whose weights a test cannot hold): a file with
    the published shapes is recognised as its variant and handed to its family's pipeline
    with the shipped configs and built tokenizers, offline; nothing else is needed."""
    import diffusers

    family = name.split("-")[0]
    signature = dict(single_file.VARIANTS[variant].signature)
    if family == "sdxl":  # VAE and text encoders present, as in every A1111 checkpoint
        signature["conditioner.embedders.0.transformer.text_model.final_layer_norm.bias"] = (768,)
    path = sparse_safetensors(tmp_path / f"{name}.safetensors", signature | extra)
    assert path.stat().st_blocks * 512 < 1_000_000  # sparse: the test writes no weights
    info = single_file.inspect(path)
    assert info.family.name == family and info.variant.name == variant and info.matches
    assert model_defaults(str(path))["width"] == {"sd1": 512, "sd2": 768, "sdxl": 1024}[family]
    cls = getattr(diffusers, info.family.checkpoint_class)
    asked = {}

    def from_single_file(source, **kwargs):  # noqa: ANN001, ANN003, ANN202
        asked.update(kwargs, source=source)
        raise RuntimeError("stop here")

    monkeypatch.setattr(cls, "from_single_file", from_single_file)
    with pytest.raises(RuntimeError, match="stop here"):
        single_file.load(path, diffusers.DiffusionPipeline, torch.float32)
    assert asked["source"] == str(path) and asked["local_files_only"] is True
    config = Path(asked["config"])
    assert config.is_relative_to(tmp_path / "xdg-cache")  # assembled in the studio's cache
    index = json.loads((config / "model_index.json").read_text())
    assert index["_class_name"] == cls.__name__
    scheduler = json.loads((config / "scheduler" / "scheduler_config.json").read_text())
    assert scheduler.get("prediction_type", "epsilon") == prediction
    for tokenizer in config.glob("tokenizer*"):
        assert (tokenizer / "vocab.json").is_file() and (tokenizer / "merges.txt").is_file()
    assert not set(asked) & {"vae", "text_encoder", "unet"}  # all from the file


def test_flux_dev_and_schnell_files_are_told_apart_by_their_guidance_layer(tmp_path: Path) -> None:
    signature = dict(single_file.VARIANTS["flux-dev"].signature)
    dev = sparse_safetensors(
        tmp_path / "dev.safetensors", signature | {"guidance_in.in_layer.weight": (3072, 256)}
    )
    schnell = sparse_safetensors(tmp_path / "schnell.safetensors", signature)
    for path, name in ((dev, "flux-dev"), (schnell, "flux-schnell")):
        info = single_file.inspect(path)
        assert info.family.name == name and info.variant.name == name and info.matches
    assert model_defaults(str(schnell))["steps"] == 4 and model_defaults(str(dev))["steps"] == 28


# -- full checkpoints: SD 1.x and SDXL -------------------------------------------------------


@pytest.mark.parametrize("family", ["sd1", "sdxl"])
def test_a_checkpoint_in_the_original_layout_loads_offline_to_the_folders_pixels(
    tiny: dict[str, Path], tmp_path: Path, family: str
) -> None:
    folder = _folder_pipe(tiny[family])
    # the companion: the tiny folder beside the file (its configs; the weights are the file's)
    models = tmp_path / "models"
    models.mkdir()
    (models / f"tiny-{family}").symlink_to(tiny[family], target_is_directory=True)
    checkpoint = _save(sd_checkpoint(folder), models / f"{family}-finetune.safetensors")
    assert not any(k.startswith(("unet.", "vae.", "text_encoder")) for k in sd_checkpoint(folder))

    assert resolve(str(checkpoint)).kind == "checkpoint"
    assert model_defaults(str(checkpoint))["width"] == (1024 if family == "sdxl" else 512)
    manager = ModelManager()
    pipe = manager.pipeline(str(checkpoint), Mode.TEXT_TO_IMAGE)
    assert family_of(pipe).name == family and type(pipe).__name__ == type(folder).__name__
    np.testing.assert_allclose(_pixels(pipe), _pixels(folder), atol=1e-5)
    # image→image shares the loaded weights
    assert manager.pipeline(str(checkpoint), Mode.IMAGE_TO_IMAGE).unet is pipe.unet


def test_a_safe_pickled_checkpoint_loads_too(tiny: dict[str, Path], tmp_path: Path) -> None:
    folder = _folder_pipe(tiny["sd1"])
    (tmp_path / "tiny-sd1").symlink_to(tiny["sd1"], target_is_directory=True)
    checkpoint = tmp_path / "old-model.ckpt"
    torch.save({"state_dict": sd_checkpoint(folder)}, checkpoint)
    pipe = ModelManager().pipeline(str(checkpoint), Mode.TEXT_TO_IMAGE)
    np.testing.assert_allclose(_pixels(pipe), _pixels(folder), atol=1e-5)


def test_a_checkpoint_of_unusual_shapes_without_a_companion_is_one_sentence(
    tiny: dict[str, Path], tmp_path: Path
) -> None:
    checkpoint = _save(sd_checkpoint(_folder_pipe(tiny["sd1"])), tmp_path / "alone.safetensors")
    with pytest.raises(ModelError, match=r"alone\.safetensors\.companion'") as caught:
        ModelManager().pipeline(str(checkpoint), Mode.TEXT_TO_IMAGE)
    assert "SD 1.x" in str(caught.value) and "\n" not in str(caught.value)


# -- transformer-only files: Flux.1 safetensors and GGUF --------------------------------------


def test_diffusers_and_the_studio_convert_a_published_width_flux_file_alike() -> None:
    """The studio's Flux conversion reads the width from the file (tiny models load); at the
    published width (3072) it gives what diffusers' own conversion gives."""
    from diffusers.loaders.single_file_utils import (
        convert_flux_transformer_checkpoint_to_diffusers,
    )

    g = torch.Generator().manual_seed(0)
    inner = 3072
    rows = {
        "img_in": inner, "txt_in": inner, "time_in.in_layer": inner, "time_in.out_layer": inner,
        "vector_in.in_layer": inner, "vector_in.out_layer": inner,
        "guidance_in.in_layer": inner, "guidance_in.out_layer": inner,
        "final_layer.linear": 64, "final_layer.adaLN_modulation.1": 2 * inner,
    }  # fmt: skip
    for o in ("double_blocks.0.", "double_blocks.1."):
        for part, n in (("img_mod.lin", 6), ("txt_mod.lin", 6), ("img_attn.qkv", 3)):
            rows[o + part] = n * inner
        rows |= {o + "txt_attn.qkv": 3 * inner, o + "img_attn.proj": inner}
        rows |= {o + "txt_attn.proj": inner, o + "img_mlp.0": 4 * inner, o + "img_mlp.2": inner}
        rows |= {o + "txt_mlp.0": 4 * inner, o + "txt_mlp.2": inner}
    rows |= {"single_blocks.0.modulation.lin": 3 * inner, "single_blocks.0.linear1": 7 * inner}
    rows |= {"single_blocks.0.linear2": inner}
    state = {}
    for name, n in rows.items():
        state[f"{name}.weight"] = torch.randn(n, 2, generator=g)
        state[f"{name}.bias"] = torch.randn(n, generator=g)
    for o in ("double_blocks.0.", "double_blocks.1."):
        for norm in ("img_attn.norm", "txt_attn.norm"):
            for q in ("query_norm", "key_norm"):
                state[f"{o}{norm}.{q}.scale"] = torch.randn(128, generator=g)
    for q in ("query_norm", "key_norm"):
        state[f"single_blocks.0.norm.{q}.scale"] = torch.randn(128, generator=g)
    prefixed = {"model.diffusion_model." + k: v for k, v in state.items()}
    ours = single_file.flux_to_diffusers(dict(prefixed))
    theirs = convert_flux_transformer_checkpoint_to_diffusers(dict(prefixed))
    assert sorted(ours) == sorted(theirs)
    assert all(torch.equal(ours[k], theirs[k]) for k in ours)


def test_a_flux_transformer_file_takes_the_rest_from_its_companion(
    tiny: dict[str, Path], tmp_path: Path
) -> None:
    folder = _folder_pipe(tiny["flux"])
    state = flux_to_original(folder.transformer.state_dict())
    # a full ComfyUI checkpoint: the VAE and text encoders ride along (the companion's are used)
    extra = {
        "vae.decoder.conv_in.weight": torch.ones(8, 16, 3, 3),
        "text_encoders.clip_l.transformer.text_model.final_layer_norm.weight": torch.ones(32),
    }
    checkpoint = _save(
        {"model.diffusion_model." + k: v for k, v in state.items()} | extra,
        tmp_path / "flux1-dev-finetune.safetensors",
    )
    # alone: one sentence saying what to add
    with pytest.raises(ModelError, match=r"holds the Flux\.1 dev transformer.*\.companion'"):
        ModelManager().pipeline(str(checkpoint), Mode.TEXT_TO_IMAGE)
    # the companion named in <file>.companion (a folder elsewhere)
    (tmp_path / "flux1-dev-finetune.safetensors.companion").write_text(f"{tiny['flux']}\n")
    pipe = ModelManager().pipeline(str(checkpoint), Mode.TEXT_TO_IMAGE)
    assert family_of(pipe).name == "flux-dev"
    np.testing.assert_allclose(_pixels(pipe), _pixels(folder), atol=1e-5)


def sd3_to_original(state: dict) -> dict:
    """SD3Transformer2DModel → Stability's MMDiT names (sd3.5_*.safetensors)."""
    s = dict(state)
    out = {}

    def move(old: str, new: str) -> None:
        for end in ("weight", "bias"):
            if f"{new}.{end}" in s:
                out[f"{old}.{end}"] = s.pop(f"{new}.{end}")

    def unswap(tensor: torch.Tensor) -> torch.Tensor:
        scale, shift = torch.chunk(tensor, 2)
        return torch.cat([shift, scale])

    out["pos_embed"] = s.pop("pos_embed.pos_embed")
    move("x_embedder.proj", "pos_embed.proj")
    move("t_embedder.mlp.0", "time_text_embed.timestep_embedder.linear_1")
    move("t_embedder.mlp.2", "time_text_embed.timestep_embedder.linear_2")
    move("y_embedder.mlp.0", "time_text_embed.text_embedder.linear_1")
    move("y_embedder.mlp.2", "time_text_embed.text_embedder.linear_2")
    move("context_embedder", "context_embedder")
    layers = sorted({int(k.split(".")[1]) for k in s if k.startswith("transformer_blocks.")})
    for i in layers:
        b, x, c = (
            f"transformer_blocks.{i}.",
            f"joint_blocks.{i}.x_block.",
            f"joint_blocks.{i}.context_block.",
        )
        for end in ("weight", "bias"):
            out[f"{x}attn.qkv.{end}"] = torch.cat([s.pop(f"{b}attn.to_{p}.{end}") for p in "qkv"])
            added = [s.pop(f"{b}attn.add_{p}_proj.{end}") for p in "qkv"]
            out[f"{c}attn.qkv.{end}"] = torch.cat(added)
            if f"{b}attn2.to_q.{end}" in s:
                attn2 = [s.pop(f"{b}attn2.to_{p}.{end}") for p in "qkv"]
                out[f"{x}attn2.qkv.{end}"] = torch.cat(attn2)
        for old, new in (
            (x + "attn.ln_q", b + "attn.norm_q"),
            (x + "attn.ln_k", b + "attn.norm_k"),
            (c + "attn.ln_q", b + "attn.norm_added_q"),
            (c + "attn.ln_k", b + "attn.norm_added_k"),
            (x + "attn2.ln_q", b + "attn2.norm_q"),
            (x + "attn2.ln_k", b + "attn2.norm_k"),
            (x + "attn.proj", b + "attn.to_out.0"),
            (c + "attn.proj", b + "attn.to_add_out"),
            (x + "attn2.proj", b + "attn2.to_out.0"),
            (x + "adaLN_modulation.1", b + "norm1.linear"),
            (x + "mlp.fc1", b + "ff.net.0.proj"),
            (x + "mlp.fc2", b + "ff.net.2"),
            (c + "mlp.fc1", b + "ff_context.net.0.proj"),
            (c + "mlp.fc2", b + "ff_context.net.2"),
        ):
            move(old, new)
        last = i == layers[-1]  # its context branch ends there: a final-layer style norm
        for end in ("weight", "bias"):
            tensor = s.pop(f"{b}norm1_context.linear.{end}")
            out[f"{c}adaLN_modulation.1.{end}"] = unswap(tensor) if last else tensor
    move("final_layer.linear", "proj_out")
    for end in ("weight", "bias"):
        out[f"final_layer.adaLN_modulation.1.{end}"] = unswap(s.pop(f"norm_out.linear.{end}"))
    assert not s, sorted(s)
    return out


def test_an_sd3_transformer_file_takes_the_rest_from_a_cached_hub_repo(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """sd3.5_*.safetensors as Stability publishes it (the MMDiT behind
    `model.diffusion_model.`), its companion found as the family's hub repo in the local cache
    (here a cache that holds the tiny folder under that repo's name)."""
    companion = Path(build("sd3", tmp_path / "sd3"))
    folder = _folder_pipe(companion)
    state = sd3_to_original(folder.transformer.state_dict())
    (tmp_path / "models").mkdir()  # the file alone: no folder beside it
    path = _save(
        {f"model.diffusion_model.{k}": v.contiguous() for k, v in state.items()},
        tmp_path / "models" / "sd3.5_tiny.safetensors",
    )
    repo = single_file.HUB_COMPANIONS["sd3"][0]
    monkeypatch.setattr(
        single_file, "_cached_repo", lambda name: companion if name == repo else None
    )
    pipe = ModelManager().pipeline(str(path), Mode.TEXT_TO_IMAGE)
    assert family_of(pipe).name == "sd3" and pipe.transformer is not folder.transformer
    np.testing.assert_allclose(_pixels(pipe), _pixels(folder), atol=1e-5)


def z_image_to_original(state: dict) -> dict:
    """ZImageTransformer2DModel → Tongyi's names (fused qkv), as its GGUF files have them."""
    out = {}
    for key, value in state.items():
        if ".attention.to_k." in key or ".attention.to_v." in key:
            continue
        if ".attention.to_q." in key:
            parts = [state[key.replace(".to_q.", f".to_{p}.")] for p in "qkv"]
            out[key.replace(".to_q.", ".qkv.")] = torch.cat(parts)
            continue
        for new, old in (
            ("all_final_layer.2-1.", "final_layer."),
            ("all_x_embedder.2-1.", "x_embedder."),
            (".attention.to_out.0.", ".attention.out."),
            (".attention.norm_k.", ".attention.k_norm."),
            (".attention.norm_q.", ".attention.q_norm."),
        ):
            key = key.replace(new, old)
        out[key] = value
    return out


def test_z_image_gguf_and_qwen_image_files_take_the_rest_from_a_sibling_folder(
    tmp_path: Path,
) -> None:
    """Z-Image as a GGUF in Tongyi's names; Qwen-Image as ComfyUI stores it (diffusers' names
    behind `model.diffusion_model.`): each beside a diffusers folder of its family."""
    for family, name in (
        ("z_image", "z-image-turbo-Q8_0.gguf"),
        ("qwen_image", "qwen.safetensors"),
    ):
        models = tmp_path / family
        companion = Path(build(family, models / f"{family}-diffusers"))
        folder = _folder_pipe(companion)
        state = folder.transformer.state_dict()
        if family == "z_image":
            path = _write_gguf(z_image_to_original(state), models / name, quantize=_linear_weights)
        else:
            prefixed = {f"model.diffusion_model.{k}": v.contiguous() for k, v in state.items()}
            path = _save(prefixed, models / name)
        manager = ModelManager()
        pipe = manager.pipeline(str(path), Mode.TEXT_TO_IMAGE)
        assert family_of(pipe).name == family.replace("_", "-")
        assert pipe.transformer is not folder.transformer
        quantised = {type(p).__name__ for p in pipe.transformer.parameters()}
        assert ("GGUFParameter" in quantised) == (path.suffix == ".gguf")
        ours, theirs = _pixels(pipe), _pixels(folder)
        tolerance = 0.05 if path.suffix == ".gguf" else 1e-5  # Q8_0 is close, not equal
        np.testing.assert_allclose(ours, theirs, atol=tolerance)
        manager.unload()


def _write_gguf(
    state: dict,
    path: Path,
    quantize: Callable[[str, np.ndarray], bool],
    arch: str = "flux",
    quant: str = "Q8_0",
) -> Path:
    """A GGUF file of `state` (names as given), tensors for which `quantize(name, data)` is
    true at `quant` (Q8_0's, Q4_0's and MXFP4's blocks need a last axis of a multiple of
    32), the rest in float32."""
    import gguf

    writer = gguf.GGUFWriter(str(path), arch=arch)
    kind = gguf.GGMLQuantizationType[quant]
    for name, tensor in state.items():
        data = tensor.detach().float().numpy()
        if data.ndim == 2 and data.shape[-1] % 32 == 0 and quantize(name, data):
            writer.add_tensor(name, gguf.quants.quantize(data, kind), raw_dtype=kind)
        else:
            writer.add_tensor(name, data)
    writer.write_header_to_file()
    writer.write_kv_data_to_file()
    writer.write_tensors_to_file()
    writer.close()
    return path


def _linear_weights(name: str, data: np.ndarray) -> bool:  # noqa: ARG001
    """As GGUF converters quantise a transformer: linear layers' weights, not the norms,
    biases, pad tokens or embeddings used as tensors."""
    return name.endswith(".weight") and "norm" not in name


def test_a_gguf_flux_transformer_generates_through_the_engine(
    tiny: dict[str, Path], tmp_path: Path
) -> None:
    from studio.engine.generate import Engine

    folder = _folder_pipe(tiny["flux"])
    original = flux_to_original(folder.transformer.state_dict())
    models = tmp_path / "models"
    models.mkdir()
    (models / "FLUX.1-dev-tiny").symlink_to(tiny["flux"], target_is_directory=True)
    path = _write_gguf(original, models / "flux1-dev-Q8_0.gguf", quantize=_linear_weights)
    assert resolve(str(path)).kind == "checkpoint"
    assert model_defaults(str(path))["width"] == 1024  # Flux's native size, from the names

    engine = Engine()
    request = GenerationRequest(
        prompt="a red circle", model=str(path), width=SIZE, height=SIZE, steps=2, seed=3
    )
    result = engine.run(request)
    image = np.asarray(result.images[0], np.float32)
    assert image.shape == (SIZE, SIZE, 3) and not result.cancelled
    pipe = engine.models.pipeline(str(path), Mode.TEXT_TO_IMAGE)
    assert family_of(pipe).name == "flux-dev"
    assert type(pipe.transformer.x_embedder.weight).__name__ == "GGUFParameter"  # quantised
    # the same request on the folder the file was written from: Q8_0 is close, not equal
    reference = engine.run(request.replace(model=str(tiny["flux"])))
    difference = np.abs(image - np.asarray(reference.images[0], np.float32)).mean()
    assert difference < 8.0, difference


def test_gguf_files_without_the_gguf_package_or_damaged_are_one_sentence(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    damaged = tmp_path / "half.gguf"
    damaged.write_bytes(b"GGUF\x03\x00\x00\x00garbage")
    with pytest.raises(ModelError, match="not a readable GGUF file"):
        ModelManager().pipeline(str(damaged), Mode.TEXT_TO_IMAGE)
    monkeypatch.setitem(sys.modules, "gguf", None)  # not installed
    with pytest.raises(ModelError, match=r"pip install gguf"):
        ModelManager().pipeline(str(damaged), Mode.TEXT_TO_IMAGE)


# -- transformer-only files with separate parts, as ComfyUI keeps them -------------------------


def _as_shipped(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path, variant: str, folder: Path, signature: dict
) -> None:
    """Register a tiny folder's configs as a variant's shipped ones (the published models'
    configs are checked on the meta device above; tiny files need tiny configs)."""
    import shutil

    shipped = tmp_path / "shipped-configs"
    shutil.copytree(single_file.CONFIGS_DIR, shipped)
    for config in folder.glob("*/*config.json"):
        if (shipped / variant / config.parent.name).is_dir():
            shutil.copyfile(config, shipped / variant / config.parent.name / config.name)
    monkeypatch.setattr(single_file, "CONFIGS_DIR", shipped)
    monkeypatch.setitem(single_file.VARIANTS, variant, single_file.Variant(variant, signature))


def _shipped_clip(hidden: int, projection: bool, seed: int):  # noqa: ANN202
    """A tiny CLIP text encoder over the shipped (full) CLIP vocabulary, with its tokenizer."""
    from transformers import CLIPTokenizer

    from studio.bench import tiny_families

    tokenizer = CLIPTokenizer.from_pretrained(
        single_file.shipped_folder(single_file.VARIANTS["sd1"]),
        subfolder="tokenizer",
        local_files_only=True,
    )
    encoder = tiny_families._clip(
        tokenizer, hidden=hidden, projection=hidden if projection else None, seed=seed
    )
    return encoder, tokenizer


def _fp16_rounded(model):  # noqa: ANN001, ANN202
    """The model with its weights as a _fp16 file keeps them (the reference must be too)."""
    with torch.no_grad():
        for parameter in model.parameters():
            parameter.copy_(parameter.half().float())
    return model


def comfy_clip(model) -> dict:  # noqa: ANN001
    """A CLIP text encoder as ComfyUI's clip_l/clip_g files keep it (transformers' names)."""
    return {
        (k if k.startswith(("text_model.", "text_projection")) else "text_model." + k): v
        for k, v in model.state_dict().items()
    }


def comfy_t5(model, dtype: torch.dtype) -> dict:  # noqa: ANN001
    """T5's encoder as t5xxl_fp16/fp8 files keep it: the shared embedding once."""
    state = model.state_dict()
    state.pop("encoder.embed_tokens.weight", None)
    return {k: v.to(dtype).contiguous() for k, v in state.items()}


def test_a_comfyui_flux_file_loads_with_its_separate_vae_and_text_encoders(
    tiny: dict[str, Path], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """ComfyUI's layout: the transformer in models/diffusion_models, ae.safetensors in
    models/vae, clip_l and t5xxl in models/text_encoders, T5's tokenizer in ComfyUI's own
    comfy/text_encoders/t5_tokenizer; found with no diffusers folder anywhere, loaded
    offline to the pixels of the folder the files were written from."""
    from studio.bench import tiny_families

    base = _folder_pipe(tiny["flux"])
    clip, clip_tokenizer = _shipped_clip(32, projection=False, seed=1)
    base.text_encoder, base.tokenizer = clip, clip_tokenizer
    _fp16_rounded(base.text_encoder_2)
    reference_folder = tmp_path / "reference"
    base.save_pretrained(reference_folder, safe_serialization=True)
    reference = _folder_pipe(reference_folder)
    transformer = flux_to_original(base.transformer.state_dict())
    _as_shipped(
        monkeypatch, tmp_path, "flux-dev", reference_folder,
        {k: tuple(transformer[k].shape) for k in ("img_in.weight", "txt_in.weight")},
    )  # fmt: skip

    comfy = tmp_path / "ComfyUI"
    models = comfy / "models"
    for sub in ("diffusion_models", "vae", "text_encoders"):
        (models / sub).mkdir(parents=True)
    path = _save(transformer, models / "diffusion_models" / "flux1-dev-tiny.safetensors")
    # nothing beside it yet: one sentence naming the parts and where they go
    with pytest.raises(ModelError, match=r"VAE \(ae\.safetensors\).*T5-XXL.*text_encoders"):
        ModelManager().pipeline(str(path), Mode.TEXT_TO_IMAGE)

    vae = vae_to_original(base.vae.state_dict(), base.vae.config)
    ae = {k.removeprefix("first_stage_model."): v for k, v in vae.items()}  # BFL's ae layout
    _save(ae, models / "vae" / "ae.safetensors")
    # an SDXL VAE (4 channels) beside it is not Flux's
    sdxl = _folder_pipe(tiny["sdxl"]).vae
    _save(vae_to_original(sdxl.state_dict(), sdxl.config), models / "vae" / "sdxl_vae.safetensors")
    _save(comfy_clip(base.text_encoder), models / "text_encoders" / "clip_l.safetensors")
    encoders = models / "text_encoders"
    _save(comfy_t5(base.text_encoder_2, torch.float16), encoders / "t5xxl_fp16.safetensors")
    fp8 = comfy_t5(base.text_encoder_2, torch.float8_e4m3fn)  # the fp16 one is preferred
    _save(fp8, encoders / "t5xxl_fp8_e4m3fn.safetensors")
    with pytest.raises(ModelError, match=r"T5's tokenizer.*comfy/text_encoders/t5_tokenizer"):
        ModelManager().pipeline(str(path), Mode.TEXT_TO_IMAGE)

    tokenizer = tiny_families.t5_tokenizer()
    tokenizer.save_pretrained(comfy / "comfy" / "text_encoders" / "t5_tokenizer")
    manager = ModelManager()
    pipe = manager.pipeline(str(path), Mode.TEXT_TO_IMAGE)
    assert family_of(pipe).name == "flux-dev" and type(pipe).__name__ == "FluxPipeline"
    np.testing.assert_allclose(_pixels(pipe), _pixels(reference), atol=1e-5)
    # image→image shares the loaded parts
    assert manager.pipeline(str(path), Mode.IMAGE_TO_IMAGE).text_encoder_2 is pipe.text_encoder_2
    # the low-VRAM setup: a GGUF transformer in models/unet with the same parts
    (models / "unet").mkdir()
    gguf = _write_gguf(
        transformer, models / "unet" / "flux1-dev-tiny-Q8_0.gguf", quantize=_linear_weights
    )
    pipe = manager.pipeline(str(gguf), Mode.TEXT_TO_IMAGE)
    assert type(pipe.transformer.x_embedder.weight).__name__ == "GGUFParameter"
    np.testing.assert_allclose(_pixels(pipe), _pixels(reference), atol=0.05)  # Q8_0: close


def test_an_sd35_file_loads_with_its_own_vae_and_comfyuis_clip_g_clip_l_t5xxl(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """sd3.5_*.safetensors as Stability publishes it (the MMDiT and its VAE, no text
    encoders), clip_g, clip_l and t5xxl in ComfyUI's models/clip, T5's tokenizer named in
    `<file>.companion`: offline, the pixels of the folder the files were written from."""
    from diffusers import SD3Transformer2DModel, StableDiffusion3Pipeline
    from transformers import CLIPTokenizer

    from studio.bench import tiny_families as tiny

    clip_l, tokenizer = _shipped_clip(16, projection=True, seed=1)
    with torch.no_grad():  # SD 3 uses CLIP-L unprojected (diffusers loads it so)
        clip_l.text_projection.weight.copy_(torch.eye(16))
    clip_g, _ = _shipped_clip(32, projection=True, seed=2)  # CLIP-L and -G differ in width
    t5_tokenizer = tiny.t5_tokenizer()
    torch.manual_seed(0)
    transformer = SD3Transformer2DModel(
        sample_size=8, patch_size=2, in_channels=16, out_channels=16, num_layers=1,
        attention_head_dim=8, num_attention_heads=4, joint_attention_dim=64,
        caption_projection_dim=32, pooled_projection_dim=16 + 32, pos_embed_max_size=64,
    )  # fmt: skip
    base = StableDiffusion3Pipeline(
        transformer=transformer,
        scheduler=tiny._flow_scheduler(shift=3.0),
        vae=tiny._kl_vae(16, 1.5305, 0.0609, quant_conv=False),
        text_encoder=clip_l,
        tokenizer=tokenizer,
        text_encoder_2=clip_g,
        tokenizer_2=CLIPTokenizer.from_pretrained(
            single_file.shipped_folder(single_file.VARIANTS["sdxl"]),
            subfolder="tokenizer_2",
            local_files_only=True,
        ),
        text_encoder_3=_fp16_rounded(tiny._t5(t5_tokenizer, d_model=64)),
        tokenizer_3=t5_tokenizer,
    )
    reference_folder = tmp_path / "reference"
    base.save_pretrained(reference_folder, safe_serialization=True)
    reference = _folder_pipe(reference_folder)
    mmdit = sd3_to_original(base.transformer.state_dict())
    _as_shipped(
        monkeypatch, tmp_path, "sd3.5-medium", reference_folder,
        {k: tuple(mmdit[k].shape) for k in ("x_embedder.proj.weight", "pos_embed")},
    )  # fmt: skip

    models = tmp_path / "ComfyUI" / "models"
    (models / "checkpoints").mkdir(parents=True)
    (models / "clip").mkdir()
    checkpoint = {f"model.diffusion_model.{k}": v.contiguous() for k, v in mmdit.items()}
    checkpoint |= vae_to_original(base.vae.state_dict(), base.vae.config)
    path = _save(checkpoint, models / "checkpoints" / "sd3.5_medium_tiny.safetensors")
    _save(comfy_clip(base.text_encoder_2), models / "clip" / "clip_g.safetensors")
    state = comfy_clip(base.text_encoder)
    state.pop("text_projection.weight")  # ComfyUI's clip_l has none
    _save(state, models / "clip" / "clip_l.safetensors")
    _save(comfy_t5(base.text_encoder_3, torch.float16), models / "clip" / "t5xxl_fp16.safetensors")
    downloads = tmp_path / "Downloads" / "t5-tokenizer"
    t5_tokenizer.save_pretrained(downloads)
    (models / "checkpoints" / "sd3.5_medium_tiny.safetensors.companion").write_text(
        "# T5's tokenizer, which the studio cannot ship\n../../../Downloads/t5-tokenizer\n"
    )
    pipe = ModelManager().pipeline(str(path), Mode.TEXT_TO_IMAGE)
    assert family_of(pipe).name == "sd3" and pipe.text_encoder_3 is not None
    np.testing.assert_allclose(_pixels(pipe), _pixels(reference), atol=1e-5)


@pytest.mark.parametrize("variant", ["sd3.5-large", "sd3.5-medium", "sd3-medium"])
def test_sd3_files_are_told_apart_by_width_and_position_table(tmp_path: Path, variant: str) -> None:
    """SD 3 medium and SD 3.5 medium share their width; the position table tells them apart
    (and picks the shipped config the file is built with)."""
    shapes = {
        f"model.diffusion_model.{k}": v for k, v in single_file.VARIANTS[variant].signature.items()
    }  # noqa: E501
    shapes["model.diffusion_model.joint_blocks.0.x_block.attn.qkv.weight"] = (3 * 1536, 1536)
    info = single_file.inspect(sparse_safetensors(tmp_path / "sd3.safetensors", shapes))
    assert info.family.name == "sd3" and info.variant.name == variant and info.matches
    config = json.loads(
        (single_file.CONFIGS_DIR / variant / "transformer" / "config.json").read_text()
    )  # noqa: E501
    assert config["pos_embed_max_size"] ** 2 == shapes["model.diffusion_model.pos_embed"][1]


def test_comfyuis_scaled_fp8_text_encoder_is_multiplied_out(tmp_path: Path) -> None:
    """t5xxl_fp8_e4m3fn_scaled.safetensors keeps each weight in fp8 with a scale beside it."""
    g = torch.Generator().manual_seed(0)
    weight = torch.randn(8, 8, generator=g)
    stored = (weight / 4).to(torch.float8_e4m3fn)
    q = "encoder.block.0.layer.0.SelfAttention.q"
    path = _save(
        {
            "shared.weight": torch.randn(16, 8, generator=g).half(),
            f"{q}.weight": stored,
            f"{q}.scale_weight": torch.tensor(4.0),
            "scaled_fp8": torch.zeros(0, dtype=torch.float8_e4m3fn),
        },
        tmp_path / "t5xxl_fp8_e4m3fn_scaled.safetensors",
    )
    (part,) = single_file.identify_parts(path, rank=2)
    assert (part.kind, part.shape, part.fp8) == ("t5", (16, 8), True)
    tensors = single_file.read_part(part)
    assert set(tensors) == {"shared.weight", f"{q}.weight"}
    torch.testing.assert_close(tensors[f"{q}.weight"], stored.float() * 4)


# -- ComfyUI's scaled fp8 files: the old layout and the quantisation format --------------------


def comfy_quant(fmt: str) -> torch.Tensor:
    """A layer's `comfy_quant` tensor: its format as JSON bytes."""
    return torch.tensor(list(json.dumps({"format": fmt}).encode()), dtype=torch.uint8)


def comfy_fp8(state: dict, layout: str) -> dict:
    """A file as ComfyUI's fp8 scaled ones keep it: each weight of two or more dimensions in
    float8_e4m3fn with a per-tensor scale (its largest value over fp8's, 448), in the old
    layout (scale_weight, scale_input, the scaled_fp8 marker) or the new one (weight_scale,
    input_scale, comfy_quant). Ignoring the scales makes these weights thousands of times
    too large."""
    out: dict = {"scaled_fp8": torch.zeros(0, dtype=torch.float8_e4m3fn)} if layout == "old" else {}
    for key, value in state.items():
        if not key.endswith(".weight") or value.ndim < 2:
            out[key] = value.contiguous()
            continue
        layer = key.removesuffix(".weight")
        scale = value.float().abs().amax() / 448
        out[key] = (value.float() / scale).to(torch.float8_e4m3fn)
        if layout == "old":
            out |= {f"{layer}.scale_weight": scale, f"{layer}.scale_input": torch.tensor(1.0)}
        else:
            out |= {
                f"{layer}.weight_scale": scale,
                f"{layer}.input_scale": torch.tensor(1.0),
                f"{layer}.comfy_quant": comfy_quant("float8_e4m3fn"),
            }
    return out


def _original_file(family: str, tiny: dict[str, Path], models: Path) -> tuple[dict, Path]:
    """A family's tiny model in the original layout of its single files, and its folder
    (linked beside the file: the companion)."""
    folder = tiny[family] if family in tiny else Path(build(family, models / "built"))
    pipe = _folder_pipe(folder)
    if family == "sdxl":
        state = sd_checkpoint(pipe)
    elif family == "flux":
        state = {f"model.diffusion_model.{k}": v for k, v in
                 flux_to_original(pipe.transformer.state_dict()).items()}  # fmt: skip
    else:
        state = z_image_to_original(pipe.transformer.state_dict())
    if family in tiny:
        (models / f"tiny-{family}").symlink_to(folder, target_is_directory=True)
    return state, folder


@pytest.mark.parametrize("family", ["sdxl", "flux", "z_image"])
def test_comfyuis_fp8_scaled_model_files_load_close_to_full_precision(
    tiny: dict[str, Path], tmp_path: Path, family: str
) -> None:
    """An SDXL checkpoint (every part in fp8), a Flux.1 and a Z-Image transformer, in both of
    ComfyUI's scaled layouts: offline, the full-precision folder's pixels within fp8's
    rounding (with the scales ignored they are NaN, or off by 0.18 on average)."""
    models = tmp_path / "models"
    models.mkdir()
    state, folder = _original_file(family, tiny, models)
    expected = {"sdxl": "sdxl", "flux": "flux-dev", "z_image": "z-image"}[family]
    theirs = _pixels(_folder_pipe(folder))
    for layout in ("old", "new"):
        path = _save(comfy_fp8(state, layout), models / f"{family}-fp8-{layout}.safetensors")
        info = single_file.inspect(path)
        assert info.is_scaled and info.family.name == expected
        manager = ModelManager()
        ours = _pixels(manager.pipeline(str(path), Mode.TEXT_TO_IMAGE))
        np.testing.assert_allclose(ours, theirs, atol=0.2)
        assert np.abs(ours - theirs).mean() < 0.03
        manager.unload()


def test_a_text_encoder_in_comfyuis_quantisation_format_is_dequantised(tmp_path: Path) -> None:
    """A T5 part in the new layout: a scalar scale and its format in `comfy_quant`; a weight
    kept in a byte container, its format in the header's `_quantization_metadata`, scaled
    per row; one scaled in 2×2 blocks. Each comes back as stored × scale, in the load dtype."""
    from safetensors.torch import save_file

    g = torch.Generator().manual_seed(0)
    block = "encoder.block.0.layer.0.SelfAttention."
    stored = {n: torch.randn(8, 8, generator=g).to(torch.float8_e4m3fn) for n in "qkv"}
    rows, blocks = torch.rand(8, 1, generator=g) + 0.5, torch.rand(2, 2, generator=g) + 0.5
    tensors = {
        "shared.weight": torch.randn(16, 8, generator=g).half(),
        f"{block}q.weight": stored["q"],
        f"{block}q.weight_scale": torch.tensor(0.25),
        f"{block}q.input_scale": torch.tensor(1.0),
        f"{block}q.comfy_quant": comfy_quant("float8_e4m3fn"),
        f"{block}k.weight": stored["k"].view(torch.uint8),
        f"{block}k.weight_scale": rows,
        f"{block}v.weight": stored["v"],
        f"{block}v.weight_scale": blocks,
        f"{block}v.comfy_quant": comfy_quant("float8_e4m3fn"),
    }
    metadata = {"layers": {f"{block}k": {"format": "float8_e4m3fn"}}}
    path = tmp_path / "t5xxl_fp8_e4m3fn_scaled.safetensors"
    save_file(tensors, str(path), metadata={"_quantization_metadata": json.dumps(metadata)})
    (part,) = single_file.identify_parts(path, rank=2)
    assert (part.kind, part.shape, part.fp8) == ("t5", (16, 8), True)
    read = single_file.read_part(part, torch.float16)
    assert set(read) == {"shared.weight", *(f"{block}{n}.weight" for n in "qkv")}
    expected = {
        "q": stored["q"].float() * 0.25,
        "k": stored["k"].float() * rows,
        "v": stored["v"].float() * blocks.repeat_interleave(4, 0).repeat_interleave(4, 1),
    }
    for name, value in expected.items():
        assert read[f"{block}{name}.weight"].dtype == torch.float16
        torch.testing.assert_close(read[f"{block}{name}.weight"], value.half())


def test_a_one_dimensional_scale_is_per_row_or_refused(tmp_path: Path) -> None:
    """A (rows,) scale on a 2-D weight scales its rows, even where the rows divide the
    columns (they are not column blocks); a 1-D scale of another length is ambiguous and
    refused in a sentence rather than guessed into wrong pixels."""
    from safetensors.torch import save_file

    from studio.engine import scaled_fp8

    stored = torch.arange(32, dtype=torch.float32).reshape(4, 8).to(torch.float8_e4m3fn)
    rows = torch.tensor([1.0, 2.0, 3.0, 4.0])
    path = tmp_path / "rows_scaled.safetensors"
    save_file({"layer.weight": stored, "layer.weight_scale": rows}, str(path))
    read = scaled_fp8.read_tensors(path)["layer.weight"]
    torch.testing.assert_close(read, stored.float() * rows[:, None])
    odd = tmp_path / "odd_scaled.safetensors"
    save_file({"layer.weight": stored, "layer.weight_scale": torch.ones(2)}, str(odd))
    with pytest.raises(ModelError, match=r"has a scale of shape \(2,\) for 'layer\.weight'"):
        scaled_fp8.read_tensors(odd)


def test_a_comfy_quant_format_the_studio_cannot_read_is_one_sentence(
    tiny: dict[str, Path], tmp_path: Path
) -> None:
    """nvfp4 (packed 4-bit values, swizzled block scales) and mxfp8 are named, not read into
    wrong pixels: in a part file, and in a model file before anything else is said of it."""
    from diffusers import DiffusionPipeline
    from safetensors.torch import save_file

    q = "encoder.block.0.layer.0.SelfAttention.q"
    part_file = tmp_path / "t5xxl_mxfp8.safetensors"
    save_file(
        {
            "shared.weight": torch.zeros(16, 8),
            f"{q}.weight": torch.zeros(8, 8, dtype=torch.float8_e4m3fn),
            f"{q}.weight_scale": torch.zeros(8, 1, dtype=torch.uint8),
        },
        str(part_file),
        metadata={"_quantization_metadata": json.dumps({"layers": {q: {"format": "mxfp8"}}})},
    )
    (part,) = single_file.identify_parts(part_file, rank=2)
    with pytest.raises(ModelError, match=r"'t5xxl_mxfp8\.safetensors' is quantised in .*'mxfp8'"):
        single_file.read_part(part)
    state = sd_checkpoint(_folder_pipe(tiny["sd1"]))  # no companion: the format is said first
    layer = "model.diffusion_model.input_blocks.1.1.proj_in"
    state[f"{layer}.weight"] = torch.zeros(32, 8, dtype=torch.uint8)  # two 4-bit values a byte
    state[f"{layer}.weight_scale"] = torch.zeros(32, 1, dtype=torch.uint8)
    state[f"{layer}.weight_scale_2"] = torch.tensor(1.0)
    state[f"{layer}.comfy_quant"] = comfy_quant("nvfp4")
    path = _save(state, tmp_path / "sd15_nvfp4.safetensors")
    with pytest.raises(ModelError, match=r"ComfyUI's 'nvfp4' format") as caught:
        single_file.load(path, DiffusionPipeline, torch.float32)
    assert "\n" not in str(caught.value)


def test_a_part_in_a_format_the_studio_cannot_read_is_chosen_last(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A T5 in mxfp8, even named in `<file>.companion`, gives way to a scaled fp8 T5 found
    beside the model: it could only be refused when read."""
    from studio.core import models_folder

    monkeypatch.setattr(models_folder, "_chosen", {"command line": None, "setting": None})
    q = "encoder.block.0.layer.0.SelfAttention.q"
    t5 = {"shared.weight": ((32128, 4096), "F16"), f"{q}.weight": ((4096, 4096), "F8_E4M3"),
          f"{q}.weight_scale": ((), "F32")}  # fmt: skip
    for name, fmt in (("t5xxl_mxfp8", "mxfp8"), ("t5xxl_fp8_e4m3fn_scaled", "float8_e4m3fn")):
        layers = json.dumps({"layers": {q: {"format": fmt}}})
        sparse_safetensors(
            tmp_path / f"{name}.safetensors", t5, metadata={"_quantization_metadata": layers}
        )
    signature = dict(single_file.VARIANTS["flux-dev"].signature)
    signature["guidance_in.in_layer.weight"] = (3072, 256)
    info = single_file.inspect(sparse_safetensors(tmp_path / "flux1-dev.safetensors", signature))
    sidecar = single_file.Sidecar(tmp_path / "x", files=[tmp_path / "t5xxl_mxfp8.safetensors"])
    chosen, _ = single_file.choose_parts(info, single_file.shipped_folder(info.variant), sidecar)
    assert chosen["text_encoder_2"].path.name == "t5xxl_fp8_e4m3fn_scaled.safetensors"


@pytest.mark.parametrize("variant", ["sdxl", "flux-dev", "qwen-image", "z-image"])
def test_scales_and_formats_leave_family_and_variant_detection_alone(
    tmp_path: Path, variant: str
) -> None:
    """A published model's fp8 scaled file (ComfyUI's names and prefix): every weight with
    its weight_scale, input_scale and comfy_quant is still the published model."""
    prefix = "" if variant == "sdxl" else "model.diffusion_model."
    signature = dict(single_file.VARIANTS[variant].signature)
    if variant == "flux-dev":
        signature["guidance_in.in_layer.weight"] = (3072, 256)
    shapes: dict = {}
    for key, shape in signature.items():
        layer = prefix + key.removesuffix(".weight")
        shapes |= {
            prefix + key: (shape, "F8_E4M3"),
            f"{layer}.weight_scale": ((), "F32"),
            f"{layer}.input_scale": ((), "F32"),
            f"{layer}.comfy_quant": ((29,), "U8"),
        }
    if variant == "qwen-image":  # what tells Qwen-Image (a norm: kept in 16 bits)
        shapes[prefix + "txt_norm.weight"] = ((3584,), "F16")
    info = single_file.inspect(sparse_safetensors(tmp_path / f"{variant}.safetensors", shapes))
    assert info.is_scaled and info.family.name == variant
    assert info.variant.name == variant and info.matches


# -- inpainting checkpoints (9-channel UNet) ---------------------------------------------------


def test_an_inpainting_checkpoint_loads_as_the_inpainting_pipeline(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """sd-v1-5-inpainting.safetensors-style: the UNet takes the noisy latents, the mask and
    the masked picture's latents (9 channels). It loads offline with the shipped SD 1.x
    configs as the inpainting pipeline and inpaints to the pixels of its folder."""
    from diffusers import StableDiffusionInpaintPipeline, UNet2DConditionModel
    from PIL import Image

    from studio.bench import tiny_families as tiny

    clip, tokenizer = _shipped_clip(32, projection=False, seed=1)
    torch.manual_seed(0)
    unet = UNet2DConditionModel(
        sample_size=8, in_channels=9, out_channels=4, block_out_channels=(16, 32),
        layers_per_block=1, down_block_types=("DownBlock2D", "CrossAttnDownBlock2D"),
        up_block_types=("CrossAttnUpBlock2D", "UpBlock2D"), cross_attention_dim=32,
        attention_head_dim=(2, 4), norm_num_groups=8,
    )  # fmt: skip
    base = StableDiffusionInpaintPipeline(
        vae=tiny._kl_vae(4, 0.18215, None, quant_conv=True),
        text_encoder=clip,
        tokenizer=tokenizer,
        unet=unet,
        scheduler=tiny._sd_scheduler("sd1"),
        safety_checker=None,
        feature_extractor=None,
        requires_safety_checker=False,
    )
    reference_folder = tmp_path / "reference"
    base.save_pretrained(reference_folder, safe_serialization=True)
    state = sd_checkpoint(base)
    assert state["model.diffusion_model.input_blocks.0.0.weight"].shape[1] == 9
    signature = {  # the tiny model's shapes where the published model's are (4 inputs)
        "model.diffusion_model.input_blocks.0.0.weight": (16, 4, 3, 3),
        "first_stage_model.encoder.conv_in.weight": (8, 3, 3, 3),
    }
    _as_shipped(monkeypatch, tmp_path, "sd1", reference_folder, signature)
    path = _save(state, tmp_path / "sd-tiny-inpainting.safetensors")
    info = single_file.inspect(path)
    assert info.family.name == "sd1" and info.matches and info.unet_inputs == 9
    for model in (path, reference_folder):  # the window offers Inpaint alone, file or folder
        assert catalog.model_family(str(model)).modes == ("inpaint",)

    manager = ModelManager()
    pipe = manager.pipeline(str(path), Mode.INPAINT)
    assert type(pipe).__name__ == "StableDiffusionInpaintPipeline"
    reference = _folder_pipe(reference_folder)
    picture = Image.fromarray((np.indices((SIZE, SIZE)).sum(0) % 256).astype(np.uint8)).convert(
        "RGB"
    )
    mask = Image.new("L", (SIZE, SIZE), 0)
    mask.paste(255, (16, 16, 48, 48))
    inputs = {"image": picture, "mask_image": mask, "strength": 1.0}
    ours, theirs = _pixels(pipe, **inputs), _pixels(reference, **inputs)
    np.testing.assert_allclose(ours, theirs, atol=1e-5)
    # text→image has no picture to repaint: one sentence, not a library's error
    with pytest.raises(ModelError, match=r"inpainting model.*Inpaint"):
        manager.pipeline(str(path), Mode.TEXT_TO_IMAGE)

    # through the engine: previews at every step, the unmasked area kept
    from studio.engine.generate import Engine

    engine = Engine()
    request = GenerationRequest(
        prompt="a red circle", model=str(path), width=SIZE, height=SIZE, steps=3, seed=5,
        mode=Mode.INPAINT, init_image=picture, mask=mask, mask_blur=0, strength=1.0,
    )  # fmt: skip
    reporter = RecordingReporter()
    result = engine.run(request, reporter)
    image = np.asarray(result.images[0], np.float32)
    assert image.shape == (SIZE, SIZE, 3) and not result.cancelled
    assert [p.step for p in reporter.steps] == [1, 2, 3]
    assert all(p.preview is not None for p in reporter.steps)
    outside = np.asarray(picture, np.float32)
    assert np.abs(image[:8] - outside[:8]).mean() < 2.0  # kept (up to VAE round trip)
    assert np.abs(image[20:44, 20:44] - outside[20:44, 20:44]).mean() > 10.0  # repainted


@pytest.mark.parametrize(
    ("name", "pipeline"),
    [
        ("sd-v1-5-inpainting", "StableDiffusionInpaintPipeline"),
        ("sd2-inpainting", "StableDiffusionInpaintPipeline"),
        ("sdxl-inpainting", "StableDiffusionXLInpaintPipeline"),
    ],
)
def test_a_published_inpainting_checkpoint_is_built_with_the_shipped_configs(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, name: str, pipeline: str
) -> None:
    """The loading decision for real inpainting checkpoints: the family's inpainting
    pipeline, the shipped configs with a 9-channel UNet; SD 2's inpainting model predicts
    epsilon whatever its name says."""
    import diffusers

    variant = {"sd": "sd1", "sd2": "sd2-base", "sdxl": "sdxl"}[name.split("-")[0]]
    signature = dict(single_file.VARIANTS[variant].signature)
    signature[single_file.UNET_IN] = (320, 9, 3, 3)
    if variant == "sdxl":
        signature["conditioner.embedders.0.transformer.text_model.final_layer_norm.bias"] = (768,)
    path = sparse_safetensors(tmp_path / f"{name}.safetensors", signature)
    info = single_file.inspect(path)
    assert info.matches and info.variant.name == variant and info.unet_inputs == 9
    asked = {}

    def from_single_file(source, **kwargs):  # noqa: ANN001, ANN003, ANN202
        asked.update(kwargs, source=source)
        raise RuntimeError("stop here")

    monkeypatch.setattr(getattr(diffusers, pipeline), "from_single_file", from_single_file)
    with pytest.raises(RuntimeError, match="stop here"):
        single_file.load(path, diffusers.DiffusionPipeline, torch.float32)
    config = Path(asked["config"])
    assert json.loads((config / "model_index.json").read_text())["_class_name"] == pipeline
    assert json.loads((config / "unet" / "config.json").read_text())["in_channels"] == 9
    scheduler = json.loads((config / "scheduler" / "scheduler_config.json").read_text())
    assert scheduler.get("prediction_type", "epsilon") == "epsilon"
    assert (config / "tokenizer" / "vocab.json").is_file()


# -- Chroma ------------------------------------------------------------------------------------


def chroma_to_original(state: dict) -> dict:
    """ChromaTransformer2DModel → lodestones' names (Flux's, without the per-block
    modulation, with the distilled guidance network), as chroma-*.safetensors have them."""
    s = dict(state)
    guidance = {}
    approximator = "distilled_guidance_layer."
    for key in [k for k in s if k.startswith(approximator)]:
        value = s.pop(key)
        key = key.replace(".linear_1.", ".in_layer.").replace(".linear_2.", ".out_layer.")
        if ".norms." in key:
            key = key.replace(".weight", ".scale")
        guidance[key] = value
    assert not any(".norm1.linear." in k for k in s)  # no per-block modulation
    # Flux's names for the rest; the final layer has no modulation of its own
    s["norm_out.linear.weight"] = torch.zeros(2, 1)  # so that flux_to_original has one to drop
    s["norm_out.linear.bias"] = torch.zeros(2)
    out = flux_to_original(s)
    out.pop("final_layer.adaLN_modulation.1.weight")
    out.pop("final_layer.adaLN_modulation.1.bias")
    return out | guidance


def test_a_chroma_transformer_file_takes_the_rest_from_its_companion(tmp_path: Path) -> None:
    """chroma-unlocked-*.safetensors as lodestones publishes it (the transformer alone, in
    its own names), a Chroma diffusers folder beside it: offline, the folder's pixels."""
    models = tmp_path / "models"
    companion = Path(build("chroma", models / "Chroma1-HD-tiny"))
    folder = _folder_pipe(companion)
    state = chroma_to_original(folder.transformer.state_dict())
    assert "distilled_guidance_layer.norms.0.scale" in state
    path = _save({k: v.contiguous() for k, v in state.items()}, models / "chroma-tiny.safetensors")
    assert single_file.inspect(path).family.name == "chroma"
    manager = ModelManager()
    pipe = manager.pipeline(str(path), Mode.TEXT_TO_IMAGE)
    assert family_of(pipe).name == "chroma" and pipe.transformer is not folder.transformer
    np.testing.assert_allclose(_pixels(pipe), _pixels(folder), atol=1e-5)
    assert manager.pipeline(str(path), Mode.INPAINT).transformer is pipe.transformer


def test_published_flux_parts_are_chosen_from_the_models_folder_by_shape_name_and_precision(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A flux1-dev file chosen from anywhere, the models folder in use being Forge's (VAE,
    text_encoder): its ae (not SD 3.5's VAE of the same shapes, nor SDXL's), CLIP-L (not
    CLIP-G) and T5 in 16 bits (not fp8) are the parts; without a VAE, one sentence."""
    from diffusers import DiffusionPipeline

    from studio.core import models_folder

    forge = tmp_path / "forge" / "models"
    vae16 = {"decoder.conv_in.weight": ((512, 16, 3, 3), "F16")}
    sparse_safetensors(forge / "VAE" / "ae.safetensors", vae16)
    sparse_safetensors(forge / "VAE" / "sd3.5_vae.safetensors", vae16)
    sparse_safetensors(
        forge / "VAE" / "sdxl_vae.safetensors", {"decoder.conv_in.weight": ((512, 4, 3, 3), "F16")}
    )  # noqa: E501
    encoders = forge / "text_encoder"
    sparse_safetensors(
        encoders / "clip_g.safetensors",
        {"text_model.embeddings.token_embedding.weight": ((49408, 1280), "F16")},
    )  # noqa: E501
    sparse_safetensors(
        encoders / "clip_l.safetensors",
        {"text_model.embeddings.token_embedding.weight": ((49408, 768), "F16")},
    )  # noqa: E501
    for name, dtype in (("t5xxl_fp8_e4m3fn", "F8_E4M3"), ("t5xxl_fp16", "F16")):
        t5 = {
            "shared.weight": ((32128, 4096), "F16"),
            "encoder.block.0.layer.0.SelfAttention.q.weight": ((4096, 4096), dtype),
        }
        sparse_safetensors(encoders / f"{name}.safetensors", t5)
    signature = dict(single_file.VARIANTS["flux-dev"].signature)
    signature["guidance_in.in_layer.weight"] = (3072, 256)
    (tmp_path / "Downloads").mkdir()
    path = sparse_safetensors(tmp_path / "Downloads" / "flux1-dev.safetensors", signature)
    monkeypatch.setattr(models_folder, "_chosen", {"command line": forge.parent, "setting": None})
    info = single_file.inspect(path)
    folder = single_file.shipped_folder(info.variant)
    chosen, missing = single_file.choose_parts(info, folder, None)
    assert not missing
    assert {c: p.path.name for c, p in chosen.items()} == {
        "vae": "ae.safetensors",
        "text_encoder": "clip_l.safetensors",
        "text_encoder_2": "t5xxl_fp16.safetensors",
    }
    (forge / "VAE" / "ae.safetensors").unlink()  # SD 3.5's is not taken instead
    with pytest.raises(ModelError, match=r"its VAE \(ae\.safetensors\) was not found") as caught:
        single_file.load(path, DiffusionPipeline, torch.float32)
    assert "\n" not in str(caught.value)


# -- Chroma, Qwen-Image and Z-Image with separate parts; GGUF text encoders ------------------


def diffusers_to_wan_vae(state: dict, num_res_blocks: int) -> dict:
    """AutoencoderKLQwenImage → Wan 2.1's original names (ComfyUI's qwen_image_vae)."""
    residual = {
        "norm1.gamma": "residual.0.gamma",
        "conv1.": "residual.2.",
        "norm2.gamma": "residual.3.gamma",
        "conv2.": "residual.6.",
        "conv_shortcut.": "shortcut.",
    }

    def res(rest: str) -> str:
        return next((o + rest[len(n) :] for n, o in residual.items() if rest.startswith(n)), rest)

    out = {}
    for key, value in state.items():
        side, _, rest = key.partition(".")
        if side in ("quant_conv", "post_quant_conv"):
            new = ("conv1." if side == "quant_conv" else "conv2.") + rest
        elif rest.startswith(("conv_in.", "norm_out.", "conv_out.")):
            head, _, end = rest.partition(".")
            original = {"conv_in": "conv1", "norm_out": "head.0", "conv_out": "head.2"}[head]
            new = f"{side}.{original}.{end}"
        elif rest.startswith("mid_block.attentions.0."):
            new = f"{side}.middle.1." + rest.removeprefix("mid_block.attentions.0.")
        elif rest.startswith("mid_block.resnets."):
            index, _, tail = rest.removeprefix("mid_block.resnets.").partition(".")
            new = f"{side}.middle.{2 * int(index)}." + res(tail)
        elif rest.startswith("down_blocks."):
            index, _, tail = rest.removeprefix("down_blocks.").partition(".")
            new = f"{side}.downsamples.{index}." + res(tail)
        else:  # up_blocks.L.resnets.R.* / up_blocks.L.upsamplers.0.*
            _, level, group, index, tail = rest.split(".", 4)
            at = int(level) * (num_res_blocks + 2)
            at += int(index) if group == "resnets" else num_res_blocks + 1
            new = f"{side}.upsamples.{at}." + (res(tail) if group == "resnets" else tail)
        out[new] = value
    return out


def comfy_qwen(model) -> dict:  # noqa: ANN001
    """A Qwen text encoder as ComfyUI's qwen_2.5_vl_7b / qwen_3_4b files keep it
    (transformers 4's names: model.layers., visual., lm_head)."""
    out = {}
    for key, value in model.state_dict().items():
        if key.startswith("model.language_model."):
            key = "model." + key.removeprefix("model.language_model.")
        elif key.startswith("model.visual."):
            key = key.removeprefix("model.")
        elif not key.startswith(("model.", "lm_head.")):  # a bare Qwen3Model
            key = "model." + key
        out[key] = value.contiguous()
    return out


def text_encoder_to_gguf(model, path: Path, quantize: bool, quant: str = "Q8_0") -> Path:  # noqa: ANN001
    """A text encoder as llama.cpp writes it (names from gguf's own tensor map), its linear
    layers' weights at `quant` if `quantize`."""
    import gguf

    t5 = type(model).__name__ == "T5EncoderModel"
    arch = {"T5EncoderModel": gguf.MODEL_ARCH.T5ENCODER, "Qwen3Model": gguf.MODEL_ARCH.QWEN3}.get(
        type(model).__name__,
        gguf.MODEL_ARCH.QWEN2VL,  # Qwen2.5-VL's language model
    )
    layers = model.config.num_layers if t5 else model.config.get_text_config().num_hidden_layers
    names = gguf.get_tensor_name_map(arch, layers)
    state = comfy_t5(model, torch.float32) if t5 else comfy_qwen(model)
    renamed = {}
    for key, tensor in state.items():
        if key.startswith("visual."):
            continue  # GGUF text encoders hold the language model alone
        stem, _, end = key.rpartition(".")
        renamed[f"{names.get_name(stem)}.{end}"] = tensor

    def weights(name: str, data: np.ndarray) -> bool:  # noqa: ARG001
        return quantize and "token" not in name

    return _write_gguf(renamed, path, weights, gguf.MODEL_ARCH_NAMES[arch], quant)


def _round_tripped(model, quant: str) -> None:  # noqa: ANN001
    """`model`'s linear layers' weights as text_encoder_to_gguf stores them at `quant`,
    dequantised again: what the file holds, at full precision."""
    import gguf

    kind = gguf.GGMLQuantizationType[quant]
    with torch.no_grad():
        for module in model.modules():
            if isinstance(module, torch.nn.Linear) and module.in_features % 32 == 0:
                stored = gguf.quants.quantize(module.weight.float().numpy(), kind)
                module.weight.copy_(torch.from_numpy(gguf.quants.dequantize(stored, kind)))


def _quantised_linears(model) -> list[str]:  # noqa: ANN001
    """The linear layers of `model` whose weights are still a GGUF file's quantised bytes."""
    return [
        name
        for name, module in model.named_modules()
        if isinstance(module, torch.nn.Linear) and type(module.weight).__name__ == "GGUFParameter"
    ]


@pytest.mark.parametrize("family", ["chroma", "qwen_image", "z_image"])
def test_chroma_qwen_image_and_z_image_files_load_with_separate_parts_and_gguf_text_encoders(
    family: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """ComfyUI's layout for each: the transformer in its original names in
    models/diffusion_models, the VAE (Flux's ae; Qwen-Image's in Wan's names) in models/vae,
    the text encoder (T5; Qwen2.5-VL or Qwen3 in ComfyUI's names) in models/text_encoders,
    the tokenizer where ComfyUI keeps its own: offline, the pixels of the folder the files
    were written from. Then the text encoder as a GGUF instead, as low-VRAM users have it:
    the same pixels at full precision, close ones at Q8_0."""
    from tests.engine.tiny_families import make_pipeline

    base = make_pipeline(family)
    reference_folder = tmp_path / "reference"
    base.save_pretrained(reference_folder, safe_serialization=True)
    reference = _folder_pipe(reference_folder)
    expected = _pixels(reference)
    state = base.transformer.state_dict()
    if family == "chroma":
        transformer = {k: v.contiguous() for k, v in chroma_to_original(state).items()}
        signature = ("img_in.weight", "txt_in.weight", "distilled_guidance_layer.in_proj.weight")
    elif family == "z_image":
        transformer = z_image_to_original(state)
        signature = ("x_embedder.weight", "cap_embedder.1.weight")
    else:  # Qwen-Image is published in diffusers' names; ComfyUI's prefix before them
        transformer = {f"model.diffusion_model.{k}": v.contiguous() for k, v in state.items()}
        signature = ("img_in.weight", "txt_in.weight")
    variant = family.replace("_", "-")
    shapes = {
        k.removeprefix("model.diffusion_model."): tuple(v.shape) for k, v in transformer.items()
    }
    _as_shipped(monkeypatch, tmp_path, variant, reference_folder, {k: shapes[k] for k in signature})

    comfy = tmp_path / "ComfyUI"
    models = comfy / "models"
    for sub in ("diffusion_models", "vae", "text_encoders"):
        (models / sub).mkdir(parents=True)
    path = _save(transformer, models / "diffusion_models" / f"{variant}-tiny.safetensors")
    if family == "qwen_image":
        vae = diffusers_to_wan_vae(base.vae.state_dict(), base.vae.config.num_res_blocks)
        _save(vae, models / "vae" / "qwen_image_vae.safetensors")
    else:
        vae = vae_to_original(base.vae.state_dict(), base.vae.config)
        ae = {k.removeprefix("first_stage_model."): v for k, v in vae.items()}
        _save(ae, models / "vae" / "ae.safetensors")
    encoders = models / "text_encoders"
    if family == "chroma":
        encoder = _save(comfy_t5(base.text_encoder, torch.float32), encoders / "t5xxl.safetensors")
        tokenizer = comfy / "comfy" / "text_encoders" / "t5_tokenizer"
    else:
        name = "qwen_2.5_vl_7b" if family == "qwen_image" else "qwen_3_4b"
        encoder = _save(comfy_qwen(base.text_encoder), encoders / f"{name}.safetensors")
        tokenizer = comfy / "comfy" / "text_encoders" / "qwen25_tokenizer"
    kind = "T5" if family == "chroma" else "Qwen"
    with pytest.raises(ModelError, match=rf"{kind}'s tokenizer does not come with the studio"):
        ModelManager().pipeline(str(path), Mode.TEXT_TO_IMAGE)
    base.tokenizer.save_pretrained(tokenizer)

    manager = ModelManager()
    pipe = manager.pipeline(str(path), Mode.TEXT_TO_IMAGE)
    assert family_of(pipe).name == variant and pipe.transformer is not reference.transformer
    np.testing.assert_allclose(_pixels(pipe), expected, atol=1e-5)
    manager.unload()

    # the text encoder as a GGUF (llama.cpp's names and architecture), full precision: the
    # same pixels
    encoder.unlink()
    gguf_file = text_encoder_to_gguf(base.text_encoder, encoders / "encoder-F32.gguf", False)
    pipe = manager.pipeline(str(path), Mode.TEXT_TO_IMAGE)
    np.testing.assert_allclose(_pixels(pipe), expected, atol=1e-5)
    manager.unload()
    # quantised as GGUF files are (Q8_0): its linear layers stay quantised in memory, and
    # the pixels are those of the file's weights dequantised (the tiny Qwens' narrow layers
    # cannot be: Q8_0's blocks are 32 wide)
    gguf_file.unlink()
    text_encoder_to_gguf(base.text_encoder, encoders / "encoder-Q8_0.gguf", True)
    pipe = manager.pipeline(str(path), Mode.TEXT_TO_IMAGE)
    assert _quantised_linears(pipe.text_encoder)
    _round_tripped(reference.text_encoder, "Q8_0")
    np.testing.assert_allclose(_pixels(pipe), _pixels(reference), atol=2e-4)


def _wide_text_encoder(t5: bool):  # noqa: ANN202
    """A text encoder whose linear layers outweigh its embedding, as the published ones' do
    (T5-XXL's embedding is 3 % of it, Qwen2.5-VL-7B's 7 %), and wide enough for Q4_0's and
    Q8_0's 32-wide blocks."""
    from transformers import Qwen3Config, Qwen3Model, T5Config, T5EncoderModel

    torch.manual_seed(0)
    if t5:
        config = T5Config(
            vocab_size=64, d_model=256, d_kv=64, d_ff=512, num_layers=2, num_heads=4,
            relative_attention_num_buckets=8, feed_forward_proj="gated-gelu",
            dropout_rate=0.0, is_encoder_decoder=False, use_cache=False,
        )  # fmt: skip
        return T5EncoderModel(config).eval()
    config = Qwen3Config(
        vocab_size=64, hidden_size=256, intermediate_size=512, num_hidden_layers=2,
        num_attention_heads=4, num_key_value_heads=2, head_dim=64,
    )  # fmt: skip
    return Qwen3Model(config).eval()


def _load_gguf_text_encoder(model, path: Path, folder: Path, dtype: torch.dtype):  # noqa: ANN001, ANN202
    """`path` loaded as the studio loads a text encoder part, with `model`'s config."""
    model.config.save_pretrained(folder / "text_encoder")
    index = {"text_encoder": ["transformers", type(model).__name__]}
    (folder / "model_index.json").write_text(json.dumps(index))
    (part,) = single_file.identify_parts(path, rank=1)
    role = "t5xxl" if part.kind == "t5" else "qwen3"
    return single_file.load_part(part, role, "text_encoder", folder, dtype)


@pytest.mark.parametrize("quant", ["Q8_0", "Q4_0", "MXFP4"])
@pytest.mark.parametrize("t5", [True, False], ids=["t5", "qwen3"])
def test_a_quantised_gguf_text_encoder_stays_quantised_in_memory(
    t5: bool, quant: str, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """A Q8_0 or Q4_0 text encoder keeps its linear layers' weights as the file's bytes,
    dequantised in each forward: a fraction of its float32 size, the outputs of the file's
    weights dequantised, in the dtype the pipeline is cast to after loading. MXFP4, which
    diffusers cannot dequantise on the fly, is dequantised when read, and the log says so."""
    model = _wide_text_encoder(t5)
    path = text_encoder_to_gguf(model, tmp_path / f"encoder-{quant}.gguf", True, quant)
    caplog.set_level("INFO", logger="studio.engine.single_file")
    loaded = _load_gguf_text_encoder(model, path, tmp_path, torch.float32)

    linears = [n for n, m in loaded.named_modules() if isinstance(m, torch.nn.Linear)]
    ratio = sum(p.nbytes for p in loaded.parameters()) / (4 * model.num_parameters())
    on_the_fly = quant != "MXFP4"
    assert _quantised_linears(loaded) == (linears if on_the_fly else [])
    assert ratio < (0.4 if quant == "Q8_0" else 0.25) if on_the_fly else ratio > 0.99
    assert ("MXFP4 tensors are dequantised when read" in caplog.text) != on_the_fly

    _round_tripped(model, quant)
    ids = torch.arange(12)[None] * 5 % 64
    with torch.no_grad():
        expected = model(ids).last_hidden_state
        torch.testing.assert_close(loaded(ids).last_hidden_state, expected, atol=5e-3, rtol=0)
        cast = loaded.to(torch.bfloat16)(ids).last_hidden_state  # as models._placement may
    assert cast.dtype == torch.bfloat16
    torch.testing.assert_close(cast.float(), expected, atol=0.1, rtol=0.05)
    if t5 and on_the_fly:  # T5's `wo` overflows float16: it computes in float32, as in transformers
        wo = loaded.encoder.block[0].layer[1].DenseReluDense.wo
        assert wo(torch.ones(1, wo.in_features, dtype=torch.float16)).dtype == torch.float32


def test_gguf_tensors_read_are_copies_and_a_quantised_layer_says_its_device(
    tmp_path: Path,
) -> None:
    """A full-precision GGUF tensor is copied out of the file's memory map (not a read-only
    view that keeps the file mapped), and a quantised layer's `device` is its weight's."""
    import gguf

    from studio.engine import gguf_weights

    state = {"norm.weight": torch.ones(32), "linear.weight": torch.ones(4, 32)}
    path = _write_gguf(state, tmp_path / "parts.gguf", _linear_weights)
    tensors = {t.name: t for t in gguf.GGUFReader(str(path)).tensors}
    norm = gguf_weights.read_tensor(tensors["norm.weight"])
    assert not np.shares_memory(norm.numpy(), tensors["norm.weight"].data)
    weight = gguf_weights.read_tensor(tensors["linear.weight"])
    layer = gguf_weights.QuantisedLinear.replacing(torch.nn.Linear(32, 4), weight, False)
    assert layer.device == torch.device("cpu")


def test_a_truncated_quantised_gguf_text_encoder_is_one_sentence(tmp_path: Path) -> None:
    model = _wide_text_encoder(True)
    path = text_encoder_to_gguf(model, tmp_path / "t5-v1_1-xxl-encoder-Q4_0.gguf", True, "Q4_0")
    path.write_bytes(path.read_bytes()[: path.stat().st_size * 2 // 3])
    with pytest.raises(ModelError, match=r"'t5-v1_1-xxl-encoder-Q4_0\.gguf' is not a readable"):
        _load_gguf_text_encoder(model, path, tmp_path, torch.float32)


def test_a_damaged_gguf_text_encoder_is_one_sentence(tmp_path: Path) -> None:
    """A .gguf text encoder named in `<file>.companion` that cannot be read: one sentence
    naming it, not a traceback."""
    from diffusers import DiffusionPipeline

    signature = dict(single_file.VARIANTS["chroma"].signature)
    path = sparse_safetensors(tmp_path / "chroma-unlocked-v48.safetensors", signature)
    (tmp_path / "t5-v1_1-xxl-encoder-Q8_0.gguf").write_bytes(b"GGUF\x03\x00\x00\x00garbage")
    (tmp_path / "chroma-unlocked-v48.safetensors.companion").write_text(
        "t5-v1_1-xxl-encoder-Q8_0.gguf\n"
    )
    with pytest.raises(
        ModelError, match=r"'t5-v1_1-xxl-encoder-Q8_0\.gguf' is not a readable GGUF"
    ) as caught:
        single_file.load(path, DiffusionPipeline, torch.float32)
    assert "\n" not in str(caught.value)


@pytest.mark.parametrize(
    ("named", "files", "kind"),
    [
        ("CLIPTokenizer", ("vocab.json", "merges.txt"), "clip"),
        ("T5TokenizerFast", ("vocab.json", "merges.txt"), "t5"),  # the class wins over files
        ("Qwen2Tokenizer", ("spiece.model",), "qwen"),
        ("BertTokenizer", ("vocab.json", "merges.txt"), None),  # a class of none we take
        ("", ("spiece.model",), "t5"),  # no class: the files tell
        ("", ("vocab.json", "merges.txt"), "qwen"),
    ],
)
def test_a_tokenizer_folder_is_what_its_class_says(tmp_path: Path, named, files, kind) -> None:  # noqa: ANN001
    if named:
        (tmp_path / "tokenizer_config.json").write_text(json.dumps({"tokenizer_class": named}))
    for name in files:
        (tmp_path / name).write_text("{}")
    assert single_file.tokenizer_kind(tmp_path) == kind
