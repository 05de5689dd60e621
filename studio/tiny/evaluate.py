"""Measure studio-tiny: does the picture match the prompt, does guidance matter, is the
x4 upscaler better than Lanczos, and how fast is it on this machine.

    python -m studio.tiny.evaluate                 # print the tables
    python -m studio.tiny.evaluate --record        # also store them in training.json + README
    python -m studio.tiny.evaluate --lora resources/loras/studio-tiny-heart.safetensors
                                                   # a LoRA's new shape, by LoRA weight

Prompts are full captions of held-out scenes; each image is judged by `studio.tiny.judge`
against its scene's ground truth, never by the diffusion model itself.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import statistics
import sys
import time
from pathlib import Path

import numpy as np
import torch
from diffusers import StableDiffusionPipeline, StableDiffusionUpscalePipeline
from PIL import Image

from studio.core.schedulers import SCHEDULER_NAMES
from studio.engine.schedulers import scheduler_for
from studio.tiny import card, export
from studio.tiny.judge import Judge, ShapeNet, Verdict, train_shape_classifier
from studio.tiny.scenes import EXTRA_SHAPES, Scene, caption, draw_scene, sample_scene
from studio.tiny.vocabulary import SHAPES

MODELS = Path(__file__).resolve().parents[2] / "resources" / "models"
EVAL_SEED = 424242  # held out: training scenes come from seeds below 100


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(prog="python -m studio.tiny.evaluate", description=__doc__)
    p.add_argument("--models", type=Path, default=MODELS)
    p.add_argument("--single", type=int, default=100, help="single-object prompts")
    p.add_argument("--double", type=int, default=50, help="two-object prompts")
    p.add_argument("--steps", type=int, default=None, help="default: the model's studio.json")
    p.add_argument("--cfg", type=float, nargs="*", default=None, help="default: 1 and the model's")
    p.add_argument("--scheduler", default=None, choices=SCHEDULER_NAMES)
    p.add_argument("--upscale", type=int, default=16, help="scenes for the x4 comparison")
    p.add_argument("--samples", type=Path, default=Path("/tmp/tiny_samples.png"))
    p.add_argument("--threads", type=int, default=2)
    p.add_argument(
        "--judge-masks", type=int, default=6000, help="object masks the shape judge learns from"
    )
    p.add_argument("--judge-steps", type=int, default=600, help="the shape judge's training steps")
    p.add_argument("--record", action="store_true", help="write results into the model folders")
    lora = p.add_argument_group("a LoRA that teaches a new shape (train_lora.py)")
    lora.add_argument(
        "--lora",
        type=Path,
        default=None,
        help="measure this LoRA on studio-tiny instead: its shape's accuracy by LoRA weight, and"
        " the ordinary prompts (--single, --double) with it at 1 and without; --record writes"
        " the figures into the LoRA's .json",
    )
    lora.add_argument(
        "--concept", default=None, help="its shape word (default: the file's trigger phrase)"
    )
    lora.add_argument("--concept-prompts", type=int, default=50, help="prompts naming the shape")
    lora.add_argument(
        "--lora-weights", type=float, nargs="*", default=[0.0, 0.5, 1.0, 1.5], help="0 = without"
    )
    cg = p.add_argument_group("classifier guidance (evaluate_classifier.py)")
    cg.add_argument(
        "--classifier-guidance",
        action="store_true",
        help="measure classifier guidance instead: shape and colour accuracy and diversity at"
        " CFG 1, guidance at --scales, the model's CFG, and CFG + guidance at --cfg-scales",
    )
    cg.add_argument("--prompts", type=int, default=12, help="single-object prompts")
    cg.add_argument("--seeds", type=int, default=4, help="seeds per prompt (for diversity)")
    cg.add_argument("--scales", type=float, nargs="*", default=[1.0, 3.0, 10.0])
    cg.add_argument("--cfg-scales", type=float, nargs="*", default=[3.0])
    return p.parse_args(argv)


def load(folder: Path, cls=StableDiffusionPipeline, scheduler: str | None = None):
    pipe = export.load_pipeline(cls, folder)
    if scheduler:  # made as the engine makes it, so the figures are what the studio gives
        pipe.scheduler = scheduler_for(pipe, scheduler)
    pipe.set_progress_bar_config(disable=True)
    return pipe


def eval_scenes(n_objects: int, count: int) -> list[Scene]:
    rng = random.Random(EVAL_SEED + n_objects)
    return [sample_scene(rng, n_objects) for _ in range(count)]


def generate(
    pipe, scenes: list[Scene], steps: int, cfg: float, batch: int = 10
) -> list[Image.Image]:
    images = []
    for start in range(0, len(scenes), batch):
        chunk = scenes[start : start + batch]
        prompts = [caption(s, full=True) for s in chunk]
        gens = [torch.Generator().manual_seed(start + i) for i in range(len(chunk))]
        out = pipe(prompts, num_inference_steps=steps, guidance_scale=cfg, generator=gens)
        images.extend(out.images)
    return images


@torch.no_grad()
def vae_round_trip(pipe, images: list[Image.Image]) -> list[Image.Image]:
    """The images encoded and decoded by the model's VAE. Every generated image passes
    through this decoder, so the renders' score after it is a ceiling for the model's:
    a shape the VAE cannot keep, the UNet cannot draw."""
    z = pipe.vae.encode(pipe.image_processor.preprocess(images)).latent_dist.mean
    return pipe.image_processor.postprocess(pipe.vae.decode(z).sample, output_type="pil")


def score(verdicts: list[Verdict]) -> dict[str, float]:
    objs = [o for v in verdicts for o in v.objects]
    pct = lambda xs: round(100 * sum(xs) / max(1, len(xs)), 1)  # noqa: E731
    return {
        "colour": pct([o.colour for o in objs]),
        "shape": pct([o.shape for o in objs]),
        "position": pct([o.position for o in objs]),
        "background": pct([v.background for v in verdicts]),
        "all": pct(
            [
                v.background and all(o.colour and o.shape and o.position for o in v.objects)
                for v in verdicts
            ]
        ),
    }


def seconds_per_image(pipe, steps: int, cfg: float, runs: int = 5) -> float:
    prompt = "a small red circle at the top left on a blue background"
    pipe(prompt, num_inference_steps=steps, guidance_scale=cfg)  # warm-up
    times = []
    for i in range(runs):
        t = time.perf_counter()
        pipe(
            prompt,
            num_inference_steps=steps,
            guidance_scale=cfg,
            generator=torch.Generator().manual_seed(i),
        )
        times.append(time.perf_counter() - t)
    return round(statistics.median(times), 3)


def psnr(a: np.ndarray, b: np.ndarray) -> float:
    mse = float(((a.astype(np.float64) - b.astype(np.float64)) ** 2).mean())
    return 10 * np.log10(255.0**2 / max(mse, 1e-10))


def ssim(a: np.ndarray, b: np.ndarray) -> float:
    """Mean SSIM over 8x8 windows of the grey images (Wang et al. constants)."""

    def grey(x: np.ndarray) -> torch.Tensor:
        return torch.from_numpy(x.astype(np.float32) @ np.array([0.299, 0.587, 0.114], np.float32))[
            None, None
        ]

    x, y = grey(a), grey(b)
    pool = lambda t: torch.nn.functional.avg_pool2d(t, 8, stride=4)  # noqa: E731
    mx, my = pool(x), pool(y)
    vx, vy, cxy = pool(x * x) - mx**2, pool(y * y) - my**2, pool(x * y) - mx * my
    c1, c2 = (0.01 * 255) ** 2, (0.03 * 255) ** 2
    s = ((2 * mx * my + c1) * (2 * cxy + c2)) / ((mx**2 + my**2 + c1) * (vx + vy + c2))
    return float(s.mean())


def upscale_table(folder: Path, count: int, steps: int, noise_level: int) -> dict[str, dict]:
    """Render each scene at 64 (the input) and 256 (the truth); compare x4 with Lanczos."""
    pipe = load(folder, StableDiffusionUpscalePipeline)
    rng = random.Random(EVAL_SEED + 7)
    rows: dict[str, list[tuple[float, float]]] = {
        "studio-tiny-x4": [],
        "lanczos": [],
        "bicubic": [],
    }
    for i in range(count):
        scene = sample_scene(rng)
        low, truth = draw_scene(scene, 64), np.asarray(draw_scene(scene, 256))
        out = pipe(
            "",
            image=low,
            num_inference_steps=steps,
            guidance_scale=1.0,
            noise_level=noise_level,
            generator=torch.Generator().manual_seed(i),
        ).images[0]
        for name, im in (
            ("studio-tiny-x4", out),
            ("lanczos", low.resize((256, 256), Image.Resampling.LANCZOS)),
            ("bicubic", low.resize((256, 256), Image.Resampling.BICUBIC)),
        ):
            arr = np.asarray(im.convert("RGB"))
            rows[name].append((psnr(arr, truth), ssim(arr, truth)))
    return {
        k: {
            "psnr": round(statistics.mean(p for p, _ in v), 2),
            "ssim": round(statistics.mean(s for _, s in v), 4),
        }
        for k, v in rows.items()
    }


def sample_grid(images: list[Image.Image], path: Path, cols: int = 10) -> None:
    w, h = images[0].size
    rows = (len(images) + cols - 1) // cols
    grid = Image.new("RGB", (cols * (w + 2), rows * (h + 2)), "grey")
    for i, im in enumerate(images):
        grid.paste(im, ((i % cols) * (w + 2), (i // cols) * (h + 2)))
    grid.resize((grid.width * 2, grid.height * 2), Image.Resampling.NEAREST).save(path)


def format_table(rows: dict[str, dict[str, float]]) -> str:
    cols = ["colour", "shape", "position", "background", "all"]
    w = max([34, *map(len, rows)])
    lines = [f"{'setting':<{w}}" + "".join(f"{c:>11}" for c in cols)]
    lines += [f"{name:<{w}}" + "".join(f"{r[c]:>10.1f}%" for c in cols) for name, r in rows.items()]
    return "\n".join(lines)


def record(models: Path, result: dict) -> None:
    """Store the figures in each model's training.json and rewrite the model cards."""
    x4 = result.pop("upscale_64_to_256", None)
    path = models / "studio-tiny" / "training.json"
    export.write_json(path, {**export.read_json(path), "evaluation": result})
    if x4 is not None:
        path = models / "studio-tiny-x4" / "training.json"
        export.write_json(path, {**export.read_json(path), "evaluation": {"upscale_64_to_256": x4}})
    card.write_cards(models)


def concept_scenes(concept: str, count: int) -> list[Scene]:
    """Held-out one-object scenes of a LoRA's shape, phrased as full captions when generated."""
    rng = random.Random(EVAL_SEED + 11)
    return [sample_scene(rng, 1, shapes=(concept,)) for _ in range(count)]


def lora_concept(path: Path) -> str:
    """The shape a LoRA file teaches, from its ModelSpec trigger phrase."""
    from safetensors import safe_open

    with safe_open(str(path), "pt") as f:
        phrase = (f.metadata() or {}).get("modelspec.trigger_phrase", "")
    return phrase.split(",")[0].strip()


def evaluate_lora(args: argparse.Namespace) -> dict[str, object]:
    """The LoRA's shape named in full captions, judged at each LoRA weight (0 is the base
    model), and the ordinary prompts with the LoRA at 1 against without. One judge for every
    row: the vocabulary's shapes plus the new ones, so a base-model circle called a heart
    counts against the base too."""
    from safetensors.torch import load_file

    concept = args.concept or lora_concept(args.lora)
    if concept not in EXTRA_SHAPES:
        raise SystemExit(f"--concept must be one of {', '.join(EXTRA_SHAPES)}, not {concept!r}")
    base = args.models / "studio-tiny"
    meta = export.read_json(base / "studio.json")
    steps = args.steps or meta["default_steps"]
    cfg = args.cfg[0] if args.cfg else meta["default_cfg"]
    scheduler = args.scheduler or meta.get("default_scheduler", "Euler a")
    pipe = load(base, scheduler=scheduler)
    pipe.load_lora_weights(load_file(str(args.lora)), adapter_name="concept")
    judge = Judge(train_judge(args, shapes=(*SHAPES, *EXTRA_SHAPES)))
    hearts = concept_scenes(concept, args.concept_prompts)
    single, double = eval_scenes(1, args.single), eval_scenes(2, args.double)

    def judged(images: list[Image.Image], scenes: list[Scene]) -> dict[str, float]:
        verdicts = [judge(im, s) for im, s in zip(images, scenes, strict=True)]
        row = score(verdicts)
        if not any(o.shape == concept for s in scenes for o in s.objects):
            # how often an ordinary object came out as the new shape
            found = [o.found_shape == concept for v in verdicts for o in v.objects]
            row[f"called {concept}"] = round(100 * sum(found) / max(1, len(found)), 1)
        return row

    renders = [draw_scene(s, 64) for s in hearts]
    rows: dict[str, dict[str, float]] = {
        f"{concept} renders (judge sanity check)": judged(renders, hearts),
        f"{concept} renders through the VAE (ceiling)": judged(
            vae_round_trip(pipe, renders), hearts
        ),
    }
    shown: list[Image.Image] = []
    for weight in args.lora_weights:
        pipe.set_adapters(["concept"], [weight])
        images = generate(pipe, hearts, steps, cfg)
        rows[f"'{concept}' prompts, LoRA {weight:g}"] = judged(images, hearts)
        shown += images[:10]
        print(format_table(rows), flush=True)
    for weight in (0.0, 1.0):
        pipe.set_adapters(["concept"], [weight])
        for label, scenes in (("1 object", single), ("2 objects", double)):
            if scenes:
                images = generate(pipe, scenes, steps, cfg)
                rows[f"ordinary {label}, LoRA {weight:g}"] = judged(images, scenes)
                shown += images[:10] if weight else []
        print(format_table(rows), flush=True)
    sample_grid(shown, args.samples)
    result: dict[str, object] = {
        "command": "python -m studio.tiny.evaluate " + " ".join(args.argv),
        "concept": concept,
        "scheduler": scheduler,
        "steps": steps,
        "cfg": cfg,
        "prompts": {"concept": len(hearts), "ordinary_1": len(single), "ordinary_2": len(double)},
        "judge_shapes": [*SHAPES, *EXTRA_SHAPES],
        "table": rows,
    }
    print(format_table(rows))
    for name, row in rows.items():
        if f"called {concept}" in row:
            print(f"{name}: {row[f'called {concept}']:.1f}% of objects judged a {concept}")
    if args.record:
        path = args.lora.with_suffix(".json")
        export.write_json(path, {**export.read_json(path), "evaluation": result})
    return result


def train_judge(args: argparse.Namespace, shapes: tuple[str, ...] = SHAPES) -> ShapeNet:
    """The shape judge, trained as the command asks (a smaller one checks the plumbing)."""
    return train_shape_classifier(n=args.judge_masks, steps=args.judge_steps, shapes=shapes)


def main(argv: list[str] | None = None) -> None:
    args = parse_args(argv)
    args.argv = list(sys.argv[1:] if argv is None else argv)
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    torch.set_num_threads(args.threads)
    if args.lora is not None:
        print(json.dumps(evaluate_lora(args), indent=1))
        return
    if args.classifier_guidance:
        from studio.tiny.evaluate_classifier import evaluate_classifier_guidance

        print(json.dumps(evaluate_classifier_guidance(args), indent=1))
        return
    base = args.models / "studio-tiny"
    meta = export.read_json(base / "studio.json")
    steps = args.steps or meta["default_steps"]
    default_cfg = meta["default_cfg"]
    cfgs = args.cfg if args.cfg else [1.0, default_cfg]
    scheduler = args.scheduler or meta.get("default_scheduler", "Euler a")
    pipe = load(base, scheduler=scheduler)
    judge = Judge(train_judge(args))
    single, double = eval_scenes(1, args.single), eval_scenes(2, args.double)

    def judged(images: list[Image.Image], scenes: list[Scene]) -> dict[str, float]:
        return score([judge(im, s) for im, s in zip(images, scenes, strict=True)])

    renders = [draw_scene(s, 64) for s in single]
    rows: dict[str, dict[str, float]] = {
        "renderer (judge sanity check)": judged(renders, single),
        "renderer through the VAE (ceiling)": judged(vae_round_trip(pipe, renders), single),
    }
    shown: list[Image.Image] = []
    for cfg in cfgs:
        for label, scenes in (("1 object", single), ("2 objects", double)):
            if not scenes:
                continue
            images = generate(pipe, scenes, steps, cfg)
            rows[f"{label}, CFG {cfg:g}, {steps} steps"] = judged(images, scenes)
            shown += images[:10]
            print(format_table(rows), flush=True)
    sample_grid(shown, args.samples)
    speed = seconds_per_image(pipe, steps, default_cfg)
    result: dict[str, object] = {
        "scheduler": scheduler,
        "steps": steps,
        "table": rows,
        "seconds_per_image_64px": speed,
        "threads": args.threads,
    }
    print(format_table(rows))
    print(f"{scheduler}, {steps} steps, CFG {default_cfg:g}, 64x64: {speed:.3f} s/image")
    x4 = args.models / "studio-tiny-x4"
    if args.upscale and (x4 / "unet").is_dir():
        x4_meta = export.read_json(x4 / "studio.json")
        up = upscale_table(
            x4, args.upscale, x4_meta["default_steps"], x4_meta["default_noise_level"]
        )
        result["upscale_64_to_256"] = up
        for name, r in up.items():
            print(f"x4 {name:<16} PSNR {r['psnr']:6.2f} dB  SSIM {r['ssim']:.4f}")
    if args.record:
        record(args.models, result)
    print(json.dumps(result, indent=1))


if __name__ == "__main__":
    main()
