"""Diffusers pipelines built from configs with random weights, as diffusers' own tests do.

The tiny ones exercise every code path of a real model in milliseconds (what they draw
is noise, so tests that judge pictures use the embedded studio-tiny model instead); the
SD 1.5-shaped one costs what the real model costs, for benchmarks, with no download.
"""

from __future__ import annotations

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


def build_sd15(dtype: Any = None) -> Any:
    """An SD 1.5-shaped StableDiffusionPipeline with random weights, in memory."""
    import torch
    from diffusers import (
        AutoencoderKL,
        EulerAncestralDiscreteScheduler,
        StableDiffusionPipeline,
        UNet2DConditionModel,
    )
    from transformers import CLIPTextConfig, CLIPTextModel, CLIPTokenizer

    with tempfile.TemporaryDirectory() as tmp:
        write_byte_tokenizer(Path(tmp), max_length=77)
        tokenizer = CLIPTokenizer.from_pretrained(tmp)
    torch.manual_seed(0)
    pipe = StableDiffusionPipeline(
        vae=AutoencoderKL(**SD15_VAE),
        text_encoder=CLIPTextModel(CLIPTextConfig(**SD15_TEXT)),
        tokenizer=tokenizer,
        unet=UNet2DConditionModel(**SD15_UNET),
        scheduler=EulerAncestralDiscreteScheduler(**SD15_SCHEDULER),
        safety_checker=None,
        feature_extractor=None,
        requires_safety_checker=False,
    )
    return pipe.to(dtype=dtype) if dtype is not None else pipe
