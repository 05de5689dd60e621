"""The command line: `studio` opens the window; subcommands generate, upscale, read and list.

Bad input exits with status 2 and one line on stderr; progress goes to stderr and the
paths of saved images to stdout, so the output can be piped.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from studio.core.errors import BadInput, UserError
from studio.core.text import printable, terminal_json

EXIT_OK, EXIT_FAILED, EXIT_BAD_INPUT, EXIT_INTERRUPTED = 0, 1, 2, 130


class UsageError(BadInput):
    """Bad input found by the command line itself; str() is one sentence."""


class _Parser(argparse.ArgumentParser):
    """argparse that reports a usage error in one line, like every other bad input."""

    def error(self, message: str) -> Any:
        self.exit(EXIT_BAD_INPUT, f"studio: {message} (see '{self.prog} --help').\n")


def _log_place() -> str:
    from studio.core.paths import log_file

    return str(log_file())


def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(
        prog="studio",
        description="Latent Studio: image generation on your own machine. "
        "With no command, the studio window opens.",
    )
    parser.add_argument(
        "--debug",
        action="store_true",
        help=f"also show the log on the terminal, tracebacks included (the log is kept in "
        f"{_log_place()})",
    )
    parser.add_argument("--device", help="cuda, cuda:1, mps or cpu (default: the best one here)")
    parser.add_argument(
        "--dtype", choices=["float16", "bfloat16", "float32"], help="default: fp16 on GPUs"
    )
    commands = parser.add_subparsers(dest="command", metavar="COMMAND", parser_class=_Parser)

    gen = commands.add_parser("generate", help="make images from a prompt")
    gen.add_argument("prompt")
    gen.add_argument("--negative", default="", metavar="TEXT", help="negative prompt")
    gen.add_argument("--model", metavar="SPEC", help="embedded name, hub id, folder or file")
    gen.add_argument("--steps", type=int)
    gen.add_argument("--cfg", type=float, help="classifier-free guidance scale")
    gen.add_argument("--cfg-rescale", type=float, default=0.0)
    gen.add_argument(
        "--threshold",
        type=float,
        metavar="CEILING",
        help="Imagen dynamic thresholding with this ceiling (off when not given)",
    )
    gen.add_argument("--threshold-percentile", type=float, default=99.5)
    gen.add_argument("--seed", type=int, default=-1, help="-1 for a random seed")
    gen.add_argument("--width", type=int)
    gen.add_argument("--height", type=int)
    gen.add_argument("--scheduler", help="sampler name, e.g. 'DPM++ 2M' (default: the model's)")
    gen.add_argument("--batch", type=int, default=1)
    gen.add_argument("--init-image", type=Path, metavar="PATH", help="image→image input")
    gen.add_argument("--strength", type=float, default=0.75)
    gen.add_argument("--mask", type=Path, metavar="PATH", help="inpaint mask (white = repaint)")
    gen.add_argument("--mask-blur", type=int, default=4)
    gen.add_argument("--only-masked", action="store_true", help="inpaint only the masked area")
    gen.add_argument("--upscale", choices=["x4", "hires"])
    gen.add_argument("--out", type=Path, metavar="PATH|DIR")

    up = commands.add_parser("upscale", help="enlarge an image ×4 with a diffusion upscaler")
    up.add_argument("image", type=Path)
    up.add_argument("--model", metavar="SPEC", help="upscaler model (default: studio-tiny-x4)")
    up.add_argument("--prompt", default="", help="what the image shows (helps some upscalers)")
    up.add_argument("--seed", type=int, default=-1)
    up.add_argument("--out", type=Path, metavar="PATH|DIR")

    info = commands.add_parser("info", help="print the parameters found in an image as JSON")
    info.add_argument("image", type=Path)

    commands.add_parser("models", help="list the models the studio knows and where they are")

    from studio.bench.ladder import ROWS

    bench = commands.add_parser("bench", help="measure the studio against bare diffusers")
    bench.add_argument("--quick", action="store_true", help="fewer repetitions (minutes)")
    bench.add_argument("--json", action="store_true", help="print one JSON object")
    bench.add_argument("--model", default="studio-tiny", metavar="SPEC")
    bench.add_argument(
        "--gpu", action="store_true", help="the SD 1.5 architecture benchmark (random weights)"
    )
    bench.add_argument("--size", type=int, default=512, help="--gpu: image size")
    bench.add_argument("--steps", type=int, default=20, help="--gpu: denoising steps")
    bench.add_argument("--repeats", type=int, default=5, help="--gpu: timed runs of each")
    bench.add_argument(
        "--rows",
        type=_bench_rows,
        metavar="ROW,…",
        help=f"--gpu: measure only these rows ({', '.join(ROWS)}); each keeps the "
        "speed-ups of the rows above it",
    )
    bench.add_argument(
        "--no-compile", action="store_true", help="skip the speed-up rows that compile the UNet"
    )
    bench.add_argument(
        "--out", type=Path, metavar="FILE", help="also write the JSON here, after every row"
    )
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    from studio.core.logs import setup_logging

    setup_logging(args.debug)
    if args.command is None:
        from studio.ui.app import main as open_studio

        return open_studio(["--debug"] if args.debug else [])
    try:
        return _run(args)
    finally:
        _say_notices()


def _say_notices() -> None:
    """What the studio found broken in its own files, once, on stderr."""
    from studio.core.state import take_notices

    for text in take_notices():
        print(f"studio: {text}", file=sys.stderr)


def _run(args: argparse.Namespace) -> int:
    try:
        return _COMMANDS[args.command](args)
    except KeyboardInterrupt:
        print("studio: interrupted.", file=sys.stderr)
        return EXIT_INTERRUPTED
    except BrokenPipeError:  # `studio info X | head`: the reader has gone, quietly
        _silence_stdout()
        return EXIT_OK
    except Exception as e:  # noqa: BLE001 - every failure is one line, never a traceback
        if args.debug:
            raise
        print(f"studio: {_sentence_for(e)}", file=sys.stderr)
        return EXIT_BAD_INPUT if isinstance(e, BadInput) else EXIT_FAILED


def _sentence_for(error: Exception) -> str:
    """A user error is its own sentence; anything else is a bug: logged in full, and named."""
    if isinstance(error, UserError):
        return _one_line(error)
    logging.getLogger(__name__).error("the command failed unexpectedly", exc_info=error)
    if isinstance(error, MemoryError):
        return "there was not enough memory: try a smaller size or batch."
    return (
        f"the command failed unexpectedly ({error.__class__.__name__}); the details are in "
        f"{_log_place()}."
    )


def _silence_stdout() -> None:
    """After a broken pipe, Python would complain when it flushes stdout at exit."""
    try:
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
    except (OSError, ValueError):
        pass


def _one_line(error: Exception) -> str:
    text = printable(str(error)) or error.__class__.__name__
    return text if text.endswith((".", "!", "?")) else text + "."


# -- commands -------------------------------------------------------------------------------


def _generate(args: argparse.Namespace) -> int:
    from studio.core.catalog import model_defaults
    from studio.core.imaging import input_size, open_image
    from studio.core.request import DEFAULT_MODEL, GenerationRequest, Mode

    model = args.model or DEFAULT_MODEL
    defaults = model_defaults(model)
    init_image = open_image(args.init_image) if args.init_image else None
    mask = open_image(args.mask).convert("L") if args.mask else None
    if mask is not None and init_image is None:
        raise UsageError("--mask needs --init-image: the mask says which part of it to repaint.")
    mode = Mode.INPAINT if mask else Mode.IMAGE_TO_IMAGE if init_image else Mode.TEXT_TO_IMAGE

    default_w, default_h = defaults.get("width", 512), defaults.get("height", 512)
    if init_image is not None:  # the window's rule: the input's shape at the model's area
        default_w, default_h = input_size(init_image.size, defaults.get("width"))
    request = GenerationRequest(
        mode=mode,
        prompt=args.prompt,
        negative_prompt=args.negative,
        model=model,
        width=default_w if args.width is None else args.width,
        height=default_h if args.height is None else args.height,
        steps=int(defaults.get("steps", 25)) if args.steps is None else args.steps,
        cfg_scale=args.cfg if args.cfg is not None else float(defaults.get("cfg_scale", 7.0)),
        cfg_rescale=args.cfg_rescale,
        dynamic_thresholding=args.threshold is not None,
        threshold_percentile=args.threshold_percentile,
        threshold_max=args.threshold if args.threshold is not None else 2.5,
        scheduler=args.scheduler or defaults.get("scheduler", "Euler a"),
        seed=args.seed,
        batch_size=args.batch,
        init_image=init_image,
        strength=args.strength,
        mask=mask,
        mask_blur=args.mask_blur,
        inpaint_only_masked=args.only_masked,
        upscaler=args.upscale,
    )
    return _run_and_save(request, args)


def _upscale(args: argparse.Namespace) -> int:
    from studio.core.imaging import open_image
    from studio.core.request import DEFAULT_UPSCALE_MODEL, GenerationRequest, Mode

    request = GenerationRequest(
        mode=Mode.UPSCALE,
        prompt=args.prompt,
        init_image=open_image(args.image).convert("RGB"),
        upscale_model=args.model or DEFAULT_UPSCALE_MODEL,
        seed=args.seed,
    )
    return _run_and_save(request, args)


def _info(args: argparse.Namespace) -> int:
    from studio.metadata import read_parameters

    parameters = read_parameters(args.image)
    text = json.dumps(parameters.to_json_dict(), indent=2, ensure_ascii=False)
    print(terminal_json(text))
    return EXIT_OK


def _models(args: argparse.Namespace) -> int:
    from studio.core.catalog import (
        ModelError,
        added_models,
        cached_hub_models,
        embedded_models,
        resolve,
    )

    rows = [(m.name, f"embedded {m.role}", m.location) for m in embedded_models()]
    for spec in added_models():
        try:
            source = resolve(spec)
            rows.append((spec, f"added {source.kind}", source.location))
        except ModelError as e:
            rows.append((spec, "added, missing", str(e)))
    rows += [(m.name, "hub cache", m.location) for m in cached_hub_models()]
    rows = [tuple(printable(str(field)) for field in row) for row in rows]
    width = max((len(name) for name, _, _ in rows), default=0)
    kind_width = max((len(kind) for _, kind, _ in rows), default=0)
    for name, kind, location in rows:
        print(f"{name:<{width}}  {kind:<{kind_width}}  {location}")
    return EXIT_OK


def _bench(args: argparse.Namespace) -> int:
    from studio.bench.ladder import COMPILED_ROWS, ROWS
    from studio.bench.runner import format_table, machine, record_speedups, run_bench
    from studio.core.saving import write_atomically

    if not args.gpu and args.rows:
        raise UsageError("--rows chooses rows of the GPU bench: add --gpu.")
    rows = [r for r in args.rows or ROWS if not (args.no_compile and r in COMPILED_ROWS)]
    if not rows:
        raise UsageError("--no-compile leaves none of the rows given to --rows to measure.")
    if args.out is not None and args.out.is_dir():
        raise UsageError(f"--out must be a file to write the JSON to; '{args.out}' is a folder.")

    not_kept: list[str] = []

    def keep_figures(results: dict) -> Path | None:
        """The speed-up figures, for the Settings dialog; a failure costs no bench figures."""
        try:
            return record_speedups(results)
        except OSError as e:
            not_kept.append(f"{e.strerror or e} ({e.filename})" if e.filename else str(e))
            return None

    def save(results: dict) -> None:
        if args.out is not None:
            args.out.parent.mkdir(parents=True, exist_ok=True)
            text = json.dumps(results, indent=2).encode()
            write_atomically(args.out, lambda handle: handle.write(text))

    if args.gpu:
        from studio.bench.gpu_bench import run_gpu_bench

        results: dict = {"machine": machine()}

        def save_gpu(gpu: dict) -> None:
            save({**results, "gpu": gpu})
            keep_figures({"gpu": gpu})  # a run cut short keeps the rows it finished

        results["gpu"] = run_gpu_bench(
            args.device, args.size, args.steps, args.repeats, tuple(rows), save_gpu
        )
    else:
        results = run_bench(args.quick, args.model, compile_rows=not args.no_compile)
    print(json.dumps(results, indent=2) if args.json else format_table(results))
    save(results)  # after printing: a file that cannot be written loses no figures
    kept = keep_figures(results)
    if kept is not None:
        print(f"Settings → Performance shows these speed-ups' figures ({kept}).", file=sys.stderr)
    elif not_kept:
        print(f"The speed-ups' figures were not kept: {not_kept[-1]}", file=sys.stderr)
    return EXIT_OK


def _bench_rows(text: str) -> list[str]:
    from studio.bench.ladder import ROWS

    rows = [row.strip() for row in text.split(",") if row.strip()]
    unknown = [row for row in rows if row not in ROWS]
    if unknown:
        raise argparse.ArgumentTypeError(
            f"no row called {', '.join(unknown)}: choose from {', '.join(ROWS)}"
        )
    return rows


_COMMANDS = {
    "generate": _generate,
    "upscale": _upscale,
    "info": _info,
    "models": _models,
    "bench": _bench,
}


# -- helpers --------------------------------------------------------------------------------


class _StderrProgress:
    """Step progress on one rewritten stderr line (a line per step when not a terminal)."""

    def __init__(self) -> None:
        self._tty = sys.stderr.isatty()

    def status(self, message: str, fraction: float | None) -> None:
        suffix = f" {fraction:.0%}" if fraction is not None and fraction < 1 else ""
        self._write(f"{message}{suffix}", final=fraction is None or fraction >= 1)

    def step(self, progress: Any) -> None:
        line = (
            f"{progress.stage} {progress.step}/{progress.total} "
            f"{progress.steps_per_second:.1f} it/s {progress.seconds_left:.1f} s left"
        )
        self._write(line, final=progress.step == progress.total)

    def _write(self, line: str, final: bool) -> None:
        if self._tty:
            sys.stderr.write("\r\033[K" + line + ("\n" if final else ""))
        else:
            sys.stderr.write(line + "\n")
        sys.stderr.flush()


def _run_and_save(request: Any, args: argparse.Namespace) -> int:
    from studio.core.paths import output_dir
    from studio.core.saving import save_result
    from studio.core.settings import EngineSettings

    request.validate()  # before loading torch, so bad input answers at once
    folder, stem = _destination(args.out)
    from studio.engine.generate import Engine

    settings = EngineSettings(device=args.device, dtype=args.dtype, preview_method="none")
    result = Engine(settings).run(request, _StderrProgress())
    if result.cancelled:
        return EXIT_INTERRUPTED
    for path in save_result(result, folder or output_dir(), stem, overwrite=stem is not None):
        print(path)
    return EXIT_OK


def _destination(out: Path | None) -> tuple[Path | None, str | None]:
    """--out as (folder, file stem): a .png path names the file, anything else a folder."""
    if out is None:
        return None, None
    if out.suffix.lower() == ".png":
        return out.parent if str(out.parent) else Path("."), out.stem
    if out.suffix:
        raise UsageError(f"--out must be a folder or a .png file, not '{out.name}'.")
    return out, None


if __name__ == "__main__":
    sys.exit(main())
