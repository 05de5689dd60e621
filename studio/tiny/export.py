"""Write trained studio-tiny components as diffusers pipeline folders, with their records.

Weights are stored in fp16 (the engine loads them with torch_dtype=float32 on CPU) to keep
both models together under 30 MB.
"""

from __future__ import annotations

import json
import math
import os
import shutil
from pathlib import Path
from typing import Any

import torch
from diffusers import (
    AutoencoderKL,
    StableDiffusionPipeline,
    StableDiffusionUpscalePipeline,
    UNet2DConditionModel,
)
from safetensors import safe_open
from transformers import CLIPTextModel, CLIPTokenizer

from studio.core.fast_setting import LIVE_STEPS
from studio.tiny import data, latents, models, vocabulary

# Recommended settings, measured with studio.tiny.evaluate (see training.json).
DEFAULT_STEPS = 25
DEFAULT_CFG = 4.0
DEFAULT_SCHEDULER = "DPM++ 2M"
X4_DEFAULT_STEPS = 20
X4_DEFAULT_NOISE_LEVEL = 20


def write_json(path: Path, obj: object) -> None:
    path.write_text(json.dumps(obj, indent=2) + "\n", encoding="utf-8")


def read_json(path: Path) -> dict:
    return json.loads(path.read_text(encoding="utf-8")) if path.exists() else {}


def patch_scheduler_configs(folder: Path) -> None:
    for name in ("scheduler", "low_res_scheduler"):
        path = folder / name / "scheduler_config.json"
        if path.exists() and name == "scheduler":
            write_json(path, {**read_json(path), **models.SCHEDULER_EXTRAS})


def _copy_bpe_files(tokenizer: CLIPTokenizer, folder: Path) -> None:
    # save_pretrained writes tokenizer.json; older transformers read vocab.json + merges.txt.
    src = Path(tokenizer.name_or_path)
    for name in ("vocab.json", "merges.txt"):
        if (src / name).exists():
            shutil.copy(src / name, folder / "tokenizer" / name)


def _latent_rgb(vae: AutoencoderKL, scenes: int = 1024, seed: int = 99) -> dict:
    images = data.to_unit(data.render_scenes(scenes, 64, seed)[1])
    return latents.fit_latent_rgb(vae.float(), images)


def save_base(
    folder: Path,
    vae: AutoencoderKL,
    text: CLIPTextModel,
    tokenizer: CLIPTokenizer,
    unet: UNet2DConditionModel,
    rgb_scenes: int = 1024,
) -> None:
    folder.mkdir(parents=True, exist_ok=True)
    write_json(folder / "latent_rgb.json", _latent_rgb(vae, rgb_scenes))
    pipe = StableDiffusionPipeline(
        vae=vae,
        text_encoder=text,
        tokenizer=tokenizer,
        unet=unet,
        scheduler=models.make_scheduler(),
        safety_checker=None,
        feature_extractor=None,
        requires_safety_checker=False,
    )
    pipe.to(torch.float16).save_pretrained(folder, safe_serialization=True)
    pipe.to(torch.float32)
    patch_scheduler_configs(folder)
    _copy_bpe_files(tokenizer, folder)
    write_json(
        folder / "studio.json",
        {
            "family": "studio-tiny",
            "default_steps": DEFAULT_STEPS,
            "default_cfg": DEFAULT_CFG,
            "default_scheduler": DEFAULT_SCHEDULER,
            "default_size": [models.DEFAULT_SIZE, models.DEFAULT_SIZE],
            "live_steps": LIVE_STEPS,  # live mode's short schedule (core.fast_setting)
            "vocabulary": vocabulary.as_dict(),
            "description": vocabulary.describe(),
        },
    )


def save_x4(folder: Path, base: Path, unet: UNet2DConditionModel) -> None:
    """The upscaler folder: its own UNet and tokenizer; studio-tiny's VAE and text encoder,
    named in its card and left in studio-tiny's folder."""
    folder.mkdir(parents=True, exist_ok=True)
    f32 = torch.float32
    vae = AutoencoderKL.from_pretrained(base / "vae", torch_dtype=f32)
    text = CLIPTextModel.from_pretrained(base / "text_encoder", torch_dtype=f32)
    tokenizer = CLIPTokenizer.from_pretrained(base / "tokenizer", local_files_only=True)
    pipe = StableDiffusionUpscalePipeline(
        vae=vae,
        text_encoder=text,
        tokenizer=tokenizer,
        unet=unet,
        low_res_scheduler=models.make_low_res_scheduler(),
        scheduler=models.make_scheduler(),
        max_noise_level=350,
    )
    pipe.to(torch.float16).save_pretrained(folder, safe_serialization=True)
    # the VAE and text encoder are studio-tiny's very weights: kept once, in its folder,
    # and named in the card (the studio loads them from there: catalog.shared_components)
    for name in SHARED_WITH_BASE:
        shutil.rmtree(folder / name)
    patch_scheduler_configs(folder)
    for name in ("vocab.json", "merges.txt"):
        shutil.copy(base / "tokenizer" / name, folder / "tokenizer" / name)
    shutil.copy(base / "latent_rgb.json", folder / "latent_rgb.json")
    write_json(
        folder / "studio.json",
        {
            "family": "studio-tiny-x4",
            "scale": 4,
            "default_steps": X4_DEFAULT_STEPS,
            "default_noise_level": X4_DEFAULT_NOISE_LEVEL,
            "default_cfg": 1.0,
            "default_scheduler": DEFAULT_SCHEDULER,
            "components_from": {name: os.path.relpath(base, folder) for name in SHARED_WITH_BASE},
        },
    )


SHARED_WITH_BASE = ("vae", "text_encoder")
_SHARED_CLASSES = {"vae": AutoencoderKL, "text_encoder": CLIPTextModel}


def load_pipeline(cls: type, folder: Path, dtype: torch.dtype = torch.float32) -> Any:
    """`cls.from_pretrained(folder)` with the components the folder's card takes from a
    sibling (studio-tiny-x4: studio-tiny's VAE and text encoder), as the studio loads it."""
    card = read_json(folder / "studio.json")
    shared = {
        name: _SHARED_CLASSES[name].from_pretrained(folder / where / name, torch_dtype=dtype)
        for name, where in card.get("components_from", {}).items()
    }
    return cls.from_pretrained(folder, local_files_only=True, torch_dtype=dtype, **shared)


def param_counts(folder: Path) -> dict[str, dict[str, float]]:
    """Parameters and bytes on disk of each component's safetensors file."""
    out = {}
    for path in sorted(folder.glob("*/*.safetensors")):
        with safe_open(str(path), framework="pt") as f:
            n = sum(math.prod(f.get_slice(k).get_shape()) for k in f.keys())  # noqa: SIM118
        out[path.parent.name] = {"params": n, "mb": round(path.stat().st_size / 1e6, 2)}
    return out
