"""The one frozen object that holds every input of a generation job, and the rules every
value of it obeys.

A panel builds a `GenerationRequest`, the controller gives it a job id, the engine runs
it, and the saved image carries `request.to_dict()` so the exact job can be restored and
run again. `RANGES` is the one home of every numeric limit: validation, the window's
widgets, the command line and values restored from files all go through it.
"""

from __future__ import annotations

import dataclasses
import enum
import math
import random
from dataclasses import dataclass, field, fields
from typing import Any

from PIL import Image

from studio.core.errors import BadInput
from studio.core.prompt_tags import unreadable_lora_tags, unreadable_tag_sentence
from studio.core.schedulers import RUNNABLE_SCHEDULERS, SCHEDULER_NAMES

DEFAULT_MODEL = "studio-tiny"
DEFAULT_UPSCALE_MODEL = "studio-tiny-x4"
MAX_SIDE = 4096
MAX_BATCH = 64
MAX_STEPS = 1000
MAX_SEED = 2**64 - 1  # what torch's generators take; ComfyUI and Fooocus write such seeds
RANDOM_SEED = -1  # the seed field's "pick one for me"
SIDE_STEP = 8  # latent models work in multiples of 8 pixels


class Mode(str, enum.Enum):
    TEXT_TO_IMAGE = "txt2img"
    IMAGE_TO_IMAGE = "img2img"
    INPAINT = "inpaint"
    UPSCALE = "upscale"
    EDIT = "edit"  # an instruction ("make the circle blue") applied to the input image

    @property
    def label(self) -> str:
        return _MODE_LABELS[self]

    @property
    def needs_image(self) -> bool:
        return self is not Mode.TEXT_TO_IMAGE

    @property
    def uses_strength(self) -> bool:
        return self in (Mode.IMAGE_TO_IMAGE, Mode.INPAINT)

    @property
    def uses_model(self) -> bool:
        """Whether the job runs the chosen model (an upscale runs the upscaler alone)."""
        return self is not Mode.UPSCALE


_MODE_LABELS = {
    Mode.TEXT_TO_IMAGE: "Text→Image",
    Mode.IMAGE_TO_IMAGE: "Image→Image",
    Mode.INPAINT: "Inpaint",
    Mode.UPSCALE: "Upscale",
    Mode.EDIT: "Edit",
}


class Upscaler(str, enum.Enum):
    """How a result is enlarged: a diffusion ×4 model, or "hires fix" (×2 then image→image)."""

    X4 = "x4"
    HIRES = "hires"


class RequestError(BadInput):
    """A request that cannot run; `problems` holds one sentence per problem."""

    def __init__(self, problems: list[str]) -> None:
        super().__init__(" ".join(problems))
        self.problems = problems


_NO_FIELD = object()


def _same(kept: Any, given: Any) -> bool:
    """Whether a field's value is the one given: the very object, or an equal plain value
    (pictures and tuples of controls are not compared: copied, as before)."""
    return kept is given or (
        type(kept) is type(given) and type(kept) in (int, float, str, bool) and kept == given
    )


def resolve_seed(seed: int) -> int:
    """The seed a job runs with: the one given, or a fresh random one for -1 (32 bits, as
    AUTOMATIC1111 draws them, so they stay short to read and type)."""
    return random.randrange(2**32) if seed == RANDOM_SEED else seed


def batch_seeds(seed: int, count: int) -> list[int]:
    """Image k of a batch is seed + k run alone."""
    return [(seed + k) % (MAX_SEED + 1) for k in range(count)]


def snap_to_8(value: float) -> int:
    """The nearest side length a latent model can make (a multiple of 8, halves up), within
    the allowed sizes: a 60-pixel side becomes 64 everywhere."""
    return snap_side(value, SIDE_STEP)


def snap_side(value: float, step: int) -> int:
    """The nearest multiple of `step` (halves up) within the allowed sizes: a family's
    `size_step` (16 for the transformer families) or a latent model's 8."""
    if not math.isfinite(value):
        return step
    snapped = math.floor(value / step + 0.5) * step
    return max(step, min(MAX_SIDE // step * step, snapped))


@dataclass(frozen=True)
class Range:
    """The allowed values of one numeric field and how a value outside them is told."""

    label: str  # the subject of the sentence: "CFG scale", "The thresholding ceiling"
    low: float
    high: float
    integer: bool = False
    above_low: bool = False  # the low end itself is not allowed ("above 0")
    unit: str = ""

    def contains(self, value: float) -> bool:
        # written so that NaN is never inside: every comparison with NaN is False
        above = value > self.low if self.above_low else value >= self.low
        return bool(above and value <= self.high)

    def problem(self, value: Any) -> str | None:
        """One sentence when `value` is not allowed (wrong type, not finite, out of range)."""
        if isinstance(value, bool) or not isinstance(value, int | float):
            return f"{self.label} must be a number, not '{value}'."
        if self.integer and not (isinstance(value, int) or float(value).is_integer()):
            return f"{self.label} must be a whole number, not {value:g}."
        if self.contains(value):
            return None
        low, high = _number(self.low), _number(self.high)
        if self.above_low:
            bounds = f"above {low} and at most {high}{self.unit}"
        else:
            bounds = f"between {low} and {high}{self.unit}"
        shown = value if isinstance(value, int) else f"{value:g}"
        return f"{self.label} must be {bounds}, not {shown}."

    def coerce(self, value: Any) -> int | float:
        """`value` (a number, or a number written as text by another tool) as this field's
        type; raises ValueError with the sentence when it is not allowed."""
        if isinstance(value, str):
            try:
                value = float(value.strip()) if not self.integer else int(value.strip())
            except ValueError:
                raise ValueError(f"{self.label} must be a number, not '{value}'.") from None
        problem = self.problem(value)
        if problem:
            raise ValueError(problem)
        return int(value) if self.integer else float(value)


def _number(value: float) -> str:
    return str(int(value)) if float(value).is_integer() else f"{value:g}"


# Every numeric field of a request: the one place their limits are written down.
RANGES: dict[str, Range] = {
    "width": Range("Width", SIDE_STEP, MAX_SIDE, integer=True, unit=" pixels"),
    "height": Range("Height", SIDE_STEP, MAX_SIDE, integer=True, unit=" pixels"),
    "steps": Range("Steps", 1, MAX_STEPS, integer=True),
    "cfg_scale": Range("CFG scale", 0, 100),
    "cfg_rescale": Range("CFG rescale", 0, 1),
    "clip_skip": Range("CLIP skip", 1, 12, integer=True),
    "threshold_percentile": Range("The thresholding percentile", 50, 100),
    "threshold_max": Range("The thresholding ceiling", 0, 100, above_low=True),
    "classifier_scale": Range("The classifier guidance scale", 0, 50),
    "seed": Range("The seed", RANDOM_SEED, MAX_SEED, integer=True),
    "batch_size": Range("The batch", 1, MAX_BATCH, integer=True),
    # At least 0.01: image→image runs `steps / strength` steps' worth of schedule, and a
    # vanishing strength would ask for a schedule of millions of steps.
    "strength": Range("Strength", 0.01, 1),
    "mask_blur": Range("Mask blur", 0, 64, integer=True, unit=" pixels"),
    "inpaint_padding": Range("Inpaint padding", 0, MAX_SIDE, integer=True, unit=" pixels"),
    "upscale_strength": Range("The hires fix strength", 0.01, 1),
    "upscale_steps": Range("Hires steps", 0, MAX_STEPS, integer=True),
    "upscale_noise_level": Range("The upscaler noise level", 0, 350, integer=True),
}

# Images are inputs, not parameters: they are compared by identity and left out of to_dict().
_IMAGE_FIELDS = ("init_image", "mask", "references")

# The ControlNet used with an embedded model when none is named: a folder of that name in
# resources/models (diffusers' ControlNet layout); until it is there, one must be named.
EMBEDDED_CONTROLNETS: dict[str, str] = {DEFAULT_MODEL: "studio-tiny-controlnet"}
PREPROCESSORS = ("none", "canny", "lineart")  # studio.core.preprocessors
CONTROL_SCALE = Range("A ControlNet's conditioning scale", 0, 2)
VARY = Range("A branch's vary amount", 0, 1)
# What a control image is, for "union" ControlNets (one network for several kinds of control
# image, told each image's kind: SDXL's ControlNet++, Flux's union ControlNets; each numbers
# the kinds it knows its own way, studio.engine.controlnets). Other ControlNets know theirs.
CONTROL_TYPES = (
    "canny", "lineart", "mlsd", "scribble", "softedge", "depth", "pose", "normal", "segment",
    "tile", "blur", "gray", "low-quality", "inpaint",
)  # fmt: skip


@dataclass(frozen=True)
class Control:
    """One ControlNet of a job: the model, its control image (already a map of edges, lines
    or a scribble, or a picture the preprocessor turns into one), how strongly it steers
    (the conditioning scale) and over which fraction of the schedule (start to end)."""

    model: str
    image: Image.Image | None = field(default=None, compare=False, repr=False)
    scale: float = 1.0
    start: float = 0.0
    end: float = 1.0
    preprocessor: str = "none"
    control_type: str = ""  # CONTROL_TYPES, for a union ControlNet; "": the preprocessor's

    @property
    def kind(self) -> str:
        """What the control image is: its control type, or what its preprocessor makes (a
        map taken as it is, drawn on the control layer, is a scribble)."""
        if self.control_type:
            return self.control_type
        return self.preprocessor if self.preprocessor in ("canny", "lineart") else "scribble"

    def to_dict(self) -> dict[str, Any]:
        """The parameters, without the image (nor a control type that is not set)."""
        data = {f.name: getattr(self, f.name) for f in fields(self) if f.name != "image"}
        if not self.control_type:
            del data["control_type"]
        return data

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Control:
        names = {f.name for f in fields(cls)} - {"image"}
        return cls(**{k: v for k, v in data.items() if k in names})

    def problems(self, number: int) -> list[str]:
        """One sentence per problem; `number` counts from 1, as the artist reads it."""
        subject = f"ControlNet {number}"
        found = []
        if not isinstance(self.model, str) or not self.model.strip():
            found.append(f"{subject} has no model: choose a ControlNet.")
        if self.image is None:
            found.append(f"{subject} has no control image: draw, open or paste one.")
        scale = CONTROL_SCALE.problem(self.scale)
        if scale:
            found.append(f"{subject}: {scale[0].lower()}{scale[1:]}")
        numbers = all(
            isinstance(v, int | float) and not isinstance(v, bool) and math.isfinite(v)
            for v in (self.start, self.end)
        )
        if not numbers or not 0 <= self.start < self.end <= 1:
            found.append(
                f"{subject} acts from {self.start} to {self.end} of the steps: the start must "
                "be below the end, both between 0 and 1."
            )
        if self.preprocessor not in PREPROCESSORS:
            found.append(
                f"{subject}'s preprocessor '{self.preprocessor}' is unknown: choose one of "
                f"{', '.join(PREPROCESSORS)}."
            )
        if self.control_type and self.control_type not in CONTROL_TYPES:
            found.append(
                f"{subject}'s control type '{self.control_type}' is unknown: choose one of "
                f"{', '.join(CONTROL_TYPES)}."
            )
        return found


@dataclass(frozen=True)
class Branch:
    """A job that continues another (its parent) from after step `at_step` of the parent's
    generate stage: the first `at_step` steps are the parent's, the rest run with the
    branch's own parameters. `parent` holds the parent's values of the fields the branch
    changed (see core.branches), so one file rebuilds both. `noise_seed` reseeds the noise
    still to be drawn (the ancestral and SDE samplers draw some at every step)."""

    at_step: int
    parent: dict[str, Any] = field(default_factory=dict)
    noise_seed: int | None = None
    parent_image: str = ""  # the parent's file name, where it was saved (for people and tools)
    # "vary": how much of the noise still in the latents at the step is replaced by fresh
    # noise drawn with `noise_seed` (0 keeps the parent's, 1 replaces it all)
    vary: float = 0.0

    def to_dict(self) -> dict[str, Any]:
        return {
            "at_step": self.at_step,
            "parent": dict(self.parent),
            "noise_seed": self.noise_seed,
            "parent_image": self.parent_image,
            "vary": self.vary,
        }

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Branch:
        return cls(
            at_step=data.get("at_step", 0),
            parent=dict(data.get("parent") or {}),
            noise_seed=data.get("noise_seed"),
            parent_image=str(data.get("parent_image") or ""),
            vary=data.get("vary", 0.0),
        )


@dataclass(frozen=True)
class GenerationRequest:
    mode: Mode = Mode.TEXT_TO_IMAGE
    prompt: str = ""
    negative_prompt: str = ""
    model: str = DEFAULT_MODEL
    width: int = 64
    height: int = 64
    steps: int = 20
    cfg_scale: float = 7.0
    cfg_rescale: float = 0.0
    # A1111's "Clip skip": the text encoder's layer the prompt is read from, counted from its
    # last (1, the default) — 2 is the one before, which many SD 1.x anime models expect
    clip_skip: int = 1
    dynamic_thresholding: bool = False
    threshold_percentile: float = 99.5
    threshold_max: float = 2.5
    # Classifier guidance (studio/engine/classifier_guidance.py): the target class of the
    # model's classifier ("star", "red", "red star"), and s; 0 = off
    classifier_class: str = ""
    classifier_scale: float = 0.0
    scheduler: str = "Euler a"
    seed: int = RANDOM_SEED  # resolved by the engine and recorded in the result
    batch_size: int = 1
    init_image: Image.Image | None = field(default=None, compare=False, repr=False)
    strength: float = 0.75
    mask: Image.Image | None = field(default=None, compare=False, repr=False)
    # Edit mode: images the instruction may refer to besides the input ("the dress of image 2")
    references: tuple[Image.Image, ...] = field(default=(), compare=False, repr=False)
    mask_blur: int = 4
    inpaint_only_masked: bool = False
    inpaint_padding: int = 32
    upscaler: Upscaler | None = None
    upscale_model: str = DEFAULT_UPSCALE_MODEL
    upscale_strength: float = 0.35  # image→image strength of the hires fix pass
    # the hires fix pass's schedule, of which it runs int(it × strength), as A1111's "Hires
    # steps" is; 0: the main steps' (A1111's 0 too)
    upscale_steps: int = 0
    upscale_noise_level: int = 20  # noise added to the input of a diffusion ×4 upscaler
    controls: tuple[Control, ...] = ()  # ControlNets, each with its control image
    branch: Branch | None = None  # continues another job from one of its steps

    def __post_init__(self) -> None:
        # Accept plain strings (from JSON, the command line) for the enum fields.
        object.__setattr__(self, "mode", Mode(self.mode))
        controls = (Control.from_dict(c) if isinstance(c, dict) else c for c in self.controls)
        object.__setattr__(self, "controls", tuple(controls))
        if self.upscaler is not None:
            object.__setattr__(self, "upscaler", Upscaler(self.upscaler))
        if isinstance(self.branch, dict):
            object.__setattr__(self, "branch", Branch.from_dict(self.branch))

    def replace(self, **changes: Any) -> GenerationRequest:
        """The request with `changes`; itself where they change nothing (it is frozen): a
        run's replaces of its seed, sampler and unused fields mostly change nothing, and a
        request's copy checks every field again."""
        if all(_same(getattr(self, name, _NO_FIELD), value) for name, value in changes.items()):
            return self
        return dataclasses.replace(self, **changes)

    def problems(self) -> list[str]:
        """One clear sentence per problem; empty when the request can run."""
        return _validate(self)

    def validate(self) -> None:
        problems = self.problems()
        if problems:
            raise RequestError(problems)

    def to_dict(self) -> dict[str, Any]:
        """Every parameter as JSON-friendly values; images are left out."""
        data: dict[str, Any] = {}
        for f in fields(self):
            if f.name in _IMAGE_FIELDS:
                continue
            value = getattr(self, f.name)
            data[f.name] = value.value if isinstance(value, enum.Enum) else value
        data["controls"] = [c.to_dict() for c in self.controls]  # their images left out
        data["branch"] = self.branch.to_dict() if self.branch is not None else None
        return data

    @classmethod
    def from_dict(cls, data: dict[str, Any], **images: Image.Image | None) -> GenerationRequest:
        """Build a request from `to_dict()` output, ignoring unknown keys (newer files)."""
        kwargs: dict[str, Any] = {k: v for k, v in data.items() if k in PARAMETER_NAMES}
        kwargs.update(images)
        return cls(**kwargs)


# The request's parameters: every field but the images.
PARAMETER_NAMES: tuple[str, ...] = tuple(
    f.name for f in fields(GenerationRequest) if f.name not in _IMAGE_FIELDS
)


def _validate(r: GenerationRequest) -> list[str]:
    problems: list[str] = []

    def check(name: str) -> None:
        problem = RANGES[name].problem(getattr(r, name))
        if problem:
            problems.append(problem)

    for name, text in (("prompt", r.prompt), ("negative prompt", r.negative_prompt)):
        if not isinstance(text, str) or not _is_text(text):
            problems.append(f"The {name} holds bytes that are not text (UTF-8): type it again.")
    # An image→image or inpaint with no prompt is a way of working (A1111's: an object
    # painted out is filled from what surrounds it); an edit needs its instruction.
    if r.mode is Mode.EDIT and not str(r.prompt).strip():
        problems.append("The instruction is empty: say what to change in the picture.")
    elif r.mode is Mode.TEXT_TO_IMAGE and not (
        str(r.prompt).strip() or str(r.negative_prompt).strip()
    ):
        problems.append("The prompt is empty: describe the image you want.")
    if isinstance(r.prompt, str):
        problems.extend(unreadable_tag_sentence(tag) for tag in unreadable_lora_tags(r.prompt)[:1])
    for name in ("width", "height"):
        value = getattr(r, name)
        if RANGES[name].problem(value) is None and value % SIDE_STEP:
            problems.append(
                f"{RANGES[name].label} must be a multiple of {SIDE_STEP} "
                f"(got {value}; try {snap_to_8(value)})."
            )
        else:
            check(name)
    for name in ("steps", "cfg_scale", "cfg_rescale", "clip_skip"):
        check(name)
    if r.dynamic_thresholding:
        check("threshold_percentile")
        check("threshold_max")
    check("classifier_scale")
    # no target is off, whatever the scale; the engine checks the words against the classifier
    if not isinstance(r.classifier_class, str) or len(r.classifier_class.split()) > 2:
        problems.append("The classifier guidance class is a shape, a colour or both ('red star').")
    if r.scheduler not in RUNNABLE_SCHEDULERS:  # the picker's, and the fast settings' own
        problems.append(
            f"Unknown scheduler '{r.scheduler}': choose one of {', '.join(SCHEDULER_NAMES)}."
        )
    if RANGES["seed"].problem(r.seed):
        problems.append(f"The seed must be between 0 and {MAX_SEED}, or -1 for random.")
    if isinstance(r.batch_size, int) and r.batch_size < 1:
        problems.append("The batch is empty: make at least one image.")
    elif isinstance(r.batch_size, int) and r.batch_size > MAX_BATCH:
        problems.append(f"A batch holds at most {MAX_BATCH} images, not {r.batch_size}.")
    else:
        check("batch_size")
    if not str(r.model).strip():
        problems.append("No model is chosen.")

    if r.mode.needs_image and r.init_image is None:
        problems.append(f"{r.mode.label} needs an input image: open, paste or drop one.")
    if r.mode is Mode.UPSCALE and r.init_image is not None:
        problems.extend(_upscale_input_problems(r.init_image))
    if r.mode.uses_strength:
        check("strength")
    if r.mode is Mode.INPAINT:
        problems.extend(_mask_problems(r))
        check("mask_blur")
        check("inpaint_padding")
    if r.upscaler is Upscaler.HIRES:
        check("upscale_strength")
        check("upscale_steps")
    check("upscale_noise_level")
    if r.controls and r.mode in (Mode.UPSCALE, Mode.EDIT):
        problems.append(f"ControlNets steer generation, not {r.mode.label}: remove them.")
    for number, control in enumerate(r.controls, 1):
        problems.extend(control.problems(number))
    if r.branch is not None:
        problems.extend(_branch_problems(r))
    return problems


def _branch_problems(r: GenerationRequest) -> list[str]:
    branch = r.branch
    assert branch is not None
    found = []
    if r.mode is Mode.UPSCALE:
        found.append("An upscale has no denoising steps to continue from.")
    at = branch.at_step
    if isinstance(at, bool) or not isinstance(at, int) or not 1 <= at < r.steps:
        found.append(
            f"A branch continues after a step between 1 and {r.steps - 1}, not after {at}."
        )
    if r.batch_size != 1:
        found.append("A branch continues one image: set the batch to 1.")
    if r.seed == RANDOM_SEED:
        found.append("A branch continues its parent's seed, which is missing.")
    if VARY.problem(branch.vary):
        found.append(VARY.problem(branch.vary) or "")
    if branch.noise_seed is not None and RANGES["seed"].problem(branch.noise_seed):
        found.append(f"The seed of the new noise must be between 0 and {MAX_SEED}.")
    return found


UPSCALE_FACTOR = 4  # the diffusion upscaler's
HIRES_FACTOR = 2  # the hires fix's enlargement before its image→image pass


def stage_sizes(request: GenerationRequest) -> dict[str, tuple[int, int]]:
    """Each stage's picture size, where its previews are shown (the main stage's: the batch
    side by side; the hires and ×4 passes run one picture at a time)."""
    width, height = request.width, request.height
    return {
        "generate": (width * request.batch_size, height),
        "hires": (width * HIRES_FACTOR, height * HIRES_FACTOR),
        "upscale": (width * UPSCALE_FACTOR, height * UPSCALE_FACTOR),
    }


def _upscale_input_problems(image: Image.Image) -> list[str]:
    """The ×4 upscaler works on latents of the input's size: at least one latent pixel a
    side, and the result within the largest size."""
    width, height = image.size
    if min(width, height) < SIDE_STEP:
        return [
            f"The image to upscale is {width}×{height}: it needs at least {SIDE_STEP} pixels a "
            "side."
        ]
    if max(width, height) * UPSCALE_FACTOR > MAX_SIDE:
        most = MAX_SIDE // UPSCALE_FACTOR
        return [
            f"The image to upscale is {width}×{height}: ×{UPSCALE_FACTOR} it would pass "
            f"{MAX_SIDE} pixels; upscale images of at most {most} pixels a side."
        ]
    return []


def _is_text(text: str) -> bool:
    """Whether a string is real text: bytes that were not UTF-8 reach Python as lone
    surrogates (argv, file names), which no tokenizer can take."""
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        return False
    return True


def _mask_problems(r: GenerationRequest) -> list[str]:
    if r.mask is None:
        return ["Inpainting needs a mask: paint over the area to repaint."]
    if r.init_image is not None and r.mask.size != r.init_image.size:
        mw, mh = r.mask.size
        iw, ih = r.init_image.size
        return [f"The mask is {mw}×{mh} but the image is {iw}×{ih}: they must match."]
    if r.mask.getbbox() is None or r.mask.convert("L").getextrema()[1] == 0:
        return ["The mask is empty: paint over the area to repaint."]
    return []
