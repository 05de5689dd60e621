"""What a model spec points to, and which models ship with the studio.

Free of torch so the UI thread can list and describe models without loading anything.
"""

from __future__ import annotations

import json
import logging
import os
import re
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from studio.core.errors import BadInput
from studio.core.files import read_json_object
from studio.core.paths import EMBEDDED_MODELS_DIR
from studio.core.state import set_aside

log = logging.getLogger(__name__)

_HUB_ID = re.compile(r"^[A-Za-z0-9][\w.-]*/[\w.-]+$")
_CHECKPOINT_SUFFIXES = (".safetensors", ".gguf", ".ckpt", ".pt", ".pth", ".bin")


class ModelError(BadInput):
    """A model that cannot be found or loaded; str() is one sentence for the user."""


@dataclass(frozen=True)
class ModelSource:
    """Where a model spec points: kind is embedded, folder, checkpoint or hub."""

    spec: str
    kind: str
    location: str

    @property
    def is_local(self) -> bool:
        return self.kind != "hub"


@dataclass(frozen=True)
class ModelInfo:
    name: str
    kind: str
    location: str
    role: str  # "generator", "upscaler", "ControlNet" or "classifier"
    description: str = ""


def embedded_models() -> list[ModelInfo]:
    """The models shipped in resources/models, with the descriptions of their cards
    (studio.json's "description", written by `studio.tiny.export`)."""
    found = []
    if EMBEDDED_MODELS_DIR.is_dir():
        for folder in sorted(EMBEDDED_MODELS_DIR.iterdir()):
            if (folder / "model_index.json").is_file():
                card = read_model_card(folder)
                role = "upscaler" if card.get("scale") else "generator"
                found.append(
                    ModelInfo(
                        folder.name, "embedded", str(folder), role, card.get("description", "")
                    )
                )
            elif (folder / "config.json").is_file():  # a network of its own, not a pipeline
                config = _read_json(folder / "config.json")
                if config.get("_class_name") == "ControlNetModel":
                    found.append(ModelInfo(folder.name, "embedded", str(folder), "ControlNet"))
                elif "classifier" in str(config.get("kind", "")):
                    found.append(ModelInfo(folder.name, "embedded", str(folder), "classifier"))
    return found


def read_model_card(folder: Path) -> dict[str, Any]:
    """studio.json beside a model: defaults and vocabulary of our own models, {} elsewhere."""
    return _read_json(folder / "studio.json")


def shared_components(folder: Path, card: dict[str, Any]) -> dict[str, Path]:
    """Components a model of ours takes from another beside it, by name: the card's
    "components_from" maps each to that model's folder, relative to this one (studio-tiny-x4
    runs studio-tiny's very VAE and text encoder, kept once)."""
    shared = card.get("components_from")
    if not isinstance(shared, dict):
        return {}
    found = {}
    for name, where in shared.items():
        if isinstance(name, str) and isinstance(where, str):
            part = (folder / where / name).resolve()
            if part.is_dir():
                found[name] = part
    return found


# Model card keys -> GenerationRequest fields they give defaults for.
_CARD_DEFAULTS = {
    "default_steps": "steps",
    "default_cfg": "cfg_scale",
    "default_scheduler": "scheduler",
}


def model_defaults(spec: str) -> dict[str, Any]:
    """The request fields a model says it wants (steps, cfg_scale, scheduler, width, height),
    without loading it: from studio.json for our models, else from its family's
    declaration, with the native size read from the network's and VAE's configs where a
    diffusers folder or cached hub model has them. Fields nothing states are absent; an
    unknown or unreadable model gives {}."""
    from studio.core import families

    try:
        source = resolve(spec)
    except ModelError:
        return {}
    if source.kind == "checkpoint":
        family = _checkpoint_family(Path(source.location))
        return family.defaults() if family else {}
    folder = _local_folder(source)
    if folder is None:
        return {}
    family = families.of_folder(folder)
    found = family.defaults() if family else {}
    card = read_model_card(folder)
    found.update(
        {field: card[key] for key, field in _CARD_DEFAULTS.items() if card.get(key) is not None}
    )
    size = card.get("default_size") or _native_size(folder)
    if size:
        found["width"], found["height"] = int(size[0]), int(size[1])
    return found


def model_family(spec: str) -> Any:
    """The family (`studio.core.families.Family`) of a model, from its files alone; None
    when it is not on this machine or of no family the studio knows. A single file's is
    kept while the file and its companion are unchanged: every run asks, and a large
    file's header takes milliseconds to read where a look at its date takes microseconds."""
    from studio.core import families

    try:
        source = resolve(spec)
    except ModelError:
        return None
    if source.kind == "checkpoint":
        path = Path(source.location)
        read_from = (path, path.with_name(path.name + ".companion"))
        return _kept_while_unchanged(read_from, lambda: _checkpoint_family(path))
    folder = _local_folder(source)
    if folder is None:
        return None
    family = families.of_folder(folder)
    unet = _read_json(folder / "unet" / "config.json")
    return _inpainting_only(family) if unet.get("in_channels") == INPAINTING_INPUTS else family


_families_read: dict[tuple[Path, ...], tuple[tuple[Any, ...], Any]] = {}


def _kept_while_unchanged(files: tuple[Path, ...], read: Callable[[], Any]) -> Any:
    """`read()`, kept until one of `files` changes, appears or goes."""
    dates = tuple(_size_and_time(path) for path in files)
    kept = _families_read.get(files)
    if kept is not None and kept[0] == dates:
        return kept[1]
    if len(_families_read) > 256:  # models come and go: keep the recent ones
        _families_read.clear()
    found = read()
    _families_read[files] = (dates, found)
    return found


def _size_and_time(path: Path) -> tuple[int, int, int] | None:
    """What tells a file's versions apart: its size, time and inode (a file replaced whole,
    as the studio writes them, is a new inode even within the clock's resolution)."""
    try:
        found = path.stat()
    except OSError:
        return None
    return found.st_size, found.st_mtime_ns, found.st_ino


# An SD inpainting UNet's inputs: the noisy latents, the mask and the masked picture's latents.
INPAINTING_INPUTS = 9
_UNET_IN = "model.diffusion_model.input_blocks.0.0.weight"


def _inpainting_only(family: Any) -> Any:
    """An inpainting model of a family: diffusers runs it in the inpainting pipeline only,
    so the window offers Inpaint alone (and says why the other modes are off)."""
    import dataclasses

    if family is None or "inpaint" not in family.pipelines:
        return family
    return dataclasses.replace(
        family,
        label=f"{family.label} inpainting",
        pipelines={"inpaint": family.pipelines["inpaint"]},
    )


def size_on_disk(spec: str) -> int | None:
    """Bytes a model takes on this machine (its folder's files, or its file); None when it
    is not here. Stops counting at a folder too large to be a model."""
    try:
        source = resolve(spec)
    except ModelError:
        return None
    path = Path(source.location) if source.kind != "hub" else _local_folder(source)
    if path is None:
        return None
    if path.is_file():
        return path.stat().st_size
    total, seen = 0, 0
    for root, _dirs, files in os.walk(path):
        for name in files:
            seen += 1
            if seen > 20_000:
                return total
            try:
                # a hub cache links to blobs: their size is what the model takes
                total += (Path(root) / name).stat().st_size
            except OSError:
                continue
    return total


def _checkpoint_family(path: Path) -> Any:
    """The family of a single-file checkpoint, from its tensor names (and, for files that
    hold another family's tensors, its name or `<file>.companion`)."""
    from studio.core import families
    from studio.core.model_files import gguf_keys, safetensors_header

    suffix = path.suffix.lower()
    if suffix not in (".safetensors", ".gguf"):
        return None  # a pickled file is not opened to find out
    try:
        if suffix == ".gguf":
            return families.of_checkpoint_file(path, gguf_keys(path))
        header = safetensors_header(path)
        family = families.of_checkpoint_file(path, [k for k in header if k != "__metadata__"])
    except (OSError, ValueError, UnicodeDecodeError, OverflowError):
        return None
    entry = header.get(_UNET_IN)
    shape = entry.get("shape") if isinstance(entry, dict) else None
    inpainting = isinstance(shape, list) and shape[1:2] == [INPAINTING_INPUTS]
    return _inpainting_only(family) if inpainting else family


# The pipeline of the Stable Diffusion ×4 upscaler family, the one the studio's upscaler runs.
X4_UPSCALER_CLASS = "StableDiffusionUpscalePipeline"


def model_role(spec: str) -> str | None:
    """What a model on this machine does, from its files alone: "x4 upscaler" (the family
    the studio's upscaler runs), "upscaler" (another pipeline that enlarges an image, as
    its model_index.json names it), "generator" (a model of a family the studio knows, or
    a folder of another pipeline class), or None when that cannot be told without loading
    it (not here, unreadable, a file of no known family)."""
    try:
        source = resolve(spec)
    except ModelError:
        return None
    if source.kind == "checkpoint":
        return "generator" if _checkpoint_family(Path(source.location)) is not None else None
    folder = _local_folder(source)
    if folder is None:
        return None
    name = _read_json(folder / "model_index.json").get("_class_name")
    if not isinstance(name, str) or not name:
        return None
    if name == X4_UPSCALER_CLASS:
        return "x4 upscaler"
    return "upscaler" if "Upscale" in name else "generator"


def is_installed(spec: str) -> bool:
    """Whether a model is on this machine (embedded, a folder or file that exists, or a hub
    model already in the local cache): using it downloads nothing."""
    try:
        source = resolve(spec)
    except ModelError:
        return False
    return source.kind == "checkpoint" or _local_folder(source) is not None


def _local_folder(source: ModelSource) -> Path | None:
    if source.kind in ("embedded", "folder"):
        return Path(source.location)
    if source.kind == "hub":
        try:
            from huggingface_hub import try_to_load_from_cache

            index = try_to_load_from_cache(source.location, "model_index.json")
        except Exception:  # noqa: BLE001 - no cache means nothing known
            return None
        return Path(index).parent if isinstance(index, str) else None
    return None


def _read_json(path: Path) -> dict[str, Any]:
    """A JSON object from a file; {} when it is missing, unreadable, not a regular file (a
    named pipe would block) or not an object."""
    try:
        return read_json_object(path, 1024 * 1024)
    except (OSError, ValueError):
        return {}


def _native_size(folder: Path) -> tuple[int, int] | None:
    """The size a diffusers model was trained at: the network's sample size (in latent
    pixels, or in 2×2 patches for packed transformers) times the VAE's downscale."""
    vae = _read_json(folder / "vae" / "config.json")
    blocks = vae.get("block_out_channels")
    for component in ("unet", "transformer"):
        sample = _read_json(folder / component / "config.json").get("sample_size")
        if isinstance(sample, list | tuple):
            sample = sample[0] if sample else None
        if isinstance(sample, int) and isinstance(blocks, list) and blocks:
            side = sample * 2 ** (len(blocks) - 1)
            return side, side
    return None


def resolve(spec: str) -> ModelSource:
    """Say where a model spec points, without loading anything."""
    spec = spec.strip()
    if not spec:
        raise ModelError("No model is chosen.")
    embedded = EMBEDDED_MODELS_DIR / spec
    if "/" not in spec and (embedded / "model_index.json").is_file():
        return ModelSource(spec, "embedded", str(embedded))
    path = Path(spec).expanduser()
    if not path.exists():
        from studio.core import models_folder

        found = models_folder.find(spec)
        if found is not None:  # a name in the artist's models folder ("ponyV6", "SDXL/ponyV6")
            return resolve(str(found))
    if path.is_dir():
        if not (path / "model_index.json").is_file():
            raise ModelError(
                f"The folder '{path}' is not a diffusers model (it has no model_index.json)."
            )
        return ModelSource(spec, "folder", str(path))
    if path.suffix.lower() in _CHECKPOINT_SUFFIXES:
        if not path.is_file():
            raise ModelError(f"The model file '{path}' does not exist.")
        return ModelSource(spec, "checkpoint", str(path))
    if _HUB_ID.match(spec) and not path.exists():
        return ModelSource(spec, "hub", spec)
    from studio.core import models_folder

    folder = models_folder.models_dir()
    known = "a known model, a diffusers folder, a checkpoint file or a hub id"
    if folder is not None:
        raise ModelError(f"'{spec}' is not in the models folder ({folder}), nor {known}.")
    if "/" not in spec and "\\" not in spec:  # a name, as artists give their checkpoints
        raise ModelError(
            f"'{spec}' is not {known}; to take checkpoints by name from your models folder, "
            "point the studio at it (--models-dir, $LATENT_STUDIO_MODELS_DIR or Settings → "
            "Models folder)."
        )
    raise ModelError(f"'{spec}' is not {known}.")


def _registry_path() -> Path:
    from studio.core.paths import config_dir

    return config_dir() / "models.json"


def added_models() -> list[str]:
    """Model specs the user added (hub ids, folders, checkpoint files), oldest first. A list
    file that is damaged or of the wrong shape is set aside (kept) and counts as empty."""
    path = _registry_path()
    if not path.exists():
        return []
    try:
        added = read_json_object(path, 16 * 1024 * 1024)["added"]
        if not isinstance(added, list):
            raise ValueError("'added' is not a list")
    except (OSError, ValueError, KeyError):
        set_aside(path, "damaged (not the list of added models the studio writes)")
        return []
    return [s for s in added if isinstance(s, str) and s.strip() and "\x00" not in s]


def add_model(spec: str) -> ModelSource:
    """Remember a model spec (checked with `resolve`, not loaded) for the CLI and the UI."""
    source = resolve(spec)
    specs = added_models()
    if source.kind != "embedded" and spec not in specs:
        _write_registry([*specs, spec])
    return source


def remove_model(spec: str) -> None:
    _write_registry([s for s in added_models() if s != spec])


def _write_registry(specs: list[str]) -> None:
    from studio.core.saving import write_atomically

    path = _registry_path()
    path.parent.mkdir(parents=True, exist_ok=True)
    text = json.dumps({"added": specs}, indent=2).encode("utf-8")
    write_atomically(path, lambda handle: handle.write(text))


def cached_hub_models() -> list[ModelInfo]:
    """Diffusers models already in the Hugging Face cache, usable offline."""
    try:
        from huggingface_hub import scan_cache_dir

        cache = scan_cache_dir()
    except Exception:  # noqa: BLE001 - no cache, or an unreadable one, means none
        return []
    found = []
    for repo in sorted(cache.repos, key=lambda r: r.repo_id):
        if repo.repo_type != "model":
            continue
        files = {f.file_name for rev in repo.revisions for f in rev.files}
        if "model_index.json" in files:
            found.append(ModelInfo(repo.repo_id, "hub", str(repo.repo_path), "generator"))
    return found
