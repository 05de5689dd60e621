"""The request being edited: the application state every panel binds to.

The window's widgets do not hold the request; they show and edit this draft (through
`ui.bind`), and Generate freezes it into a `GenerationRequest`. Values reach the draft
from four sources, and `Draft.apply` is the one place that decides how they meet:

- the last session's values, at start;
- a model's own defaults (its card, its native size), when a model is chosen;
- an image's parameters, restored from a file;
- the artist, through a widget.

Each application overrides what was there before, with these rules: choosing a model
brings its defaults, and the values given together with the model win over them (a
restored file's size stays even though its model says otherwise); a restored file never
changes the mode, and never switches to a model that is not installed (that would
download a stranger's model at the next Generate); every value is checked against
`request.RANGES`, and one that does not fit is skipped with a note instead of raising.

Free of Qt: psygnal carries the change signal, so the rules are tested without widgets.
"""

from __future__ import annotations

import enum
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

from PIL import Image
from psygnal import Signal

from studio.core import catalog
from studio.core.request import (
    PARAMETER_NAMES,
    RANDOM_SEED,
    RANGES,
    SIDE_STEP,
    GenerationRequest,
    Mode,
    Upscaler,
    snap_to_8,
)
from studio.core.schedulers import SCHEDULER_NAMES
from studio.core.text import printable


class Source(enum.IntEnum):
    """Where a value came from."""

    SESSION = 0  # the last session, at start
    MODEL = 1  # a model's own defaults
    RESTORED = 2  # an image's parameters
    USER = 3  # the artist, through a widget


# The upscaler of the Upscale mode is never "none": it is kept apart from the one the
# generation modes may run after generating, so switching mode keeps both choices.
UPSCALE_METHOD = "upscale_method"
# The ControlNets come with their control images, from the canvas's control layer, not from
# the draft's values: a restored file's or the last session's are not taken. A branch is
# started from the timeline, never edited: a restored branch runs as the picture it made.
_NOT_EDITED = ("controls", "branch")
FIELDS: tuple[str, ...] = (*(n for n in PARAMETER_NAMES if n not in _NOT_EDITED), UPSCALE_METHOD)
_TEXT_FIELDS = ("prompt", "negative_prompt")
_MODEL_FIELDS = ("model", "upscale_model")
_BOOL_FIELDS = ("dynamic_thresholding", "inpaint_only_masked")


@dataclass
class Applied:
    """What one `apply` did: the values that changed, the model defaults it brought in,
    and one sentence per value it skipped (the value it had stays)."""

    changed: dict[str, Any] = field(default_factory=dict)
    defaults: dict[str, Any] = field(default_factory=dict)
    notes: list[str] = field(default_factory=list)
    skipped: dict[str, Any] = field(default_factory=dict)  # the values the notes are about


class Draft:
    """The request being edited, observable: `changed` carries {field: value} and the source."""

    changed = Signal(dict, object)  # {field: new value}, Source
    defaultsApplied = Signal(str, dict)  # model spec, the defaults it brought  # noqa: N815
    lastSeedChanged = Signal(object)  # the seed of the last finished job  # noqa: N815

    def __init__(
        self,
        model_defaults: Callable[[str], dict[str, Any]] = catalog.model_defaults,
        is_installed: Callable[[str], bool] = catalog.is_installed,
        exists: Callable[[str], str | None] | None = None,
    ) -> None:
        """`is_installed`: whether a model is on this machine (a restored file may only
        name such one); `exists`: None when a model spec points somewhere, else why not (the
        last session's model may have been deleted since)."""
        self._model_defaults = model_defaults
        self._is_installed = is_installed
        self._exists = exists or _why_missing
        self._values: dict[str, Any] = GenerationRequest().to_dict()
        self._values[UPSCALE_METHOD] = Upscaler.X4.value
        self._last_seed: int | None = None

    # -- reading ------------------------------------------------------------------------

    def __getitem__(self, name: str) -> Any:
        return self._values[name]

    def values(self) -> dict[str, Any]:
        return dict(self._values)

    @property
    def mode(self) -> Mode:
        return Mode(self._values["mode"])

    def freeze(
        self,
        init_image: Image.Image | None = None,
        mask: Image.Image | None = None,
        references: tuple[Image.Image, ...] = (),
        controls: tuple[Any, ...] = (),
    ) -> GenerationRequest:
        """The request Generate sends: the images the mode uses, the mode's upscaler."""
        values = {name: self._values[name] for name in PARAMETER_NAMES}
        for name in _TEXT_FIELDS:
            values[name] = values[name].strip()
        mode = self.mode
        if mode is Mode.UPSCALE:
            values["upscaler"] = self._values[UPSCALE_METHOD]
        return GenerationRequest.from_dict(
            values,
            init_image=init_image if mode.needs_image else None,
            mask=mask if mode is Mode.INPAINT else None,
            references=references if mode is Mode.EDIT else (),
            controls=controls if mode.uses_model and mode is not Mode.EDIT else (),
        )

    # -- the seed -----------------------------------------------------------------------

    @property
    def last_seed(self) -> int | None:
        """The seed of the last finished job, for "reuse the last seed"."""
        return self._last_seed

    def set_last_seed(self, seed: int) -> None:
        self._last_seed = int(seed)
        self.lastSeedChanged.emit(self._last_seed)

    def reuse_last_seed(self) -> None:
        if self._last_seed is not None:
            self.apply({"seed": self._last_seed}, Source.USER)

    def randomise_seed(self) -> None:
        self.apply({"seed": RANDOM_SEED}, Source.USER)

    # -- writing ------------------------------------------------------------------------

    def set(self, name: str, value: Any, source: Source = Source.USER) -> Applied:
        return self.apply({name: value}, source)

    def edit(self, values: Mapping[str, Any]) -> Applied:
        """Values the artist set, as a panel sets them: `apply(values, Source.USER)`."""
        return self.apply(values, Source.USER)

    def apply(self, values: Mapping[str, Any], source: Source) -> Applied:
        """Take `values` from `source` under the draft's rules (see the module's text);
        emits `changed` once with everything that changed."""
        applied = Applied()
        incoming = dict(values)
        upscale_job = incoming.get("mode") in (Mode.UPSCALE, Mode.UPSCALE.value)
        if source is Source.RESTORED:
            made_in = incoming.pop("mode", None)  # the artist's mode stays, which is said
            try:
                made_in = Mode(made_in) if made_in is not None else None
            except ValueError:
                made_in = None
            if made_in is not None and made_in is not self.mode:
                applied.notes.append(
                    f"It was made in {made_in.label}: the mode stays {self.mode.label}."
                )
        if upscale_job and UPSCALE_METHOD not in incoming and source <= Source.RESTORED:
            # a request of an Upscale job (a file, an older settings file) names that mode's
            # method in "upscaler": it is not an upscale-after for the generation modes
            incoming[UPSCALE_METHOD] = incoming.pop("upscaler", None) or Upscaler.X4.value
        accepted: dict[str, Any] = {}
        for name, value in incoming.items():
            if name not in FIELDS:
                continue  # a newer file's field, or not a request field at all
            try:
                accepted[name] = self._checked(name, value, source)
            except ValueError as e:
                applied.notes.append(str(e))
                applied.skipped[name] = value
        model = accepted.get("model")
        if model is not None and model != self._values["model"] and source > Source.SESSION:
            defaults = {k: v for k, v in self._model_defaults(model).items() if k not in accepted}
            for name, value in defaults.items():
                try:
                    accepted[name] = self._checked(name, value, Source.MODEL)
                except ValueError:
                    continue  # a card with an odd value: the current one stays
            applied.defaults = {k: accepted[k] for k in defaults if k in accepted}
        for name, value in accepted.items():
            if self._values.get(name) != value:
                self._values[name] = value
                applied.changed[name] = value
        if applied.changed:
            self.changed.emit(dict(applied.changed), source)
        if applied.defaults and model is not None:
            self.defaultsApplied.emit(model, dict(applied.defaults))
        return applied

    def _checked(self, name: str, value: Any, source: Source) -> Any:
        """`value` as the field holds it; ValueError with one sentence when it cannot be."""
        if name == "mode":
            try:
                return Mode(value).value
            except ValueError:
                raise ValueError(f"'{printable(str(value))}' is not a mode.") from None
        if name in ("upscaler", UPSCALE_METHOD):
            if value is None and name == "upscaler":
                return None
            try:
                return Upscaler(value).value
            except ValueError:
                raise ValueError(f"'{printable(str(value))}' is not an upscaler.") from None
        if name in _TEXT_FIELDS:
            if not isinstance(value, str):
                raise ValueError(f"The {name.replace('_', ' ')} is not text.")
            return value  # as typed; `freeze` trims it
        if name in _MODEL_FIELDS:
            spec = str(value).strip()
            if not spec:
                raise ValueError("No model is named.")
            if spec == self._values[name]:
                return spec
            if source is Source.RESTORED and not self._is_installed(spec):
                raise ValueError(
                    f"The model '{printable(spec)}' is not installed, so the current one "
                    "stays: add it with Add model… to use it."
                )
            missing = self._exists(spec) if source is Source.SESSION else None
            if missing:  # the last session's model may have gone since
                raise ValueError(f"{missing} The default model is used instead.")
            return spec
        if name == "scheduler":
            if value not in SCHEDULER_NAMES:
                raise ValueError(f"The sampler '{printable(str(value))}' is not available here.")
            return value
        if name in _BOOL_FIELDS:
            return bool(value)
        if name == "classifier_class":  # classifier guidance's target: words, as typed
            if not isinstance(value, str):
                raise ValueError("The classifier guidance class is not text.")
            return " ".join(value.split())
        number = RANGES[name].coerce(value)  # ValueError: the range's own sentence
        if name in ("width", "height") and number % SIDE_STEP:
            # other tools allow sizes a latent model cannot make: the nearest one it can
            return snap_to_8(number)
        return number


def _why_missing(spec: str) -> str | None:
    try:
        catalog.resolve(spec)
    except catalog.ModelError as e:
        return str(e)
    return None
