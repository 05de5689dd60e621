"""Writing finished images: metadata inside, atomically, with names that sort by time and
are never taken twice, whoever else writes into the folder."""

from __future__ import annotations

import logging
import os
import re
import tempfile
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import BinaryIO

from PIL import Image

from studio import metadata
from studio.core import file_hashes, loras
from studio.core.formats import PNG, SaveFormat
from studio.core.jobs import GenerationResult, Job, Stage
from studio.core.request import HIRES_FACTOR, Control, GenerationRequest, Mode
from studio.core.schedulers import a1111_sampler
from studio.core.text import os_reason, printable

log = logging.getLogger(__name__)


def parameters_of(
    request: GenerationRequest,
    seed: int,
    image: Image.Image,
    stages: Sequence[Stage] = (),
) -> metadata.ImageParameters:
    """The normalised parameters of one image of a job: its own seed, its real size, and
    what each stage really ran (A1111's names where A1111 has them: "Hires steps",
    "Denoising strength" for the hires pass of a text→image job)."""
    extras: dict[str, str] = {}
    if request.cfg_rescale:
        extras["CFG rescale"] = f"{request.cfg_rescale:g}"
    if request.clip_skip > 1:  # as A1111 writes it (not at 1)
        extras["Clip skip"] = str(request.clip_skip)
    if request.dynamic_thresholding:
        extras["Dynamic thresholding"] = (
            f"{request.threshold_percentile:g}% / {request.threshold_max:g}"
        )
    if request.classifier_scale and request.classifier_class.strip():
        target = " ".join(request.classifier_class.split())
        extras["Classifier guidance"] = f"{target}, {request.classifier_scale:g}"
    if request.mode is not Mode.TEXT_TO_IMAGE:
        extras["Mode"] = request.mode.value
    if request.mode is Mode.INPAINT:  # as A1111's img2img writes an inpaint
        extras["Mask blur"] = str(request.mask_blur)
        if request.inpaint_only_masked:
            extras["Inpaint area"] = "Only masked"
            extras["Masked area padding"] = str(request.inpaint_padding)
    if request.references:
        extras["Reference images"] = str(len(request.references))
    main = stages[0] if stages else None
    ran = main.union_types if main is not None else None
    for number, control in enumerate(request.controls):  # as A1111's ControlNet extension
        # the type a union ControlNet ran it as, where the run says; else the request's
        union = ran[number] if ran is not None and number < len(ran) else control.control_type
        extras[f"ControlNet {number}"] = control_field(control, union)
    if request.branch is not None:  # the rest of the branch is in the studio's record
        extras["Branch from step"] = str(request.branch.at_step)
        if request.branch.parent_image:
            extras["Branch of"] = printable(request.branch.parent_image)
    lora_hashes = loras.hashes_field(request.prompt)
    if lora_hashes:
        extras["Lora hashes"] = lora_hashes  # as A1111 writes them, for restoring by hash
    # what ran: an inpainting ControlNet's pipeline repaints from noise, with no strength
    strength = request.strength if request.mode.uses_strength else None
    if strength is not None and main is not None and main.name == "generate":
        strength = main.strength
    steps, sampler, cfg, model = request.steps, request.scheduler, request.cfg_scale, request.model
    width, height = request.width, request.height
    if request.mode is Mode.UPSCALE:  # the job is the upscaler's: its own figures
        if request.init_image is not None:
            extras["Input size"] = "{}x{}".format(*request.init_image.size)
        if main is not None:
            steps, sampler, cfg, model = main.steps, main.scheduler, main.cfg_scale, main.model
            width, height = main.width, main.height
            extras["Noise level"] = str(main.noise_level)
    for stage in stages[1:] if request.mode is not Mode.UPSCALE else ():
        if stage.name == "hires":
            extras["Hires upscale"] = str(HIRES_FACTOR)
            extras["Hires upscaler"] = "Lanczos"
            # A1111's "Hires steps" is the schedule, of which it runs int(steps × strength):
            # the steps that ran would run fewer again there
            extras["Hires steps"] = str(stage.scheduled or stage.steps)
            if strength is None:  # A1111's "Denoising strength" of a text→image job
                strength = stage.strength
            else:
                extras["Hires strength"] = f"{stage.strength:g}"
        elif stage.name == "upscale":
            extras["Upscaler"] = stage.model
            extras["Upscale steps"] = str(stage.steps)
            extras["Upscale sampler"] = stage.scheduler
            extras["Upscale CFG scale"] = f"{stage.cfg_scale:g}"
            extras["Noise level"] = str(stage.noise_level)
    if not stages and request.upscaler is not None:
        extras["Upscaler"] = request.upscaler.value
    if image.size != (width, height):
        extras["Output size"] = f"{image.width}x{image.height}"
    hashed = _model_hash(model)
    if hashed:  # as A1111 writes a checkpoint's: Civitai finds the model by it
        extras["Model hash"] = hashed
    sampler, schedule = a1111_sampler(sampler)  # "Euler SGM Uniform": Euler, SGM Uniform
    if schedule:
        extras["Schedule type"] = schedule
    if request.mode is not Mode.UPSCALE and _distilled(model):
        # Flux.1 dev/Kontext take the scale as an input and run no CFG: as Forge writes it,
        # so that a tool reading "CFG scale" does not run CFG at that scale
        extras["Distilled CFG Scale"] = f"{cfg:g}"
        cfg = 1.0
    return metadata.ImageParameters(
        source="studio",
        prompt=request.prompt,
        negative_prompt=request.negative_prompt,
        seed=seed,
        steps=steps,
        cfg_scale=cfg,
        sampler=sampler,
        width=width,
        height=height,
        model=model,
        strength=strength,
        extras=extras,
    )


def _model_hash(model: str) -> str:
    """A single-file model's "Model hash" (hashed once per file, then kept); "" for a
    folder, a hub id, or a file that cannot be read here."""
    from studio.core.catalog import ModelError, resolve

    try:
        source = resolve(model)
    except ModelError:  # not on this machine (a cluster's job, say): nothing to hash
        return ""
    if source.kind != "checkpoint":
        return ""
    try:
        return file_hashes.model_hash(Path(source.location))
    except OSError:
        log.warning("no model hash for %s", model, exc_info=True)
        return ""


def _distilled(model: str) -> bool:
    """Whether the model, by its files, takes its guidance scale as an input (no CFG)."""
    from studio.core.catalog import model_family

    family = model_family(model)
    return family is not None and family.guidance.kind == "distilled"


def control_field(control: Control, union_type: str = "") -> str:
    """One ControlNet as A1111's ControlNet extension writes it (the writer quotes it)."""
    from studio.core.preprocessors import MODULE_NAMES, UNION_TYPE_NAMES, UNION_TYPES_READ

    name = Path(control.model.replace("\\", "/")).name  # a hub id's or a path's last part
    if Path(name).suffix.lower() in (".safetensors", ".pth", ".ckpt", ".bin", ".pt"):
        name = Path(name).stem
    field = (
        f"Module: {MODULE_NAMES.get(control.preprocessor, control.preprocessor)}, "
        f"Model: {name}, Weight: {control.scale:g}, "
        f"Guidance Start: {control.start:g}, Guidance End: {control.end:g}"
    )
    if union_type:  # the type a union ControlNet ran: as the extension names it
        union = UNION_TYPE_NAMES.get(union_type, "Unknown")
        field += f", Union Control Type: {union}"
        if UNION_TYPES_READ.get(union.lower()) != union_type:
            field += f", Studio Control Type: {union_type}"  # the exact one
    return field


def save_image(
    image: Image.Image,
    request: GenerationRequest,
    seed: int,
    folder: Path,
    stem: str | None = None,
    overwrite: bool = False,
    stages: Sequence[Stage] = (),
    save_as: SaveFormat = PNG,
) -> Path:
    """Save an image with its parameters; the file appears whole or not at all.

    Without `overwrite`, the name is made unique atomically: an existing file (another
    studio saving into the same folder at the same moment included) is never replaced;
    the new one gets a -1, -2… suffix.
    """
    folder.mkdir(parents=True, exist_ok=True)
    stem = stem or default_stem(request, seed)
    # The request recorded is the one that regenerates exactly this image: its own seed, batch 1.
    recorded = request.replace(seed=seed, batch_size=1).to_dict()
    parameters = parameters_of(request, seed, image, stages)
    target = folder / f"{stem}{save_as.suffix}"

    def write(handle: BinaryIO) -> None:
        if save_as.kind == "png":
            image.save(handle, format="PNG", pnginfo=metadata.png_info(parameters, recorded))
            return
        picture = image.convert("RGB") if save_as.kind == "jpeg" else image
        extra = metadata.exif_and_xmp(parameters, recorded)
        if len(extra.get("xmp", b"")) + len(extra["exif"]) > MAX_EMBEDDED:
            extra.pop("xmp")  # a JPEG segment holds 64 KB: the A1111 text is kept
        picture.save(handle, format=save_as.kind.upper(), quality=save_as.quality, **extra)

    return write_atomically(target, write, overwrite=overwrite)


MAX_EMBEDDED = 60_000  # bytes of EXIF and XMP a JPEG's segments can take


def save_result(
    result: GenerationResult,
    folder: Path,
    stem: str | None = None,
    overwrite: bool = False,
    save_as: SaveFormat = PNG,
    saved: Callable[[Path], object] | None = None,
) -> list[Path]:
    """Every image of a job on disk, each with the request that makes exactly it; the
    paths are also kept in `result.paths`. With a `stem`, a batch is stem-1, stem-2…
    `saved` is told each path as it is written (a failure later leaves those saved)."""
    seeds = result.seeds
    paths = []
    for index, image in enumerate(result.images):
        # An upscaled batch keeps one image per seed; guard against an engine returning more.
        seed = seeds[index] if index < len(seeds) else seeds[-1]
        name = stem if stem is None or len(result.images) == 1 else f"{stem}-{index + 1}"
        paths.append(
            save_image(image, result.request, seed, folder, name, overwrite, result.stages, save_as)
        )
        if saved is not None:
            saved(paths[-1])
    result.paths = paths
    return paths


def write_atomically(
    target: Path, write: Callable[[BinaryIO], object], overwrite: bool = True
) -> Path:
    """Write a file that appears whole or not at all, through a temporary file beside it.

    With `overwrite` the finished file is renamed over `target`. Without it, it is linked
    to the first free name of target, target-1, target-2…: a link fails when the name
    exists, so two writers can never take the same name (a check-then-write could).
    Returns the path written.
    """
    fd, tmp_name = tempfile.mkstemp(prefix=".partial-", suffix=target.suffix, dir=target.parent)
    try:
        with os.fdopen(fd, "wb") as handle:
            write(handle)
            handle.flush()
            os.fsync(handle.fileno())
        os.chmod(tmp_name, 0o666 & ~_UMASK)  # mkstemp makes it owner-only; others may read
        if overwrite:
            os.replace(tmp_name, target)
            return target
        return _link_to_free_name(Path(tmp_name), target)
    finally:
        Path(tmp_name).unlink(missing_ok=True)


MAX_NAME_TRIES = 10_000


def _link_to_free_name(finished: Path, target: Path) -> Path:
    for n in range(MAX_NAME_TRIES):
        candidate = target if n == 0 else target.with_name(f"{target.stem}-{n}{target.suffix}")
        try:
            os.link(finished, candidate)
        except FileExistsError:
            continue
        except OSError:  # a file system without hard links: reserve the name, then fill it
            try:
                os.close(os.open(candidate, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o666))
            except FileExistsError:
                continue
            os.replace(finished, candidate)
        return candidate
    raise FileExistsError(f"{target.name} and {MAX_NAME_TRIES} numbered names exist already")


def _read_umask() -> int:
    # os.umask can only be read by setting it, which is process-wide: do it once, at import
    # (before the worker and thumbnail threads exist), never while other threads make files.
    current = os.umask(0)
    os.umask(current)
    return current


_UMASK = _read_umask()


def default_stem(request: GenerationRequest, seed: int) -> str:
    branch = request.branch
    if branch is not None and branch.parent_image:
        # beside its parent in any listing by name: parent-step12.png, parent-step12-1.png…
        parent = re.sub(r"[^\w.-]+", "-", Path(Path(branch.parent_image).name).stem[:80])
        return f"{parent.strip('.-') or 'branch'}-step{branch.at_step}"
    words = re.sub(r"[^\w]+", "-", request.prompt.lower()).strip("-")[:40].rstrip("-")
    stamp = time.strftime("%Y%m%d-%H%M%S")
    return f"{stamp}-{seed}-{words or request.mode.value}"


def save_job_result(result: GenerationResult, job: Job) -> None:
    """Every image of a job on disk (before anyone hears it is done), or, in
    `result.unsaved`, a sentence why not: the job still ends with its pictures, to show and
    export, not as a failure that loses them. Every backend saves its results here."""
    if not job.keep:  # a live mode draft: shown, then replaced by the next one
        return
    try:
        save_result(result, job.output_dir, save_as=job.save_as)
    except OSError as e:
        log.warning("saving job %d in %s failed", job.id, job.output_dir, exc_info=True)
        result.paths = []
        result.unsaved = _not_saved(job.output_dir, e)


def folder_problem(folder: Path) -> str:
    """Why images cannot be saved in `folder`, as a clause naming it ("" when they can):
    it is made if need be, and a file is written into it and removed again. Asked before
    any work (the command line's --out, Settings' output folder): a result that cannot be
    saved is minutes lost."""
    shown = printable(str(folder))
    try:
        blocking = next((p for p in (folder, *folder.parents) if p.exists()), None)
        if blocking == folder and not folder.is_dir():
            return f"'{shown}' is a file, not a folder"
        if blocking is not None and not blocking.is_dir():
            return f"'{shown}' would be inside '{printable(str(blocking))}', which is a file"
        folder.mkdir(parents=True, exist_ok=True)
    except OSError as e:  # a name too long, a parent that may not be read
        return f"'{shown}' cannot be made ({os_reason(e)})"
    try:
        handle, probe = tempfile.mkstemp(prefix=".partial-", dir=folder)
        os.close(handle)
        os.unlink(probe)
    except OSError as e:
        return f"'{shown}' cannot be written into ({os_reason(e)})"
    return ""


def _not_saved(folder: Path, error: OSError) -> str:
    where = printable(str(folder))
    if folder.exists() and not folder.is_dir():
        reason = "that is a file, not a folder"
    else:
        reason = os_reason(error)
    return (
        f"The image could not be saved in {where} ({reason}): it is on the canvas, and "
        "File → Save image as… saves it elsewhere."
    )
