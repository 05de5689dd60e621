"""Diffusers pipelines built from configs with random weights, as diffusers' own tests do.

The tiny ones exercise every code path of a real model in milliseconds (what they draw
is noise, so tests that judge pictures use the embedded studio-tiny model instead); the
SD 1.5-shaped one costs what the real model costs, for benchmarks, with no download.
"""

from __future__ import annotations

import contextlib
import json
import tempfile
from pathlib import Path
from typing import Any

import torch

_SPECIAL = ["<|startoftext|>", "<|endoftext|>"]


def _byte_chars() -> list[str]:
    """The 256 printable stand-ins for bytes that GPT-2/CLIP byte-level BPE uses."""
    printable = [*range(ord("!"), ord("~") + 1), *range(ord("¡"), ord("¬") + 1)]
    printable += range(ord("®"), ord("ÿ") + 1)
    chars, extra = [], 0
    for b in range(256):
        if b in printable:
            chars.append(chr(b))
        else:
            chars.append(chr(256 + extra))
            extra += 1
    return chars


def write_byte_tokenizer(folder: Path, max_length: int = 16) -> None:
    """A CLIP tokenizer whose vocabulary is single characters (no merges)."""
    chars = _byte_chars()
    vocab = {c: i for i, c in enumerate(chars)}
    for c in chars:
        vocab[c + "</w>"] = len(vocab)
    for token in _SPECIAL:
        vocab[token] = len(vocab)
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "vocab.json").write_text(json.dumps(vocab), encoding="utf-8")
    (folder / "merges.txt").write_text("#version: 0.2\n", encoding="utf-8")
    (folder / "tokenizer_config.json").write_text(
        json.dumps(
            {
                "model_max_length": max_length,
                "bos_token": _SPECIAL[0],
                "eos_token": _SPECIAL[1],
                "unk_token": _SPECIAL[1],
                "pad_token": _SPECIAL[1],
                "tokenizer_class": "CLIPTokenizer",
            }
        ),
        encoding="utf-8",
    )


def _text_encoder(vocab_size: int):
    from transformers import CLIPTextConfig, CLIPTextModel

    torch.manual_seed(0)
    config = CLIPTextConfig(
        bos_token_id=vocab_size - 2,
        eos_token_id=vocab_size - 1,
        pad_token_id=vocab_size - 1,
        hidden_size=32,
        intermediate_size=37,
        num_attention_heads=4,
        num_hidden_layers=2,
        vocab_size=vocab_size,
        max_position_embeddings=16,
    )
    return CLIPTextModel(config)


def _tiny_parts(folder: Path, unet_inputs: int, vae_levels: int, **unet_extra: Any) -> dict:
    """Tokenizer, text encoder, UNet and VAE small enough to run in milliseconds."""
    from diffusers import AutoencoderKL, UNet2DConditionModel
    from transformers import CLIPTokenizer

    write_byte_tokenizer(folder / "tokenizer")
    tokenizer = CLIPTokenizer.from_pretrained(folder / "tokenizer")
    torch.manual_seed(0)
    unet = UNet2DConditionModel(
        block_out_channels=(16, 32),
        layers_per_block=1,
        sample_size=16,
        in_channels=unet_inputs,
        out_channels=4,
        down_block_types=("DownBlock2D", "CrossAttnDownBlock2D"),
        up_block_types=("CrossAttnUpBlock2D", "UpBlock2D"),
        cross_attention_dim=32,
        norm_num_groups=8,
        attention_head_dim=4,
        **unet_extra,
    )
    torch.manual_seed(0)
    vae = AutoencoderKL(
        block_out_channels=(16,) * (vae_levels - 1) + (32,),
        in_channels=3,
        out_channels=3,
        down_block_types=("DownEncoderBlock2D",) * vae_levels,
        up_block_types=("UpDecoderBlock2D",) * vae_levels,
        latent_channels=4,
        norm_num_groups=8,
        # the x4 upscale pipeline insists on the real upscaler's factor
        scaling_factor=0.08333 if vae_levels == 3 else 0.18215,
    )
    return {
        "tokenizer": tokenizer,
        "text_encoder": _text_encoder(len(tokenizer)),
        "unet": unet,
        "vae": vae,
    }


def build_tiny_sd(folder: Path) -> Path:
    """A random-weight Stable Diffusion pipeline folder (VAE factor 2, 32×32 default)."""
    from diffusers import EulerDiscreteScheduler, StableDiffusionPipeline

    scheduler = EulerDiscreteScheduler(
        beta_start=0.00085, beta_end=0.012, beta_schedule="scaled_linear", steps_offset=1
    )
    pipe = StableDiffusionPipeline(
        **_tiny_parts(folder, unet_inputs=4, vae_levels=2),
        scheduler=scheduler,
        safety_checker=None,
        feature_extractor=None,
        requires_safety_checker=False,
    )
    pipe.save_pretrained(folder)
    return folder


def build_tiny_upscaler(folder: Path) -> Path:
    """A random-weight ×4 upscaler folder (VAE factor 4, UNet on latents + low-res RGB)."""
    from diffusers import DDIMScheduler, DDPMScheduler, StableDiffusionUpscalePipeline

    pipe = StableDiffusionUpscalePipeline(
        **_tiny_parts(folder, unet_inputs=7, vae_levels=3, num_class_embeds=400),
        low_res_scheduler=DDPMScheduler(),
        scheduler=DDIMScheduler(prediction_type="v_prediction"),
        max_noise_level=350,
    )
    pipe.save_pretrained(folder)
    return folder


SD15_UNET: dict[str, Any] = {
    "sample_size": 64,
    "in_channels": 4,
    "out_channels": 4,
    "down_block_types": ("CrossAttnDownBlock2D",) * 3 + ("DownBlock2D",),
    "up_block_types": ("UpBlock2D",) + ("CrossAttnUpBlock2D",) * 3,
    "block_out_channels": (320, 640, 1280, 1280),
    "layers_per_block": 2,
    "cross_attention_dim": 768,
    "attention_head_dim": 8,
}
SD15_VAE: dict[str, Any] = {
    "in_channels": 3,
    "out_channels": 3,
    "down_block_types": ("DownEncoderBlock2D",) * 4,
    "up_block_types": ("UpDecoderBlock2D",) * 4,
    "block_out_channels": (128, 256, 512, 512),
    "layers_per_block": 2,
    "latent_channels": 4,
    "sample_size": 512,
}
SD15_TEXT: dict[str, Any] = {
    "vocab_size": 49408,
    "hidden_size": 768,
    "intermediate_size": 3072,
    "num_hidden_layers": 12,
    "num_attention_heads": 12,
    "max_position_embeddings": 77,
    "hidden_act": "quick_gelu",
}
SD15_SCHEDULER: dict[str, Any] = {
    "beta_start": 0.00085,
    "beta_end": 0.012,
    "beta_schedule": "scaled_linear",
    "steps_offset": 1,
}


# SD 1.5's layout (blocks, attention, encoders, scheduler) at a width a CPU runs in
# seconds: the GPU bench's own code path, tested on machines without a GPU.
SD15_NARROW = {
    "unet": {
        **SD15_UNET,
        "block_out_channels": (32, 64, 64, 64),
        "cross_attention_dim": 64,
        "layers_per_block": 1,
    },
    "vae": {**SD15_VAE, "block_out_channels": (32, 32, 64, 64), "layers_per_block": 1},
    "text": {
        **SD15_TEXT,
        "hidden_size": 64,
        "intermediate_size": 128,
        "num_hidden_layers": 2,
        "num_attention_heads": 4,
    },
}


def build_sd15_narrow(dtype: Any = None, device: Any = "cpu") -> Any:
    """The SD 1.5 pipeline of `build_sd15`, narrowed (SD15_NARROW)."""
    return build_sd15(dtype, device, SD15_NARROW)


def build_sd15(dtype: Any = None, device: Any = "cpu", configs: Any = None) -> Any:
    """An SD 1.5-shaped StableDiffusionPipeline with random weights, in memory."""
    from diffusers import (
        AutoencoderKL,
        EulerAncestralDiscreteScheduler,
        StableDiffusionPipeline,
        UNet2DConditionModel,
    )
    from transformers import CLIPTextConfig, CLIPTextModel

    torch.manual_seed(0)
    with _building(device, dtype):
        configs = configs or {"unet": SD15_UNET, "vae": SD15_VAE, "text": SD15_TEXT}
        networks = {
            "vae": AutoencoderKL(**configs["vae"]),
            "text_encoder": CLIPTextModel(CLIPTextConfig(**configs["text"])),
            "unet": UNet2DConditionModel(**configs["unet"]),
        }
    pipe = StableDiffusionPipeline(
        **networks,
        tokenizer=_clip_tokenizer(),
        scheduler=EulerAncestralDiscreteScheduler(**SD15_SCHEDULER),
        safety_checker=None,
        feature_extractor=None,
        requires_safety_checker=False,
    )
    return pipe.to(dtype=dtype) if dtype is not None else pipe


# ---------------------------------------------------------------------------------------
# SDXL and Flux.1-dev at full size, from their published configs (the values of
# stabilityai/stable-diffusion-xl-base-1.0 and black-forest-labs/FLUX.1-dev's config.json
# files), for the GPU bench: random weights compute what the real ones do.

SDXL_UNET: dict[str, Any] = {
    "sample_size": 128,
    "in_channels": 4,
    "out_channels": 4,
    "down_block_types": ("DownBlock2D", "CrossAttnDownBlock2D", "CrossAttnDownBlock2D"),
    "up_block_types": ("CrossAttnUpBlock2D", "CrossAttnUpBlock2D", "UpBlock2D"),
    "block_out_channels": (320, 640, 1280),
    "layers_per_block": 2,
    "attention_head_dim": (5, 10, 20),
    "cross_attention_dim": 2048,
    "transformer_layers_per_block": (1, 2, 10),
    "use_linear_projection": True,
    "addition_embed_type": "text_time",
    "addition_time_embed_dim": 256,
    "projection_class_embeddings_input_dim": 2816,
}
SDXL_VAE: dict[str, Any] = {
    **SD15_VAE,
    "sample_size": 1024,
    "scaling_factor": 0.13025,
    "force_upcast": True,
}
CLIP_L_TEXT: dict[str, Any] = {**SD15_TEXT, "projection_dim": 768}
CLIP_G_TEXT: dict[str, Any] = {  # OpenCLIP ViT-bigG/14's text tower
    "vocab_size": 49408,
    "hidden_size": 1280,
    "intermediate_size": 5120,
    "num_hidden_layers": 32,
    "num_attention_heads": 20,
    "max_position_embeddings": 77,
    "hidden_act": "gelu",
    "projection_dim": 1280,
}
SDXL_SCHEDULER: dict[str, Any] = {**SD15_SCHEDULER, "timestep_spacing": "leading"}

FLUX_TRANSFORMER: dict[str, Any] = {
    "patch_size": 1,
    "in_channels": 64,
    "num_layers": 19,
    "num_single_layers": 38,
    "attention_head_dim": 128,
    "num_attention_heads": 24,
    "joint_attention_dim": 4096,
    "pooled_projection_dim": 768,
    "guidance_embeds": True,
    "axes_dims_rope": (16, 56, 56),
}
FLUX_VAE: dict[str, Any] = {
    **SD15_VAE,
    "latent_channels": 16,
    "sample_size": 1024,
    "scaling_factor": 0.3611,
    "shift_factor": 0.1159,
    "use_quant_conv": False,
    "use_post_quant_conv": False,
}
T5_XXL: dict[str, Any] = {  # google/t5-v1_1-xxl's encoder, FLUX.1's text_encoder_2
    "vocab_size": 32128,
    "d_model": 4096,
    "d_kv": 64,
    "d_ff": 10240,
    "num_layers": 24,
    "num_heads": 64,
    "relative_attention_num_buckets": 32,
    "relative_attention_max_distance": 128,
    "feed_forward_proj": "gated-gelu",
    "layer_norm_epsilon": 1e-6,
    "tie_word_embeddings": False,
}
FLUX_SCHEDULER: dict[str, Any] = {
    "base_image_seq_len": 256,
    "base_shift": 0.5,
    "max_image_seq_len": 4096,
    "max_shift": 1.15,
    "shift": 3.0,
    "use_dynamic_shifting": True,
}

#: Parameters of the published models (the safetensors files' tensor counts), which the
#: random models built from these configs must match.
PUBLISHED_PARAMETERS: dict[str, dict[str, float]] = {
    "sd15": {"unet": 859.5e6, "text_encoder": 123.1e6, "vae": 83.7e6},
    "sdxl": {"unet": 2.567e9, "text_encoder": 123.1e6, "text_encoder_2": 694.7e6, "vae": 83.7e6},
    "flux": {
        "transformer": 11.90e9,
        "text_encoder": 123.1e6,
        "text_encoder_2": 4.762e9,
        "vae": 83.8e6,
    },
}


@contextlib.contextmanager
def _building(device: Any, dtype: Any) -> Any:
    """Modules made inside are made on `device` (their random initialisation too: seconds
    on a GPU for billions of weights; nothing at all on the meta device) in `dtype`."""
    previous = torch.get_default_dtype()
    torch.set_default_dtype(dtype if dtype is not None and dtype.is_floating_point else previous)
    try:
        with torch.device(device):
            yield
    finally:
        torch.set_default_dtype(previous)


def _clip_tokenizer() -> Any:
    from transformers import CLIPTokenizer

    with tempfile.TemporaryDirectory() as tmp:
        write_byte_tokenizer(Path(tmp), max_length=77)
        return CLIPTokenizer.from_pretrained(tmp)


def build_sdxl(dtype: Any = None, device: Any = "cpu") -> Any:
    """An SDXL-base-shaped StableDiffusionXLPipeline with random weights, in memory."""
    from diffusers import (
        AutoencoderKL,
        EulerDiscreteScheduler,
        StableDiffusionXLPipeline,
        UNet2DConditionModel,
    )
    from transformers import CLIPTextConfig, CLIPTextModel, CLIPTextModelWithProjection

    torch.manual_seed(0)
    with _building(device, dtype):
        networks = {
            "vae": AutoencoderKL(**SDXL_VAE),
            "text_encoder": CLIPTextModel(CLIPTextConfig(**CLIP_L_TEXT)),
            "text_encoder_2": CLIPTextModelWithProjection(CLIPTextConfig(**CLIP_G_TEXT)),
            "unet": UNet2DConditionModel(**SDXL_UNET),
        }
    pipe = StableDiffusionXLPipeline(
        **networks,
        tokenizer=_clip_tokenizer(),
        tokenizer_2=_clip_tokenizer(),
        scheduler=EulerDiscreteScheduler(**SDXL_SCHEDULER),
        add_watermarker=False,
    )
    return pipe.to(dtype=dtype) if dtype is not None else pipe


def build_flux(dtype: Any = None, device: Any = "cpu") -> Any:
    """A FLUX.1-dev-shaped FluxPipeline with random weights (T5-XXL included), in memory."""
    from diffusers import (
        AutoencoderKL,
        FlowMatchEulerDiscreteScheduler,
        FluxPipeline,
        FluxTransformer2DModel,
    )
    from transformers import CLIPTextConfig, CLIPTextModel, T5Config, T5EncoderModel

    from studio.bench.tiny_families import t5_tokenizer

    torch.manual_seed(0)
    with _building(device, dtype):
        networks = {
            "vae": AutoencoderKL(**FLUX_VAE),
            "text_encoder": CLIPTextModel(CLIPTextConfig(**CLIP_L_TEXT)),
            "text_encoder_2": T5EncoderModel(T5Config(**T5_XXL)),
            "transformer": FluxTransformer2DModel(**FLUX_TRANSFORMER),
        }
    pipe = FluxPipeline(
        **networks,
        tokenizer=_clip_tokenizer(),
        tokenizer_2=t5_tokenizer(),
        scheduler=FlowMatchEulerDiscreteScheduler(**FLUX_SCHEDULER),
    )
    return pipe.to(dtype=dtype) if dtype is not None else pipe


def parameter_counts(pipe: Any) -> dict[str, int]:
    """Parameters per network of a pipeline (on any device, the meta device included)."""
    return {
        name: sum(p.numel() for p in module.parameters())
        for name, module in pipe.components.items()
        if isinstance(module, torch.nn.Module)
    }
