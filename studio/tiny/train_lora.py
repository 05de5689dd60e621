"""Train a LoRA that teaches studio-tiny a shape it has never seen (`scenes.EXTRA_SHAPES`).

    python -m studio.tiny.train_lora --concept heart     # resources/loras/studio-tiny-heart.*
    python -m studio.tiny.train_lora --concept heart --quick --out /tmp/heart.safetensors

The base model stays frozen. Low-rank adapters (PEFT) on the UNet's attention, feed-forward
and ResNet convolutions, and on the text encoder's attention and MLP layers, are trained
with the base recipe (studio/tiny/train.py): v-prediction on the same DDPM schedule with the
same loss weights, the caption dropped for CFG_DROP of the samples. The new word needs the
text encoder too: the tokenizer is fixed and "heart" is four pieces no caption ever had
(h, e, ar, t</w>), so only the adapted encoder can turn them into a shape. A share of the
scenes hold the new shape (one object, or one of two), the rest are ordinary scenes, so the
LoRA keeps what the model knew.

The file is the diffusers/PEFT layout (`unet.…lora_A.weight`, `text_encoder.…`), which
`pipe.load_lora_weights` and the studio's `<lora:studio-tiny-heart:1>` load, with ModelSpec
metadata (architecture, trigger phrase, title); beside it a .json records the command, seed,
steps, wall time and final losses, and `python -m studio.tiny.evaluate --lora FILE --record`
adds the measured accuracy.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import platform
import random
import sys
import time
from pathlib import Path

import torch
import torch.nn.functional as F
from diffusers import AutoencoderKL, UNet2DConditionModel
from peft import LoraConfig, inject_adapter_in_model
from peft.utils import get_peft_model_state_dict
from safetensors.torch import save_file
from transformers import CLIPTextModel, CLIPTokenizer

from studio.tiny import data, export, latents, models
from studio.tiny.scenes import EXTRA_SHAPES, Scene, draw_scene, sample_scene
from studio.tiny.train import CFG_DROP, LossLog, Schedule, _adamw, v_prediction_loss
from studio.tiny.vocabulary import COLOURS, SHAPES

ROOT = Path(__file__).resolve().parents[2]
BASE = ROOT / "resources" / "models" / "studio-tiny"
LORAS = ROOT / "resources" / "loras"
ARCHITECTURE = "studio-tiny"

UNET_TARGETS = [
    "to_q",
    "to_k",
    "to_v",
    "to_out.0",
    "proj_in",
    "proj_out",
    "ff.net.0.proj",
    "ff.net.2",
    "conv1",
    "conv2",
]
TEXT_TARGETS = ["q_proj", "k_proj", "v_proj", "out_proj", "fc1", "fc2"]


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(prog="python -m studio.tiny.train_lora", description=__doc__)
    p.add_argument("--concept", choices=EXTRA_SHAPES, default="heart", help="the shape to teach")
    p.add_argument("--base", type=Path, default=BASE, help="the studio-tiny folder to adapt")
    p.add_argument(
        "--out",
        type=Path,
        default=None,
        help="the .safetensors file (or a folder for studio-tiny-CONCEPT.safetensors); "
        "default resources/loras/",
    )
    p.add_argument("--rank", type=int, default=8, help="LoRA rank (alpha is the same: scale 1)")
    p.add_argument("--steps", type=int, default=3000)
    p.add_argument("--minutes", type=float, default=20.0, help="wall-clock cap for training")
    p.add_argument("--batch", type=int, default=16)
    p.add_argument("--lr", type=float, default=2e-3)
    p.add_argument("--scenes", type=int, default=3000, help="scenes rendered for training")
    p.add_argument(
        "--concept-share", type=float, default=0.5, help="share of scenes holding the new shape"
    )
    p.add_argument(
        "--text-aux",
        type=float,
        default=1.0,
        help="weight of the base recipe's auxiliary text loss (a probe naming each (colour,"
        " shape) pair from the encoder's mean hidden state), with the new shape among them",
    )
    p.add_argument("--ema", type=float, default=0.995, help="EMA decay of the LoRA weights")
    p.add_argument("--threads", type=int, default=2, help="CPU threads for torch")
    p.add_argument("--device", default="auto", help="cpu, cuda, or auto (cuda if available)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--quick", action="store_true", help="a smoke run of the plumbing (a minute)")
    args = p.parse_args(argv)
    args.argv = list(sys.argv[1:] if argv is None else argv)  # recorded as the command
    if args.quick:
        args.steps, args.batch, args.scenes = 20, 8, 256
    if args.out is None:
        args.out = LORAS
    if args.out.suffix != ".safetensors":
        args.out = args.out / f"studio-tiny-{args.concept}.safetensors"
    if args.device == "auto":
        args.device = "cuda" if torch.cuda.is_available() else "cpu"
    return args


def concept_scenes(n: int, concept: str, share: float, seed: int) -> list[Scene]:
    """`n` scenes, `share` of them with one object (of one or two) drawn as `concept`; the
    others are the base model's own scenes, so the LoRA is reminded of what it knew."""
    rng = random.Random(seed)
    scenes = []
    for _ in range(n):
        scene = sample_scene(rng)
        if rng.random() < share:
            objects = list(scene.objects)
            i = rng.randrange(len(objects))
            objects[i] = dataclasses.replace(objects[i], shape=concept)
            scene = dataclasses.replace(scene, objects=tuple(objects))
        scenes.append(scene)
    return scenes


def pair_targets(scenes: list[Scene], shapes: tuple[str, ...]) -> torch.Tensor:
    """Multi-hot [N, colours x shapes]: the (colour, shape) of each object, as in
    data.pair_targets, with the new shape among the shapes."""
    pairs = [(c, s) for c in COLOURS for s in shapes]
    out = torch.zeros(len(scenes), len(pairs))
    for i, scene in enumerate(scenes):
        for o in scene.objects:
            out[i, pairs.index((o.colour, o.shape))] = 1.0
    return out


def add_adapters(unet: UNet2DConditionModel, text: CLIPTextModel, rank: int) -> None:
    """Fresh adapters (B = 0, so training starts exactly at the base model); only they train."""
    unet.requires_grad_(False)
    text.requires_grad_(False)
    unet.add_adapter(
        LoraConfig(
            r=rank, lora_alpha=rank, init_lora_weights="gaussian", target_modules=UNET_TARGETS
        )
    )
    # PEFT's own injection: transformers' add_adapter asks for a newer PEFT than diffusers'
    # loader needs, and the layers made are the same.
    inject_adapter_in_model(
        LoraConfig(
            r=rank, lora_alpha=rank, init_lora_weights="gaussian", target_modules=TEXT_TARGETS
        ),
        text,
    )


def lora_state(unet: UNet2DConditionModel, text: CLIPTextModel) -> dict[str, torch.Tensor]:
    """The adapters in the diffusers/PEFT layout `load_lora_weights` reads."""
    state = {f"unet.{k}": v for k, v in get_peft_model_state_dict(unet).items()}
    state |= {f"text_encoder.{k}": v for k, v in get_peft_model_state_dict(text).items()}
    return {k: v.detach().float().cpu().contiguous() for k, v in state.items()}


def metadata(concept: str, rank: int, record_name: str) -> dict[str, str]:
    """ModelSpec keys (what the LoRA panel reads for family and trigger words) and kohya's
    rank/alpha keys; all values are strings, as safetensors requires."""
    return {
        "format": "pt",
        "modelspec.sai_model_spec": "1.0.0",
        "modelspec.architecture": ARCHITECTURE,
        "modelspec.implementation": "diffusers",
        "modelspec.title": f"studio-tiny {concept}",
        "modelspec.description": (
            f"Teaches the embedded studio-tiny model the shape word '{concept}' (trained by "
            f"python -m studio.tiny.train_lora --concept {concept}; see {record_name})."
        ),
        "modelspec.trigger_phrase": concept,
        "modelspec.license": "same as Latent Studio",
        "ss_network_module": "peft.lora",
        "ss_network_dim": str(rank),
        "ss_network_alpha": str(rank),
    }


def train(args: argparse.Namespace) -> dict:
    dev = args.device
    torch.manual_seed(args.seed)
    started = time.time()
    tokenizer = CLIPTokenizer.from_pretrained(args.base / "tokenizer", local_files_only=True)
    vae = AutoencoderKL.from_pretrained(args.base / "vae", torch_dtype=torch.float32).eval()
    text = CLIPTextModel.from_pretrained(args.base / "text_encoder", torch_dtype=torch.float32)
    unet = UNet2DConditionModel.from_pretrained(args.base / "unet", torch_dtype=torch.float32)

    scenes = concept_scenes(args.scenes, args.concept, args.concept_share, args.seed + 1)
    images = data.to_uint8([draw_scene(s, 64) for s in scenes])
    ids = data.caption_ids(scenes, tokenizer, per_scene=4, seed=args.seed + 2)
    z = latents.encode_mean(vae.to(dev), data.to_unit(images)) * models.SCALING_FACTOR
    del images, vae
    empty = torch.tensor(
        tokenizer("", padding="max_length", max_length=tokenizer.model_max_length).input_ids
    )
    prepared = time.time() - started

    add_adapters(unet, text, args.rank)
    unet, text = unet.to(dev).train(), text.to(dev).train()
    params = [p for m in (unet, text) for p in m.parameters() if p.requires_grad]
    ema = [p.detach().clone() for p in params]
    opt = _adamw(params, args.lr)
    shapes = (*SHAPES, args.concept)
    pairs = pair_targets(scenes, shapes)
    if args.text_aux > 0:
        head = torch.nn.Linear(models.TEXT_DIM, pairs.shape[1])
        with torch.no_grad():  # start from the pairs' base rate, as the base recipe does
            head.bias.fill_(torch.logit(pairs.mean()).item())
        head = head.to(dev)
        opt.add_param_group({"params": list(head.parameters()), "lr": args.lr * 10})
    sched = Schedule(opt, args.steps, args.minutes, warmup=min(50, args.steps // 10 + 1))
    noise_sched = models.make_train_scheduler()
    gen = torch.Generator().manual_seed(args.seed + 3)
    log = LossLog("lora", args.steps)
    aux_log = LossLog("text-aux", args.steps, every=250)

    def loss_at(step: int) -> torch.Tensor:
        idx = torch.randint(0, len(z), (args.batch,), generator=gen)
        which = torch.randint(0, ids.shape[1], (args.batch,), generator=gen)
        tok = ids[idx, which]
        drop = torch.rand(args.batch, generator=gen) < CFG_DROP
        tok[drop] = empty
        x0 = z[idx].to(dev)
        hidden = text(tok.to(dev)).last_hidden_state
        per_sample, loss = v_prediction_loss(unet, noise_sched, x0, hidden, gen, dev)
        if args.text_aux > 0 and not drop.all():
            logits = head(hidden[~drop.to(dev)].mean(dim=1))
            aux = F.binary_cross_entropy_with_logits(logits, pairs[idx][~drop].to(dev))
            loss = loss + args.text_aux * aux
            aux_log.add(step, aux.item())
        log.add(step, per_sample.mean().item())
        return loss

    step = 0
    train_started = time.time()
    while not sched.done():
        sched.step()
        loss = loss_at(step)
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

    state = lora_state(unet.cpu(), text.cpu())
    record_path = args.out.with_suffix(".json")
    args.out.parent.mkdir(parents=True, exist_ok=True)
    save_file(state, str(args.out), metadata=metadata(args.concept, args.rank, record_path.name))
    record = {
        "command": "python -m studio.tiny.train_lora " + " ".join(args.argv),
        "concept": args.concept,
        "base_model": args.base.name,
        "base_training": export.read_json(args.base / "training.json").get("command"),
        "seed": args.seed,
        "device": dev,
        "threads": args.threads,
        "machine": f"{platform.machine()} {platform.processor() or ''}".strip(),
        "torch": torch.__version__,
        "wall_seconds": round(time.time() - started, 1),
        "stages_seconds": {"data": round(prepared), "train": round(time.time() - train_started)},
        "steps": step,
        "batch": args.batch,
        "lr": args.lr,
        "rank": args.rank,
        "alpha": args.rank,
        "ema": args.ema,
        "scenes": args.scenes,
        "concept_share": args.concept_share,
        "cfg_drop": CFG_DROP,
        "objective": "v-prediction MSE, base schedule and loss weights (studio/tiny/train.py)",
        "targets": {"unet": UNET_TARGETS, "text_encoder": TEXT_TARGETS},
        "tokens": tokenizer.tokenize(args.concept),
        "final_losses": {
            "unet_v_mse": log.final,
            **({"text_pair_bce": aux_log.final} if args.text_aux > 0 else {}),
        },
        "parameters": sum(v.numel() for v in state.values()),
        "file_bytes": args.out.stat().st_size,
    }
    export.write_json(record_path, record)
    return record


def main(argv: list[str] | None = None) -> None:
    args = parse_args(argv)
    torch.set_num_threads(args.threads)
    random.seed(args.seed)
    record = train(args)
    print(json.dumps(record, indent=1), flush=True)
    print(f"wrote {args.out} and {args.out.with_suffix('.json')}", flush=True)


if __name__ == "__main__":
    main()
