"""Train studio-tiny (text->image) and studio-tiny-x4 (upscaler) from scratch.

    python -m studio.tiny.train                          # both models, from scratch
    python -m studio.tiny.train --model studio-tiny      # tokenizer, VAE, text encoder + UNet
    python -m studio.tiny.train --model studio-tiny-x4   # x4 upscaler on studio-tiny's VAE
    python -m studio.tiny.train --model decoder          # sharpen the shared VAE decoder
    python -m studio.tiny.train --quick                  # a smoke run in a minute or two

Fixed seeds; the command line, wall times and final losses are written to training.json
in each model folder. Checkpoints of the EMA weights go to --work as training goes.
"""

from __future__ import annotations

import argparse
import contextlib
import copy
import json
import math
import platform
import random
import sys
import time
from collections.abc import Callable, Iterable
from pathlib import Path

import torch
import torch.nn.functional as F
from diffusers import AutoencoderKL, UNet2DConditionModel
from safetensors.torch import save_file
from transformers import CLIPTextModel, CLIPTokenizer

from studio.tiny import data, export, latents, models
from studio.tiny.tokenizer import train_tokenizer

RESOURCES = Path(__file__).resolve().parents[2] / "resources" / "models"
CFG_DROP = 0.12  # share of steps trained on the empty caption, for classifier-free guidance
SNR_CLIP = 5.0


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(prog="python -m studio.tiny.train", description=__doc__)
    p.add_argument(
        "--model",
        choices=["studio-tiny", "studio-tiny-x4", "decoder", "all"],
        default="all",
        help="all: studio-tiny, then studio-tiny-x4 on its VAE (the decoder stage is extra)",
    )
    p.add_argument("--out", type=Path, default=RESOURCES, help="folder holding the model folders")
    p.add_argument("--work", type=Path, default=Path("/tmp/studio-tiny-work"))
    p.add_argument("--device", default="auto", help="cpu, cuda, or auto (cuda if available)")
    p.add_argument("--threads", type=int, default=2, help="CPU threads for torch")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--vae-from", type=Path, default=None, help="reuse a trained VAE folder")
    p.add_argument(
        "--unet-from",
        type=Path,
        default=None,
        help="go on training the UNet and text encoder of this studio-tiny folder (its tokenizer"
        " too), with a new warmup and cosine decay",
    )
    p.add_argument("--vae-steps", type=int, default=4000)
    p.add_argument("--vae-batch", type=int, default=32)
    p.add_argument("--vae-lr", type=float, default=8e-4)
    p.add_argument("--unet-steps", type=int, default=7000)
    p.add_argument("--unet-batch", type=int, default=64)
    p.add_argument("--unet-scenes", type=int, default=40000)
    p.add_argument("--unet-lr", type=float, default=5e-4)
    p.add_argument(
        "--text-aux",
        type=float,
        default=1.0,
        help="weight of the text encoder's auxiliary loss: name each (colour, shape) pair (0: off)",
    )
    p.add_argument("--x4-steps", type=int, default=3000)
    p.add_argument("--x4-batch", type=int, default=64)
    p.add_argument("--x4-scenes", type=int, default=12000)
    p.add_argument("--vae-minutes", type=float, default=1e9, help="wall-clock cap for the stage")
    p.add_argument("--unet-minutes", type=float, default=1e9)
    p.add_argument("--x4-minutes", type=float, default=1e9)
    p.add_argument("--decoder-steps", type=int, default=3000)
    p.add_argument("--decoder-minutes", type=float, default=1e9)
    p.add_argument("--checkpoint-every", type=int, default=500)
    p.add_argument("--probe-scenes", type=int, default=512, help="renders that standardise the VAE")
    p.add_argument(
        "--rgb-scenes", type=int, default=1024, help="renders that fit the latent→RGB preview"
    )
    p.add_argument("--quick", action="store_true", help="tiny step counts: checks the plumbing")
    args = p.parse_args(argv)
    args.argv = list(sys.argv[1:] if argv is None else argv)  # recorded as the command
    if args.quick:
        steps = QUICK_STEPS
        args.vae_steps, args.unet_steps, args.x4_steps, args.decoder_steps = (steps,) * 4
        args.unet_scenes, args.x4_scenes, args.checkpoint_every = 128, 64, steps // 2
        # small batches and samples: the run checks the plumbing, in a quarter of a minute
        args.vae_batch, args.unet_batch, args.x4_batch = 8, 16, 16
        args.probe_scenes, args.rgb_scenes = 96, 64
    if args.device == "auto":
        args.device = "cuda" if torch.cuda.is_available() else "cpu"
    return args


QUICK_STEPS = 16  # each stage's steps in a --quick run


class Schedule:
    """Warmup then cosine decay, over whichever ends first: `steps`, or `minutes` of wall
    clock. The time limit keeps a run on a busy shared CPU inside its budget; the steps
    actually taken are recorded, and on a fast device the step count decides."""

    def __init__(self, opt: torch.optim.Optimizer, steps: int, minutes: float, warmup: int) -> None:
        self.opt, self.steps, self.seconds, self.warmup = opt, steps, minutes * 60, warmup
        self.base = [g["lr"] for g in opt.param_groups]
        self.start = time.time()
        self.step_count = 0
        self.stop_file: Path | None = None

    @property
    def progress(self) -> float:
        return max(self.step_count / self.steps, (time.time() - self.start) / self.seconds)

    def done(self) -> bool:
        stopped = self.stop_file is not None and self.stop_file.exists()
        return stopped or self.progress >= 1.0

    def step(self) -> None:
        """Set the learning rate for the next step."""
        if self.step_count < self.warmup:
            factor = (self.step_count + 1) / self.warmup
        else:
            factor = 0.1 + 0.9 * 0.5 * (1 + math.cos(math.pi * min(1.0, self.progress)))
        for group, lr in zip(self.opt.param_groups, self.base, strict=True):
            group["lr"] = lr * factor
        self.step_count += 1


class Ema:
    """Exponential moving average of a module's weights, warming up from short averages."""

    def __init__(self, module: torch.nn.Module, decay: float = 0.999) -> None:
        self.module = copy.deepcopy(module).eval().requires_grad_(False)
        self.decay = decay
        self.updates = 0

    @torch.no_grad()
    def update(self, module: torch.nn.Module) -> None:
        self.updates += 1
        d = min(self.decay, (1 + self.updates) / (10 + self.updates))
        for e, p in zip(self.module.parameters(), module.parameters(), strict=True):
            e.lerp_(p.detach(), 1 - d)


class LossLog:
    """Running mean of recent losses, printed as training goes."""

    def __init__(self, name: str, total: int, every: int = 50) -> None:
        self.name, self.total, self.every = name, total, every
        self.recent: list[float] = []
        self.start = time.time()

    def add(self, step: int, loss: float) -> None:
        self.recent = (self.recent + [loss])[-200:]
        if (step + 1) % self.every == 0:
            elapsed = time.time() - self.start
            print(
                f"[{self.name}] step {step + 1} (of at most {self.total}) loss {self.final:.5f} "
                f"{elapsed:.0f}s",
                flush=True,
            )

    @property
    def final(self) -> float:
        return sum(self.recent) / max(1, len(self.recent))


def _adamw(params: Iterable[torch.nn.Parameter], lr: float) -> torch.optim.AdamW:
    return torch.optim.AdamW(params, lr=lr, betas=(0.9, 0.99), weight_decay=0.01)


def _schedule(
    opt: torch.optim.Optimizer, steps: int, minutes: float, warmup: int, args: argparse.Namespace
) -> Schedule:
    sched = Schedule(opt, steps, minutes, warmup)
    sched.stop_file = args.work / "STOP"  # touch it to end the current stage early, keeping it
    sched.stop_file.unlink(missing_ok=True)
    return sched


def _fit(
    opt: torch.optim.Optimizer,
    sched: Schedule,
    clipped: list[torch.nn.Parameter],
    loss_at: Callable[[int], torch.Tensor],
    after_step: Callable[[int], None] | None = None,
) -> int:
    """The loop every stage shares: `loss_at(step)` draws a batch, logs and returns the
    loss; `after_step(steps_done)` updates EMAs and writes checkpoints. Returns the steps
    taken, which a wall-clock cap or the STOP file can make fewer than asked for."""
    step = 0
    while not sched.done():
        sched.step()
        loss = loss_at(step)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(clipped, 1.0)
        opt.step()
        step += 1
        if after_step is not None:
            after_step(step)
    return step


def v_prediction_loss(
    unet, noise_sched, x0: torch.Tensor, hidden: torch.Tensor, gen: torch.Generator, dev
) -> tuple[torch.Tensor, torch.Tensor]:
    """studio-tiny's denoising objective, for the model and its LoRAs alike: noise x0 at a
    random timestep, predict v, and the per-sample MSE with its weighted mean (the loss)."""
    noise = torch.randn(x0.shape, generator=gen).to(dev)
    t = torch.randint(0, noise_sched.config.num_train_timesteps, (len(x0),), generator=gen)
    t = t.to(dev)
    xt = noise_sched.add_noise(x0, noise, t)
    pred = unet(xt, t, encoder_hidden_states=hidden).sample
    target = noise_sched.get_velocity(x0, noise, t)
    per_sample = F.mse_loss(pred, target, reduction="none").mean(dim=(1, 2, 3))
    return per_sample, (per_sample * v_loss_weights(noise_sched, t)).mean()


def v_loss_weights(scheduler, t: torch.Tensor) -> torch.Tensor:
    """Weights on the v-prediction MSE: 1 up to SNR_CLIP, then falling as 1/(1+snr).

    The v error is the x0 error times sqrt(1+snr), so this weighs the x0 error by
    min(1+snr, 1+SNR_CLIP), as EDM's weighting does below the clip: the noisy steps, where
    the sampler decides colours and layout, keep full weight. Min-SNR weighting scales
    them by snr instead, close to 0 for half of this schedule's steps."""
    alpha_bar = scheduler.alphas_cumprod.to(t.device)[t]
    snr = alpha_bar / (1 - alpha_bar)
    return torch.clamp((1 + SNR_CLIP) / (1 + snr), max=1.0)


# VAE training crops come from renders at these sizes, in these shares of each batch: the
# same VAE decodes studio-tiny's 64x64 images and the x4 upscaler's 256x256 ones.
VAE_SCALES = ((64, 0.4), (128, 0.3), (256, 0.3))


def _autocast(device: str) -> contextlib.AbstractContextManager:
    """bf16 autocast for the convolution-heavy VAE: about twice as fast on CPUs with AMX or
    AVX512-BF16 and on GPUs; the weights and the optimiser stay fp32. A CPU without either
    emulates bf16 convolutions, 15 times slower than fp32 (4.4 s against 0.3 s for a step
    of batch 8 on an AVX2 CPU): fp32 there."""
    kind = device.split(":")[0]
    if kind == "cpu" and not cpu_has_bf16():
        return contextlib.nullcontext()
    return torch.autocast(kind, dtype=torch.bfloat16)


def cpu_has_bf16() -> bool:
    """Whether this CPU computes bfloat16 natively (AVX512-BF16 or AMX)."""
    checks = ("_is_avx512_bf16_supported", "_is_amx_tile_supported")  # torch.cpu, since 2.1
    return any(getattr(torch.cpu, name, lambda: False)() for name in checks)


def _vae_pools(steps: int, batch: int, seed: int) -> list[torch.Tensor]:
    n = max(64, steps * batch // 8)
    return [
        data.render_scenes(max(8, round(n * share)), size, seed + i)[1]
        for i, (size, share) in enumerate(VAE_SCALES)
    ]


def _vae_batch(
    pools: list[torch.Tensor], batch: int, gen: torch.Generator, align: int = 1
) -> torch.Tensor:
    parts = []
    for pool, (_, share) in zip(pools, VAE_SCALES, strict=True):
        idx = torch.randint(0, len(pool), (max(1, round(batch * share)),), generator=gen)
        parts.append(data.random_crops(pool[idx], 32, gen, align=align))
    return data.to_unit(torch.cat(parts))


def train_vae(args: argparse.Namespace) -> tuple[AutoencoderKL, dict]:
    """Reconstruction (L1 + MSE) with a tiny KL term, on 32x32 crops of renders at three
    scales (VAE_SCALES)."""
    dev = args.device
    torch.manual_seed(args.seed)
    pools = _vae_pools(args.vae_steps, args.vae_batch, args.seed + 1)
    vae = models.make_vae().to(dev).train()
    opt = _adamw(vae.parameters(), args.vae_lr)
    sched = _schedule(opt, args.vae_steps, args.vae_minutes, 100, args)
    gen = torch.Generator().manual_seed(args.seed)
    log = LossLog("vae", args.vae_steps)

    def loss_at(step: int) -> torch.Tensor:
        x = _vae_batch(pools, args.vae_batch, gen).to(dev)
        with _autocast(dev):
            post = vae.encode(x).latent_dist
            rec = vae.decode(post.sample()).sample.float()
        loss = F.l1_loss(rec, x) + F.mse_loss(rec, x) + 1e-6 * post.kl().float().mean()
        log.add(step, loss.item())
        return loss

    step = _fit(opt, sched, list(vae.parameters()), loss_at)
    vae.eval().cpu()
    probe = data.to_unit(data.render_scenes(args.probe_scenes, 64, args.seed + 4)[1])
    stats = latents.standardise(vae, probe)
    with torch.no_grad():
        mae = (vae.decode(vae.encode(probe[:256]).latent_dist.mean).sample - probe[:256]).abs()
    info = {"loss": log.final, "steps": step, "probe_mae_64": mae.mean().item()}
    info["autocast"] = "bfloat16" if dev != "cpu" or cpu_has_bf16() else "none"
    info["seconds"] = round(time.time() - log.start)
    return vae, {**info, "latent_stats": stats}


def _checkpoint(path: Path, modules: dict[str, torch.nn.Module]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    tensors = {
        f"{name}.{k}": v.detach().cpu().contiguous()
        for name, m in modules.items()
        for k, v in m.state_dict().items()
    }
    save_file(tensors, str(path))


def train_base(
    args: argparse.Namespace, vae: AutoencoderKL, tokenizer: CLIPTokenizer
) -> tuple[UNet2DConditionModel, CLIPTextModel, dict]:
    """Text encoder and UNet together on precomputed latents; the caption is replaced by the
    empty one for CFG_DROP of the samples so the same model gives the unconditional guess."""
    dev = args.device
    torch.manual_seed(args.seed)
    scenes, images = data.render_scenes(args.unet_scenes, 64, args.seed + 10)
    ids = data.caption_ids(scenes, tokenizer, per_scene=4, seed=args.seed + 11)
    z = latents.encode_mean(vae.to(dev), data.to_unit(images)) * models.SCALING_FACTOR
    vae.cpu()
    del images
    empty = torch.tensor(
        tokenizer("", padding="max_length", max_length=tokenizer.model_max_length).input_ids
    )
    if args.unet_from:
        text = CLIPTextModel.from_pretrained(
            args.unet_from / "text_encoder", torch_dtype=torch.float32
        )
        unet = UNet2DConditionModel.from_pretrained(
            args.unet_from / "unet", torch_dtype=torch.float32
        )
    else:
        text = models.make_text_encoder(
            len(tokenizer), tokenizer.bos_token_id, tokenizer.eos_token_id
        )
        unet = models.make_unet()
    text, unet = text.to(dev).train(), unet.to(dev).train()
    ema_unet, ema_text = Ema(unet), Ema(text)
    noise_sched = models.make_train_scheduler()
    # Trained jointly from scratch, the text encoder barely tells "circle" from "square"
    # (shape changes few latent pixels, so the diffusion loss pushes those words apart
    # last). A linear probe naming each (colour, shape) pair from the mean hidden state
    # pulls them apart within a few hundred steps; the probe is dropped after training.
    params = list(unet.parameters()) + list(text.parameters())
    opt = _adamw(params, args.unet_lr)
    if args.text_aux > 0:
        pairs = data.pair_targets(scenes)
        pair_head = torch.nn.Linear(models.TEXT_DIM, len(data.PAIRS))
        with torch.no_grad():  # start from the pairs' base rate, not from 50%
            pair_head.bias.fill_(torch.logit(pairs.mean()).item())
        pair_head = pair_head.to(dev)
        # The probe starts from nothing and must keep up with the encoder: a larger step.
        opt.add_param_group({"params": list(pair_head.parameters()), "lr": args.unet_lr * 50})
    sched = _schedule(opt, args.unet_steps, args.unet_minutes, 200, args)
    gen = torch.Generator().manual_seed(args.seed + 12)
    log = LossLog("unet", args.unet_steps)
    aux_log = LossLog("text-aux", args.unet_steps, every=250)

    def loss_at(step: int) -> torch.Tensor:
        idx = torch.randint(0, len(z), (args.unet_batch,), generator=gen)
        which = torch.randint(0, ids.shape[1], (args.unet_batch,), generator=gen)
        tok = ids[idx, which]
        drop = torch.rand(args.unet_batch, generator=gen) < CFG_DROP
        tok[drop] = empty
        x0 = z[idx].to(dev)
        hidden = text(tok.to(dev)).last_hidden_state
        per_sample, loss = v_prediction_loss(unet, noise_sched, x0, hidden, gen, dev)
        if args.text_aux > 0 and not drop.all():
            logits = pair_head(hidden[~drop.to(dev)].mean(dim=1))
            aux = F.binary_cross_entropy_with_logits(logits, pairs[idx][~drop].to(dev))
            loss = loss + args.text_aux * aux
            aux_log.add(step, aux.item())
        log.add(step, per_sample.mean().item())
        return loss

    def after_step(step: int) -> None:
        ema_unet.update(unet)
        ema_text.update(text)
        if step % args.checkpoint_every == 0:
            _checkpoint(
                args.work / "base_ema.safetensors",
                {"unet": ema_unet.module, "text_encoder": ema_text.module},
            )

    step = _fit(opt, sched, params, loss_at, after_step)
    losses = {"unet_v_mse": log.final, "steps": step}
    if args.text_aux > 0:
        losses["text_pair_bce"] = aux_log.final
    return ema_unet.module.cpu(), ema_text.module.cpu(), losses


def _x4_dataset(args: argparse.Namespace, vae: AutoencoderKL) -> tuple[torch.Tensor, torch.Tensor]:
    """Low-resolution 16x16 patches (uint8) and the scaled latents of the matching 64x64
    patches of the 4x render, from scenes drawn at low resolutions 16, 32 and 64."""
    gen = torch.Generator().manual_seed(args.seed + 20)
    lows_all, z_all = [], []
    for low, share in ((16, 0.3), (32, 0.35), (64, 0.35)):
        n = max(8, int(args.x4_scenes * share))
        for start in range(0, n, 1000):
            count, seed = min(1000, n - start), args.seed + 21 + start + low
            lows, highs = data.upscale_pairs(count, low, seed)
            for _ in range(2 if low > 16 else 1):
                ys = torch.randint(0, low - 16 + 1, (len(lows),), generator=gen)
                xs = torch.randint(0, low - 16 + 1, (len(lows),), generator=gen)
                lo = torch.stack(
                    [im[:, y : y + 16, x : x + 16] for im, y, x in zip(lows, ys, xs, strict=True)]
                )
                hi = torch.stack(
                    [
                        im[:, 4 * y : 4 * y + 64, 4 * x : 4 * x + 64]
                        for im, y, x in zip(highs, ys, xs, strict=True)
                    ]
                )
                lows_all.append(lo)
                z_all.append(latents.encode_mean(vae, data.to_unit(hi)) * models.SCALING_FACTOR)
    return torch.cat(lows_all), torch.cat(z_all)


def train_x4(args: argparse.Namespace, vae: AutoencoderKL) -> tuple[UNet2DConditionModel, dict]:
    """The SD x4 recipe: UNet input = noisy latents of the 4x image + the low-resolution
    image with noise at a random level, which the UNet also gets as a class label."""
    dev = args.device
    torch.manual_seed(args.seed)
    lows, z = _x4_dataset(args, vae.to(dev))
    vae.cpu()
    unet = models.make_upscaler_unet().to(dev).train()
    ema = Ema(unet)
    noise_sched = models.make_train_scheduler()
    low_sched = models.make_low_res_scheduler()
    opt = _adamw(unet.parameters(), 5e-4)
    sched = _schedule(opt, args.x4_steps, args.x4_minutes, 200, args)
    gen = torch.Generator().manual_seed(args.seed + 22)
    context = torch.zeros(args.x4_batch, 1, models.TEXT_DIM, device=dev)
    log = LossLog("x4", args.x4_steps)

    def loss_at(step: int) -> torch.Tensor:
        b = args.x4_batch
        idx = torch.randint(0, len(z), (b,), generator=gen)
        x0, low = z[idx].to(dev), data.to_unit(lows[idx]).to(dev)
        # Half the batch near the default noise level (20), half over the whole range.
        level = torch.where(
            torch.rand(b, generator=gen) < 0.5,
            torch.randint(0, 60, (b,), generator=gen),
            torch.randint(0, 351, (b,), generator=gen),
        ).to(dev)
        low = low_sched.add_noise(low, torch.randn(low.shape, generator=gen).to(dev), level)
        noise = torch.randn(x0.shape, generator=gen).to(dev)
        t = torch.randint(0, noise_sched.config.num_train_timesteps, (b,), generator=gen).to(dev)
        xt = noise_sched.add_noise(x0, noise, t)
        pred = unet(
            torch.cat([xt, low], dim=1), t, encoder_hidden_states=context, class_labels=level
        ).sample
        target = noise_sched.get_velocity(x0, noise, t)
        per_sample = F.mse_loss(pred, target, reduction="none").mean(dim=(1, 2, 3))
        loss = (per_sample * v_loss_weights(noise_sched, t)).mean()
        log.add(step, per_sample.mean().item())
        return loss

    def after_step(step: int) -> None:
        ema.update(unet)
        if step % args.checkpoint_every == 0:
            _checkpoint(args.work / "x4_ema.safetensors", {"unet": ema.module})

    step = _fit(opt, sched, list(unet.parameters()), loss_at, after_step)
    return ema.module.cpu(), {"x4_v_mse": log.final, "steps": step}


def train_decoder(args: argparse.Namespace, vae: AutoencoderKL) -> tuple[AutoencoderKL, dict]:
    """Fine-tune only the VAE's decoder, as SD's ft-MSE VAE did: the encoder and so the
    latent space stay fixed, so UNets trained on these latents stay valid, while the
    pictures they decode to get sharper and truer in colour."""
    dev = args.device
    torch.manual_seed(args.seed)
    pools = _vae_pools(args.decoder_steps, args.vae_batch, args.seed + 31)
    vae = vae.to(dev).train().requires_grad_(False)
    trainable = list(vae.decoder.parameters()) + list(vae.post_quant_conv.parameters())
    for p in trainable:
        p.requires_grad_(True)
    opt = _adamw(trainable, 3e-4)
    sched = _schedule(opt, args.decoder_steps, args.decoder_minutes, 50, args)
    gen = torch.Generator().manual_seed(args.seed + 34)
    log = LossLog("decoder", args.decoder_steps)

    def loss_at(step: int) -> torch.Tensor:
        x = _vae_batch(pools, args.vae_batch, gen, align=4).to(dev)
        with torch.no_grad(), _autocast(dev):
            z = vae.encode(x).latent_dist.mean
        with _autocast(dev):
            rec = vae.decode(z).sample.float()
        loss = F.l1_loss(rec, x) + F.mse_loss(rec, x)
        log.add(step, loss.item())
        return loss

    step = _fit(opt, sched, trainable, loss_at)
    return vae.eval().cpu(), {"decoder_rec_l1_mse": log.final, "steps": step}


def _record(args: argparse.Namespace, started: float, extra: dict) -> dict:
    return {
        "command": "python -m studio.tiny.train " + " ".join(args.argv),
        "seed": args.seed,
        "device": args.device,
        "threads": args.threads,
        "machine": f"{platform.machine()} {platform.processor() or ''}".strip(),
        "torch": torch.__version__,
        "wall_seconds": round(time.time() - started, 1),
        **extra,
    }


def build_base(args: argparse.Namespace) -> None:
    started = time.time()
    if args.unet_from:  # the embeddings being trained belong to that folder's tokenizer
        tokenizer = CLIPTokenizer.from_pretrained(args.unet_from / "tokenizer")
    else:
        tokenizer = train_tokenizer(args.work / "tokenizer", seed=args.seed + 1234)
    t0 = time.time()
    if args.vae_from:
        vae = AutoencoderKL.from_pretrained(args.vae_from, torch_dtype=torch.float32).eval()
        vae_info = export.read_json(args.vae_from / "vae_training.json")
    else:
        vae, vae_info = train_vae(args)
        vae.save_pretrained(args.work / "vae")
        export.write_json(args.work / "vae" / "vae_training.json", vae_info)
    vae_seconds = vae_info.get("seconds", time.time() - t0)
    t0 = time.time()
    unet, text, base_info = train_base(args, vae, tokenizer)
    unet_steps = base_info.pop("steps")
    folder = args.out / "studio-tiny"
    export.save_base(folder, vae, text, tokenizer, unet, rgb_scenes=args.rgb_scenes)
    record = _record(
        args,
        started,
        {
            "stages_seconds": {"vae": round(vae_seconds), "unet_text": round(time.time() - t0)},
            "final_losses": {"vae_rec_l1_mse": vae_info["loss"], **base_info},
            "vae_from": str(args.vae_from) if args.vae_from else None,
            "unet_from": str(args.unet_from) if args.unet_from else None,
            # The run this one went on from, so the record holds the whole recipe.
            "continues": export.read_json(args.unet_from / "training.json")
            if args.unet_from
            else None,
            "vae_command": vae_info.get("command", "this command"),
            "vae_probe_mae_64": vae_info["probe_mae_64"],
            "vae_autocast": vae_info.get("autocast"),  # bf16 only where the CPU has it
            "latent_stats": vae_info["latent_stats"],
            "cfg_drop": CFG_DROP,
            "text_aux": args.text_aux,
            "steps_done": {"vae": vae_info["steps"], "unet": unet_steps},
            "batch": {"vae": args.vae_batch, "unet": args.unet_batch},
            "params": export.param_counts(folder),
        },
    )
    export.write_json(folder / "training.json", record)
    print(json.dumps(record, indent=1), flush=True)


def build_x4(args: argparse.Namespace) -> None:
    started = time.time()
    base = args.out / "studio-tiny"
    if not (base / "vae").is_dir():
        raise SystemExit("studio-tiny-x4 uses studio-tiny's VAE: train --model studio-tiny first")
    vae = AutoencoderKL.from_pretrained(base / "vae", torch_dtype=torch.float32).eval()
    unet, info = train_x4(args, vae)
    x4_steps = info.pop("steps")
    folder = args.out / "studio-tiny-x4"
    export.save_x4(folder, base, unet)
    record = _record(
        args,
        started,
        {
            "final_losses": info,
            "steps_done": {"x4": x4_steps},
            "batch": {"x4": args.x4_batch},
            "params": export.param_counts(folder),
        },
    )
    export.write_json(folder / "training.json", record)
    print(json.dumps(record, indent=1), flush=True)


def build_decoder(args: argparse.Namespace) -> None:
    """Fine-tune the shared VAE decoder and write it into studio-tiny's folder, where the
    upscaler takes it from; both records note it."""
    started = time.time()
    base, x4 = args.out / "studio-tiny", args.out / "studio-tiny-x4"
    vae = AutoencoderKL.from_pretrained(base / "vae", torch_dtype=torch.float32)
    vae, info = train_decoder(args, vae)
    vae.to(torch.float16).save_pretrained(base / "vae", safe_serialization=True)
    for folder in (base, x4):  # the upscaler runs studio-tiny's VAE (export.SHARED_WITH_BASE)
        if (folder / "training.json").is_file():
            record = export.read_json(folder / "training.json")
            record["decoder_finetune"] = _record(args, started, {"final_losses": info})
            export.write_json(folder / "training.json", record)
    print(json.dumps(info), flush=True)


def main(argv: list[str] | None = None) -> None:
    args = parse_args(argv)
    torch.set_num_threads(args.threads)
    random.seed(args.seed)
    args.work.mkdir(parents=True, exist_ok=True)
    if args.model in ("studio-tiny", "all"):
        build_base(args)
    if args.model in ("studio-tiny-x4", "all"):
        build_x4(args)
    if args.model == "decoder":
        build_decoder(args)


if __name__ == "__main__":
    main()
