"""Measure studio-tiny-controlnet: does the object come where the scribble says?

    python -m studio.tiny.evaluate_controlnet            # print the table
    python -m studio.tiny.evaluate_controlnet --record   # also write evaluation.json

Held-out single-object scenes on plain backgrounds. Each prompt names the object and the
background but not the place ("a large red circle on a blue background"); the control map
is a hand-wobbled outline of the scene's object (studio/tiny/scribbles.py, as an artist
would scribble it). Each prompt and seed is generated through the studio's engine with the
ControlNet and without (and with the object's filled silhouette, and with Canny's edges of
the scene's own picture), and the generated object's mask (the pixels far from the
background's colour, read from the picture's border) is compared with the scene's own
object: IoU, and whether its centre lies within 8 pixels of the drawn one's.
"""

from __future__ import annotations

import argparse
import json
import random
import sys
from pathlib import Path

import numpy as np
import torch
from PIL import Image

from studio.tiny import export
from studio.tiny.scenes import Scene, draw_scene, sample_scene
from studio.tiny.scribbles import control_map

MODELS = Path(__file__).resolve().parents[2] / "resources" / "models"
EVAL_SEED = 535353  # held out: training scenes come from other seeds
NEAR = 8.0  # pixels: a centre this close to the drawn one is where the scribble said


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(
        prog="python -m studio.tiny.evaluate_controlnet", description=__doc__
    )
    p.add_argument("--controlnet", type=Path, default=MODELS / "studio-tiny-controlnet")
    p.add_argument("--scenes", type=int, default=48)
    p.add_argument("--steps", type=int, default=None, help="default: the model's")
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--record", action="store_true", help="write evaluation.json beside it")
    args = p.parse_args(argv)
    args.argv = list(sys.argv[1:] if argv is None else argv)
    return args


def object_mask(image: Image.Image, threshold: float = 60.0) -> np.ndarray:
    """The pixels far from the background's colour (the median of the picture's border)."""
    rgb = np.asarray(image.convert("RGB"), np.float32)
    border = np.concatenate([rgb[0], rgb[-1], rgb[:, 0], rgb[:, -1]])
    background = np.median(border, axis=0)
    return np.linalg.norm(rgb - background, axis=2) > threshold


def centre(mask: np.ndarray) -> tuple[float, float] | None:
    """The (x, y) centre of a mask's pixels; None when it has none."""
    ys, xs = np.nonzero(mask)
    return (float(xs.mean()), float(ys.mean())) if len(xs) else None


def iou(a: np.ndarray, b: np.ndarray) -> float:
    union = np.logical_or(a, b).sum()
    return float(np.logical_and(a, b).sum() / union) if union else 0.0


def prompt_of(scene: Scene) -> str:
    """The object and the background, not the place: the control map says where."""
    o = scene.objects[0]
    return f"a {o.size} {o.colour} {o.shape} on a {scene.background.colour} background"


def held_out_scenes(n: int, seed: int = EVAL_SEED) -> list[Scene]:
    rng = random.Random(seed)
    scenes: list[Scene] = []
    while len(scenes) < n:
        scene = sample_scene(rng, 1)
        if scene.background.texture == "plain":  # the mask reads the background's colour
            scenes.append(scene)
    return scenes


def evaluate(args: argparse.Namespace) -> dict:
    from studio.core.request import Control, GenerationRequest
    from studio.engine.generate import Engine

    engine = Engine()
    defaults = export.read_json(MODELS / "studio-tiny" / "studio.json")  # the window's
    rng, filled_rng = random.Random(EVAL_SEED + 1), random.Random(EVAL_SEED + 2)
    rows: dict[str, list[tuple[float, bool]]] = {
        "with": [], "with_silhouette": [], "with_canny_of_the_picture": [], "without": [],
    }  # fmt: skip
    for i, scene in enumerate(held_out_scenes(args.scenes)):
        picture = draw_scene(scene, 64)
        truth = object_mask(picture)
        scribble = control_map(scene, 64, rng, kind="outline")
        silhouette = control_map(scene, 64, filled_rng, kind="filled")
        spec = str(args.controlnet)
        base = GenerationRequest(
            prompt=prompt_of(scene), width=64, height=64, seed=1000 + i,
            steps=args.steps or defaults["default_steps"], cfg_scale=defaults["default_cfg"],
            scheduler=defaults["default_scheduler"],
        )  # fmt: skip
        for name, controls in (
            ("with", (Control(spec, scribble),)),
            ("with_silhouette", (Control(spec, silhouette),)),
            # the scene's own picture through the studio's Canny preprocessor
            ("with_canny_of_the_picture", (Control(spec, picture, preprocessor="canny"),)),
            ("without", ()),
        ):
            image = engine.run(base.replace(controls=controls)).images[0]
            mask = object_mask(image)
            found, drawn = centre(mask), centre(truth)
            near = (
                found is not None
                and drawn is not None
                and np.hypot(found[0] - drawn[0], found[1] - drawn[1]) <= NEAR
            )
            rows[name].append((iou(mask, truth), near))
    table = {
        name: {
            "mean_iou": round(float(np.mean([r[0] for r in found])), 3),
            "centre_within_8px": round(float(np.mean([r[1] for r in found])), 3),
        }
        for name, found in rows.items()
    }
    return {
        "command": "python -m studio.tiny.evaluate_controlnet " + " ".join(args.argv),
        "scenes": args.scenes,
        "control_map": "with: a hand-wobbled outline of the scene's object; with_silhouette: "
        "its filled silhouette (scribbles.control_map); with_canny_of_the_picture: the "
        "render itself through the Canny preprocessor",
        "prompt": "object and background, no place (e.g. 'a large red circle on a blue "
        "background')",
        "sampling": f"{defaults['default_scheduler']}, {args.steps or defaults['default_steps']}"
        f" steps, CFG {defaults['default_cfg']:g}",
        "results": table,
    }


def main(argv: list[str] | None = None) -> None:
    args = parse_args(argv)
    torch.set_num_threads(args.threads)
    record = evaluate(args)
    print(json.dumps(record, indent=1), flush=True)
    if args.record:
        export.write_json(args.controlnet / "evaluation.json", record)


if __name__ == "__main__":
    main()
