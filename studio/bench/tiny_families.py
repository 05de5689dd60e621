"""Tiny random-weight diffusers pipelines, one per model family, built offline: the tests'
fixtures and the models `studio bench --parts families` measures the engine on.

Each family is built from configs with random weights (as diffusers' own pipeline tests do) and
saved with ``save_pretrained`` (safetensors) into a folder that
``DiffusionPipeline.from_pretrained(folder, local_files_only=True)`` loads with no network.
Tokenizers are built locally: the studio-tiny CLIP tokenizer for CLIP slots, a Unigram
``T5Tokenizer`` and a byte-level BPE ``Qwen2Tokenizer`` (with the Qwen chat template and special
tokens) trained on a few sentences for the T5 and Qwen slots.

The models keep each family's *layout* (latent channels, 8x VAE, 2x2 packing or patching, text
encoder roles, scheduler class and config, VAE scaling/shift or latent statistics) but are as
narrow as the configs allow, so that loading one and running 2 steps at 64x64 on a CPU takes
about a second. Builds are deterministic (fixed seeds, deterministic tokenizer training).

API: ``FAMILIES``, ``build(family, folder)``, ``MODES`` (the diffusers classes for image to image,
inpaint and edit per family), ``PIPELINE_CLASS`` and ``SIZE`` (the image size the tests use).
"""

from __future__ import annotations

import json
import os
import shutil
from collections.abc import Callable
from pathlib import Path

from studio.core.paths import EMBEDDED_MODELS_DIR
from studio.engine.single_file import QWEN3_CHAT_TEMPLATE

FAMILIES: tuple[str, ...] = (
    "sd1",
    "sd2v",
    "sdxl",
    "sd3",
    "flux",
    "flux2_klein",
    "qwen_image",
    "z_image",
    "chroma",
)

#: The text to image pipeline class each family's folder records in model_index.json.
PIPELINE_CLASS: dict[str, str] = {
    "sd1": "StableDiffusionPipeline",
    "sd2v": "StableDiffusionPipeline",
    "sdxl": "StableDiffusionXLPipeline",
    "sd3": "StableDiffusion3Pipeline",
    "flux": "FluxPipeline",
    "flux2_klein": "Flux2KleinPipeline",
    "qwen_image": "QwenImagePipeline",
    "z_image": "ZImagePipeline",
    "chroma": "ChromaPipeline",
}

#: Pipeline classes diffusers 0.42.1 has for the other modes, per family. Only classes that take
#: the same components as the text to image pipeline (so ``from_pipe`` works) are listed, except
#: where noted in ``MODE_NOTES``.
#:
#: - "img2img": image + strength, same components.
#: - "inpaint": image + mask_image + strength, same components.
#: - "edit": an instruction/reference-image pipeline.
MODES: dict[str, dict[str, str]] = {
    "sd1": {
        "img2img": "StableDiffusionImg2ImgPipeline",
        "inpaint": "StableDiffusionInpaintPipeline",
    },
    "sd2v": {
        "img2img": "StableDiffusionImg2ImgPipeline",
        "inpaint": "StableDiffusionInpaintPipeline",
    },
    "sdxl": {
        "img2img": "StableDiffusionXLImg2ImgPipeline",
        "inpaint": "StableDiffusionXLInpaintPipeline",
    },
    "sd3": {
        "img2img": "StableDiffusion3Img2ImgPipeline",
        "inpaint": "StableDiffusion3InpaintPipeline",
    },
    "flux": {
        "img2img": "FluxImg2ImgPipeline",
        "inpaint": "FluxInpaintPipeline",
        "edit": "FluxKontextPipeline",
    },
    "flux2_klein": {
        "inpaint": "Flux2KleinInpaintPipeline",
        "edit": "Flux2KleinPipeline",
    },
    "qwen_image": {
        "img2img": "QwenImageImg2ImgPipeline",
        "inpaint": "QwenImageInpaintPipeline",
        "edit": "QwenImageEditPipeline",
    },
    "z_image": {
        "img2img": "ZImageImg2ImgPipeline",
        "inpaint": "ZImageInpaintPipeline",
    },
    "chroma": {
        "img2img": "ChromaImg2ImgPipeline",
        "inpaint": "ChromaInpaintPipeline",
    },
}

#: What the plain MODES table cannot say (diffusers 0.42.1, transformers 5.24, no torchvision).
MODE_NOTES: dict[str, str] = {
    "sd1": "edit: StableDiffusionInstructPix2PixPipeline needs an 8-channel UNet (another "
    "checkpoint), so it is not derivable with from_pipe.",
    "sd2v": "as sd1.",
    "sdxl": "edit: StableDiffusionXLInstructPix2PixPipeline needs an 8-channel UNet "
    "(not from_pipe).",
    "sd3": "no edit pipeline.",
    "flux": "edit: FluxKontextPipeline takes the same components (from_pipe works; real edits need "
    "FLUX.1-Kontext weights). It resizes to max_area (default 1024**2) and, with _auto_resize=True "
    "(default), to a preferred Kontext resolution: pass max_area=h*w, _auto_resize=False to keep a "
    "small size. FluxKontextInpaintPipeline also exists. FluxFillPipeline needs a 384-channel "
    "transformer (FLUX.1-Fill), not from_pipe.",
    "flux2_klein": "no strength-based img2img: AutoPipelineForImage2Image maps flux2-klein to "
    "Flux2KleinPipeline itself, whose image= is a list of reference images (edit, no strength). "
    "AutoPipelineForInpainting has no flux2-klein entry: use Flux2KleinInpaintPipeline.from_pipe "
    "(image + mask_image + strength, optional image_reference). Flux2KleinKVPipeline is a "
    "KV-cached reference variant (is_distilled defaults to True there).",
    "qwen_image": "edit: QwenImageEditPipeline (and EditPlus, EditInpaint) need an extra "
    "`processor` component (Qwen2VLProcessor) and Qwen-Image-Edit weights. With transformers "
    "5.24 and no torchvision, Qwen2VLProcessor cannot even be constructed (its video-processor "
    "slot), so the edit path is not exercised here; the engine builds the processor without a "
    "video processor (studio.engine.qwen_vl), tests/engine/test_single_file_qwen_edit.py runs it.",
    "z_image": "no edit class that shares components: ZImageOmniPipeline needs a SigLIP2 encoder.",
    "chroma": "ChromaImg2ImgPipeline / ChromaInpaintPipeline are not in the AutoPipeline mappings: "
    "derive them with the class's own from_pipe. ChromaInpaintPipeline in diffusers 0.42.1 (and on "
    "main) reads transformer.config.guidance_embeds, which ChromaTransformer2DModel's config does "
    "not have: AttributeError with every Chroma checkpoint. Workaround: "
    "pipe.transformer.register_to_config(guidance_embeds=False) before calling it.",
}

#: Image size (height, width) the tests use: the smallest multiple of 16 that is comfortable for
#: every family (8x VAE, 2x2 packing/patching -> 4x4 tokens).
SIZE: tuple[int, int] = (64, 64)

#: Bump when a recipe changes, so that stale builds are rebuilt.
BUILD_VERSION = 1
MARKER = "tiny_family.json"

CLIP_TOKENIZER = EMBEDDED_MODELS_DIR / "studio-tiny" / "tokenizer"

# Sentences the T5 and Qwen tokenizers are trained on: the studio-tiny scene vocabulary, the
# prompts the tests use, and Qwen-Image's prompt templates (so that their system parts split as the
# real Qwen tokenizer splits them: 34 tokens before the user text for Qwen-Image).
QWEN_IMAGE_TEMPLATE = (
    "<|im_start|>system\nDescribe the image by detailing the color, shape, size, texture, "
    "quantity, text, spatial relationships of the objects and background:<|im_end|>\n"
    "<|im_start|>user\n{}<|im_end|>\n<|im_start|>assistant\n"
)
QWEN_IMAGE_EDIT_TEMPLATE = (
    "<|im_start|>system\nDescribe the key features of the input image (color, shape, size, "
    "texture, objects, background), then explain how the user's text instruction should alter or "
    "modify the image. Generate a new image that meets the user's requirements while "
    "maintaining consistency with the original input where appropriate.<|im_end|>\n"
    "<|im_start|>user\n<|vision_start|><|image_pad|><|vision_end|>{}<|im_end|>\n"
    "<|im_start|>assistant\n"
)
SENTENCES = [
    "a small red circle at the top left on a blue background",
    "a large green square at the centre on a plain white background",
    "a yellow triangle at the bottom right on a striped purple background",
    "an orange star at the top and a black ring at the bottom on a gradient background",
    "two small blue circles on the left, a large white square on the right",
    "a photo of a cat, a dog is dancing, dance monkey, bad quality, blurry, low quality",
    "make the circle red, turn the square into a star, add a ring, remove the background",
    "A B C D E F G H I J K L M N O P Q R S T U V W X Y Z 0 1 2 3 4 5 6 7 8 9",
]
QWEN_SPECIAL = [
    "<|im_start|>",
    "<|im_end|>",
    "<|object_ref_start|>",
    "<|object_ref_end|>",
    "<|box_start|>",
    "<|box_end|>",
    "<|quad_start|>",
    "<|quad_end|>",
    "<|vision_start|>",
    "<|vision_end|>",
    "<|vision_pad|>",
    "<|image_pad|>",
    "<|video_pad|>",
]


# --------------------------------------------------------------------------------------------
# tokenizers


def clip_tokenizer():
    """The studio-tiny CLIP BPE tokenizer (611 tokens), with CLIP's usual 77-token length."""
    from transformers import CLIPTokenizer

    return CLIPTokenizer.from_pretrained(
        str(CLIP_TOKENIZER), model_max_length=77, local_files_only=True
    )


def t5_tokenizer():
    """A real ``T5Tokenizer`` (Unigram, Metaspace) over the words of SENTENCES and characters."""
    from transformers import T5Tokenizer

    # T5's layout: <pad>=0, </s>=1, <unk>=2; then whole words (preferred by their score), then
    # single characters so that any ASCII text still tokenizes.
    words = list(dict.fromkeys(w for sentence in SENTENCES for w in sentence.split()))
    chars = sorted({c for w in words for c in w} | set("abcdefghijklmnopqrstuvwxyz0123456789"))
    pieces: dict[str, float] = {"<pad>": 0.0, "</s>": 0.0, "<unk>": 0.0, "▁": -2.0}
    for word in words:
        pieces.setdefault("▁" + word, -3.0)
    for c in chars:
        pieces.setdefault(c, -6.0)
        pieces.setdefault("▁" + c, -6.5)
    return T5Tokenizer(vocab=list(pieces.items()), extra_ids=0, model_max_length=512)


def qwen_tokenizer(vocab_size: int = 640):
    """A real ``Qwen2Tokenizer`` (byte-level BPE with Qwen's pre-tokenizer regex), trained on
    SENTENCES and the Qwen-Image templates, with Qwen's special tokens and a Qwen3-style chat
    template."""
    from tokenizers import AddedToken, Regex, Tokenizer, models, pre_tokenizers, trainers
    from transformers import Qwen2Tokenizer
    from transformers.models.qwen2.tokenization_qwen2 import PRETOKENIZE_REGEX

    plain = [
        t.replace("<|im_start|>", "").replace("<|im_end|>", "").replace("<|vision_start|>", "")
        for t in (QWEN_IMAGE_TEMPLATE, QWEN_IMAGE_EDIT_TEMPLATE)
    ]
    corpus = [t.format(s) for t in plain for s in SENTENCES] + SENTENCES
    bpe = Tokenizer(models.BPE())
    bpe.pre_tokenizer = pre_tokenizers.Sequence(
        [
            pre_tokenizers.Split(Regex(PRETOKENIZE_REGEX), behavior="isolated"),
            pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=False),
        ]
    )
    trainer = trainers.BpeTrainer(
        vocab_size=vocab_size,
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        special_tokens=["<|endoftext|>"],
        show_progress=False,
    )
    bpe.train_from_iterator(corpus, trainer)
    model = json.loads(bpe.to_str())["model"]
    merges = [tuple(m) if isinstance(m, list) else tuple(m.split(" ")) for m in model["merges"]]
    tokenizer = Qwen2Tokenizer(
        vocab=model["vocab"],
        merges=merges,
        model_max_length=32768,
        chat_template=QWEN3_CHAT_TEMPLATE,  # the engine's own, as Z-Image uses it
    )
    tokenizer.add_tokens([AddedToken(t, special=True, normalized=False) for t in QWEN_SPECIAL])
    tokenizer.add_tokens(
        [AddedToken(t, special=False, normalized=False) for t in ("<think>", "</think>")]
    )
    return tokenizer


# --------------------------------------------------------------------------------------------
# shared components


def _seed(n: int = 0) -> None:
    import torch

    torch.manual_seed(n)


def _kl_vae(
    latent_channels: int, scaling_factor: float, shift_factor: float | None, quant_conv: bool
):
    """An 8x AutoencoderKL (4 levels, 8-16 channels)."""
    from diffusers import AutoencoderKL

    _seed()
    return AutoencoderKL(
        in_channels=3,
        out_channels=3,
        down_block_types=("DownEncoderBlock2D",) * 4,
        up_block_types=("UpDecoderBlock2D",) * 4,
        block_out_channels=(8, 8, 16, 16),
        layers_per_block=1,
        latent_channels=latent_channels,
        norm_num_groups=4,
        sample_size=64,
        scaling_factor=scaling_factor,
        shift_factor=shift_factor,
        use_quant_conv=quant_conv,
        use_post_quant_conv=quant_conv,
    )


def _clip(
    tokenizer,
    hidden: int = 32,
    projection: int | None = None,
    act: str = "quick_gelu",
    seed: int = 1,
):
    """A tiny 2-layer CLIP text encoder over the studio-tiny vocabulary (with a projection if
    asked: CLIPTextModelWithProjection). OpenAI CLIP-L uses quick_gelu, OpenCLIP (SD 2, bigG)
    gelu."""
    from transformers import CLIPTextConfig, CLIPTextModel, CLIPTextModelWithProjection

    config = CLIPTextConfig(
        vocab_size=len(tokenizer),
        hidden_size=hidden,
        intermediate_size=hidden * 2,
        num_hidden_layers=2,  # SDXL and SD3 read the penultimate hidden state
        num_attention_heads=2,
        max_position_embeddings=77,
        projection_dim=projection or hidden,
        hidden_act=act,
        bos_token_id=tokenizer.bos_token_id,
        eos_token_id=tokenizer.eos_token_id,
        pad_token_id=tokenizer.pad_token_id,
    )
    _seed(seed)
    model = (CLIPTextModelWithProjection if projection else CLIPTextModel)(config)
    return model.eval()


def _t5(tokenizer, d_model: int = 32, seed: int = 3):
    from transformers import T5Config, T5EncoderModel

    config = T5Config(
        vocab_size=len(tokenizer),
        d_model=d_model,
        d_kv=d_model // 2,
        d_ff=d_model * 2,
        num_layers=1,
        num_heads=2,
        relative_attention_num_buckets=8,
        relative_attention_max_distance=32,
        feed_forward_proj="gated-gelu",
        dropout_rate=0.0,
        pad_token_id=tokenizer.pad_token_id,
        eos_token_id=tokenizer.eos_token_id,
        decoder_start_token_id=tokenizer.pad_token_id,
        is_encoder_decoder=False,
        use_cache=False,
    )
    _seed(seed)
    return T5EncoderModel(config).eval()


def _qwen3(tokenizer, hidden: int, layers: int, causal_lm: bool):
    from transformers import Qwen3Config, Qwen3ForCausalLM, Qwen3Model

    config = Qwen3Config(
        vocab_size=len(tokenizer),
        hidden_size=hidden,
        intermediate_size=hidden * 2,
        num_hidden_layers=layers,
        num_attention_heads=2,
        num_key_value_heads=1,
        head_dim=hidden // 2,
        max_position_embeddings=2048,
        tie_word_embeddings=True,
        bos_token_id=None,
        eos_token_id=tokenizer.convert_tokens_to_ids("<|im_end|>"),
        pad_token_id=tokenizer.pad_token_id,
    )
    _seed(4)
    return (Qwen3ForCausalLM if causal_lm else Qwen3Model)(config).eval()


def _sd_scheduler(kind: str):
    from diffusers import DDIMScheduler, EulerDiscreteScheduler, PNDMScheduler

    common = dict(
        beta_start=0.00085, beta_end=0.012, beta_schedule="scaled_linear", num_train_timesteps=1000
    )
    if kind == "sd1":  # runwayml/stable-diffusion-v1-5
        return PNDMScheduler(skip_prk_steps=True, steps_offset=1, set_alpha_to_one=False, **common)
    if kind == "sd2v":  # stabilityai/stable-diffusion-2-1 (768, v-prediction)
        return DDIMScheduler(
            clip_sample=False,
            set_alpha_to_one=False,
            steps_offset=1,
            prediction_type="v_prediction",
            **common,
        )
    # stabilityai/stable-diffusion-xl-base-1.0
    return EulerDiscreteScheduler(
        interpolation_type="linear",
        timestep_spacing="leading",
        steps_offset=1,
        prediction_type="epsilon",
        **common,
    )


def _flow_scheduler(**config):
    from diffusers import FlowMatchEulerDiscreteScheduler

    return FlowMatchEulerDiscreteScheduler(num_train_timesteps=1000, **config)


FLUX1_SCHEDULER = dict(
    shift=3.0,
    use_dynamic_shifting=True,
    base_shift=0.5,
    max_shift=1.15,
    base_image_seq_len=256,
    max_image_seq_len=4096,
)


# --------------------------------------------------------------------------------------------
# families


def _unet(cross_attention_dim: int, linear_projection: bool, sdxl: bool):
    from diffusers import UNet2DConditionModel

    extra = {}
    if sdxl:
        extra = dict(
            addition_embed_type="text_time",
            addition_time_embed_dim=8,
            projection_class_embeddings_input_dim=6 * 8 + 32,
        )
    _seed()
    return UNet2DConditionModel(
        sample_size=8,
        in_channels=4,
        out_channels=4,
        block_out_channels=(16, 32),
        layers_per_block=1,
        down_block_types=("DownBlock2D", "CrossAttnDownBlock2D"),
        up_block_types=("CrossAttnUpBlock2D", "UpBlock2D"),
        cross_attention_dim=cross_attention_dim,
        attention_head_dim=(2, 4),
        norm_num_groups=8,
        use_linear_projection=linear_projection,
        **extra,
    )


def _build_sd(family: str):
    from diffusers import StableDiffusionPipeline

    tokenizer = clip_tokenizer()
    return StableDiffusionPipeline(
        vae=_kl_vae(4, 0.18215, None, quant_conv=True),
        text_encoder=_clip(tokenizer, act="gelu" if family == "sd2v" else "quick_gelu"),
        tokenizer=tokenizer,
        unet=_unet(32, linear_projection=family == "sd2v", sdxl=False),
        scheduler=_sd_scheduler(family),
        safety_checker=None,
        feature_extractor=None,
        image_encoder=None,
        requires_safety_checker=False,
    )


def _build_sdxl():
    from diffusers import StableDiffusionXLPipeline

    tokenizer = clip_tokenizer()
    return StableDiffusionXLPipeline(
        vae=_kl_vae(4, 0.13025, None, quant_conv=True),
        text_encoder=_clip(tokenizer),
        text_encoder_2=_clip(tokenizer, projection=32, act="gelu", seed=2),
        tokenizer=tokenizer,
        tokenizer_2=clip_tokenizer(),
        unet=_unet(64, linear_projection=True, sdxl=True),
        scheduler=_sd_scheduler("sdxl"),
        force_zeros_for_empty_prompt=True,
    )


def _build_sd3():
    from diffusers import SD3Transformer2DModel, StableDiffusion3Pipeline

    tokenizer = clip_tokenizer()
    t5_tok = t5_tokenizer()
    _seed()
    transformer = SD3Transformer2DModel(
        sample_size=8,
        patch_size=2,
        in_channels=16,
        out_channels=16,
        num_layers=1,
        attention_head_dim=8,
        num_attention_heads=4,
        joint_attention_dim=64,
        caption_projection_dim=32,
        pooled_projection_dim=64,
        pos_embed_max_size=64,
    )
    return StableDiffusion3Pipeline(
        transformer=transformer,
        scheduler=_flow_scheduler(shift=3.0),
        vae=_kl_vae(16, 1.5305, 0.0609, quant_conv=False),
        text_encoder=_clip(tokenizer, projection=32),
        tokenizer=tokenizer,
        text_encoder_2=_clip(tokenizer, projection=32, act="gelu", seed=2),
        tokenizer_2=clip_tokenizer(),
        text_encoder_3=_t5(t5_tok, d_model=64),
        tokenizer_3=t5_tok,
    )


def _build_flux():
    from diffusers import FluxPipeline, FluxTransformer2DModel

    tokenizer = clip_tokenizer()
    t5_tok = t5_tokenizer()
    _seed()
    transformer = FluxTransformer2DModel(
        patch_size=1,
        in_channels=64,
        num_layers=1,
        num_single_layers=1,
        attention_head_dim=16,
        num_attention_heads=2,
        joint_attention_dim=32,
        pooled_projection_dim=32,
        guidance_embeds=True,
        axes_dims_rope=(4, 6, 6),
    )
    return FluxPipeline(
        scheduler=_flow_scheduler(**FLUX1_SCHEDULER),
        vae=_kl_vae(16, 0.3611, 0.1159, quant_conv=False),
        text_encoder=_clip(tokenizer),
        tokenizer=tokenizer,
        text_encoder_2=_t5(t5_tok, d_model=32),
        tokenizer_2=t5_tok,
        transformer=transformer,
    )


def _build_chroma():
    from diffusers import ChromaPipeline, ChromaTransformer2DModel

    t5_tok = t5_tokenizer()
    _seed()
    transformer = ChromaTransformer2DModel(
        patch_size=1,
        in_channels=64,
        num_layers=1,
        num_single_layers=1,
        attention_head_dim=16,
        num_attention_heads=2,
        joint_attention_dim=32,
        axes_dims_rope=(4, 6, 6),
        approximator_num_channels=16,
        approximator_hidden_dim=32,
        approximator_layers=1,
    )
    return ChromaPipeline(
        scheduler=_flow_scheduler(**FLUX1_SCHEDULER),
        vae=_kl_vae(16, 0.3611, 0.1159, quant_conv=False),
        text_encoder=_t5(t5_tok, d_model=32),
        tokenizer=t5_tok,
        transformer=transformer,
        image_encoder=None,
        feature_extractor=None,
    )


def _build_flux2_klein():
    import torch
    from diffusers import AutoencoderKLFlux2, Flux2KleinPipeline, Flux2Transformer2DModel

    tokenizer = qwen_tokenizer()
    # 28 layers so that the pipeline's default text_encoder_out_layers (9, 18, 27) exist.
    text_encoder = _qwen3(tokenizer, hidden=16, layers=28, causal_lm=True)
    _seed()
    transformer = Flux2Transformer2DModel(
        patch_size=1,
        in_channels=128,
        num_layers=1,
        num_single_layers=1,
        attention_head_dim=16,
        num_attention_heads=2,
        joint_attention_dim=3 * 16,
        timestep_guidance_channels=256,
        axes_dims_rope=(4, 4, 4, 4),
        guidance_embeds=False,
    )
    _seed()
    vae = AutoencoderKLFlux2(
        in_channels=3,
        out_channels=3,
        down_block_types=("DownEncoderBlock2D",) * 4,
        up_block_types=("UpDecoderBlock2D",) * 4,
        block_out_channels=(8, 8, 16, 16),
        layers_per_block=1,
        latent_channels=32,
        norm_num_groups=4,
        sample_size=64,
    )
    # Non-trivial latent statistics, so that code which skips the batch-norm (un)normalisation
    # gives different pixels.
    g = torch.Generator().manual_seed(0)
    with torch.no_grad():
        vae.bn.running_mean.copy_(0.1 * torch.randn(vae.bn.running_mean.shape, generator=g))
        vae.bn.running_var.copy_(1.0 + 0.5 * torch.rand(vae.bn.running_var.shape, generator=g))
    vae.eval()
    return Flux2KleinPipeline(
        scheduler=_flow_scheduler(**FLUX1_SCHEDULER),
        vae=vae,
        text_encoder=text_encoder,
        tokenizer=tokenizer,
        transformer=transformer,
        is_distilled=True,
    )


def _build_qwen_image():
    from diffusers import AutoencoderKLQwenImage, QwenImagePipeline, QwenImageTransformer2DModel
    from transformers import Qwen2_5_VLConfig, Qwen2_5_VLForConditionalGeneration

    tokenizer = qwen_tokenizer()
    ids = {t: tokenizer.convert_tokens_to_ids(t) for t in QWEN_SPECIAL}
    hidden = 16
    config = Qwen2_5_VLConfig(
        text_config=dict(
            vocab_size=len(tokenizer),
            hidden_size=hidden,
            intermediate_size=hidden * 2,
            num_hidden_layers=2,
            num_attention_heads=2,
            num_key_value_heads=1,
            max_position_embeddings=2048,
            rope_parameters=dict(
                rope_type="default", rope_theta=1000000.0, mrope_section=[1, 1, 2]
            ),
            bos_token_id=None,
            eos_token_id=ids["<|im_end|>"],
            pad_token_id=tokenizer.pad_token_id,
        ),
        vision_config=dict(
            depth=1,
            hidden_size=16,
            intermediate_size=16,
            num_heads=2,
            out_hidden_size=hidden,
            fullatt_block_indexes=[0],
        ),
        image_token_id=ids["<|image_pad|>"],
        video_token_id=ids["<|video_pad|>"],
        vision_start_token_id=ids["<|vision_start|>"],
        vision_end_token_id=ids["<|vision_end|>"],
    )
    _seed(4)
    text_encoder = Qwen2_5_VLForConditionalGeneration(config).eval()
    _seed()
    transformer = QwenImageTransformer2DModel(
        patch_size=2,
        in_channels=64,
        out_channels=16,
        num_layers=1,
        attention_head_dim=16,
        num_attention_heads=2,
        joint_attention_dim=hidden,
        guidance_embeds=False,
        axes_dims_rope=(8, 4, 4),
    )
    _seed()
    # Qwen-Image's Wan-style causal 3D VAE: 8x spatial (3 downsamples), 16 channels; the default
    # latents_mean / latents_std are the real model's per-channel statistics.
    vae = AutoencoderKLQwenImage(
        base_dim=8,
        z_dim=16,
        dim_mult=[1, 1, 1, 1],
        num_res_blocks=1,
        temperal_downsample=[False, True, True],
    ).eval()
    return QwenImagePipeline(
        scheduler=_flow_scheduler(
            shift=1.0,
            use_dynamic_shifting=True,
            base_shift=0.5,
            max_shift=0.9,
            base_image_seq_len=256,
            max_image_seq_len=8192,
            shift_terminal=0.02,
            time_shift_type="exponential",
        ),
        vae=vae,
        text_encoder=text_encoder,
        tokenizer=tokenizer,
        transformer=transformer,
    )


def _build_z_image():
    import torch
    from diffusers import ZImagePipeline, ZImageTransformer2DModel

    tokenizer = qwen_tokenizer()
    text_encoder = _qwen3(tokenizer, hidden=16, layers=2, causal_lm=False)
    _seed()
    transformer = ZImageTransformer2DModel(
        all_patch_size=(2,),
        all_f_patch_size=(1,),
        in_channels=16,
        dim=32,
        n_layers=1,
        n_refiner_layers=1,
        n_heads=2,
        n_kv_heads=2,
        qk_norm=True,
        cap_feat_dim=16,
        rope_theta=256.0,
        t_scale=1000.0,
        axes_dims=[8, 4, 4],
        axes_lens=[256, 64, 64],
    )
    # x_pad_token / cap_pad_token are created with torch.empty: give them fixed values.
    with torch.no_grad():
        transformer.x_pad_token.copy_(torch.ones_like(transformer.x_pad_token))
        transformer.cap_pad_token.copy_(torch.ones_like(transformer.cap_pad_token))
    return ZImagePipeline(
        scheduler=_flow_scheduler(shift=3.0, use_dynamic_shifting=False),
        vae=_kl_vae(16, 0.3611, 0.1159, quant_conv=False),
        text_encoder=text_encoder,
        tokenizer=tokenizer,
        transformer=transformer,
    )


BUILDERS: dict[str, Callable[[], object]] = {
    "sd1": lambda: _build_sd("sd1"),
    "sd2v": lambda: _build_sd("sd2v"),
    "sdxl": _build_sdxl,
    "sd3": _build_sd3,
    "flux": _build_flux,
    "flux2_klein": _build_flux2_klein,
    "qwen_image": _build_qwen_image,
    "z_image": _build_z_image,
    "chroma": _build_chroma,
}


def make_pipeline(family: str):
    """The family's pipeline in memory (random weights, fixed seeds), not saved."""
    if family not in BUILDERS:
        raise ValueError(f"unknown family {family!r}; known: {', '.join(FAMILIES)}")
    return BUILDERS[family]()


def _is_built(folder: Path, family: str) -> bool:
    try:
        marker = json.loads((folder / MARKER).read_text())
    except (OSError, ValueError):
        return False
    return (
        marker == {"family": family, "version": BUILD_VERSION}
        and (folder / "model_index.json").is_file()
    )


def build(family: str, folder: Path) -> Path:
    """Write the family's tiny pipeline into ``folder`` (safetensors) and return the folder.

    Idempotent: a folder already holding this family's build (same BUILD_VERSION) is reused. A
    folder holding anything else is an error, unless it is an older build of ours, which is
    replaced. The build is written next to the folder and renamed into place, so a folder never
    holds half a build.
    """
    folder = Path(folder)
    if family not in BUILDERS:
        raise ValueError(f"unknown family {family!r}; known: {', '.join(FAMILIES)}")
    if _is_built(folder, family):
        return folder
    if folder.exists() and any(folder.iterdir()):
        if not (folder / MARKER).is_file():
            raise FileExistsError(f"{folder} is not empty and holds no tiny-family build")
        shutil.rmtree(folder)
    pipeline = make_pipeline(family)
    folder.parent.mkdir(parents=True, exist_ok=True)
    partial = folder.with_name(f"{folder.name}.partial-{os.getpid()}")
    shutil.rmtree(partial, ignore_errors=True)
    pipeline.save_pretrained(partial, safe_serialization=True)
    (partial / MARKER).write_text(json.dumps({"family": family, "version": BUILD_VERSION}) + "\n")
    try:
        if folder.exists():
            folder.rmdir()  # empty
        partial.rename(folder)
    except OSError:
        shutil.rmtree(partial, ignore_errors=True)
        if not _is_built(folder, family):  # not another process's identical build
            raise
    return folder


def parameter_counts(pipeline) -> dict[str, int]:
    """Parameters per torch component of a loaded pipeline."""
    import torch

    return {
        name: sum(p.numel() for p in module.parameters())
        for name, module in pipeline.components.items()
        if isinstance(module, torch.nn.Module)
    }
