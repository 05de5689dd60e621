"""The command line: `studio` opens the window; subcommands generate, upscale, read and list.

Bad input exits with status 2 and one line on stderr; progress goes to stderr and the
paths of saved images to stdout, so the output can be piped.
"""

from __future__ import annotations

import argparse
import json
import logging
import math
import os
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from studio.core.errors import BadInput, UserError
from studio.core.formats import SaveFormat
from studio.core.text import os_reason, printable, terminal_json

EXIT_OK, EXIT_FAILED, EXIT_BAD_INPUT, EXIT_INTERRUPTED = 0, 1, 2, 130


class UsageError(BadInput):
    """Bad input found by the command line itself; str() is one sentence."""


class _Help(argparse.ArgumentDefaultsHelpFormatter):
    """Each option's default, where it has one worth saying."""

    def _get_help_string(self, action: argparse.Action) -> str | None:
        if action.default in (None, False, "", argparse.SUPPRESS) or "default:" in (
            action.help or ""
        ):
            return action.help
        return super()._get_help_string(action)


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
        "--models-dir",
        type=Path,
        metavar="DIR",
        help="your models folder (AUTOMATIC1111's, Forge's or ComfyUI's, or its models/): "
        "--model then takes a checkpoint's file name from it (default: the window's setting, "
        "else $LATENT_STUDIO_MODELS_DIR)",
    )
    parser.add_argument(
        "--dtype", choices=["float16", "bfloat16", "float32"], help="default: fp16 on GPUs"
    )
    commands = parser.add_subparsers(dest="command", metavar="COMMAND", parser_class=_Parser)

    from studio.core.request import DEFAULT_UPSCALE_MODEL, RANGES, GenerationRequest
    from studio.core.schedulers import FAST_SCHEDULERS, SCHEDULER_NAMES

    plain = GenerationRequest()

    def limits(field: str) -> str:
        limit = RANGES[field]
        return f"{limit.low:g} to {limit.high:g}"

    gen = commands.add_parser(
        "generate",
        help="make images from a prompt",
        description="Make images from a prompt: text→image; image→image with --init-image; "
        "inpainting with --init-image and --mask; an edit by instruction with --edit (the "
        "prompt says what to change, on models that edit: Flux.1 Kontext, Flux.2 Klein, "
        "Qwen-Image-Edit). Values left out come from the model's own "
        "card (size, steps, CFG, sampler), else from the defaults shown.",
        epilog="Samplers (any capitalisation, or as ComfyUI names them): "
        + ", ".join(SCHEDULER_NAMES)
        + "; for distilled models and their LoRAs: "
        + ", ".join(FAST_SCHEDULERS)
        + ". The flow-matching families (SD 3, Flux, Qwen-Image, Z-Image…) run samplers of "
        "their own (Euler, DPM++ 2M, UniPC, and Heun on some): another runs as its closest "
        "relative, with a note.",
        formatter_class=_Help,
    )
    gen.add_argument(
        "prompt",
        nargs="?",
        help="what the image shows (A1111's way of writing it works); with --from, a new "
        "prompt for the steps after --at-step",
    )
    gen.add_argument("--negative", metavar="TEXT", help="negative prompt")
    gen.add_argument(
        "--model",
        metavar="SPEC",
        help="an embedded model's name, a hub id (org/name), a diffusers folder, a "
        ".safetensors or .gguf file, or a checkpoint's name in the models folder (default: "
        "studio-tiny; with --from, the image's)",
    )
    gen.add_argument(
        "--steps",
        type=int,
        help=f"denoising steps, {limits('steps')} (default: the model's, else 25)",
    )
    gen.add_argument(
        "--cfg",
        type=float,
        help="classifier-free guidance scale, "
        f"{limits('cfg_scale')} (default: the model's, else 7)",
    )
    gen.add_argument(
        "--cfg-rescale",
        type=float,
        help=f"CFG rescale, {limits('cfg_rescale')}; 0 is off (the default)",
    )
    gen.add_argument(
        "--clip-skip",
        type=int,
        metavar="N",
        help=f"A1111's Clip skip: read the prompt N layers from the text encoder's last, "
        f"{limits('clip_skip')} (SD 1.x; default: 1; with --from, the image's)",
    )
    gen.add_argument(
        "--classifier-guidance",
        metavar="CLASS[:SCALE]",
        help="classifier guidance towards a class of the model's classifier: a shape, a "
        "colour or both ('red star:2'); scale "
        f"{limits('classifier_scale')}, default 2 (studio-tiny has a classifier)",
    )
    gen.add_argument(
        "--threshold",
        type=float,
        metavar="CEILING",
        help="Imagen's dynamic thresholding with this ceiling (off when not given)",
    )
    gen.add_argument(
        "--threshold-percentile",
        type=float,
        help=f"thresholding's percentile of |x0|, {limits('threshold_percentile')} "
        f"(default: {plain.threshold_percentile}; with --from, the image's)",
    )
    gen.add_argument(
        "--seed",
        type=int,
        help="the seed of the first image (image k of a batch is seed+k); -1 picks one at random "
        "(default: -1; with --from, the image's)",
    )
    gen.add_argument(
        "--width",
        type=int,
        help="in pixels, a multiple of 8 (default: the "
        "model's native size, or an input image's shape at that size)",
    )
    gen.add_argument("--height", type=int, help="in pixels, a multiple of 8")
    gen.add_argument(
        "--scheduler",
        "--sampler",
        type=_scheduler,
        metavar="NAME",
        help="the sampler, e.g. 'DPM++ 2M' (default: the model's, else Euler a; the list is below)",
    )
    gen.add_argument("--batch", type=int, default=1, help=f"images, {limits('batch_size')}")
    gen.add_argument("--init-image", type=Path, metavar="PATH", help="image→image input")
    gen.add_argument(
        "--strength",
        type=float,
        help=f"how much of the input changes, {limits('strength')} (default: {plain.strength}; "
        "with --from, the image's)",
    )
    gen.add_argument(
        "--edit",
        type=Path,
        metavar="PATH",
        help="the image to edit; the prompt is the instruction, e.g. 'make the circle blue'",
    )
    gen.add_argument(
        "--reference",
        type=Path,
        action="append",
        default=[],
        metavar="PATH",
        help="with --edit: another image the instruction refers to (repeatable, where the "
        "model takes several)",
    )
    gen.add_argument(
        "--lora",
        action="append",
        default=[],
        metavar="NAME[:WEIGHT]",
        help="a LoRA by file name (in the LoRA folders) or path, weight 1 unless given; "
        "repeatable; the same as <lora:NAME:WEIGHT> in the prompt",
    )
    _control_options(gen)
    gen.add_argument(
        "--mask",
        type=Path,
        metavar="PATH",
        help="inpainting mask, white = repaint (needs --init-image)",
    )
    gen.add_argument(
        "--mask-blur",
        type=int,
        help=f"the mask's feather in pixels (default: {plain.mask_blur}; with --from, the image's)",
    )
    gen.add_argument(
        "--only-masked",
        action="store_true",
        help="inpaint a crop around the mask at full resolution",
    )
    gen.add_argument(
        "--padding",
        type=int,
        help="context around the mask for --only-masked, in pixels (default: "
        f"{plain.inpaint_padding}; with --from, the image's)",
    )
    gen.add_argument(
        "--upscale",
        choices=["x4", "hires"],
        help="after generating: the ×4 diffusion upscaler, or hires fix (×2 then image→image)",
    )
    gen.add_argument(
        "--upscale-strength",
        type=float,
        help="hires fix: how much the enlarged image may change (default: "
        f"{plain.upscale_strength}; with --from, the image's)",
    )
    gen.add_argument(
        "--hires-steps",
        type=int,
        metavar="N",
        help="hires fix: the steps of its pass, of which it runs N × strength, as A1111's "
        "Hires steps (default: 0, as many as --steps; with --from, the image's)",
    )
    gen.add_argument(
        "--upscale-model",
        metavar="SPEC",
        help=f"the ×4 upscaler (default: {DEFAULT_UPSCALE_MODEL}; with --from, the image's)",
    )
    _output_options(gen)
    _backend_option(gen)
    gen.add_argument(
        "--from",
        dest="from_image",
        type=Path,
        metavar="IMAGE.png",
        help="make an image again from the parameters saved in it (the studio's, or "
        "AUTOMATIC1111's, ComfyUI's… as far as they go), with what the options change: the "
        "prompt, --negative, --model, --seed, --steps, --cfg, --sampler, --width, --height, "
        "--lora…; its input images (--init-image, --mask, --edit, --control) are given "
        "again. With --at-step, continue a studio image from that step: the prompt, "
        "--negative, --cfg, --cfg-rescale, --threshold, --classifier-guidance, --lora, "
        "--control-scale, --upscale, --sampler and --noise-seed change the steps after it",
    )
    gen.add_argument(
        "--at-step",
        type=int,
        metavar="K",
        help="with --from: the steps shared with that image; the rest run with the changes",
    )
    gen.add_argument(
        "--vary",
        type=float,
        default=0.0,
        metavar="AMOUNT",
        help="with --from: replace this share (0 to 1) of the noise left at --at-step with "
        "fresh noise from --noise-seed (default 0), for a variation of the same picture",
    )
    gen.add_argument(
        "--noise-seed",
        type=int,
        metavar="N",
        help="with --from: a new seed for the noise the remaining steps draw (Euler a, the "
        "SDE samplers)",
    )
    gen.add_argument(
        "--save-steps",
        type=Path,
        metavar="DIR",
        help="also write each step's preview, as the window shows it, to DIR (step-001.png, …)",
    )

    up = commands.add_parser(
        "upscale",
        help="enlarge an image ×4 with a diffusion upscaler",
        formatter_class=_Help,
    )
    up.add_argument("image", type=Path, help="the image to enlarge (8 to 1024 pixels a side)")
    up.add_argument(
        "--model", metavar="SPEC", default=DEFAULT_UPSCALE_MODEL, help="the upscaler model"
    )
    up.add_argument(
        "--prompt",
        help="what the image shows, which guides the upscaler (default: the prompt the image "
        "carries, without its LoRA tags; none if it carries none)",
    )
    up.add_argument("--seed", type=int, default=-1, help="-1 picks one at random")
    up.add_argument(
        "--noise-level",
        type=int,
        default=plain.upscale_noise_level,
        help=f"noise added to the input, {limits('upscale_noise_level')}",
    )
    _output_options(up)
    _backend_option(up)

    info = commands.add_parser("info", help="print the parameters found in an image as JSON")
    info.add_argument("image", type=Path)

    commands.add_parser("models", help="list the models the studio knows and where they are")

    from studio.bench.ladder import ROWS
    from studio.bench.runner import PARTS

    bench = commands.add_parser("bench", help="measure the studio against bare diffusers")
    bench.add_argument("--quick", action="store_true", help="fewer repetitions (minutes)")
    bench.add_argument("--json", action="store_true", help="print one JSON object")
    bench.add_argument(
        "--model",
        metavar="SPEC",
        help="the model (default studio-tiny); with --gpu the architecture: sd15 (default), "
        "sdxl or flux",
    )
    bench.add_argument(
        "--gpu",
        action="store_true",
        help="the GPU benchmark on a published architecture with random weights",
    )
    bench.add_argument(
        "--size", type=int, help="--gpu: image size (default: the architecture's native size)"
    )
    bench.add_argument(
        "--steps", type=int, help="--gpu: denoising steps (default: 20, SDXL 30, Flux 28)"
    )
    bench.add_argument("--repeats", type=int, default=5, help="--gpu: timed runs of each")
    bench.add_argument(
        "--rows",
        type=_bench_rows,
        metavar="ROW,…",
        help=f"--gpu: measure only these rows ({', '.join(ROWS)}); each keeps the "
        "speed-ups of the rows above it",
    )
    bench.add_argument(
        "--parts",
        type=_bench_parts,
        metavar="PART,…",
        help=f"measure only these parts ({', '.join(PARTS)}; default: all)",
    )
    bench.add_argument(
        "--families",
        type=_bench_families,
        metavar="FAMILY,…",
        help="the families part: measure only these model families (default: all)",
    )
    bench.add_argument(
        "--no-compile", action="store_true", help="skip the speed-up rows that compile the UNet"
    )
    bench.add_argument(
        "--ray",
        action="store_true",
        help="the queue on a Ray cluster of this machine: 16 jobs on 1 engine against 2 "
        "(1 CPU each), and the added latency of a step's preview",
    )
    bench.add_argument(
        "--out", type=Path, metavar="FILE", help="also write the JSON here, after every row"
    )
    return parser


def _output_options(command: argparse.ArgumentParser) -> None:
    command.add_argument(
        "--out",
        type=Path,
        metavar="PATH|DIR",
        help="a .png, .jpg or .webp file (a batch adds -1, -2…) or a folder (default: the "
        "studio's output folder); every format carries the parameters as A1111 writes them",
    )
    command.add_argument("--quality", type=int, help="JPEG and WebP quality, 1-100 (default: 95)")


class _ControlGroup(argparse.Action):
    """--control IMAGE starts a ControlNet; the --control-* options after it are its own."""

    KEYS = {
        "--control-model": "model",
        "--control-scale": "scale",
        "--control-range": "range",
        "--control-preprocessor": "preprocessor",
        "--control-type": "control_type",
    }

    def __call__(
        self,
        parser: argparse.ArgumentParser,
        namespace: argparse.Namespace,
        values: Any,
        option_string: str | None = None,
    ) -> None:
        groups = list(getattr(namespace, "controls", None) or [])
        if option_string == "--control":
            groups.append({"image": values})
        elif not groups:
            parser.error(f"{option_string} goes after the --control IMAGE it applies to")
        elif self.KEYS[str(option_string)] in groups[-1]:
            parser.error(f"{option_string} is given twice for one --control")
        else:
            groups[-1] = {**groups[-1], self.KEYS[str(option_string)]: values}
        namespace.controls = groups


def _control_options(gen: argparse.ArgumentParser) -> None:
    from studio.core.request import CONTROL_SCALE, CONTROL_TYPES, PREPROCESSORS

    gen.add_argument(
        "--control",
        dest="controls",
        action=_ControlGroup,
        default=[],
        type=Path,
        metavar="IMAGE",
        help="a ControlNet's control image (edges, line art, a scribble, or a picture for "
        "--control-preprocessor); repeatable: the --control-* options after each one are its "
        "own (default: none). With no --control-model, an embedded model's own ControlNet "
        "is used (studio-tiny-controlnet, trained on scribbled outlines)",
    )
    gen.add_argument(
        "--control-model",
        dest="controls",
        action=_ControlGroup,
        default=argparse.SUPPRESS,
        metavar="SPEC",
        help="the ControlNet: a diffusers folder, a hub id in the local cache, a .safetensors "
        "file or a name in the models folder's ControlNet folder",
    )
    gen.add_argument(
        "--control-scale",
        dest="controls",
        action=_ControlGroup,
        default=argparse.SUPPRESS,
        type=float,
        metavar="F",
        help=f"how strongly it steers, {CONTROL_SCALE.low:g} to {CONTROL_SCALE.high:g} "
        "(default: 1)",
    )
    gen.add_argument(
        "--control-range",
        dest="controls",
        action=_ControlGroup,
        default=argparse.SUPPRESS,
        type=_control_range,
        metavar="START:END",
        help="the fraction of the steps it acts on (default: 0:1, all of them)",
    )
    gen.add_argument(
        "--control-preprocessor",
        dest="controls",
        action=_ControlGroup,
        default=argparse.SUPPRESS,
        choices=PREPROCESSORS,
        help="turn the image into the control first: Canny's edges, or line art "
        "(default: none, the image is the control)",
    )
    gen.add_argument(
        "--control-type",
        dest="controls",
        action=_ControlGroup,
        default=argparse.SUPPRESS,
        choices=CONTROL_TYPES,
        metavar="TYPE",
        help="what the image is, for a union ControlNet (one network for several types: "
        f"{', '.join(CONTROL_TYPES)}; default: the preprocessor's, a scribble for none)",
    )


def _control_range(text: str) -> tuple[float, float]:
    start, colon, end = text.partition(":")
    try:
        if not colon:
            raise ValueError
        return float(start), float(end)
    except ValueError:
        raise argparse.ArgumentTypeError(
            f"'{printable(text)}' is not START:END (fractions of the steps, e.g. 0:0.6)"
        ) from None


def _defaulted_options(args: argparse.Namespace) -> dict[str, Any]:
    """The request fields of the options given that have a default (`--strength`, …): with
    --from, an option left out keeps the image's value, so their defaults are the request's
    own, not argparse's, which could not be told from a value typed."""
    given = {
        "strength": args.strength,
        "mask_blur": args.mask_blur,
        "inpaint_padding": args.padding,
        "upscale_strength": args.upscale_strength,
        "upscale_steps": args.hires_steps,
        "upscale_model": _spec(args.upscale_model),
        "threshold_percentile": args.threshold_percentile,
        "clip_skip": args.clip_skip,
    }
    return {name: value for name, value in given.items() if value is not None}


def _spec(spec: str | None) -> str | None:
    """A model given as a path, as the absolute path: the saved parameters then name it from
    any folder (--from, the window); names, hub ids and what is not here are kept as given."""
    from studio.core.paths import EMBEDDED_MODELS_DIR

    if not spec or Path(spec).is_absolute() or not Path(spec).expanduser().exists():
        return spec
    if "/" not in spec and (EMBEDDED_MODELS_DIR / spec / "model_index.json").is_file():
        return spec  # the embedded model's name wins over a folder of that name here
    return str(Path(spec).expanduser().absolute())


def _controls(groups: list[dict[str, Any]], model: str) -> tuple[Any, ...]:
    """The ControlNets of the --control groups, each with its image opened."""
    from studio.core.imaging import open_image
    from studio.core.request import Control

    controls = []
    for group in groups:
        start, end = group.get("range", (0.0, 1.0))
        controls.append(
            Control(
                model=_spec(group.get("model")) or _default_controlnet(model),
                image=open_image(group["image"]).convert("RGB"),
                scale=group.get("scale", 1.0),
                start=start,
                end=end,
                preprocessor=group.get("preprocessor", "none"),
                control_type=group.get("control_type", ""),
            )
        )
    return tuple(controls)


def _default_controlnet(model: str) -> str:
    from studio.core.paths import EMBEDDED_MODELS_DIR
    from studio.core.request import EMBEDDED_CONTROLNETS

    name = EMBEDDED_CONTROLNETS.get(model)
    if name is None:
        raise UsageError(
            f"--control needs --control-model SPEC after it: '{printable(model)}' has no "
            "ControlNet of its own."
        )
    if not (EMBEDDED_MODELS_DIR / name / "config.json").is_file():
        raise UsageError(
            f"{model} has no ControlNet yet: name one with --control-model (a diffusers "
            "folder, a hub id in the local cache or a .safetensors file)."
        )
    return name


class _Sampler(str):
    """The sampler that runs, and the one asked for where the studio has none of that name
    (what `studio generate` says before it starts)."""

    asked: str = ""

    def note(self) -> str:
        if not self.asked:
            return ""
        return (
            f"The studio has no sampler called '{printable(self.asked)}': {self} runs in its "
            "place, its closest relative."
        )


def _scheduler(text: str) -> str:
    """A sampler's name in any capitalisation, or one another tool writes for it (ComfyUI's
    dpmpp_2m, euler_ancestral…); one the studio does not have runs as its closest relative,
    with a note."""
    from studio.core.schedulers import RUNNABLE_SCHEDULERS, closest_scheduler
    from studio.metadata.samplers import normalise_sampler

    spelled = normalise_sampler(text.strip())  # A1111's spelling of another tool's name
    runnable = {name.lower(): name for name in RUNNABLE_SCHEDULERS}
    if spelled.lower() in runnable:  # the picker's, and LCM and SGM Uniform's
        return _Sampler(runnable[spelled.lower()])
    name = closest_scheduler(spelled)
    if name is None:
        raise argparse.ArgumentTypeError(f"no sampler called '{printable(text)}'")
    sampler = _Sampler(name)
    sampler.asked = spelled
    return sampler


def _say_sampler_note(sampler: Any) -> Any:
    """The sampler option as the request takes it (a plain name), its note said first."""
    if isinstance(sampler, _Sampler):
        if sampler.note():
            print(f"studio: {sampler.note()}", file=sys.stderr)
        return str(sampler)
    return sampler


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    from studio.core.logs import setup_logging

    setup_logging(args.debug)
    if args.models_dir is not None:
        from studio.core import models_folder

        if not args.models_dir.is_dir():
            shown = printable(str(args.models_dir))
            print(f"studio: --models-dir: '{shown}' is not a folder.", file=sys.stderr)
            return 2
        models_folder.use(args.models_dir)
    if args.command is None:
        from studio.ui.app import main as open_studio

        return open_studio(["--debug"] if args.debug else [], end_process=True)
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
    from studio.core.catalog import model_defaults, model_family
    from studio.core.imaging import input_size, open_image
    from studio.core.request import DEFAULT_MODEL, GenerationRequest, Mode

    if args.at_step is not None:
        return _run_and_save(_branch_request(args), args)
    if args.from_image is not None:
        return _run_and_save(_rerun_request(args), args)
    if args.noise_seed is not None or args.vary:
        raise UsageError("--noise-seed and --vary go with --from and --at-step.")
    if args.prompt is None:
        raise UsageError(
            "the following arguments are required: prompt (what the image shows; or --from "
            "IMAGE.png to make a saved image again, with --at-step K to continue it)."
        )
    model = _spec(args.model) or DEFAULT_MODEL
    defaults = model_defaults(model)
    if args.edit and (args.init_image or args.mask):
        raise UsageError("--edit takes the place of --init-image and --mask: give one of them.")
    if args.reference and not args.edit:
        raise UsageError("--reference goes with --edit: the edit may refer to it.")
    init_image = open_image(args.init_image or args.edit) if args.init_image or args.edit else None
    references = tuple(open_image(path).convert("RGB") for path in args.reference)
    mask = open_image(args.mask).convert("L") if args.mask else None
    if mask is not None and init_image is None:
        raise UsageError("--mask needs --init-image: the mask says which part of it to repaint.")
    mode = (
        Mode.EDIT
        if args.edit
        else Mode.INPAINT
        if mask
        else Mode.IMAGE_TO_IMAGE
        if init_image
        else Mode.TEXT_TO_IMAGE
    )

    default_w, default_h = defaults.get("width", 512), defaults.get("height", 512)
    if init_image is not None:  # the window's rule: the input's shape at the model's area
        family = model_family(model)
        step = family.size_step if family else None
        default_w, default_h = input_size(init_image.size, defaults.get("width"), step)
    request = GenerationRequest(
        mode=mode,
        prompt=_with_loras(args.prompt, args.lora),
        negative_prompt=args.negative or "",
        model=model,
        width=default_w if args.width is None else args.width,
        height=default_h if args.height is None else args.height,
        steps=int(defaults.get("steps", 25)) if args.steps is None else args.steps,
        cfg_scale=args.cfg if args.cfg is not None else float(defaults.get("cfg_scale", 7.0)),
        cfg_rescale=args.cfg_rescale or 0.0,
        dynamic_thresholding=args.threshold is not None,
        threshold_max=args.threshold if args.threshold is not None else 2.5,
        **_classifier_guidance(args.classifier_guidance, model),
        scheduler=_say_sampler_note(args.scheduler) or defaults.get("scheduler", "Euler a"),
        seed=-1 if args.seed is None else args.seed,
        batch_size=args.batch,
        init_image=init_image,
        mask=mask,
        references=references,
        inpaint_only_masked=args.only_masked,
        upscaler=args.upscale,
        controls=_controls(args.controls, model),
        **_defaulted_options(args),  # the request's defaults where not given
    )
    _say_options_not_used(args, request)
    return _run_and_save(request, args)


def _say_options_not_used(args: argparse.Namespace, request: Any) -> None:
    """An option given that this job does not read is said, not silently dropped."""
    from studio.core.request import Mode, Upscaler

    unread = []
    if args.strength is not None and not request.mode.uses_strength:
        unread.append("--strength changes an input image (--init-image)")
    if request.mode is not Mode.INPAINT:
        unread += [
            f"{option} shapes a mask (--mask)"
            for option, value in (("--mask-blur", args.mask_blur), ("--padding", args.padding))
            if value is not None
        ]
    if request.upscaler is not Upscaler.HIRES:
        unread += [
            f"{option} is the hires fix's (--upscale hires)"
            for option, value in (
                ("--upscale-strength", args.upscale_strength),
                ("--hires-steps", args.hires_steps),
            )
            if value is not None
        ]
    for sentence in unread:
        print(f"studio: {sentence}: not used in this job.", file=sys.stderr)


def _branch_request(args: argparse.Namespace) -> Any:
    """--from IMAGE --at-step K: the saved image's request, continued after step K with
    what the options change; its input images come from the options again."""
    from studio.core.branches import branch_of
    from studio.core.imaging import open_image
    from studio.core.request import GenerationRequest
    from studio.metadata import read_parameters

    if args.from_image is None or args.at_step is None:
        raise UsageError("--from IMAGE.png and --at-step K go together.")
    shown = printable(str(args.from_image))
    recorded = read_parameters(args.from_image).request
    if not recorded:
        raise UsageError(
            f"{shown} holds no Latent Studio record: only the studio's own images can be "
            "continued from a step."
        )
    images: dict[str, Any] = {}
    if args.init_image:
        images["init_image"] = open_image(args.init_image)
    if args.mask:
        images["mask"] = open_image(args.mask).convert("L")
    if args.edit:
        images["init_image"] = open_image(args.edit)
    images["references"] = tuple(open_image(p).convert("RGB") for p in args.reference)
    parent = GenerationRequest.from_dict(recorded, **images)
    _inputs_given(parent, shown)
    _references_given(read_parameters(args.from_image), args, shown)
    if len(args.controls) < len(parent.controls):
        raise UsageError(
            f"{shown} was made with {len(parent.controls)} ControlNet(s): give each control "
            "image again with --control, in the same order."
        )
    pairs = list(zip(parent.controls, args.controls, strict=False))
    parent = parent.replace(
        controls=tuple(c.__class__(**c.to_dict(), image=_control_image(g)) for c, g in pairs)
    )
    steered = tuple(c.__class__(**{**c.to_dict(), **_steering(g)}, image=None) for c, g in pairs)
    wanted = parent.replace(
        controls=steered,
        prompt=_with_loras(args.prompt if args.prompt is not None else parent.prompt, args.lora),
        negative_prompt=parent.negative_prompt if args.negative is None else args.negative,
        cfg_scale=parent.cfg_scale if args.cfg is None else args.cfg,
        cfg_rescale=parent.cfg_rescale if args.cfg_rescale is None else args.cfg_rescale,
        upscaler=args.upscale or parent.upscaler,
        scheduler=_say_sampler_note(args.scheduler) or parent.scheduler,  # one of its kind
    )
    if args.threshold is not None:
        wanted = wanted.replace(dynamic_thresholding=True, threshold_max=args.threshold)
    if args.threshold_percentile is not None:
        wanted = wanted.replace(threshold_percentile=args.threshold_percentile)
    if args.clip_skip is not None:
        wanted = wanted.replace(clip_skip=args.clip_skip)
    if args.classifier_guidance:
        wanted = wanted.replace(**_classifier_guidance(args.classifier_guidance, parent.model))
    noise_seed = args.noise_seed
    if args.vary and noise_seed is None:
        noise_seed = 0
    plan = branch_of(parent, wanted, args.at_step, noise_seed, args.from_image.name, vary=args.vary)
    if plan.note():
        print(plan.note(), file=sys.stderr)
    return plan.request


def _rerun_request(args: argparse.Namespace) -> Any:
    """--from IMAGE alone: the request saved in the image (the studio's whole record, or what
    another tool's parameters restore), with what the options change; its input images come
    from the options again."""
    from studio.core.imaging import open_image
    from studio.core.request import PARAMETER_NAMES, GenerationRequest, Mode
    from studio.core.restore import plan_restore
    from studio.metadata import read_parameters

    if args.noise_seed is not None or args.vary:
        raise UsageError("--noise-seed and --vary go with --from and --at-step.")
    shown = printable(str(args.from_image))
    params = read_parameters(args.from_image)
    plan = plan_restore(params)
    for note in plan.notes:
        print(f"studio: {note}", file=sys.stderr)
    saved = {k: v for k, v in plan.values.items() if k in PARAMETER_NAMES and v is not None}
    saved["batch_size"] = 1
    images: dict[str, Any] = {"references": ()}
    if args.init_image or args.edit:
        images["init_image"] = open_image(args.init_image or args.edit)
    if args.mask:
        images["mask"] = open_image(args.mask).convert("L")
    images["references"] = tuple(open_image(p).convert("RGB") for p in args.reference)
    if not plan.complete:  # another tool's file: the mode is the inputs given
        saved["mode"] = (
            Mode.EDIT
            if args.edit
            else Mode.INPAINT
            if args.mask or plan.from_mask  # a painted mask: it is asked for with the picture
            else Mode.IMAGE_TO_IMAGE
            if args.init_image or plan.from_image  # made from a picture: it is asked for
            else Mode.TEXT_TO_IMAGE
        ).value
    recorded = GenerationRequest.from_dict(saved, **images)
    _inputs_given(recorded, shown)
    _references_given(params, args, shown)
    controls = recorded.controls
    if args.controls:
        controls = _controls(args.controls, args.model or recorded.model)
    elif controls:
        raise UsageError(
            f"{shown} was made with {len(controls)} ControlNet(s): give each control image "
            "again with --control (and its --control-model)."
        )
    changes: dict[str, Any] = {
        "controls": controls,
        "prompt": _with_loras(
            args.prompt if args.prompt is not None else recorded.prompt, args.lora
        ),
    }
    for field_name, value in (
        ("negative_prompt", args.negative),
        ("model", _spec(args.model)),
        ("seed", args.seed),
        ("steps", args.steps),
        ("cfg_scale", args.cfg),
        ("cfg_rescale", args.cfg_rescale),
        ("scheduler", _say_sampler_note(args.scheduler)),
        ("width", args.width),
        ("height", args.height),
        ("upscaler", args.upscale),
    ):
        if value is not None:
            changes[field_name] = value
    changes.update(_defaulted_options(args))
    if args.only_masked:
        changes["inpaint_only_masked"] = True
    if args.batch != 1:
        changes["batch_size"] = args.batch
    if args.threshold is not None:
        changes.update(dynamic_thresholding=True, threshold_max=args.threshold)
    if args.classifier_guidance:
        model = changes.get("model", recorded.model)
        changes.update(_classifier_guidance(args.classifier_guidance, model))
    if args.model is None:
        _model_here(recorded.model, shown)
    return recorded.replace(**changes)


def _model_here(model: str, shown: str) -> None:
    """The model an image was made with, when --model names none: if it is not here, one
    sentence that says which options run the image with another (before loading anything)."""
    from studio.core.catalog import ModelError, resolve

    try:
        resolve(model)
    except ModelError:
        raise UsageError(
            f"{shown} was made with '{printable(model)}', which is not here: name another with "
            "--model (studio-tiny is built in), or give your models folder with --models-dir."
        ) from None


def _references_given(params: Any, args: argparse.Namespace, shown: str) -> None:
    """An edit made with reference images is made again with as many (the file records how
    many, not the pictures): without them it would be another edit."""
    try:
        wanted = int(params.extras.get("Reference images", "0"))
    except ValueError:
        return
    if len(args.reference) < wanted:
        raise UsageError(
            f"{shown} was edited with {wanted} reference image(s): give them again with "
            f"--reference, in the same order (not {len(args.reference)})."
        )


def _steering(group: dict[str, Any]) -> dict[str, Any]:
    """A --control group's scale and range, where given."""
    found: dict[str, Any] = {}
    if "scale" in group:
        found["scale"] = group["scale"]
    if "range" in group:
        found["start"], found["end"] = group["range"]
    return found


def _control_image(group: dict[str, Any]) -> Any:
    from studio.core.imaging import open_image

    return open_image(group["image"]).convert("RGB")


def _classifier_guidance(option: str | None, model: str) -> dict[str, object]:
    """--classifier-guidance CLASS[:SCALE] as the request's two fields, checked against
    the model's classifier (one sentence when it has none or the class is not its)."""
    if not option:
        return {}
    from studio.core import classifiers

    target, _, scale = option.partition(":")
    try:
        value = float(scale) if scale.strip() else classifiers.DEFAULT_SCALE
    except ValueError:
        raise UsageError(
            f"--classifier-guidance takes CLASS[:SCALE], e.g. 'red star:2' (got {option!r})."
        ) from None
    classifiers.require(model, target)
    return {"classifier_class": " ".join(target.split()), "classifier_scale": value}


def _with_loras(prompt: str, options: list[str]) -> str:
    """--lora NAME[:WEIGHT] as the prompt tag A1111 writes, so the metadata keeps it."""
    from studio.core.prompt_tags import (
        LoraTag,
        split_lora_tags,
        usable_weight,
        weight_range_words,
        with_lora_tags,
    )

    if not options:
        return prompt
    tags = split_lora_tags(prompt)[1]
    for option in options:
        name, colon, weight = option.rpartition(":")
        if not colon:
            tags.append(LoraTag(option))
            continue
        try:
            value = float(weight)
        except ValueError:
            value = math.nan
        if not name.strip() or not math.isfinite(value):
            raise UsageError(
                f"--lora takes NAME[:WEIGHT], the weight a number such as 0.8: not "
                f"'{printable(option)}'."
            )
        if not usable_weight(value):
            raise UsageError(f"--lora: {weight_range_words()}, not {value:g}.")
        tags.append(LoraTag(name, value))
    return with_lora_tags(prompt, tags)


def _loras_here(options: list[str]) -> None:
    """--lora names a file that is not here: said with the option to leave out (the
    engine's sentence would ask to remove a tag from a prompt that has none). Only for this
    machine's engine: a cluster's nodes look in their own folders."""
    from studio.core import loras

    names = [option.rpartition(":")[0] or option for option in options]
    missing = [name for name in names if loras.find(name) is None]
    if missing:
        leave_out = " ".join(f"--lora {printable(name)}" for name in missing)
        raise UsageError(loras.not_found(missing, f"add the file there or leave out {leave_out}"))


def _upscale(args: argparse.Namespace) -> int:
    from studio.core.imaging import open_image
    from studio.core.request import GenerationRequest, Mode

    request = GenerationRequest(
        mode=Mode.UPSCALE,
        prompt=args.prompt if args.prompt is not None else _carried_prompt(args.image),
        init_image=open_image(args.image).convert("RGB"),
        upscale_model=_spec(args.model),
        upscale_noise_level=args.noise_level,
        seed=args.seed,
    )
    return _run_and_save(request, args)


def _carried_prompt(image: Path) -> str:
    """What the picture carries to guide its upscale (core.restore.carried_prompt)."""
    from studio.core.restore import carried_prompt
    from studio.metadata import MetadataError, read_parameters

    try:
        return carried_prompt(read_parameters(image))
    except MetadataError:
        return ""


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
    rows += _models_folder_rows()
    rows = [tuple(printable(str(field)) for field in row) for row in rows]
    width = max((len(name) for name, _, _ in rows), default=0)
    kind_width = max((len(kind) for _, kind, _ in rows), default=0)
    for name, kind, location in rows:
        print(f"{name:<{width}}  {kind:<{kind_width}}  {location}")
    return EXIT_OK


def _models_folder_rows() -> list[tuple[str, str, str]]:
    """What --model, --lora and --control-model take by name: the models folder's checkpoints
    (with their family, from the files' headers), its ControlNets, and every LoRA found."""
    from studio.core import loras, models_folder
    from studio.core.catalog import model_family

    rows: list[tuple[str, str, str]] = []
    found = models_folder.current()
    if found is not None:
        for path in found.checkpoints:
            family = model_family(str(path))
            label = f"checkpoint, {family.label}" if family else "checkpoint"
            rows.append((path.stem if path.is_file() else path.name, label, str(path)))
        rows += [
            (p.stem if p.is_file() else p.name, "ControlNet", str(p)) for p in found.controlnets
        ]
    for path in loras.available():
        family = loras.family(path)
        rows.append((path.stem, f"LoRA, {family}" if family else "LoRA", str(path)))
    return rows


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
    from studio.bench.gpu_bench import ARCHITECTURES

    if args.gpu and args.model not in (None, *ARCHITECTURES):
        raise UsageError(f"--gpu measures one of {', '.join(ARCHITECTURES)}, not '{args.model}'.")

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

    if args.ray:
        from studio.bench.ray_bench import run_ray_bench

        results = {"machine": machine(), "ray": run_ray_bench(args.quick)}
    elif args.gpu:
        from studio.bench.gpu_bench import run_gpu_bench

        results: dict = {"machine": machine()}

        def save_gpu(gpu: dict) -> None:
            save({**results, "gpu": gpu})
            keep_figures({"gpu": gpu})  # a run cut short keeps the rows it finished

        results["gpu"] = run_gpu_bench(
            args.device,
            args.size,
            args.steps,
            args.repeats,
            tuple(rows),
            save_gpu,
            model=args.model or "sd15",
        )
    else:
        from studio.bench.runner import PARTS

        parts = args.parts or PARTS
        results = run_bench(
            args.quick,
            args.model or "studio-tiny",
            compile_rows=not args.no_compile,
            parts=parts,
            families=args.families,
        )
    print(json.dumps(results, indent=2) if args.json else format_table(results))
    save(results)  # after printing: a file that cannot be written loses no figures
    kept = keep_figures(results)
    if kept is not None:
        print(f"Settings → Performance shows these speed-ups' figures ({kept}).", file=sys.stderr)
    elif not_kept:
        print(f"The speed-ups' figures were not kept: {not_kept[-1]}", file=sys.stderr)
    return EXIT_OK


def _bench_parts(text: str) -> tuple[str, ...]:
    from studio.bench.runner import PARTS

    parts = tuple(part.strip() for part in text.split(",") if part.strip())
    unknown = [part for part in parts if part not in PARTS]
    if unknown or not parts:
        raise argparse.ArgumentTypeError(
            f"no part called {', '.join(unknown) or 'that'}: choose from {', '.join(PARTS)}"
        )
    return parts


def _bench_families(text: str) -> tuple[str, ...]:
    from studio.bench.family_bench import parse_families

    try:
        return parse_families(text)
    except ValueError as error:
        raise argparse.ArgumentTypeError(str(error)) from None


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
    """Step progress on one rewritten stderr line (a line per step when not a terminal), and
    with --save-steps each step's preview written out as the window would show it."""

    def __init__(
        self, steps_dir: Path | None = None, sizes: dict[str, tuple[int, int]] | None = None
    ) -> None:
        """`sizes`: each stage's picture size (`stage_sizes`), which the window stretches its
        previews to; the previews are written at it."""
        self._tty = sys.stderr.isatty()
        self._steps_dir = steps_dir
        self._sizes = sizes or {}

    def status(self, message: str, fraction: float | None) -> None:
        if not message:  # the window's status line cleared: nothing to say here
            return
        suffix = f" {fraction:.0%}" if fraction is not None and fraction < 1 else ""
        self._write(f"{message}{suffix}", final=fraction is None or fraction >= 1)

    def step(self, progress: Any) -> None:
        if self._steps_dir is not None and progress.preview is not None:
            from PIL import Image

            prefix = "" if progress.stage == "generate" else f"{progress.stage}-"
            target = self._steps_dir / f"{prefix}step-{progress.step:03d}.png"
            from studio.core.saving import write_atomically

            picture = Image.fromarray(progress.preview)
            size = self._sizes.get(progress.stage)
            if size is not None and picture.size != size:
                picture = picture.resize(size, Image.Resampling.BILINEAR)
            try:  # whole or not at all, as every image the studio writes
                write_atomically(target, lambda handle: picture.save(handle, format="PNG"))
            except OSError as e:
                reason = os_reason(e)
                raise SaveError(
                    f"A step's preview could not be saved in '{printable(str(target.parent))}' "
                    f"({reason})."
                ) from None
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


def _backend_option(command: argparse.ArgumentParser) -> None:
    command.add_argument(
        "--backend",
        type=_backend,
        default="local",
        metavar="WHERE",
        help="where it runs: local (this process), ray://HOST:10001 or HOST:6379 (a Ray "
        "cluster's head), auto (the cluster this machine joined), or ray (a Ray cluster of "
        "this machine, started for this command); needs pip install 'latent-studio[ray]'",
    )


def _backend(text: str) -> str:
    value = text.strip()
    if value.lower() in ("local", "ray", "auto") or value.startswith("ray://"):
        return value.lower() if "://" not in value else value
    host, _, port = value.rpartition(":")
    if host and port.isdigit():
        return value
    raise argparse.ArgumentTypeError(
        f"'{printable(text)}' is not a place to run: local, ray, auto, ray://HOST:10001 or "
        "HOST:6379"
    )


def _run_and_save(request: Any, args: argparse.Namespace) -> int:
    from studio.core.paths import output_dir
    from studio.core.request import Mode, stage_sizes
    from studio.core.saving import save_result
    from studio.core.settings import EngineSettings

    request.validate()  # before loading torch, so bad input answers at once
    folder, stem, save_as = _destination(args.out, args.quality)
    chosen = folder or output_dir()
    # before any work: a result that cannot be saved is minutes lost
    _writable_folder(chosen, "--out" if folder is not None else "The output folder")
    if stem is not None:
        images = 1 if request.mode is Mode.UPSCALE else request.batch_size
        _never_replaced(chosen, stem, save_as, images)
    steps_dir = getattr(args, "save_steps", None)
    if steps_dir is not None:
        _writable_folder(steps_dir, "--save-steps")
        _holds_no_steps(steps_dir)
    # previews cost a little per step: made only when they are written out
    preview = "linear" if steps_dir is not None else "none"
    settings = EngineSettings(device=args.device, dtype=args.dtype, preview_method=preview)
    # an upscale job's previews are its input's, cut to the result's share: written as made
    sizes = stage_sizes(request) if request.mode is not Mode.UPSCALE else None
    reporter = _StderrProgress(steps_dir, sizes)
    backend = getattr(args, "backend", "local")
    if backend == "local":
        from studio.engine.generate import Engine

        _loras_here(getattr(args, "lora", []))
        result = Engine(settings).run(request, reporter)
    else:  # the engines of a Ray cluster; the images come back and are saved here
        from studio.remote.pool import run_on_cluster

        _answers(backend)
        result = run_on_cluster(backend, request, reporter, settings)
    if result.cancelled:
        return EXIT_INTERRUPTED
    try:  # never over an existing file: one that appeared meanwhile gets a -1 name
        save_result(result, chosen, stem, save_as=save_as, saved=lambda path: print(path))
    except OSError as e:
        reason = os_reason(e)
        raise SaveError(
            f"The image could not be saved in '{printable(str(chosen))}' ({reason})."
        ) from None
    return EXIT_OK


class SaveError(UserError):
    """A finished image that could not be written (a full disk): exit status 1."""


def _inputs_given(request: Any, shown: str) -> None:
    """The input picture and mask of a recorded job (a GenerationRequest), which its file
    does not hold, given again on the command line."""
    from studio.core.request import Mode

    if request.mode is Mode.INPAINT and request.init_image is None and request.mask is None:
        raise UsageError(
            f"{shown} was inpainted: give its picture again with --init-image and its mask "
            "with --mask."
        )
    if request.mode.needs_image and request.init_image is None:
        option = "--edit" if request.mode is Mode.EDIT else "--init-image"
        raise UsageError(f"{shown} was made from an input image: give it again with {option}.")
    if request.mode is Mode.INPAINT and request.mask is None:
        raise UsageError(f"{shown} was inpainted: give its mask again with --mask.")


def _answers(backend: str) -> None:
    """A cluster's address that nothing answers at is a usage error, before any work."""
    from studio.remote.pool import ClusterError, check_answers

    try:
        check_answers(backend)
    except ClusterError as e:
        raise UsageError(str(e)) from None


def _holds_no_steps(folder: Path) -> None:
    """--save-steps writes step-001.png, …: into a folder holding another run's, it would
    replace them one by one (and leave the rest, a mix of two runs). Said before any work."""
    earlier = sorted(folder.glob("*step-[0-9][0-9][0-9].png"))
    if earlier:
        raise UsageError(
            f"--save-steps: '{printable(str(folder))}' already holds another run's steps "
            f"({printable(earlier[0].name)}, …): name an empty folder, so that none is replaced."
        )


def _writable_folder(folder: Path, option: str) -> None:
    """A folder the images cannot be saved in is one sentence, before any work."""
    from studio.core.saving import folder_problem

    if problem := folder_problem(folder):
        raise UsageError(f"{option}: {problem}.")


def _never_replaced(folder: Path, stem: str, save_as: SaveFormat, images: int) -> None:
    """--out FILE names a file that does not exist yet (or, for a batch, FILE-1, FILE-2…
    do not): the studio never replaces an image."""
    names = [stem] if images == 1 else [f"{stem}-{n}" for n in range(1, images + 1)]
    try:
        taken = [n + save_as.suffix for n in names if (folder / (n + save_as.suffix)).exists()]
    except OSError as e:  # a name longer than the file system takes
        raise UsageError(
            f"--out: '{printable(stem + save_as.suffix)}' cannot be a file's name here "
            f"({os_reason(e)})."
        ) from None
    if taken:
        raise UsageError(
            f"'{printable(taken[0])}' exists already and is never replaced: give --out another "
            "name, or a folder."
        )


def _destination(
    out: Path | None, quality: int | None
) -> tuple[Path | None, str | None, SaveFormat]:
    """--out as (folder, file stem, format): a .png, .jpg or .webp path names the file,
    anything without a suffix, or an existing folder, a folder (its images are PNG)."""
    from studio.core.files import is_folder
    from studio.core.formats import PNG, SaveFormat

    if quality is not None and not 1 <= quality <= 100:
        raise UsageError(f"--quality must be between 1 and 100, not {quality}.")
    if out is None or not out.suffix or is_folder(out):  # a folder, even one named "v1.5"
        save_as = PNG
        folder, stem = out, None
    else:
        found = SaveFormat.for_suffix(out.suffix, 95 if quality is None else quality)
        if found is None:
            raise UsageError(
                f"--out must be a folder or a .png, .jpg or .webp file, not "
                f"'{printable(out.name)}'."
            )
        save_as, folder, stem = found, out.parent if str(out.parent) else Path("."), out.stem
    if quality is not None and save_as.kind == "png":
        print("studio: --quality is for .jpg and .webp files: not used for a PNG.", file=sys.stderr)
    return folder, stem, save_as


if __name__ == "__main__":
    sys.exit(main())
