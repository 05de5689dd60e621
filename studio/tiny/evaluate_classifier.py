"""Classifier guidance on studio-tiny, measured: fidelity (the judge's shape and colour
accuracy) against variety (how different the pictures of one prompt are across seeds).

    python -m studio.tiny.evaluate --classifier-guidance            # the table
    python -m studio.tiny.evaluate --classifier-guidance --prompts 12 --seeds 4

Each prompt is the full caption of a held-out single-object scene; each guided run targets
that scene's object ("red star"). Pictures come from the studio's own engine (so the
guidance measured is the one the window runs), judged by `studio.tiny.judge` against the
scene's ground truth. Diversity: the mean over prompts of the mean pairwise pixel distance
(mean |a − b| over pixels and channels, 0–255) between the pictures of different seeds.
"""

from __future__ import annotations

import itertools
import time
from typing import Any

import numpy as np

from studio.tiny import export

CONFIGS_HELP = "CFG 1, classifier guidance at --scales, the model's CFG, and CFG + guidance"


def diversity(images: list[Any]) -> float:
    """Mean pairwise mean-absolute pixel distance (0–255) between pictures."""
    arrays = [np.asarray(im.convert("RGB"), dtype=np.float32) for im in images]
    pairs = list(itertools.combinations(arrays, 2))
    return float(np.mean([np.abs(a - b).mean() for a, b in pairs])) if pairs else 0.0


def evaluate_classifier_guidance(args: Any) -> dict[str, Any]:
    """The table: one row per configuration (see the module's text)."""
    from studio.core.request import GenerationRequest
    from studio.engine.generate import Engine
    from studio.tiny.evaluate import eval_scenes, score
    from studio.tiny.judge import Judge, train_shape_classifier
    from studio.tiny.scenes import caption

    base = args.models / "studio-tiny"
    meta = export.read_json(base / "studio.json")
    steps = args.steps or meta["default_steps"]
    default_cfg = float(meta["default_cfg"])
    scheduler = args.scheduler or meta.get("default_scheduler", "DPM++ 2M")
    scales = args.scales
    configs = [(1.0, 0.0)] + [(1.0, s) for s in scales] + [(default_cfg, 0.0)]
    configs += [(default_cfg, s) for s in args.cfg_scales]
    judge = Judge(train_shape_classifier())
    scenes = eval_scenes(1, args.prompts)
    engine = Engine()
    rows: dict[str, dict[str, float]] = {}
    started = time.time()
    for cfg, scale in configs:
        verdicts, spreads = [], []
        for number, scene in enumerate(scenes):
            obj = scene.objects[0]
            request = GenerationRequest(
                prompt=caption(scene, full=True),
                model=str(base),
                steps=steps,
                cfg_scale=cfg,
                scheduler=scheduler,
                seed=1000 * number + 1,
                batch_size=args.seeds,
                classifier_class=f"{obj.colour} {obj.shape}",
                classifier_scale=scale,
            )
            images = engine.run(request).images
            verdicts += [judge(im, scene) for im in images]
            spreads.append(diversity(images))
        label = f"CFG {cfg:g}" + (f" + classifier guidance {scale:g}" if scale else "")
        judged = score(verdicts)
        rows[label] = {
            "shape": judged["shape"],
            "colour": judged["colour"],
            "all": judged["all"],
            "diversity": round(float(np.mean(spreads)), 1),
        }
        print(format_rows(rows), flush=True)
    steering = {}
    for cfg in (1.0, default_cfg):
        steering.update(steer(engine, judge, scenes, steps, cfg, scheduler, args))
    print(format_steering(steering), flush=True)
    return {
        "scheduler": scheduler,
        "steps": steps,
        "prompts": args.prompts,
        "seeds_per_prompt": args.seeds,
        "target": "each prompt's own object (colour and shape)",
        "wall_seconds": round(time.time() - started, 1),
        "table": rows,
        "steering_shape_percent": steering,
    }


def steer(engine, judge, scenes, steps, cfg, scheduler, args) -> dict[str, float]:  # noqa: ANN001
    """Guidance against the prompt: each prompt's object pushed to the next shape of the
    vocabulary; the judge's share of pictures that show the target shape, by scale."""
    import dataclasses

    from studio.core.request import GenerationRequest
    from studio.tiny.scenes import caption
    from studio.tiny.vocabulary import SHAPES

    out: dict[str, float] = {}
    for scale in [0.0, *args.scales]:
        hits = []
        for number, scene in enumerate(scenes):
            obj = scene.objects[0]
            target = SHAPES[(SHAPES.index(obj.shape) + 1) % len(SHAPES)]
            wanted = dataclasses.replace(scene, objects=(dataclasses.replace(obj, shape=target),))
            request = GenerationRequest(
                prompt=caption(scene, full=True),
                model=str(args.models / "studio-tiny"),
                steps=steps,
                cfg_scale=cfg,
                scheduler=scheduler,
                seed=1000 * number + 1,
                batch_size=args.seeds,
                classifier_class=target,
                classifier_scale=scale,
            )
            hits += [judge(im, wanted).objects[0].shape for im in engine.run(request).images]
        out[f"CFG {cfg:g}, scale {scale:g}"] = round(100 * sum(hits) / max(1, len(hits)), 1)
    return out


def format_steering(steering: dict[str, float]) -> str:
    return "steering (the prompt's shape pushed to another): " + ", ".join(
        f"{k}: {v:.1f}%" for k, v in steering.items()
    )


def format_rows(rows: dict[str, dict[str, float]]) -> str:
    lines = [
        "| configuration | shape % | colour % | all % | diversity |",
        "|---|---:|---:|---:|---:|",
    ]
    for name, r in rows.items():
        lines.append(
            f"| {name} | {r['shape']:.1f} | {r['colour']:.1f} | {r['all']:.1f} "
            f"| {r['diversity']:.1f} |"
        )
    return "\n".join(lines)
