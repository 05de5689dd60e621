"""The architectures of studio-tiny and studio-tiny-x4, sized for a 2-core CPU.

Latents are 4 channels at 1/4 of the image side (a 3-level VAE), so a 64x64 image is a
16x16 latent and the x4 upscaler's UNet runs at the low-resolution image's size, as the
Stable Diffusion x4 upscaler does.
"""

from __future__ import annotations

from diffusers import (
    AutoencoderKL,
    DDPMScheduler,
    DPMSolverMultistepScheduler,
    UNet2DConditionModel,
)
from transformers import CLIPTextConfig, CLIPTextModel

from studio.tiny.tokenizer import MAX_LENGTH

LATENT_CHANNELS = 4
TEXT_DIM = 128
# The x4 upscale pipeline insists on this VAE scaling factor; we rescale the VAE's latent
# space so that raw latents have std 12 and the scaled ones unit variance (see train.py).
SCALING_FACTOR = 0.08333
DEFAULT_SIZE = 64

# DDPM's linear schedule: at 16x16 latents it ends with almost no signal left, so sampling
# from pure noise matches training (the SD schedule leaves a visible mean colour). With so
# little signal at the noisy end, epsilon prediction learns almost nothing there (the noise
# is the input); v-prediction makes the model state the picture's layout and colours early.
SCHEDULE = {
    "num_train_timesteps": 1000,
    "beta_start": 0.0001,
    "beta_end": 0.02,
    "beta_schedule": "linear",
    "prediction_type": "v_prediction",
    "clip_sample": False,
    "steps_offset": 1,
}


def make_vae() -> AutoencoderKL:
    return AutoencoderKL(
        in_channels=3,
        out_channels=3,
        down_block_types=("DownEncoderBlock2D",) * 3,
        up_block_types=("UpDecoderBlock2D",) * 3,
        # Wide enough that edges of small shapes survive (the shape judge on VAE round
        # trips is the ceiling of the whole model), small enough for the 30 MB budget.
        block_out_channels=(48, 96, 96),
        layers_per_block=1,
        latent_channels=LATENT_CHANNELS,
        norm_num_groups=16,
        sample_size=DEFAULT_SIZE,
        scaling_factor=SCALING_FACTOR,
        mid_block_add_attention=False,
        force_upcast=True,
    )


def make_text_encoder(vocab_size: int, bos_id: int, eos_id: int) -> CLIPTextModel:
    config = CLIPTextConfig(
        vocab_size=vocab_size,
        hidden_size=TEXT_DIM,
        intermediate_size=TEXT_DIM * 4,
        num_hidden_layers=3,
        num_attention_heads=4,
        max_position_embeddings=MAX_LENGTH,
        projection_dim=TEXT_DIM,
        hidden_act="quick_gelu",
        bos_token_id=bos_id,
        eos_token_id=eos_id,
        pad_token_id=eos_id,
    )
    return CLIPTextModel(config)


def make_unet() -> UNet2DConditionModel:
    return UNet2DConditionModel(
        sample_size=DEFAULT_SIZE // 4,
        in_channels=LATENT_CHANNELS,
        out_channels=LATENT_CHANNELS,
        # Cross-attention at 8x8 and 4x4 only: enough to place a 3x3 grid of positions,
        # and attention at 16x16 would cost twice the time of the whole rest on a CPU.
        down_block_types=("DownBlock2D", "CrossAttnDownBlock2D", "CrossAttnDownBlock2D"),
        up_block_types=("CrossAttnUpBlock2D", "CrossAttnUpBlock2D", "UpBlock2D"),
        block_out_channels=(64, 96, 128),
        layers_per_block=1,
        cross_attention_dim=TEXT_DIM,
        attention_head_dim=4,  # diffusers reads this as the number of heads
        norm_num_groups=32,
    )


def make_upscaler_unet() -> UNet2DConditionModel:
    # Input: 4 latent channels + the noisy low-resolution RGB image. No text attention:
    # the low-resolution image says all there is to say about a procedural scene.
    return UNet2DConditionModel(
        sample_size=DEFAULT_SIZE // 4,
        in_channels=LATENT_CHANNELS + 3,
        out_channels=LATENT_CHANNELS,
        down_block_types=("DownBlock2D",) * 3,
        up_block_types=("UpBlock2D",) * 3,
        mid_block_type=None,
        block_out_channels=(48, 96, 96),
        layers_per_block=1,
        cross_attention_dim=TEXT_DIM,
        num_class_embeds=1000,  # noise level of the low-resolution input, as in SD x4
        norm_num_groups=16,
    )


def make_scheduler() -> DPMSolverMultistepScheduler:
    """DPM++ 2M, the measured best at 25 steps (see training.json)."""
    kwargs = {k: v for k, v in SCHEDULE.items() if k != "clip_sample"}
    return DPMSolverMultistepScheduler(**kwargs, timestep_spacing="trailing")


# Written into scheduler_config.json too: a scheduler built from this config by name
# (DDIM, PNDM...) must not clip latents to [-1, 1] nor treat the last step specially.
SCHEDULER_EXTRAS = {"clip_sample": False, "set_alpha_to_one": False}


def make_train_scheduler() -> DDPMScheduler:
    return DDPMScheduler(**SCHEDULE)


def make_low_res_scheduler() -> DDPMScheduler:
    # Same as SD x4's: adds noise to the low-resolution input at the requested level.
    return DDPMScheduler(
        num_train_timesteps=1000,
        beta_start=0.0001,
        beta_end=0.02,
        beta_schedule="scaled_linear",
        clip_sample=False,
    )


def n_params(model: object) -> int:
    return sum(p.numel() for p in model.parameters())  # type: ignore[attr-defined]
