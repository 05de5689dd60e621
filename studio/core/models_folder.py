"""The artist's models folder: the one AUTOMATIC1111, Forge or ComfyUI already keeps.

Pointed at that tool's folder (or its `models` folder), the studio finds checkpoints, LoRAs
and ControlNets where those tools put them:

    AUTOMATIC1111 / Forge      ComfyUI
    models/Stable-diffusion    models/checkpoints, models/diffusion_models, models/unet
    models/Lora, LyCORIS       models/loras
    models/ControlNet          models/controlnet
    models/VAE                 models/vae
    models/text_encoder        models/clip, models/text_encoders

and diffusers folders (a folder with model_index.json) among the checkpoints. VAEs and text
encoders are the separate parts of transformer-only files (Flux's ae.safetensors, clip_l,
t5xxl): `studio.engine.single_file` looks for them there. The scan is
bounded (depth and count) and follows no links out of the folder, so a huge or looping
tree costs a moment, not a freeze. Torch-free: the window lists models without loading any.

The folder in use is set once per process: the command line's `--models-dir`, the window's
setting, else the environment variable LATENT_STUDIO_MODELS_DIR.
"""

from __future__ import annotations

import os
import stat
from dataclasses import dataclass, field
from pathlib import Path

ENV_VAR = "LATENT_STUDIO_MODELS_DIR"
WEIGHT_SUFFIXES = (".safetensors", ".sft", ".gguf", ".ckpt", ".pt", ".pth", ".bin")
MAX_DEPTH = 4  # models/checkpoints/SDXL/anime/x.safetensors
MAX_ENTRIES = 20_000  # directory entries looked at, in all

# Each kind's folder names in the tools artists come from (compared case-insensitively).
KIND_FOLDERS: dict[str, tuple[str, ...]] = {
    "checkpoints": ("stable-diffusion", "checkpoints", "diffusion_models", "unet", "diffusers"),
    "loras": ("lora", "loras", "lycoris"),
    "controlnets": ("controlnet",),
    "embeddings": ("embeddings",),  # A1111 keeps these beside models/, not in it
    "vae": ("vae",),
    "text_encoders": ("clip", "text_encoders", "text_encoder"),
}
# Kinds looked in by name when a model needs them (single_file's separate parts), not listed.
PART_KINDS = ("vae", "text_encoders")


@dataclass
class ModelsFolder:
    root: Path
    found: dict[str, list[Path]] = field(default_factory=dict)  # kind → paths, sorted
    truncated: bool = False  # the scan stopped at MAX_ENTRIES

    def of_kind(self, kind: str) -> list[Path]:
        return self.found.get(kind, [])

    @property
    def checkpoints(self) -> list[Path]:
        return self.of_kind("checkpoints")

    @property
    def loras(self) -> list[Path]:
        return self.of_kind("loras")

    @property
    def controlnets(self) -> list[Path]:
        return self.of_kind("controlnets")

    @property
    def embeddings(self) -> list[Path]:
        return self.of_kind("embeddings")


# The folder in use, by precedence: the command line's, the window's setting, the
# environment's.
_chosen: dict[str, Path | None] = {"command line": None, "setting": None}
_scanned: dict[Path, tuple[float, ModelsFolder]] = {}


def use(folder: str | Path | None, source: str = "command line") -> None:
    """Set the models folder of this process from `source` ("command line" or "setting");
    None clears that source's choice."""
    _chosen[source] = Path(folder).expanduser() if folder else None


def chosen_over_setting() -> Path | None:
    """The folder the command line chose (`--models-dir`), which the window's setting then
    does not name; None when it chose none."""
    return _chosen["command line"]


def models_dir() -> Path | None:
    environment = os.environ.get(ENV_VAR)
    candidates = (*_chosen.values(), Path(environment).expanduser() if environment else None)
    folder = next((c for c in candidates if c is not None), None)
    return folder if folder is not None and folder.is_dir() else None


def current() -> ModelsFolder | None:
    """The scan of the folder in use, made again when the folder's time stamp changes."""
    folder = models_dir()
    if folder is None:
        return None
    try:
        stamp = max(
            (
                sub.stat().st_mtime
                for subs in _kind_dirs(_models_root(folder)).values()
                for sub in subs
            ),
            default=folder.stat().st_mtime,
        )
    except OSError:
        return None
    cached = _scanned.get(folder)
    if cached is None or cached[0] != stamp:
        cached = (stamp, scan(folder))
        _scanned[folder] = cached
    return cached[1]


def find(name: str, kind: str = "checkpoints") -> Path | None:
    """A model of the folder by its name as artists write it: the file name with or
    without its suffix, or its path inside the kind's folder ("SDXL/ponyV6")."""
    folder = current()
    wanted = name.strip().replace("\\", "/").lower()
    if folder is None or not wanted:
        return None
    for path in folder.of_kind(kind):
        if wanted in (path.name.lower(), path.stem.lower()):
            return path
        posix = path.as_posix().lower()
        if posix.endswith("/" + wanted) or posix.rsplit(".", 1)[0].endswith("/" + wanted):
            return path
    return None


def scan(folder: Path) -> ModelsFolder:
    """Every model file (and diffusers folder) under the folder's kind folders."""
    root = _models_root(folder)
    result = ModelsFolder(root)
    budget = [MAX_ENTRIES]
    kinds = _kind_dirs(root)
    if "embeddings" not in kinds:  # AUTOMATIC1111's own folder holds models/ and embeddings/
        beside = _kind_dirs(root.parent).get("embeddings") if root != folder else None
        kinds["embeddings"] = beside or []
    for kind, directories in kinds.items():
        if kind in PART_KINDS:
            continue
        found = result.found.setdefault(kind, [])
        for directory in directories:
            _walk(directory, 0, found, MODEL_FOLDER_MARKS.get(kind), budget)
        found.sort(key=lambda p: (p.name.lower(), p.as_posix()))  # as the picker lists them
    result.truncated = budget[0] <= 0
    return result


def _models_root(folder: Path) -> Path:
    """The tool's `models` folder when pointed at the tool's own folder, and the folder
    above when pointed at one of its kind folders (models/Stable-diffusion itself)."""
    inner = folder / "models"
    # A1111's and Forge's own folder holds models/ and, beside it, embeddings/ (a kind
    # folder too): its models/ is the root when it holds any kind folder
    if inner.is_dir() and _kind_dirs(inner):
        return inner
    if _kind_dirs(folder):
        return folder
    if inner.is_dir():
        return inner
    is_kind = any(folder.name.lower() in names for names in KIND_FOLDERS.values())
    return folder.parent if is_kind and folder.parent != folder else folder


def kind_folders(root: Path, kind: str) -> list[Path]:
    """The folders of one kind directly under a tool's folder or its models folder."""
    return _kind_dirs(_models_root(root)).get(kind, [])


def _kind_dirs(root: Path) -> dict[str, list[Path]]:
    """Each kind's folders under root (ComfyUI keeps checkpoints in several)."""
    found: dict[str, list[Path]] = {}
    try:
        entries = sorted(os.scandir(root), key=lambda e: e.name)
    except OSError:
        return found
    for entry in entries:
        if not entry.is_dir(follow_symlinks=True):
            continue
        for kind, names in KIND_FOLDERS.items():
            if entry.name.lower() in names:
                found.setdefault(kind, []).append(Path(entry.path))
    return found


# The file that makes a folder of a kind one model (a diffusers folder), listed by the
# folder's name: not its weights, each called diffusion_pytorch_model.
MODEL_FOLDER_MARKS = {"checkpoints": "model_index.json", "controlnets": "config.json"}


def _walk(
    directory: Path, depth: int, found: list[Path], mark: str | None, budget: list[int]
) -> None:
    if depth > MAX_DEPTH:
        return
    try:
        entries = sorted(os.scandir(directory), key=lambda e: e.name)
    except OSError:
        return
    for entry in entries:
        budget[0] -= 1
        if budget[0] <= 0:
            return
        try:
            mode = entry.stat(follow_symlinks=True).st_mode
        except OSError:
            continue  # a dangling link
        path = Path(entry.path)
        if stat.S_ISREG(mode) and entry.name.lower().endswith(WEIGHT_SUFFIXES):
            found.append(path)
        elif stat.S_ISDIR(mode) and not entry.is_symlink():  # links could loop
            if mark is not None and (path / mark).is_file():
                found.append(path)  # a diffusers folder is one model
            else:
                _walk(path, depth + 1, found, mark, budget)
