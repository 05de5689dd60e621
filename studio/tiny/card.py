"""Model cards (README.md) for the studio-tiny folders, written from their records."""

from __future__ import annotations

from pathlib import Path

from studio.tiny import export, vocabulary


def _sizes(folder: Path) -> str:
    params = export.param_counts(folder)
    lines = [f"| {k} | {v['params'] / 1e6:.2f} M | {v['mb']:.2f} MB |" for k, v in params.items()]
    total = sum(v["mb"] for v in params.values())
    return "\n".join(["| component | parameters | fp16 file |", "|---|---|---|", *lines]) + (
        f"\n\nTotal weights: {total:.1f} MB."
    )


def _table(rows: dict[str, dict[str, float]]) -> str:
    cols = ["colour", "shape", "position", "background", "all"]
    out = ["| setting | " + " | ".join(cols) + " |", "|---" * (len(cols) + 1) + "|"]
    out += [f"| {k} | " + " | ".join(f"{r[c]:.1f}%" for c in cols) + " |" for k, r in rows.items()]
    return "\n".join(out)


def _losses(rec: dict) -> str:
    return "\n".join(f"- {k}: {v:.5g}" for k, v in rec.get("final_losses", {}).items())


def _run(rec: dict) -> str:
    """Seed, device, wall clock and steps of the run that wrote this record."""
    chained = " (the last command)" if rec.get("continues") else ""
    steps = ", ".join(f"{k} {v:,}" for k, v in rec.get("steps_done", {}).items())
    return (
        f"Seed {rec.get('seed')}, device {rec.get('device')} ({rec.get('threads')} threads),"
        f" {rec.get('wall_seconds', 0) / 60:.0f} minutes wall clock{chained}; steps: {steps}."
    )


def _decoder_note(rec: dict) -> str:
    ft = rec.get("decoder_finetune")
    if not ft:
        return ""
    loss = ft["final_losses"]
    return (
        "\nThen the shared VAE decoder is fine-tuned with the encoder frozen (the latent space,"
        " and so the UNets, stay valid):\n\n```\n"
        f"{ft['command']}\n```\n\n{ft['wall_seconds'] / 60:.0f} minutes, {loss['steps']} steps,"
        f" final reconstruction loss (L1 + MSE) {loss['decoder_rec_l1_mse']:.5f}.\n"
    )


def _chain(rec: dict | None) -> list[dict]:
    """This run's record and those of the runs it continued, oldest first."""
    return _chain(rec.get("continues")) + [rec] if rec else []


def _text_note(rec: dict) -> str:
    if not any("text_pair_bce" in r.get("final_losses", {}) for r in _chain(rec)):
        return ""
    return (
        "\n  While the UNet trains, a linear probe on the encoder's mean hidden state names"
        " each\n  (colour, shape) pair of the caption (`--text-aux`), so that shape words get"
        " distinct\n  embeddings; the probe is not part of the model."
    )


def _chain_note(rec: dict) -> str:
    if not rec.get("continues"):
        return ""
    return (
        "Each command after the first goes on from the folder the one before it wrote (its\n"
        "`--unet-from`), with the first command's `vae` folder as `--vae-from`.\n"
    )


def _commands(rec: dict) -> str:
    """The training commands in order: a run made with --unet-from records the one before."""
    *earlier, last = _chain(rec)
    lines = [f"{r.get('command')}   # {r.get('wall_seconds', 0) / 60:.0f} minutes" for r in earlier]
    return "\n".join(
        [*lines, last.get("command", "python -m studio.tiny.train --model studio-tiny")]
    )


def base_card(folder: Path) -> str:
    rec = export.read_json(folder / "training.json")
    meta = export.read_json(folder / "studio.json")
    ev = rec.get("evaluation", {})
    measured = (
        f"Judged by `python -m studio.tiny.evaluate` ({ev.get('scheduler')}, {ev.get('steps')} "
        "steps; percentages of objects, of images for background and all):\n\n"
        + _table(ev["table"])
        + f"\n\nSpeed, 64x64, {ev.get('steps')} steps with CFG, {ev.get('threads')} CPU threads: "
        f"{ev['seconds_per_image_64px']:.2f} s per image once loaded."
        if ev
        else "Not evaluated yet: run `python -m studio.tiny.evaluate --record`."
    )
    return f"""# studio-tiny

A small latent diffusion model trained from scratch on procedurally rendered scenes
(`studio/tiny/scenes.py`), so that Latent Studio works offline. It is a standard
diffusers Stable Diffusion folder: `StableDiffusionPipeline.from_pretrained(this_folder)`.

- VAE: AutoencoderKL, 3 levels of 48/96/96 channels (images are 4x the latent size),
  4 latent channels, latents standardised so that `scaling_factor` 0.08333 gives unit
  variance. Trained on 32x32 crops of renders at 64, 128 and 256 pixels (bf16 autocast
  where the device computes bf16).
- Text encoder: CLIPTextModel, 3 layers, width 128; tokenizer: CLIP BPE learned on the
  captions (`vocab.json`, `merges.txt`), at most 32 tokens.{_text_note(rec)}
- UNet2DConditionModel, cross-attention at 8x8 and 4x4 latent resolution.
- Scheduler: DDPM linear betas, 1000 steps, v-prediction; works with Euler a, Euler,
  DPM++ 2M, DDIM and UniPC. The v loss keeps full weight at the noisy steps, where layout
  is decided (see `v_loss_weights` in `studio/tiny/train.py`); the caption is dropped for
  12% of the samples, for classifier-free guidance.
- Defaults in `studio.json`: {meta.get("default_steps")} steps, CFG {meta.get("default_cfg")},
  {meta.get("default_scheduler")}, {meta.get("default_size")}.
- `latent_rgb.json`: least-squares map from scaled latents to RGB for live previews.
- Weights stored in fp16; load with `torch_dtype=torch.float32` on CPU.

## Vocabulary

{vocabulary.describe()}

## Sizes

{_sizes(folder)}

## Reproduce

```
{_commands(rec)}
```

{_chain_note(rec)}{_run(rec)} Final losses:

{_losses(rec)}
{_decoder_note(rec)}
## Measured

{measured}
"""


def x4_card(folder: Path) -> str:
    rec = export.read_json(folder / "training.json")
    meta = export.read_json(folder / "studio.json")
    up = rec.get("evaluation", {}).get("upscale_64_to_256")
    measured = (
        "64x64 renders upscaled to 256x256 against the renderer's own 256x256 image:\n\n"
        "| method | PSNR | SSIM |\n|---|---|---|\n"
        + "\n".join(f"| {k} | {v['psnr']:.2f} dB | {v['ssim']:.4f} |" for k, v in up.items())
        if up
        else "Not evaluated yet: run `python -m studio.tiny.evaluate --record`."
    )
    return f"""# studio-tiny-x4

A x4 diffusion upscaler in the layout of the Stable Diffusion x4 upscaler, trained on pairs
from the studio-tiny renderer (a scene drawn at N and at 4N pixels). It shares studio-tiny's
VAE and text encoder, kept once in studio-tiny's folder (`components_from` in
`studio.json`): load it with `StableDiffusionUpscalePipeline.from_pretrained(this_folder,
vae=AutoencoderKL.from_pretrained("../studio-tiny/vae"),
text_encoder=CLIPTextModel.from_pretrained("../studio-tiny/text_encoder"))`, or
`studio.tiny.export.load_pipeline`; the UNet takes the noisy latents plus the noisy
low-resolution image (7 channels) and the noise level as a class label. The prompt is not
used, so CFG 1 is the right setting. Defaults in `studio.json`:
{meta.get("default_steps")} steps, noise level {meta.get("default_noise_level")}.

## Sizes

{_sizes(folder)}

## Reproduce

```
{rec.get("command", "python -m studio.tiny.train --model studio-tiny-x4")}
```

Needs studio-tiny's folder (for the VAE): the command trains it first unless given
`--model studio-tiny-x4`. {_run(rec)} Final losses:

{_losses(rec)}
{_decoder_note(rec)}
## Measured

{measured}
"""


def write_cards(models: Path) -> None:
    base, x4 = models / "studio-tiny", models / "studio-tiny-x4"
    if (base / "unet").is_dir():
        (base / "README.md").write_text(base_card(base), encoding="utf-8")
    if (x4 / "unet").is_dir():
        (x4 / "README.md").write_text(x4_card(x4), encoding="utf-8")
