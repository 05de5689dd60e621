"""Tests for studio.metadata: writing our PNG chunks, reading every tool's."""

from __future__ import annotations

import gzip
import io
import json
import random
import struct
import subprocess
import sys
import time
import zlib
from pathlib import Path
from typing import Any

import pytest
from PIL import Image, PngImagePlugin

from studio.metadata import (
    ImageParameters,
    MetadataError,
    format_a1111,
    normalise_sampler,
    parse_a1111,
    png_info,
    read_parameters,
    read_parameters_from_image,
)

# Real files written by other tools live beside the repository, never inside it.
INTEROP = Path(__file__).resolve().parents[2] / "shared" / "interop"
needs_interop = pytest.mark.skipif(not INTEROP.is_dir(), reason=f"{INTEROP} is absent")

COMFY_NEGATIVE_START = "(hands), text, error, cropped, (worst quality:1.2), (low quality:1.2)"
INVOKE2_PROMPT = (
    "professional full body photo of young woman, hyper long brunette hair, elegant hair, "
    "wearing a bikini top and asymmetric short skirt, curvy body, long legs, "
    "(imperfect skin), detailed skin, intense freckles, super long eye lashes, at night, "
    "outside, city background, 8k ultra detailed, realistic, high quality, film grain, "
    "low contrast"
)
A1111_DUCK: dict[str, Any] = {
    "source": "automatic1111",
    "prompt": "photo of a duck",
    "negative_prompt": "monochrome",
    "seed": 235284042,
    "steps": 15,
    "cfg_scale": 5.0,
    "sampler": "UniPC",
    "width": 512,
    "height": 400,
    "model": "realistic_realisticVisionV20_v20",
    "strength": None,
    "extras": {"Model hash": "c0d1994c73"},
}

# What each real file really holds (values read out of the files themselves).
# "prompt_start"/"negative_start" stand in for the exact text where it is very long.
EXPECTED: dict[str, dict[str, Any]] = {
    "AUTOMATIC1111/automatic1111_cropped.png": A1111_DUCK,
    "AUTOMATIC1111/automatic1111_cropped.jpg": A1111_DUCK,
    "AUTOMATIC1111/automatic1111_stealth.png": {
        "source": "automatic1111",
        "prompt": "a circle",
        "negative_prompt": "a square",
        "seed": 2015833630,
        "steps": 20,
        "cfg_scale": 7.0,
        "sampler": "Euler",
        "width": 64,
        "height": 64,
        "model": "realisticVisionV51_v51VAE",
        "strength": None,
        "extras": {
            "Schedule type": "Automatic",
            "Model hash": "15012c538f",
            "Clip skip": "2",
            "Version": "v1.9.4-169-ga30b19dd",
        },
    },
    "ComfyUI/img2img_cropped.png": {
        "source": "comfyui",
        "prompt": "photograph of victorian woman with wings, sky clouds, meadow grass",
        "negative_prompt": "watermark, text",
        "seed": 280823642470253,
        "steps": 20,
        "cfg_scale": 8.0,
        "sampler": "DPM++ 2M",
        "width": None,  # the latent comes from VAEEncode of a loaded image
        "height": None,
        "model": "v1-5-pruned-emaonly.ckpt",
        "strength": 0.8700000000000001,
        # its strength is an image→image one: `studio generate --from` asks for the picture
        "extras": {"Scheduler": "normal", "Input image": "yes"},
    },
    "ComfyUI/night_evening_day_morning_cropped.png": {
        "source": "comfyui",
        # Five area prompts joined through ConditioningCombine/ConditioningSetArea.
        "prompt": "\n".join(
            [
                "(best quality) (night:1.3) (darkness) sky (black) (stars:1.2) (galaxy:1.2) "
                "(space) (universe)",
                "(best quality) (evening:1.2) (sky:1.2) (clouds) (colorful) (HDR:1.2) (sunset:1.3)",
                "(best quality) (daytime:1.2) sky (blue)",
                "(masterpiece) (best quality) morning sky",
                "(masterpiece) (best quality) beautiful landscape breathtaking amazing view "
                "nature photograph forest mountains ocean (sky) national park scenery",
            ]
        ),
        "negative_start": COMFY_NEGATIVE_START,
        "seed": 335608130539327,
        "steps": 13,
        "cfg_scale": 8.5,
        "sampler": "DPM++ SDE",
        "width": 704,
        "height": 1280,
        "model": "Anything-V3.0.ckpt",
        "strength": None,
        "extras": {"Scheduler": "normal", "Clip skip": "2", "Sampler nodes": "2"},
    },
    "ComfyUI/noisy_latents_3_subjects_cropped.png": {
        "source": "comfyui",
        "prompt": (
            "girl (flat chest:0.9), (fennec ears:1.0)\xa0 (fox ears:1.0), (messy hair), "
            "(highlights), (realistic starry eyes pupil:1.1), (hoodie), open jacket, running "
            "(school uniform)\nsky clouds nature national park beautiful winter snow scenery "
            "HDR landscape\n(sunset)"
        ),
        "negative_start": COMFY_NEGATIVE_START,
        "seed": 1084614416978598,
        "steps": 9,
        "cfg_scale": 5.5,
        "sampler": "DPM++ SDE",  # "sample_dpmpp_sde" + "simple"
        "width": 1920,  # from the LatentUpscale feeding this sampler
        "height": 1088,
        "model": "Anything-V3.0.ckpt",
        "strength": 0.54,
        "extras": {"Scheduler": "simple", "Sampler nodes": "6"},
    },
    "ComfyUI/unclip_2pass_cropped.png": {
        "source": "comfyui",
        "prompt": (
            "(waifu, anime, exceptional, best aesthetic, new, newest, best quality, "
            "masterpiece, extremely detailed:1.2)"
        ),
        "negative_start": "lowres, (bad anatomy), (bad hands), text, missing finger",
        "seed": 1106257833005336,
        "steps": 26,
        "cfg_scale": 8.0,
        "sampler": "UniPC",  # "uni_pc_bh2"
        "width": 1280,
        "height": 704,
        "model": "wd-1-5-beta2-aesthetic-unclip-h-fp32.safetensors",
        "strength": None,
        "extras": {"Scheduler": "normal", "Sampler nodes": "2"},
    },
    "Fooocus/fooocus1_cropped.png": {
        "source": "fooocus",
        "prompt": "a smiling goldfish",
        "negative_prompt": "",
        "seed": 6952411511246973023,
        "steps": 30,
        "cfg_scale": 4.0,
        "sampler": "DPM++ 2M SDE Karras",  # "dpmpp_2m_sde_gpu" + "karras"
        "width": 768,
        "height": 1280,
        "model": "juggernautXL_v8Rundiffusion",
        "strength": None,
        "extras_include": {"scheduler": "karras", "version": "Fooocus v2.4.3", "clip_skip": "2"},
    },
    "InvokeAI/invokeai_imeta1.png": {
        "source": "invokeai",
        "prompt": "digital artwork, oil painting. painterly brushstrokes, holidays,",
        "negative_prompt": (
            "grainy+, photo, oversaturated, overexposed, blurry, compressed jpg+, noisy++, "
            "unfocused , black and white"
        ),
        "seed": 3293022630,
        "steps": 35,
        "cfg_scale": 8.0,
        "sampler": "Euler",
        "width": 1024,
        "height": 1024,
        "model": "juggernautXL",
        "strength": None,
        "extras_include": {"generation_mode": "sdxl_txt2img", "vae": '{"model_name": "VAEFix"'},
    },
    "InvokeAI/invokeai_sdmeta1.png": {
        "source": "invokeai",
        "prompt": INVOKE2_PROMPT,
        "negative_prompt": "rendering, glowing eyes, skinny",
        "seed": 2980747362,
        "steps": 50,
        "cfg_scale": 5.0,
        "sampler": "LMS",  # "k_lms"
        "width": 512,
        "height": 768,
        "model": "deliberateForInvoke_v08",
        "strength": None,
        "extras_include": {"app_version": "2.3.0", "type": "txt2img"},
    },
    "InvokeAI/invokeai_dream1.png": {
        "source": "invokeai",
        "prompt": INVOKE2_PROMPT,
        "negative_prompt": "rendering, glowing eyes, skinny",
        "seed": 2980747362,
        "steps": 50,
        "cfg_scale": 5.0,
        "sampler": "LMS",
        "width": 512,
        "height": 768,
        "model": None,
        "strength": None,
        "extras": {"-G": "0.9", "-cf": "0.75", "-U": "4 0.95"},
    },
    "NovelAI/novelai1_cropped.png": {
        "source": "novelai",
        "prompt": "masterpiece, best quality,  cat, space, icon",
        "negative_start": "lowres, bad anatomy, bad hands, text, error, missing fingers",
        "seed": 2253955223,
        "steps": 50,
        "cfg_scale": 10.0,
        "sampler": "Euler a",  # "k_euler_ancestral"
        "width": None,  # this NovelAI version does not write the size
        "height": None,
        "model": "Stable Diffusion 1D44365E",
        "strength": 0.4,
        "extras": {"noise": "0.0", "Title": "AI generated image"},
    },
    # Not broken at all: a valid PNG whose A1111 zTXt chunk comes after the image data
    # (allowed by the PNG spec); sd-parsers, where it comes from, reads it too.
    "bad_images/text_after_idat.png": A1111_DUCK,
}

# Files no importer can get parameters out of, and the sentence the user sees.
UNREADABLE = {
    "bad_images/empty_file.png": "'empty_file.png' is not an image file that can be read "
    "(empty file).",
    "bad_images/empty_image.jpg": "'empty_image.jpg' carries no generation parameters that "
    "the studio recognises.",
    "bad_images/empty_image.png": "'empty_image.png' carries no generation parameters that "
    "the studio recognises.",
}


def assert_one_sentence(message: str) -> None:
    assert message.strip() == message
    assert "\n" not in message
    assert message.endswith(".")
    assert ". " not in message  # one sentence, not two
    assert message[0].isupper() or message[0] == "'"


def check_expected(p: ImageParameters, expected: dict[str, Any]) -> None:
    actual = p.to_json_dict()
    for key, value in expected.items():
        if key == "prompt_start":
            assert p.prompt.startswith(value)
        elif key == "negative_start":
            assert p.negative_prompt.startswith(value)
        elif key == "extras_include":
            for extra_key, extra_value in value.items():
                assert p.extras[extra_key].startswith(extra_value), extra_key
        else:
            assert actual[key] == value, key


def interop_images() -> set[str]:
    return {
        path.relative_to(INTEROP).as_posix()
        for path in INTEROP.rglob("*")
        if path.is_file() and path.suffix.lower() not in (".md", ".txt")
    }


def png_bytes(image: Image.Image | None = None, **chunks: str) -> bytes:
    info = PngImagePlugin.PngInfo()
    for key, value in chunks.items():
        info.add_itxt(key, value)
    buffer = io.BytesIO()
    (image or Image.new("RGB", (4, 4), "gray")).save(buffer, "PNG", pnginfo=info)
    return buffer.getvalue()


def write(tmp_path: Path, name: str, data: bytes) -> Path:
    path = tmp_path / name
    path.write_bytes(data)
    return path


def read_message(source: Any) -> str:
    with pytest.raises(MetadataError) as caught:
        read_parameters(source)
    message = str(caught.value)
    assert_one_sentence(message)
    return message


# --------------------------------------------------------------------------------------
# Real files from other tools
# --------------------------------------------------------------------------------------


@needs_interop
def test_every_interop_file_has_an_expectation() -> None:
    assert interop_images() == set(EXPECTED) | set(UNREADABLE)


@needs_interop
@pytest.mark.parametrize("name", sorted(EXPECTED))
def test_interop_file_gives_its_real_parameters(name: str) -> None:
    check_expected(read_parameters(INTEROP / name), EXPECTED[name])


@needs_interop
@pytest.mark.parametrize("name", sorted(EXPECTED))
def test_interop_file_reads_the_same_from_file_object_and_open_image(name: str) -> None:
    expected = read_parameters(INTEROP / name).to_json_dict()
    with open(INTEROP / name, "rb") as handle:
        assert read_parameters(handle).to_json_dict() == expected
    with Image.open(INTEROP / name) as image:
        found = read_parameters_from_image(image)
    assert found is not None
    assert found.to_json_dict() == expected


@needs_interop
@pytest.mark.parametrize("name", sorted(UNREADABLE))
def test_bad_image_is_refused_with_one_sentence(name: str) -> None:
    assert read_message(INTEROP / name) == UNREADABLE[name]
    with open(INTEROP / name, "rb") as handle:
        assert read_message(handle).startswith("'")


@needs_interop
@pytest.mark.parametrize("name", sorted(set(UNREADABLE) - {"bad_images/empty_file.png"}))
def test_bad_image_gives_none_when_already_open(name: str) -> None:
    with Image.open(INTEROP / name) as image:
        assert read_parameters_from_image(image) is None


@needs_interop
@pytest.mark.parametrize("name", sorted(n for n in EXPECTED if n.startswith("ComfyUI/")))
def test_comfyui_workflow_chunk_alone_gives_the_same_result(name: str, tmp_path: Path) -> None:
    with Image.open(INTEROP / name) as image:
        workflow = image.info["workflow"]
    path = write(tmp_path, "workflow_only.png", png_bytes(workflow=workflow))
    check_expected(read_parameters(path), EXPECTED[name])


@needs_interop
def test_comfyui_broken_prompt_falls_back_to_workflow(tmp_path: Path) -> None:
    name = "ComfyUI/img2img_cropped.png"
    with Image.open(INTEROP / name) as image:
        workflow = image.info["workflow"]
    path = write(tmp_path, "c.png", png_bytes(prompt="{broken", workflow=workflow))
    check_expected(read_parameters(path), EXPECTED[name])


@needs_interop
@pytest.mark.parametrize("name", sorted(interop_images() if INTEROP.is_dir() else []))
def test_truncated_interop_files_never_raise_anything_else(name: str) -> None:
    data = (INTEROP / name).read_bytes()
    for size in sorted({0, 1, 8, 16, 33, 50, len(data) // 2, len(data) - 12, len(data) - 1}):
        try:
            read_parameters(io.BytesIO(data[: max(size, 0)]))
        except MetadataError as error:
            assert_one_sentence(str(error))


# --------------------------------------------------------------------------------------
# AUTOMATIC1111 text
# --------------------------------------------------------------------------------------


def sample_parameters(**changes: Any) -> ImageParameters:
    values: dict[str, Any] = {
        "source": "automatic1111",
        "prompt": "a small red circle",
        "negative_prompt": "blurry",
        "seed": 42,
        "steps": 20,
        "cfg_scale": 7.0,
        "sampler": "Euler a",
        "width": 512,
        "height": 512,
        "model": "studio-tiny",
        "strength": 0.75,
    }
    values.update(changes)
    return ImageParameters(**values)


def test_format_a1111_matches_the_a1111_layout() -> None:
    text = format_a1111(sample_parameters(extras={"Clip skip": "2"}))
    assert text == (
        "a small red circle\nNegative prompt: blurry\n"
        "Steps: 20, Sampler: Euler a, CFG scale: 7.0, Seed: 42, Size: 512x512, "
        "Model: studio-tiny, Denoising strength: 0.75, Clip skip: 2"
    )


def test_format_a1111_omits_empty_negative_and_unknown_values() -> None:
    p = ImageParameters(prompt="cat", seed=1, steps=None, sampler=None, width=512)
    assert format_a1111(p) == "cat\nSeed: 1"


def test_format_a1111_quotes_values_like_a1111() -> None:
    text = format_a1111(
        ImageParameters(prompt="x", steps=1, extras={"Lora": 'a, "b": c', "Plain": "v"})
    )
    assert text == 'x\nSteps: 1, Lora: "a, \\"b\\": c", Plain: v'


TRICKY_PROMPTS = [
    "a cat",
    "red, green, blue: 1.2, (masterpiece:1.3)",
    'she said "hello", then left',
    "line one\nline two\n  indented line three",
    "café 東京, naïve — ünïcödé ✨",
    "Steps: 99, Sampler: fake, Seed: 1",  # a prompt that looks like a settings line
    "trailing newline\n",
    "",
]


@pytest.mark.parametrize("prompt", TRICKY_PROMPTS)
@pytest.mark.parametrize("negative", ["", "ugly, blurry", "multi\nline: negative", "東京"])
def test_a1111_round_trip_is_exact(prompt: str, negative: str) -> None:
    original = sample_parameters(
        prompt=prompt,
        negative_prompt=negative,
        extras={
            "Clip skip": "2",
            "Hires upscale": "2.0",
            "Lora hashes": 'detail: 1a2b, "style": 3c4d',
            "Note": "first\nsecond",
            "Padded": " spaced ",
        },
    )
    parsed = parse_a1111(format_a1111(original))
    assert parsed.to_json_dict() == original.to_json_dict()


def test_a1111_round_trip_with_missing_values() -> None:
    original = ImageParameters(source="automatic1111", prompt="only a prompt, and: a colon")
    assert parse_a1111(format_a1111(original)) == original
    sparse = ImageParameters(source="automatic1111", prompt="p", seed=-1, cfg_scale=7.5)
    assert parse_a1111(format_a1111(sparse)) == sparse


def test_parse_a1111_reads_a_real_world_text() -> None:
    text = (
        "masterpiece, 1girl, (smile:1.2)\n"
        "second prompt line\n"
        "Negative prompt: lowres, bad hands\n"
        "more negative\n"
        "Steps: 28, Sampler: DPM++ 2M, Schedule type: Karras, CFG scale: 6.5, "
        "Seed: 3141592653, Size: 832x1216, Model hash: abcdef1234, Model: animagine-xl, "
        "Denoising strength: 0.4, Hires upscale: 1.5, "
        'Lora hashes: "add_detail: 7c6bad76eb54, more_art: 01aa2b3c", Version: v1.10.1'
    )
    p = parse_a1111(text)
    assert p.prompt == "masterpiece, 1girl, (smile:1.2)\nsecond prompt line"
    assert p.negative_prompt == "lowres, bad hands\nmore negative"
    assert (p.steps, p.seed, p.cfg_scale) == (28, 3141592653, 6.5)
    assert p.sampler == "DPM++ 2M Karras"  # A1111 >= 1.6 writes the schedule apart
    assert (p.width, p.height, p.model, p.strength) == (832, 1216, "animagine-xl", 0.4)
    assert p.extras == {
        "Schedule type": "Karras",
        "Model hash": "abcdef1234",
        "Hires upscale": "1.5",
        "Lora hashes": "add_detail: 7c6bad76eb54, more_art: 01aa2b3c",
        "Version": "v1.10.1",
    }


def test_parse_a1111_without_negative_or_settings() -> None:
    p = parse_a1111("just a prompt\nSteps: 10, Sampler: k_euler_a, Seed: 5")
    assert (p.prompt, p.negative_prompt, p.steps, p.sampler, p.seed) == (
        "just a prompt",
        "",
        10,
        "Euler a",
        5,
    )
    plain = parse_a1111("a prompt, with commas\nand a second line")
    assert plain.prompt == "a prompt, with commas\nand a second line"
    assert plain.steps is None and plain.extras == {}
    only_negative = parse_a1111("Negative prompt: bad\nSteps: 3, Seed: 4, CFG scale: 5")
    assert (only_negative.prompt, only_negative.negative_prompt) == ("", "bad")


def test_parse_a1111_keeps_odd_values_in_extras() -> None:
    p = parse_a1111("x\nSteps: many, Seed: 7, Size: big, CFG scale: 7, Model hash: 00")
    assert p.steps is None and p.width is None and p.seed == 7
    assert p.extras == {"Steps": "many", "Size": "big", "Model hash": "00"}


def test_parse_a1111_is_linear_on_long_lines() -> None:
    # A regex scanned from every offset of a colon-less line took hours on 4 MB.
    started = time.perf_counter()
    for text in ("A" * 2_000_000, "x\n" + "word word, " * 200_000, " " * 2_000_000):
        parse_a1111(text)
    assert time.perf_counter() - started < 10


def test_odd_extras_keys_still_round_trip_as_sanitised_keys() -> None:
    p = ImageParameters(prompt="x", steps=2, extras={"weird, key: here": "v", "": "w"})
    parsed = parse_a1111(format_a1111(p))
    assert parsed.steps == 2
    assert parsed.extras == {"weird_ key_ here": "v", "_": "w"}


def test_parse_a1111_never_raises_on_garbage() -> None:
    rng = random.Random(1234)
    alphabet = 'ab ,:"\\\n\rx0123456789Steps: Negative prompt:\x00é東'
    for _ in range(500):
        text = "".join(rng.choice(alphabet) for _ in range(rng.randint(0, 80)))
        assert isinstance(parse_a1111(text), ImageParameters)


# --------------------------------------------------------------------------------------
# Sampler names
# --------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("name", "scheduler", "expected"),
    [
        ("euler_ancestral", "normal", "Euler a"),
        ("euler", "karras", "Euler"),  # A1111 has no "Euler Karras"
        ("dpmpp_2m", "karras", "DPM++ 2M Karras"),
        ("dpmpp_2m", "normal", "DPM++ 2M"),
        ("dpmpp_sde", "karras", "DPM++ SDE Karras"),
        ("dpmpp_sde_gpu", None, "DPM++ SDE"),
        ("dpmpp_2m_sde_gpu", "karras", "DPM++ 2M SDE Karras"),
        ("ddim", "ddim_uniform", "DDIM"),
        ("uni_pc", None, "UniPC"),
        ("uni_pc_bh2", "normal", "UniPC"),
        ("heun", None, "Heun"),
        ("lms", "karras", "LMS Karras"),
        ("dpm_2", None, "DPM2"),
        ("dpm_2_ancestral", None, "DPM2 a"),
        ("sample_dpmpp_2m", "normal", "DPM++ 2M"),
        ("k_euler_a", None, "Euler a"),
        ("k_dpmpp_2m", None, "DPM++ 2M"),
        ("dpmpp_2m_k", None, "DPM++ 2M Karras"),
        ("euler_a", None, "Euler a"),
        ("kdpm_2_a", None, "DPM2 a"),
        ("k_lms", None, "LMS"),
        ("k_euler_ancestral", None, "Euler a"),
        ("k_dpmpp_sde", None, "DPM++ SDE"),
        ("plms", None, "PNDM"),
        ("pndm", None, "PNDM"),
        ("ddpm", None, "DDPM"),
        ("Euler a", None, "Euler a"),
        ("DPM++ 2M Karras", None, "DPM++ 2M Karras"),
        ("DPM++ 2M", "Karras", "DPM++ 2M Karras"),
        ("euler a", None, "Euler a"),
        ("my_custom_sampler", "karras", "my_custom_sampler"),
    ],
)
def test_normalise_sampler(name: str, scheduler: str | None, expected: str) -> None:
    assert normalise_sampler(name, scheduler) == expected


# --------------------------------------------------------------------------------------
# The studio's own files
# --------------------------------------------------------------------------------------

REQUEST = {
    "prompt": "a small red circle at the top left, café 東京",
    "negative_prompt": "blurry",
    "seed": 1234,
    "steps": 25,
    "cfg_scale": 6.5,
    "scheduler": "DPM++ 2M Karras",
    "width": 512,
    "height": 384,
    "model": "studio-tiny",
    "strength": None,
    "batch_size": 2,
    "mode": "txt2img",
    "dynamic_threshold": {"enabled": True, "percentile": 0.995},
}


def own_parameters() -> ImageParameters:
    return ImageParameters(
        source="studio",
        prompt=REQUEST["prompt"],
        negative_prompt=REQUEST["negative_prompt"],
        seed=1234,
        steps=25,
        cfg_scale=6.5,
        sampler="DPM++ 2M Karras",
        width=512,
        height=384,
        model="studio-tiny",
        extras={"Clip skip": "1"},
    )


def raw_chunks(data: bytes) -> list[tuple[bytes, bytes]]:
    chunks, position = [], 8
    while position + 8 <= len(data):
        length, kind = struct.unpack(">I4s", data[position : position + 8])
        chunks.append((kind, data[position + 8 : position + 8 + length]))
        position += 12 + length
    return chunks


def test_own_png_round_trip(tmp_path: Path) -> None:
    path = tmp_path / "own.png"
    Image.new("RGB", (16, 12), "red").save(path, pnginfo=png_info(own_parameters(), REQUEST))
    p = read_parameters(path)
    assert p.source == "studio"
    assert p.request == REQUEST
    assert (p.prompt, p.negative_prompt, p.seed, p.steps) == (
        REQUEST["prompt"],
        "blurry",
        1234,
        25,
    )
    assert (p.cfg_scale, p.sampler, p.width, p.height, p.model, p.strength) == (
        6.5,
        "DPM++ 2M Karras",
        512,
        384,
        "studio-tiny",
        None,
    )
    assert p.extras == {"Clip skip": "1"}
    assert p.to_json_dict()["request"] == REQUEST


def test_own_png_chunks_are_readable_by_other_tools(tmp_path: Path) -> None:
    path = tmp_path / "own.png"
    Image.new("RGB", (8, 8)).save(path, pnginfo=png_info(own_parameters(), REQUEST))
    chunks = raw_chunks(path.read_bytes())
    kinds = {data.split(b"\0", 1)[0]: kind for kind, data in chunks if kind in (b"tEXt", b"iTXt")}
    # Non-Latin-1 prompt: the A1111 chunk must be UTF-8 iTXt, and so is ours.
    assert kinds == {b"parameters": b"iTXt", b"studio": b"iTXt"}
    with Image.open(path) as image:
        assert json.loads(image.text["studio"]) == REQUEST
        assert image.text["studio"] == json.dumps(REQUEST, sort_keys=True, ensure_ascii=False)
        a1111 = parse_a1111(image.text["parameters"])
    expected = own_parameters().to_json_dict() | {"source": "automatic1111"}
    assert a1111.to_json_dict() == expected


def test_latin1_parameters_use_text_chunk(tmp_path: Path) -> None:
    path = tmp_path / "latin.png"
    p = ImageParameters(prompt="plain café", steps=3)
    Image.new("RGB", (2, 2)).save(path, pnginfo=png_info(p, None))
    kinds = [kind for kind, data in raw_chunks(path.read_bytes()) if b"parameters" in data]
    assert kinds == [b"tEXt"]
    found = read_parameters(path)
    assert (found.source, found.prompt, found.steps, found.request) == (
        "automatic1111",
        "plain café",
        3,
        None,
    )


def test_broken_studio_chunk_falls_back_to_a1111(tmp_path: Path) -> None:
    data = png_bytes(studio="{not json", parameters=format_a1111(own_parameters()))
    p = read_parameters(write(tmp_path, "half.png", data))
    assert p.source == "automatic1111"
    assert (p.prompt, p.seed, p.sampler) == (REQUEST["prompt"], 1234, "DPM++ 2M Karras")


def test_broken_studio_chunk_alone_is_reported(tmp_path: Path) -> None:
    message = read_message(write(tmp_path, "broken.png", png_bytes(studio="[1, 2")))
    assert message == (
        "'broken.png' carries Latent Studio metadata that the studio cannot read "
        "(its JSON is broken)."
    )


def test_truncated_own_png_still_gives_its_chunks(tmp_path: Path) -> None:
    noisy = Image.effect_noise((64, 64), 50).convert("RGB")
    buffer = io.BytesIO()
    noisy.save(buffer, "PNG", pnginfo=png_info(own_parameters(), REQUEST))
    data = buffer.getvalue()
    # Cut inside the image data: the text chunks before it are intact.
    p = read_parameters(write(tmp_path, "cut.png", data[: len(data) - 200]))
    assert p.source == "studio" and p.request == REQUEST


def test_truncated_png_without_metadata(tmp_path: Path) -> None:
    buffer = io.BytesIO()
    Image.effect_noise((64, 64), 50).convert("RGB").save(buffer, "PNG")
    data = buffer.getvalue()
    message = read_message(write(tmp_path, "cut.png", data[: len(data) - 200]))
    assert message == (
        "'cut.png' is damaged and carries no generation parameters that the studio could read."
    )
    header_only = read_message(write(tmp_path, "head.png", data[:20]))
    assert header_only == "'head.png' is not an image file that can be read (damaged data)."


# --------------------------------------------------------------------------------------
# Files with nothing, or nothing good, in them
# --------------------------------------------------------------------------------------


def test_png_without_metadata(tmp_path: Path) -> None:
    path = tmp_path / "plain.png"
    Image.new("RGBA", (300, 200), (10, 20, 30, 255)).save(path)
    assert read_message(path) == (
        "'plain.png' carries no generation parameters that the studio recognises."
    )
    with Image.open(path) as image:
        assert read_parameters_from_image(image) is None


def test_random_bytes_file(tmp_path: Path) -> None:
    data = random.Random(7).randbytes(4096)
    message = read_message(write(tmp_path, "noise.png", data))
    assert (
        message == "'noise.png' is not an image file that can be read (unknown or damaged format)."
    )


def test_empty_file_and_stream(tmp_path: Path) -> None:
    assert read_message(write(tmp_path, "zero.png", b"")) == (
        "'zero.png' is not an image file that can be read (empty file)."
    )
    assert read_message(io.BytesIO()) == (
        "This file is not an image file that can be read (empty file)."
    )


def test_missing_file_and_directory(tmp_path: Path) -> None:
    assert read_message(tmp_path / "nope.png") == "'nope.png' does not exist."
    assert (
        read_message(tmp_path)
        == f"'{tmp_path.name}' is not an image file (a folder, a pipe or a device)."
    )


def test_file_name_with_newline_stays_one_line(tmp_path: Path) -> None:
    path = write(tmp_path, "two\nlines.png", b"not an image")
    assert read_message(path).startswith("'two?lines.png' is not an image file")


def test_broken_json_chunks_are_reported(tmp_path: Path) -> None:
    cases = {
        "comfy.png": ({"prompt": '{"3": {"inputs": '}, "ComfyUI"),
        "invoke.png": ({"invokeai_metadata": "{oops"}, "InvokeAI"),
        "fooocus.png": ({"parameters": "{oops", "fooocus_scheme": "fooocus"}, "Fooocus"),
        "novel.png": ({"Software": "NovelAI", "Comment": "{oops"}, "NovelAI"),
    }
    for name, (chunks, label) in cases.items():
        message = read_message(write(tmp_path, name, png_bytes(**chunks)))
        assert message.startswith(f"'{name}' carries {label} metadata that the studio cannot")


def test_unrelated_chunks_are_not_parameters(tmp_path: Path) -> None:
    data = png_bytes(prompt="just a word", Comment="Created with GIMP", Software="GIMP")
    assert "no generation parameters" in read_message(write(tmp_path, "gimp.png", data))


def test_corrupted_bytes_never_raise_anything_else(tmp_path: Path) -> None:
    data = png_bytes(
        Image.effect_noise((32, 32), 40).convert("RGBA"),
        parameters=format_a1111(own_parameters()),
        studio=json.dumps(REQUEST),
    )
    rng = random.Random(99)
    for _ in range(60):
        damaged = bytearray(data)
        for _ in range(rng.randint(1, 20)):
            damaged[rng.randrange(len(damaged))] = rng.randrange(256)
        try:
            read_parameters(io.BytesIO(bytes(damaged)))
        except MetadataError as error:
            assert_one_sentence(str(error))


# --------------------------------------------------------------------------------------
# Other tools' formats beyond the sample files
# --------------------------------------------------------------------------------------

A1111_TEXT = "a lighthouse, dusk\nNegative prompt: fog\nSteps: 12, Sampler: Euler a, Seed: 77"


@pytest.mark.parametrize(
    "comment",
    [
        b"UNICODE\0" + A1111_TEXT.encode("utf-16-be"),
        b"UNICODE\0" + A1111_TEXT.encode("utf-16-le"),
        b"UNICODE\0" + A1111_TEXT.encode("utf-16"),  # with a byte-order mark
        b"ASCII\0\0\0" + A1111_TEXT.encode("ascii"),
    ],
)
@pytest.mark.parametrize("image_format", ["JPEG", "WEBP"])
def test_exif_user_comment(comment: bytes, image_format: str) -> None:
    exif = Image.Exif()
    exif.get_ifd(0x8769)[0x9286] = comment
    buffer = io.BytesIO()
    Image.new("RGB", (8, 8)).save(buffer, image_format, exif=exif)
    p = read_parameters(io.BytesIO(buffer.getvalue()))
    assert (p.source, p.prompt, p.negative_prompt, p.steps, p.sampler, p.seed) == (
        "automatic1111",
        "a lighthouse, dusk",
        "fog",
        12,
        "Euler a",
        77,
    )


def test_exif_comment_that_is_not_parameters() -> None:
    exif = Image.Exif()
    exif.get_ifd(0x8769)[0x9286] = b"ASCII\0\0\0Holiday snapshot"
    buffer = io.BytesIO()
    Image.new("RGB", (8, 8)).save(buffer, "JPEG", exif=exif)
    assert "no generation parameters" in read_message(io.BytesIO(buffer.getvalue()))


def hide_stealth(image: Image.Image, text: str, mode: str, compressed: bool) -> None:
    """Write stealth pnginfo the way the sd-webui-stealth-pnginfo extension does."""
    kind = "png" if mode == "alpha" else "rgb"
    signature = f"stealth_{kind}{'comp' if compressed else 'info'}".encode()
    payload = gzip.compress(text.encode()) if compressed else text.encode()
    bits = "".join(f"{byte:08b}" for byte in signature)
    bits += f"{len(payload) * 8:032b}" + "".join(f"{byte:08b}" for byte in payload)
    pixels = image.load()
    index = 0
    for x in range(image.width):  # column by column, like the extension
        for y in range(image.height):
            if index >= len(bits):
                return
            values = list(pixels[x, y])
            channels = [3] if mode == "alpha" else [0, 1, 2]
            for channel in channels:
                if index < len(bits):
                    values[channel] = (values[channel] & ~1) | int(bits[index])
                    index += 1
            pixels[x, y] = tuple(values)


@pytest.mark.parametrize("mode", ["alpha", "rgb"])
@pytest.mark.parametrize("compressed", [True, False])
@pytest.mark.parametrize("size", [(64, 64), (400, 9), (5, 2000)])
def test_stealth_pnginfo(mode: str, compressed: bool, size: tuple[int, int]) -> None:
    image = Image.effect_noise(size, 60).convert("RGBA" if mode == "alpha" else "RGB")
    hide_stealth(image, A1111_TEXT, mode, compressed)
    buffer = io.BytesIO()
    image.save(buffer, "PNG")
    p = read_parameters(io.BytesIO(buffer.getvalue()))
    assert (p.source, p.prompt, p.negative_prompt, p.steps, p.seed) == (
        "automatic1111",
        "a lighthouse, dusk",
        "fog",
        12,
        77,
    )


def test_stealth_is_not_tried_when_text_chunks_exist() -> None:
    image = Image.new("RGBA", (64, 64), (0, 0, 0, 255))
    hide_stealth(image, A1111_TEXT, "alpha", True)
    data = png_bytes(image, parameters="from the chunk\nSteps: 1, Seed: 2, CFG scale: 3")
    assert read_parameters(io.BytesIO(data)).prompt == "from the chunk"


def test_stealth_novelai_json() -> None:
    hidden = {
        "Description": "a fox in snow",
        "Software": "NovelAI",
        "Source": "NovelAI Diffusion V3",
        "Comment": json.dumps({"uc": "lowres", "seed": 9, "steps": 28, "scale": 5.0}),
    }
    image = Image.new("RGBA", (64, 64), (0, 0, 0, 255))
    hide_stealth(image, json.dumps(hidden), "alpha", True)
    p = read_parameters_from_image(image)
    assert p is not None
    assert (p.source, p.prompt, p.negative_prompt, p.seed, p.cfg_scale) == (
        "novelai",
        "a fox in snow",
        "lowres",
        9,
        5.0,
    )


def test_stealth_with_lying_length_is_ignored() -> None:
    image = Image.new("RGBA", (32, 32), (0, 0, 0, 255))
    bits = "".join(f"{byte:08b}" for byte in b"stealth_pngcomp") + f"{2**31:032b}"
    pixels = image.load()
    for index, bit in enumerate(bits):
        x, y = divmod(index, image.height)
        pixels[x, y] = (0, 0, 0, 254 | int(bit))
    assert read_parameters_from_image(image) is None


def comfy_graph() -> dict[str, Any]:
    """A SamplerCustomAdvanced graph: guider, noise, sigmas, LoRA, string primitive."""
    return {
        "1": {"class_type": "CheckpointLoaderSimple", "inputs": {"ckpt_name": "sdxl.safetensors"}},
        "2": {
            "class_type": "LoraLoader",
            "inputs": {"model": ["1", 0], "clip": ["1", 1], "lora_name": "detail.safetensors"},
        },
        "3": {"class_type": "PrimitiveStringMultiline", "inputs": {"value": "a red fox, snow"}},
        "4": {"class_type": "CLIPTextEncode", "inputs": {"text": ["3", 0], "clip": ["2", 1]}},
        "5": {"class_type": "CLIPTextEncode", "inputs": {"text": "blurry", "clip": ["2", 1]}},
        "6": {"class_type": "CLIPTextEncode", "inputs": {"text": "winter", "clip": ["2", 1]}},
        "7": {
            "class_type": "ConditioningConcat",
            "inputs": {"conditioning_to": ["4", 0], "conditioning_from": ["6", 0]},
        },
        "8": {
            "class_type": "CFGGuider",
            "inputs": {"model": ["2", 0], "positive": ["7", 0], "negative": ["5", 0], "cfg": 4.5},
        },
        "9": {"class_type": "RandomNoise", "inputs": {"noise_seed": 31337}},
        "10": {"class_type": "KSamplerSelect", "inputs": {"sampler_name": "dpmpp_2m"}},
        "11": {
            "class_type": "BasicScheduler",
            "inputs": {"model": ["2", 0], "scheduler": "karras", "steps": 24, "denoise": 1.0},
        },
        "12": {
            "class_type": "EmptyLatentImage",
            "inputs": {"width": 1024, "height": 768, "batch_size": 1},
        },
        "13": {
            "class_type": "SamplerCustomAdvanced",
            "inputs": {
                "noise": ["9", 0],
                "guider": ["8", 0],
                "sampler": ["10", 0],
                "sigmas": ["11", 0],
                "latent_image": ["12", 0],
            },
        },
    }


def test_comfyui_custom_sampler_graph(tmp_path: Path) -> None:
    path = write(tmp_path, "custom.png", png_bytes(prompt=json.dumps(comfy_graph())))
    p = read_parameters(path)
    assert p.to_json_dict() == {
        "source": "comfyui",
        "prompt": "a red fox, snow\nwinter",
        "negative_prompt": "blurry",
        "seed": 31337,
        "steps": 24,
        "cfg_scale": 4.5,
        "sampler": "DPM++ 2M Karras",
        "width": 1024,
        "height": 768,
        "model": "sdxl.safetensors",
        "strength": None,
        "extras": {"Scheduler": "karras"},
    }


def test_comfyui_prompt_in_webp_exif() -> None:
    exif = Image.Exif()
    exif[0x0110] = "prompt:" + json.dumps(comfy_graph())
    buffer = io.BytesIO()
    Image.new("RGB", (8, 8)).save(buffer, "WEBP", exif=exif)
    p = read_parameters(io.BytesIO(buffer.getvalue()))
    assert (p.source, p.seed, p.sampler) == ("comfyui", 31337, "DPM++ 2M Karras")


def test_comfyui_graph_without_sampler(tmp_path: Path) -> None:
    graph = {"1": {"class_type": "LoadImage", "inputs": {"image": "x.png"}}}
    message = read_message(write(tmp_path, "up.png", png_bytes(prompt=json.dumps(graph))))
    assert message == (
        "'up.png' carries ComfyUI metadata that the studio cannot read "
        "(its workflow has no sampler node)."
    )


def test_invokeai2_weighted_prompts_and_dream_switches(tmp_path: Path) -> None:
    sd_metadata = {
        "model_weights": "sd-1.5",
        "image": {
            "prompt": [{"prompt": "a cat", "weight": 0.7}, {"prompt": "a dog", "weight": 0.3}],
            "seed": 5,
            "sampler": "k_euler_a",
            "strength": 0.6,
        },
    }
    p = read_parameters(
        write(tmp_path, "i2.png", png_bytes(**{"sd-metadata": json.dumps(sd_metadata)}))
    )
    assert (p.prompt, p.seed, p.sampler, p.strength) == ("a cat:0.7 a dog:0.3", 5, "Euler a", 0.6)
    dream = '"a castle [fog, rain] at night" --steps 30 --seed 8 -f 0.5 --sampler k_dpmpp_2'
    q = read_parameters(write(tmp_path, "i1.png", png_bytes(Dream=dream)))
    assert (q.prompt, q.negative_prompt, q.steps, q.seed, q.strength, q.sampler) == (
        "a castle at night",
        "fog, rain",
        30,
        8,
        0.5,
        "DPM++ 2M",
    )


def test_fooocus_a1111_scheme(tmp_path: Path) -> None:
    text = "a goldfish\nNegative prompt: ugly\nSteps: 30, Sampler: DPM++ 2M SDE Karras, Seed: 3"
    data = png_bytes(parameters=text, fooocus_scheme="a1111")
    p = read_parameters(write(tmp_path, "f.png", data))
    assert (p.source, p.prompt, p.sampler, p.seed) == (
        "fooocus",
        "a goldfish",
        "DPM++ 2M SDE Karras",
        3,
    )


def test_novelai_newer_comment_with_size(tmp_path: Path) -> None:
    comment = {
        "prompt": "a fox",
        "uc": "lowres",
        "seed": 1,
        "steps": 28,
        "scale": 5,
        "sampler": "k_dpmpp_2m",
        "width": 832,
        "height": 1216,
    }
    data = png_bytes(Software="NovelAI", Comment=json.dumps(comment))
    p = read_parameters(write(tmp_path, "n.png", data))
    assert (p.prompt, p.negative_prompt, p.sampler, p.width, p.height, p.cfg_scale) == (
        "a fox",
        "lowres",
        "DPM++ 2M",
        832,
        1216,
        5.0,
    )


# --------------------------------------------------------------------------------------
# The dataclass and the module's boundaries
# --------------------------------------------------------------------------------------


def test_to_json_dict_keys() -> None:
    keys = [
        "source",
        "prompt",
        "negative_prompt",
        "seed",
        "steps",
        "cfg_scale",
        "sampler",
        "width",
        "height",
        "model",
        "strength",
        "extras",
    ]
    assert list(ImageParameters().to_json_dict()) == keys
    with_request = ImageParameters(request={"a": 1}).to_json_dict()
    assert list(with_request) == [*keys, "request"]
    json.dumps(with_request)


def test_pasted_image_copy_keeps_parameters(tmp_path: Path) -> None:
    path = tmp_path / "own.png"
    Image.new("RGB", (8, 8)).save(path, pnginfo=png_info(own_parameters(), REQUEST))
    with Image.open(path) as image:
        image.load()
        pasted = image.copy()
    found = read_parameters_from_image(pasted)
    assert found is not None and found.request == REQUEST
    assert read_parameters_from_image(Image.new("RGB", (8, 8))) is None


def test_module_does_not_import_qt() -> None:
    code = (
        "import sys, studio.metadata;"
        "bad = [m for m in sys.modules if m.startswith(('PySide6', 'shiboken6', 'PyQt'))];"
        "assert not bad, bad"
    )
    subprocess.run([sys.executable, "-c", code], check=True, cwd=Path(__file__).parents[1])


def test_gzip_bomb_in_stealth_is_bounded() -> None:
    bomb = zlib.compressobj(9, zlib.DEFLATED, 31)
    payload = bomb.compress(b"A" * (40 * 1024 * 1024)) + bomb.flush()
    side = 600
    image = Image.new("RGBA", (side, side), (0, 0, 0, 255))
    bits = "".join(f"{b:08b}" for b in b"stealth_pngcomp") + f"{len(payload) * 8:032b}"
    bits += "".join(f"{b:08b}" for b in payload)
    assert len(bits) <= side * side
    alpha = bytearray(side * side)
    for index, bit in enumerate(bits):
        alpha[index] = 254 | int(bit)
    for index in range(len(bits), len(alpha)):
        alpha[index] = 255
    # The writer's column order is the transpose of Pillow's row order.
    column_major = Image.frombytes("L", (side, side), bytes(alpha)).transpose(
        Image.Transpose.TRANSPOSE
    )
    image.putalpha(column_major)
    p = read_parameters_from_image(image)
    assert p is not None
    assert p.prompt.startswith("AAAA") and len(p.prompt) <= 4 * 1024 * 1024


# -- a hostile corpus: shapes that cost time, numbers that cost the file --------------------


def _png_with(chunks: dict[str, str]) -> io.BytesIO:
    info = PngImagePlugin.PngInfo()
    for key, text in chunks.items():
        info.add_text(key, text)
    buffer = io.BytesIO()
    Image.new("RGB", (8, 8)).save(buffer, "PNG", pnginfo=info)
    buffer.seek(0)
    return buffer


def _fan_out_graph(samplers: int, fan: int) -> dict[str, Any]:
    """Combine nodes each taking every other one as input, under many samplers: a shape
    that made the reader visit every link again for each sampler."""
    hubs = [f"h{i}" for i in range(fan)]
    graph: dict[str, Any] = {
        hub: {
            "class_type": "ConditioningCombine",
            "inputs": {f"c{j}": [hubs[(i + j + 1) % fan], 0] for j in range(fan)},
        }
        for i, hub in enumerate(hubs)
    }
    for s in range(samplers):
        graph[str(s)] = {
            "class_type": "KSampler",
            "inputs": {"positive": [hubs[s % fan], 0], "seed": 5, "steps": 20},
        }
    return graph


@pytest.mark.parametrize(("samplers", "fan"), [(50, 250), (300, 60), (2000, 10)])
def test_large_fan_out_graphs_read_in_linear_time(samplers: int, fan: int) -> None:
    text = json.dumps(_fan_out_graph(samplers, fan))
    started = time.perf_counter()
    found = read_parameters(_png_with({"prompt": text}))
    seconds = time.perf_counter() - started
    assert found.source == "comfyui" and found.seed == 5
    assert seconds < 2.0, f"{len(text) / 1e6:.1f} MB read in {seconds:.1f} s"  # 0.1 s here


def test_a_number_of_thousands_of_digits_costs_only_that_field() -> None:
    a1111 = "a cat\nNegative prompt: dogs\nSteps: 20, Seed: " + "9" * 5000 + ", CFG scale: 7"
    found = read_parameters(_png_with({"parameters": a1111}))
    assert (found.prompt, found.steps, found.cfg_scale, found.seed) == ("a cat", 20, 7.0, None)
    # (written by hand: Python's own json refuses to write such an int)
    text = '{"3": {"class_type": "KSampler", "inputs": {"seed": ' + "9" * 5000 + ', "steps": 8}}}'
    found = read_parameters(_png_with({"prompt": text}))
    assert found.steps == 8 and found.seed is None


def test_a_huge_settings_line_is_text_not_settings() -> None:
    line = "Steps: 2, " * 60_000  # 600 KB: far longer than any settings line
    started = time.perf_counter()
    found = parse_a1111("a cat\n" + line)
    assert time.perf_counter() - started < 2.0
    assert found.steps is None and found.prompt.startswith("a cat\nSteps: 2")
