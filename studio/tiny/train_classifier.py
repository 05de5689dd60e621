"""Train studio-tiny-classifier: a noise-aware classifier for classifier guidance.

    python -m studio.tiny.train_classifier --out resources/models/studio-tiny-classifier

It reads the main object's shape and colour from studio-tiny's *noisy* latents at every
noise level. Data: single-object scenes from the renderer (studio/tiny/scenes.py, ground
truth from the scene itself), encoded by studio-tiny's own VAE (posterior mean × the VAE's
scaling factor, what the UNet sees) and noised with studio-tiny's own DDPM schedule
(alphas_cumprod from its scheduler config): x_t = √ᾱ_t·x0 + √(1−ᾱ_t)·ε, t uniform in
[0, 1000). The engine's classifier guidance (studio/engine/classifier_guidance.py) finds it
beside the model by its folder name. Fixed seed; command, wall time, final loss and the
accuracy by noise level go to training.json beside model.safetensors and config.json.
"""

from __future__ import annotations

import argparse
import json
import platform
import random
import sys
import time
from pathlib import Path

import torch
import torch.nn.functional as F
from diffusers import AutoencoderKL, DDPMScheduler
from safetensors.torch import save_file

from studio.engine.classifier_guidance import NoisyLatentClassifier
from studio.tiny import data, latents
from studio.tiny.scenes import sample_scene
from studio.tiny.vocabulary import COLOURS, SHAPES

MODELS = Path(__file__).resolve().parents[2] / "resources" / "models"
EVAL_TIMESTEPS = (0, 100, 250, 400, 550, 700, 850, 999)


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(prog="python -m studio.tiny.train_classifier", description=__doc__)
    p.add_argument("--out", type=Path, default=MODELS / "studio-tiny-classifier")
    p.add_argument("--model", type=Path, default=MODELS / "studio-tiny")
    p.add_argument("--scenes", type=int, default=6000, help="training scenes")
    p.add_argument("--eval-scenes", type=int, default=600)
    p.add_argument("--steps", type=int, default=2000)
    p.add_argument("--batch", type=int, default=128)
    p.add_argument("--lr", type=float, default=2e-3)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--threads", type=int, default=1)
    args = p.parse_args(argv)
    args.argv = list(sys.argv[1:] if argv is None else argv)
    return args


def encode_scenes(vae: AutoencoderKL, n: int, seed: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Scaled latents [n, 4, 16, 16] of single-object scenes and their labels [n, 2]."""
    rng = random.Random(seed)
    scenes = [sample_scene(rng, 1) for _ in range(n)]
    from studio.tiny.scenes import draw_scene

    pixels = data.to_unit(data.to_uint8([draw_scene(s, 64) for s in scenes]))
    z = latents.encode_mean(vae, pixels, batch=250) * vae.config.scaling_factor
    labels = torch.tensor(
        [
            [SHAPES.index(s.objects[0].shape), list(COLOURS).index(s.objects[0].colour)]
            for s in scenes
        ]
    )
    return z, labels


def noisy(z: torch.Tensor, t: torch.Tensor, alphas: torch.Tensor, gen: torch.Generator):
    a = alphas[t].view(-1, 1, 1, 1)
    return a.sqrt() * z + (1 - a).sqrt() * torch.randn(z.shape, generator=gen)


@torch.no_grad()
def accuracy_by_t(net, z, labels, alphas, seed: int) -> dict[str, dict[str, float]]:
    gen = torch.Generator().manual_seed(seed)
    out = {}
    for t in EVAL_TIMESTEPS:
        ts = torch.full((len(z),), t)
        s_logits, c_logits = net(noisy(z, ts, alphas, gen), ts)
        out[str(t)] = {
            "shape": round(100 * (s_logits.argmax(1) == labels[:, 0]).float().mean().item(), 1),
            "colour": round(100 * (c_logits.argmax(1) == labels[:, 1]).float().mean().item(), 1),
        }
    return out


def main(argv: list[str] | None = None) -> None:
    args = parse_args(argv)
    torch.set_num_threads(args.threads)
    torch.manual_seed(args.seed)
    started = time.time()
    vae = AutoencoderKL.from_pretrained(args.model / "vae").eval()
    alphas = DDPMScheduler.from_pretrained(args.model / "scheduler").alphas_cumprod.float()
    z, labels = encode_scenes(vae, args.scenes, args.seed)
    z_eval, labels_eval = encode_scenes(vae, args.eval_scenes, args.seed + 10_000)
    encoded = time.time() - started
    print(f"encoded {len(z)} + {len(z_eval)} scenes {tuple(z.shape[1:])} in {encoded:.0f} s")

    net = NoisyLatentClassifier(list(SHAPES), list(COLOURS), latent_channels=z.shape[1])
    opt = torch.optim.AdamW(net.parameters(), lr=args.lr, weight_decay=1e-4)
    sched = torch.optim.lr_scheduler.OneCycleLR(opt, args.lr, total_steps=args.steps)
    gen = torch.Generator().manual_seed(args.seed)
    recent: list[float] = []
    for step in range(args.steps):
        idx = torch.randint(0, len(z), (args.batch,), generator=gen)
        t = torch.randint(0, len(alphas), (args.batch,), generator=gen)
        zb = z[idx]
        zb = torch.where(torch.rand(len(zb), 1, 1, 1, generator=gen) < 0.5, zb, zb.flip(3))
        s_logits, c_logits = net(noisy(zb, t, alphas, gen), t)
        loss = F.cross_entropy(s_logits, labels[idx, 0]) + F.cross_entropy(c_logits, labels[idx, 1])
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        sched.step()
        recent = (recent + [loss.item()])[-100:]
        if step % 250 == 0 or step == args.steps - 1:
            print(
                f"step {step} loss {sum(recent) / len(recent):.3f} ({time.time() - started:.0f} s)"
            )

    net.eval()
    by_t = accuracy_by_t(net, z_eval, labels_eval, alphas, args.seed + 1)
    args.out.mkdir(parents=True, exist_ok=True)
    state = {k: v.contiguous() for k, v in net.state_dict().items()}
    save_file(state, str(args.out / "model.safetensors"))
    config = {
        "model": args.model.name,
        "kind": "noisy-latent classifier (classifier guidance)",
        **net.config(),
        "num_train_timesteps": len(alphas),
        "input": "scaled latents x_t = sqrt(alpha_bar)*x0 + sqrt(1-alpha_bar)*eps and the timestep",
    }
    (args.out / "config.json").write_text(json.dumps(config, indent=2) + "\n")
    record = {
        "command": "python -m studio.tiny.train_classifier " + " ".join(args.argv),
        "seed": args.seed,
        "steps": args.steps,
        "batch": args.batch,
        "scenes": args.scenes,
        "threads": args.threads,
        "machine": f"{platform.machine()} {platform.processor() or ''}".strip(),
        "torch": torch.__version__,
        "parameters": sum(p.numel() for p in net.parameters()),
        "wall_seconds": round(time.time() - started, 1),
        "final_loss": round(sum(recent) / len(recent), 4),
        "eval_scenes": args.eval_scenes,
        "accuracy_by_timestep_percent": by_t,
    }
    (args.out / "training.json").write_text(json.dumps(record, indent=2) + "\n")
    print(json.dumps(record["accuracy_by_timestep_percent"]))


if __name__ == "__main__":
    main()
