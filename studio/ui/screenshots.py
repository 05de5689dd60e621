"""Render the studio window in each mode to PNG files (for the README and for review).

    python -m studio.ui.screenshots [--out resources/screenshots] [--model studio-tiny]

Runs real generations with the given model (the embedded studio-tiny by default) in a
throwaway settings file and output folder, so the user's gallery is left alone. Qt runs
offscreen unless QT_QPA_PLATFORM says otherwise.
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
from collections.abc import Callable
from pathlib import Path

from PIL import Image, ImageDraw

from studio.core.catalog import ModelError, resolve
from studio.core.paths import RESOURCES_DIR
from studio.core.request import DEFAULT_MODEL, DEFAULT_UPSCALE_MODEL, Mode

WINDOW_SIZE = (1280, 800)
TIMEOUT_MS = 300_000


def _scene(seed: int, size: int) -> Image.Image:
    """An input picture in studio-tiny's vocabulary: a red circle on a blue background (drawn
    here: the window's package never imports the training package)."""
    image = Image.new("RGB", (size, size), (35, 75, 215))
    ImageDraw.Draw(image).ellipse((size // 4, size // 4, size * 3 // 4, size * 3 // 4), "red")
    return image


def _circle_mask(size: tuple[int, int], box: tuple[float, float, float, float]) -> Image.Image:
    mask = Image.new("L", size, 0)
    w, h = size
    ImageDraw.Draw(mask).ellipse((box[0] * w, box[1] * h, box[2] * w, box[3] * h), 255)
    return mask


def _parse(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--out", type=Path, default=RESOURCES_DIR / "screenshots")
    parser.add_argument("--model", default=DEFAULT_MODEL)
    parser.add_argument("--upscale-model", default=DEFAULT_UPSCALE_MODEL)
    parser.add_argument("--size", type=int, default=64, help="the generator's native size")
    parser.add_argument("--steps", type=int, default=20)
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    args = _parse(argv)
    for spec in (args.model, args.upscale_model):
        try:
            resolve(spec)
        except ModelError as e:
            print(f"{e} Pass --model / --upscale-model to use another one.", file=sys.stderr)
            return 2
    os.environ.setdefault("QT_QPA_PLATFORM", "offscreen")
    work = Path(tempfile.mkdtemp(prefix="studio-screenshots-"))
    os.environ["LATENT_STUDIO_OUTPUT"] = str(work / "outputs")

    from PySide6.QtCore import QEventLoop, QTimer
    from PySide6.QtWidgets import QApplication

    from studio.ui.main_window import MainWindow
    from studio.ui.settings import Settings
    from studio.ui.theme import apply_theme

    app = QApplication.instance() or QApplication([sys.argv[0]])
    apply_theme(app, "dark")
    window = MainWindow(Settings(work / "studio.ini"))
    window.resize(*WINDOW_SIZE)
    window.show()
    window.draft.edit({"model": args.model})
    window.draft.edit({"upscale_model": args.upscale_model})
    window.start_engine(preload=True)
    args.out.mkdir(parents=True, exist_ok=True)

    def settle(ms: int = 150) -> None:
        loop = QEventLoop()
        QTimer.singleShot(ms, loop.quit)
        loop.exec()

    def shoot(name: str) -> None:
        settle()
        path = args.out / f"{name}.png"
        window.grab().save(str(path))
        print(f"wrote {path}")

    def run_job(on_step: Callable[[int, int], None] | None = None) -> None:
        """Generate from the window's widgets and wait until the job is done."""
        loop = QEventLoop()
        done = {"error": ""}

        def finished(*_args: object) -> None:
            loop.quit()

        def failed(_job: int, message: str) -> None:
            done["error"] = message
            loop.quit()

        def progress(_job: int, p: object) -> None:
            if on_step is not None:
                on_step(p.step, p.total)  # type: ignore[attr-defined]

        c = window.controller
        c.jobFinished.connect(finished)
        c.jobFailed.connect(failed)
        c.progress.connect(progress)
        QTimer.singleShot(TIMEOUT_MS, loop.quit)
        try:
            if window.generate() is None:
                raise RuntimeError(window.banner.text())
            loop.exec()
        finally:
            c.jobFinished.disconnect(finished)
            c.jobFailed.disconnect(failed)
            c.progress.disconnect(progress)
        if done["error"]:
            raise RuntimeError(done["error"])

    size = args.size
    try:
        # A few results first, so the gallery has something to show.
        for seed, prompt in enumerate(
            (
                "a large white ring in the centre on a purple background",
                "a small green triangle at the bottom right on a yellow background",
                "a red circle and a blue square on a white striped background",
                "a large orange star on the left on a black background",
            ),
            start=11,
        ):
            window.prompt_panel.set_prompts(prompt, "")
            window.draft.edit({"steps": args.steps, "width": size, "height": size, "seed": seed})
            run_job()

        # Text→Image, caught halfway through denoising, then finished.
        window.prompt_panel.set_prompts(
            "a large yellow star in the centre on a blue background", "blurry"
        )
        window.draft.edit({"steps": args.steps, "width": size, "height": size, "seed": 7})
        halfway = {"shot": False}

        def at_half(step: int, total: int) -> None:
            if not halfway["shot"] and step >= total // 2:
                halfway["shot"] = True
                window.grab().save(str(args.out / "live-preview.png"))
                print(f"wrote {args.out / 'live-preview.png'}")

        run_job(at_half)
        window.timeline.select(max(0, window.timeline.frame_count() - 1))
        window.canvas.fit_to_view()
        shoot("text-to-image")

        # Image→Image from a rendered scene.
        window.set_mode(Mode.IMAGE_TO_IMAGE)
        window.canvas.set_image(_scene(3, size))
        window.prompt_panel.set_prompts("a large red star in the centre on a green background", "")
        window.draft.edit({"strength": 0.6, "seed": 5})
        run_job()
        shoot("image-to-image")

        # Inpaint: a painted mask over a scene, before generating.
        window.set_mode(Mode.INPAINT)
        window.canvas.set_image(_scene(8, size))
        window.canvas.set_mask(_circle_mask((size, size), (0.5, 0.08, 0.95, 0.55)))
        window.prompt_panel.set_prompts("a small white circle at the top right", "")
        window.draft.edit({"strength": 0.9, "mask_blur": 2, "seed": 9})
        window.canvas.fit_to_view()
        shoot("inpaint-mask")
        run_job()
        shoot("inpaint")

        # Upscale ×4 of a small scene.
        window.set_mode(Mode.UPSCALE)
        window.canvas.set_image(_scene(21, size))
        window.prompt_panel.set_prompts("a blue square on an orange background", "")
        run_job()
        window.canvas.fit_to_view()
        shoot("upscale")

        # The gallery with a result selected and its parameters shown.
        window.set_mode(Mode.TEXT_TO_IMAGE)
        paths = window.gallery.model.paths()
        if len(paths) > 2:
            window.gallery.select(paths[2])
        shoot("gallery")
    finally:
        window.close()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
