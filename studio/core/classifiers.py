"""Where a model's guidance classifier lives, and what it can target (no torch, no Qt).

The convention: a model's classifier is the sibling folder named after the model with
`-classifier` appended (resources/models/studio-tiny → resources/models/studio-tiny-classifier),
holding `model.safetensors`, `config.json` (its `shapes` and `colours`) and `training.json`.
A model with no such folder (every checkpoint file, every hub model) has no classifier
guidance. The engine side is studio/engine/classifier_guidance.py.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

from studio.core.errors import BadInput

ANY = "any"
SUFFIX = "-classifier"
DEFAULT_SCALE = 2.0  # the command line's, when CLASS is given without :SCALE


class ClassifierGuidanceError(BadInput):
    """A target the model's classifier cannot guide towards, or a model without one."""


@dataclass(frozen=True)
class Classes:
    folder: Path
    shapes: list[str]
    colours: list[str]


def folder_beside(model_folder: str | Path | None) -> Path | None:
    """The classifier beside a model folder, or None."""
    if not model_folder:
        return None
    folder = Path(model_folder)
    if not folder.is_dir():
        return None
    sibling = folder.with_name(folder.name + SUFFIX)
    if (sibling / "model.safetensors").is_file() and (sibling / "config.json").is_file():
        return sibling
    return None


def classes_for(model: str) -> Classes | None:
    """The classifier of a model spec (as the request names it), or None when it has none."""
    from studio.core import catalog

    try:
        location = catalog.resolve(model).location
    except Exception:  # an unknown or broken spec has no classifier either
        return None
    folder = folder_beside(location)
    if folder is None:
        return None
    try:
        config = json.loads((folder / "config.json").read_text())
        return Classes(folder, list(config["shapes"]), list(config["colours"]))
    except (OSError, ValueError, KeyError):
        return None


def parse_target(text: str, shapes: list[str], colours: list[str]) -> tuple[int | None, int | None]:
    """'red star', 'star', 'red', 'any star' → (shape index, colour index); None = any."""
    shape = colour = None
    for word in text.lower().replace(",", " ").split():
        if word == ANY:
            continue
        if word in shapes and shape is None:
            shape = shapes.index(word)
        elif word in colours and colour is None:
            colour = colours.index(word)
        else:
            raise ClassifierGuidanceError(
                f"Classifier guidance cannot target {word!r}: it knows the shapes "
                f"{', '.join(shapes)} and the colours {', '.join(colours)}."
            )
    if shape is None and colour is None:
        raise ClassifierGuidanceError("Classifier guidance needs a shape, a colour or both.")
    return shape, colour


def require(model: str, target: str) -> Classes:
    """The model's classifier, checked against the target; one sentence when it cannot be."""
    classes = classes_for(model)
    if classes is None:
        name = Path(model).name or model
        raise ClassifierGuidanceError(
            f"{name} has no classifier for classifier guidance (it would be the folder "
            f"{name}{SUFFIX} beside the model)."
        )
    parse_target(target, classes.shapes, classes.colours)
    return classes
