"""Train studio-tiny-controlnet: a ControlNet that places studio-tiny's objects where a
scribble, a filled silhouette or Canny's edges say.

    python -m studio.tiny.train_controlnet --out resources/models/studio-tiny-controlnet
    python -m studio.tiny.train_controlnet --quick --out /tmp/cn     # the plumbing, in seconds

As the ControlNet paper builds one: a trainable copy of studio-tiny's UNet encoder and
middle block (`ControlNetModel.from_unet`), joined to the frozen UNet by zero-initialised
1×1 convolutions, so training starts exactly at the base model. Its conditioning encoder
brings the 64×64 control map down to the 16×16 latent (two stride-2 steps: studio-tiny's
VAE scales by 4). The objective is the base recipe's (studio/tiny/train.py: v-prediction on
the same DDPM schedule, the same loss weights), with the UNet's prediction steered by the
ControlNet's residuals; as in the paper, the caption is dropped for half of the samples,
so the ControlNet learns to read the shape and place from the map alone.

The pairs: renders of the base model's own scenes (studio/tiny/scenes.py) and, drawn anew
at every step, a control map of each (studio/tiny/scribbles.py: a hand-wobbled outline, a
silhouette or Canny's edges of the render). Deterministic for a seed on one CPU thread; the
folder gets diffusers' ControlNetModel layout (config.json and fp16 weights, which
from_pretrained brings to the pipeline's dtype) and training.json with the command, wall
time and final loss.
"""

from __future__ import annotations

import argparse
import json
import platform
import random
import sys
import time
from pathlib import Path

import numpy as np
import torch
from diffusers import AutoencoderKL, ControlNetModel, UNet2DConditionModel
from transformers import CLIPTextModel, CLIPTokenizer

from studio.tiny import data, export, latents, models
from studio.tiny.scenes import Scene, draw_scene, sample_scene
from studio.tiny.scribbles import KIND_SHARES, KINDS, control_map
from studio.tiny.train import LossLog, Schedule, _adamw, v_prediction_loss

MODELS = Path(__file__).resolve().parents[2] / "resources" / "models"
# The conditioning encoder's widths: len - 1 stride-2 steps, one per factor of 2 of the VAE
# (studio-tiny's is 4: 64×64 pictures, 16×16 latents). SD's ControlNets use (16, 32, 96, 256).
CONDITIONING_CHANNELS = (16, 32, 64)


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(prog="python -m studio.tiny.train_controlnet", description=__doc__)
    p.add_argument("--out", type=Path, default=MODELS / "studio-tiny-controlnet")
    p.add_argument("--base", type=Path, default=MODELS / "studio-tiny", help="the model to steer")
    p.add_argument("--scenes", type=int, default=4000, help="scenes rendered for training")
    p.add_argument("--steps", type=int, default=2000)
    p.add_argument(
        "--minutes",
        type=float,
        default=float("inf"),
        help="a wall-clock cap (default none: the steps decide, so a run is the same anywhere)",
    )
    p.add_argument("--batch", type=int, default=16)
    p.add_argument("--lr", type=float, default=3e-4)
    p.add_argument(
        "--caption-drop", type=float, default=0.5, help="share of samples with the empty caption"
    )
    p.add_argument("--ema", type=float, default=0.995, help="EMA decay of the weights shipped")
    p.add_argument("--threads", type=int, default=1, help="CPU threads for torch")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--quick", action="store_true", help="a smoke run of the plumbing")
    args = p.parse_args(argv)
    args.argv = list(sys.argv[1:] if argv is None else argv)  # recorded as the command
    if args.quick:
        args.steps, args.batch, args.scenes = 2, 4, 16
    return args


def make_controlnet(unet: UNet2DConditionModel) -> ControlNetModel:
    """The trainable copy of the UNet's encoder, its zero convolutions at zero."""
    return ControlNetModel.from_unet(
        unet, conditioning_embedding_out_channels=CONDITIONING_CHANNELS
    )


def control_maps(scenes: list[Scene], size: int, rng: random.Random) -> torch.Tensor:
    """Control maps of the scenes, float [N, 3, size, size] in [0, 1] as the pipelines give
    them to the ControlNet (white lines on black)."""
    maps = np.stack([np.asarray(control_map(s, size, rng)) for s in scenes])
    return torch.from_numpy(maps).permute(0, 3, 1, 2).float() / 255.0


class Steered(torch.nn.Module):
    """The frozen UNet with the ControlNet's residuals added, called like the UNet, so the
    base recipe's loss (train.v_prediction_loss) trains the ControlNet unchanged."""

    def __init__(self, unet: UNet2DConditionModel, controlnet: ControlNetModel) -> None:
        super().__init__()
        self.unet, self.controlnet = unet, controlnet
        self.cond: torch.Tensor | None = None

    def forward(self, sample, timestep, encoder_hidden_states):  # noqa: ANN001, ANN201
        down, mid = self.controlnet(
            sample, timestep, encoder_hidden_states=encoder_hidden_states,
            controlnet_cond=self.cond, return_dict=False,
        )  # fmt: skip
        return self.unet(
            sample, timestep, encoder_hidden_states=encoder_hidden_states,
            down_block_additional_residuals=down, mid_block_additional_residual=mid,
        )  # fmt: skip


def train(args: argparse.Namespace) -> dict:
    torch.manual_seed(args.seed)
    started = time.time()
    tokenizer = CLIPTokenizer.from_pretrained(args.base / "tokenizer", local_files_only=True)
    vae = AutoencoderKL.from_pretrained(args.base / "vae", torch_dtype=torch.float32).eval()
    text = CLIPTextModel.from_pretrained(args.base / "text_encoder", torch_dtype=torch.float32)
    unet = UNet2DConditionModel.from_pretrained(args.base / "unet", torch_dtype=torch.float32)
    factor = 2 ** (len(vae.config.block_out_channels) - 1)
    if 2 ** (len(CONDITIONING_CHANNELS) - 1) != factor:
        raise SystemExit(f"the conditioning encoder must scale by the VAE's {factor}")
    text.requires_grad_(False).eval()
    unet.requires_grad_(False).eval()

    rng = random.Random(args.seed + 1)
    scenes = [sample_scene(rng) for _ in range(args.scenes)]
    images = data.to_uint8([draw_scene(s, models.DEFAULT_SIZE) for s in scenes])
    ids = data.caption_ids(scenes, tokenizer, per_scene=4, seed=args.seed + 2)
    z = latents.encode_mean(vae, data.to_unit(images)) * models.SCALING_FACTOR
    del images, vae
    empty = torch.tensor(
        tokenizer("", padding="max_length", max_length=tokenizer.model_max_length).input_ids
    )
    prepared = time.time() - started

    controlnet = make_controlnet(unet).train()
    steered = Steered(unet, controlnet)
    params = [p for p in controlnet.parameters() if p.requires_grad]
    ema = [p.detach().clone() for p in params]
    opt = _adamw(params, args.lr)
    sched = Schedule(opt, args.steps, args.minutes, warmup=min(100, args.steps // 10 + 1))
    noise_sched = models.make_train_scheduler()
    gen = torch.Generator().manual_seed(args.seed + 3)
    maps_rng = random.Random(args.seed + 4)
    log = LossLog("controlnet", args.steps)

    step = 0
    train_started = time.time()
    while not sched.done():
        sched.step()
        idx = torch.randint(0, len(z), (args.batch,), generator=gen)
        which = torch.randint(0, ids.shape[1], (args.batch,), generator=gen)
        tok = ids[idx, which]
        tok[torch.rand(args.batch, generator=gen) < args.caption_drop] = empty
        steered.cond = control_maps(
            [scenes[i] for i in idx.tolist()], models.DEFAULT_SIZE, maps_rng
        )
        with torch.no_grad():
            hidden = text(tok).last_hidden_state
        per_sample, loss = v_prediction_loss(steered, noise_sched, z[idx], hidden, gen, "cpu")
        log.add(step, per_sample.mean().item())
        opt.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(params, 1.0)
        opt.step()
        step += 1
        d = min(args.ema, (1 + step) / (10 + step))
        with torch.no_grad():
            for e, p in zip(ema, params, strict=True):
                e.lerp_(p.detach(), 1 - d)
    with torch.no_grad():  # the averaged weights are the ones shipped
        for e, p in zip(ema, params, strict=True):
            p.copy_(e)

    args.out.mkdir(parents=True, exist_ok=True)
    controlnet.eval().to(torch.float16).save_pretrained(args.out, safe_serialization=True)
    weights = args.out / "diffusion_pytorch_model.safetensors"
    record = {
        "command": "python -m studio.tiny.train_controlnet " + " ".join(args.argv),
        "base_model": args.base.name,
        "base_training": export.read_json(args.base / "training.json").get("command"),
        "seed": args.seed,
        "device": "cpu",
        "threads": args.threads,
        "machine": f"{platform.machine()} {platform.processor() or ''}".strip(),
        "torch": torch.__version__,
        "wall_seconds": round(time.time() - started, 1),
        "stages_seconds": {"data": round(prepared), "train": round(time.time() - train_started)},
        "steps": step,
        "batch": args.batch,
        "lr": args.lr,
        "ema": args.ema,
        "scenes": args.scenes,
        "caption_drop": args.caption_drop,
        "control_maps": dict(zip(KINDS, KIND_SHARES, strict=True)),
        "conditioning_embedding_out_channels": list(CONDITIONING_CHANNELS),
        "objective": "v-prediction MSE, base schedule and loss weights (studio/tiny/train.py)",
        "final_losses": {"unet_v_mse": log.final},
        "parameters": sum(p.numel() for p in controlnet.parameters()),
        "file_bytes": weights.stat().st_size,
    }
    export.write_json(args.out / "training.json", record)
    return record


def main(argv: list[str] | None = None) -> None:
    args = parse_args(argv)
    torch.set_num_threads(args.threads)
    random.seed(args.seed)
    record = train(args)
    print(json.dumps(record, indent=1), flush=True)
    print(f"wrote {args.out}", flush=True)


if __name__ == "__main__":
    main()
