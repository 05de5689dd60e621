"""Checking a model's files before any library reads them: torch-free, bounded, and each
problem a sentence that names the file and says what to do.

Libraries fail on damaged models with their own internals ("float division by zero", a
torch meta-device message) or, on a named pipe where a config should be, never return.
`check_model_folder` reads only what it must (JSON configs, the headers of safetensors
files), opens only regular files, and stops at the first problem it can put into words.
"""

from __future__ import annotations

import json
import os
import stat
import struct
from collections.abc import Collection
from pathlib import Path

from studio.core.catalog import ModelError
from studio.core.files import is_regular_file, read_json_object
from studio.core.text import printable

MAX_HEADER_BYTES = 100 * 1024 * 1024  # a safetensors header (names and offsets)
MAX_FILES = 20_000  # a model folder with more files than this is not a model
# the components that are configs and vocabularies only (a scheduler, a tokenizer...): the
# others are networks, whose folder holds weights
WEIGHTLESS_CLASSES = ("Scheduler", "Tokenizer", "TokenizerFast", "Processor", "FeatureExtractor")
KNOWN_LIBRARIES = ("diffusers", "transformers")  # what a component may be built by
PICKLE_SUFFIXES = (".bin", ".ckpt", ".pt", ".pth", ".pkl", ".pickle")
WEIGHT_SUFFIXES = (".safetensors", *PICKLE_SUFFIXES)


class ModelFileError(ModelError):
    """A model's file that cannot be used; str() names it and says what to do."""


def safetensors_keys(path: Path) -> list[str]:
    """The tensor names in a .safetensors file's header (no weights are read); ValueError
    when the header is damaged or the file shorter than it says."""
    return [name for name in safetensors_header(path) if name != "__metadata__"]


def safetensors_metadata(path: Path) -> dict[str, str]:
    """The free-form metadata a .safetensors file carries (trainers write the base model,
    trigger words and tag counts there); {} when it has none. ValueError as above."""
    metadata = safetensors_header(path).get("__metadata__")
    if not isinstance(metadata, dict):
        return {}
    return {str(k): str(v) for k, v in metadata.items()}


def safetensors_header(path: Path) -> dict:
    """A .safetensors file's header, checked against the file's size; ValueError when it is
    damaged or the file shorter than it says."""
    if not is_regular_file(path):
        raise ValueError("not a regular file")
    size = path.stat().st_size
    with open(path, "rb") as handle:
        head = handle.read(8)
        if len(head) < 8:
            raise ValueError("shorter than a header")
        (length,) = struct.unpack("<Q", head)
        if length > min(MAX_HEADER_BYTES, size - 8):
            raise ValueError("header longer than the file")
        header = json.loads(handle.read(length).decode("utf-8"))
    if not isinstance(header, dict):
        raise ValueError("header is not a JSON object")
    end = 8 + length
    for name, entry in header.items():
        if name == "__metadata__":
            continue
        offsets = entry.get("data_offsets") if isinstance(entry, dict) else None
        if not (isinstance(offsets, list) and len(offsets) == 2):
            raise ValueError("header entry without offsets")
        if end + int(offsets[1]) > size:
            raise ValueError("truncated")
    return header


def gguf_keys(path: Path) -> list[str]:
    """The tensor names of a GGUF file (its weights stay on disk); [] without the optional
    gguf package. ValueError when the file is not a readable GGUF file."""
    try:
        import gguf
    except ImportError:
        return []
    if not is_regular_file(path):
        raise ValueError("not a regular file")
    try:
        return [t.name for t in gguf.GGUFReader(str(path)).tensors]
    except Exception as e:  # noqa: BLE001 - the reader's own errors for a damaged file
        raise ValueError(f"not a GGUF file ({e.__class__.__name__})") from None


def check_model_folder(folder: Path, provided: Collection[str] = (), weights: bool = False) -> None:
    """Raise ModelFileError with one sentence for the first problem in a diffusers folder:
    a damaged model_index.json or config, a component it lists that is missing, a file
    that is not a regular file (a pipe, a device, a link in a loop), a damaged or
    truncated safetensors file, or pickled weights with no safetensors beside them.
    `provided`: components the folder takes from another (core.catalog.shared_components),
    checked there. `weights`: each network's folder must hold its weights (a folder used
    whole, not a single file's companion, whose denoiser is the file)."""
    name = printable(folder.name or str(folder))
    try:
        index = read_json_object(folder / "model_index.json", 1024 * 1024)
    except (OSError, ValueError):
        raise ModelFileError(
            f"The model_index.json of '{name}' is damaged or unreadable: download or copy the "
            "model again."
        ) from None
    if not isinstance(index.get("_class_name", ""), str):  # [module file, class]: its code
        raise ModelFileError(
            f"'{name}' needs pipeline code of its own (a custom pipeline), which the studio "
            "never runs."
        )
    seen = 0
    for component, value in index.items():
        if not (isinstance(value, list) and len(value) == 2 and value[1] is not None):
            continue
        if component in provided:
            continue
        part = folder / str(component)
        shown = printable(str(component))
        if value[0] not in KNOWN_LIBRARIES:  # a module shipped in the folder: code
            raise ModelFileError(
                f"The '{shown}' of '{name}' comes with code of its own "
                f"({printable(str(value[0]))}), which the studio never runs."
            )
        if not part.is_dir():
            raise ModelFileError(
                f"'{name}' has no '{shown}' folder, which its model_index.json lists: the "
                "download or copy is incomplete."
            )
        files = _files_of(part, name, shown)
        seen += len(files)
        if seen > MAX_FILES:
            raise ModelFileError(f"'{name}' holds too many files to be a model.")
        _check_component(files, name, shown)
        if (
            weights
            and not str(value[1]).endswith(WEIGHTLESS_CLASSES)
            and not any(f.suffix.lower() in WEIGHT_SUFFIXES for f in files)
        ):
            raise ModelFileError(
                f"The '{shown}' of '{name}' has no weights file: the download or copy is "
                "incomplete."
            )


def _files_of(part: Path, name: str, shown: str) -> list[Path]:
    """The files of a component folder (one level down too, as tokenizers have), each a
    regular file: links are followed only when they lead to one."""
    found: list[Path] = []
    for entry in _entries(part):
        where = f"{shown}/{printable(entry.name)}"
        try:
            mode = os.stat(entry).st_mode
        except OSError:
            raise ModelFileError(
                f"'{where}' in '{name}' is a link that leads nowhere (missing, or a loop): "
                "replace it with the file."
            ) from None
        if stat.S_ISDIR(mode):
            if entry.is_symlink():
                continue  # a linked folder: not followed (it could lead back here)
            found.extend(e for e in _entries(entry) if _regular_or_report(e, name, shown))
        elif _regular_or_report(entry, name, shown):
            found.append(entry)
        if len(found) > MAX_FILES:
            break
    return found


def _entries(folder: Path) -> list[Path]:
    try:
        with os.scandir(folder) as scan:
            return [Path(e.path) for _, e in zip(range(MAX_FILES + 1), scan, strict=False)]
    except OSError:
        return []


def _regular_or_report(path: Path, name: str, shown: str) -> bool:
    try:
        mode = os.stat(path).st_mode
    except OSError:
        raise ModelFileError(
            f"'{shown}/{printable(path.name)}' in '{name}' is a link that leads nowhere "
            "(missing, or a loop): replace it with the file."
        ) from None
    if stat.S_ISDIR(mode):
        return False
    if not stat.S_ISREG(mode):
        raise ModelFileError(
            f"'{shown}/{printable(path.name)}' in '{name}' is not a regular file (a pipe, "
            "socket or device), so the studio does not read it."
        )
    return True


def _check_component(files: list[Path], name: str, shown: str) -> None:
    suffixes = {f.suffix.lower() for f in files}
    for path in files:
        where = f"'{shown}/{printable(path.name)}' in '{name}'"
        suffix = path.suffix.lower()
        if suffix == ".json":
            try:
                config = read_json_object(path)
            except (OSError, ValueError):
                raise ModelFileError(
                    f"{where} is damaged (not a valid JSON file): download or copy the model again."
                ) from None
            if "auto_map" in config:  # a class to import from the folder: code
                raise ModelFileError(
                    f"{where} asks for code shipped with the model (auto_map), which the "
                    "studio never runs."
                )
        elif suffix == ".safetensors":
            try:
                safetensors_keys(path)
            except (OSError, ValueError, UnicodeDecodeError, OverflowError):
                raise ModelFileError(
                    f"{where} is damaged or incompletely downloaded: download or copy the "
                    "model again."
                ) from None
        elif suffix in PICKLE_SUFFIXES and ".safetensors" not in suffixes:
            raise ModelFileError(
                f"{where} holds pickled weights, which could run code when loaded: the studio "
                "loads .safetensors weights only (most models offer them)."
            )
