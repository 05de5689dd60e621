"""LoRA files: where they are, how a prompt's `<lora:NAME>` finds one, what a file says
about itself, and the short hash AUTOMATIC1111 writes. Torch-free: the window lists and
describes LoRAs without loading any.

A LoRA is found by the name a tag gives — its file name without the suffix, as A1111
resolves it — in the LoRA folders: the models folder's (`models/Lora`, `models/loras`,
…), the studio's own embedded LoRAs, and a LoRA folder of the artist's choosing; or by its
path. Restoring a file, a name that is not found may still be found by its hash.
"""

from __future__ import annotations

import json
import os
import re
from dataclasses import dataclass, field
from pathlib import Path

from studio.core import file_hashes, models_folder
from studio.core.files import is_regular_file
from studio.core.model_files import safetensors_keys, safetensors_metadata
from studio.core.paths import RESOURCES_DIR
from studio.core.prompt_tags import split_lora_tags
from studio.core.text import printable

LORA_SUFFIXES = (".safetensors", ".pt", ".ckpt", ".bin")
EMBEDDED_LORAS_DIR = RESOURCES_DIR / "loras"
LORA_DIR_ENV = "LATENT_STUDIO_LORA_DIR"
PREVIEW_SUFFIXES = (".preview.png", ".png", ".preview.jpg", ".jpg", ".preview.webp", ".webp")

_lora_dir: Path | None = None  # the window's setting


class LoraError(ValueError):
    """A LoRA that cannot be used; str() is one sentence for the artist."""


def use_lora_dir(folder: str | Path | None) -> None:
    """The artist's own LoRA folder (Settings), searched besides the models folder's."""
    global _lora_dir
    _lora_dir = Path(folder).expanduser() if folder else None


def lora_dirs() -> list[Path]:
    """Every folder searched for LoRAs, first match wins."""
    folders: list[Path] = []
    environment = os.environ.get(LORA_DIR_ENV)
    for folder in (_lora_dir, Path(environment) if environment else None):
        if folder is not None and folder.is_dir():
            folders.append(folder)
    if EMBEDDED_LORAS_DIR.is_dir():
        folders.append(EMBEDDED_LORAS_DIR)
    return folders


def not_found(names: list[str], advice: str) -> str:
    """The sentence for LoRAs named and not here: which, where they were looked for, and
    `advice` (what the artist can do, as they named them: a prompt's tag, an option)."""
    where = ", ".join(str(f) for f in searched_folders()) or "no LoRA folder is set"
    return (
        f"No LoRA called {', '.join(repr(printable(n)) for n in names)} in the LoRA folders "
        f"({printable(where)}): {advice}."
    )


def searched_folders() -> list[Path]:
    """Every folder a LoRA's name is looked up in, for a sentence that names them: the
    models folder's LoRA folders as well as `lora_dirs`."""
    found = models_folder.current()
    extra = models_folder.kind_folders(found.root, "loras") if found is not None else []
    return [*lora_dirs(), *(folder for folder in extra if folder not in lora_dirs())]


# what the LoRA folders held: (the models folder's scan, the folders' times, the files)
_listed: tuple[object, object, list[Path]] | None = None


def available() -> list[Path]:
    """Every LoRA file found, by name (the first of a name wins, as lookups do). Listed again
    only when a folder changes: the note under the prompt asks at every keystroke."""
    global _listed
    found = models_folder.current()
    folders = lora_dirs()
    times = _folder_times(folders)
    if _listed is not None and _listed[0] is found and times is not None and _listed[1] == times:
        return list(_listed[2])
    listed = _list(found, folders)
    _listed = (found, times, listed)
    return list(listed)


def _folder_times(folders: list[Path]) -> tuple | None:
    """The change times of the folders and of the folders in them (where files are
    listed); None when one cannot be read (then the listing is made again)."""
    try:
        times = []
        for folder in folders:
            times.append((str(folder), folder.stat().st_mtime_ns))
            with os.scandir(folder) as entries:
                times.extend(
                    (e.path, e.stat().st_mtime_ns)
                    for e in entries
                    if e.is_dir(follow_symlinks=False)
                )
        return tuple(times)
    except OSError:
        return None


def _list(found: models_folder.ModelsFolder | None, folders: list[Path]) -> list[Path]:
    seen: dict[str, Path] = {}
    candidates = [*(_files(folder) for folder in folders)]
    if found is not None:
        candidates.append(found.loras)
    for paths in candidates:
        for path in paths:
            seen.setdefault(path.stem.lower(), path)
    return sorted(seen.values(), key=lambda p: p.stem.lower())


def find(name: str) -> Path | None:
    """The LoRA a tag names: a path, or a file name (with or without its suffix) in the
    LoRA folders; None when there is none."""
    name = name.strip()
    path = Path(name).expanduser()
    if path.suffix.lower() in LORA_SUFFIXES and is_regular_file(path):
        return path
    wanted = name.lower()
    for candidate in available():
        if wanted in (candidate.stem.lower(), candidate.name.lower()):
            return candidate
    return None


def find_by_hash(short: str) -> Path | None:
    """A LoRA whose short hash (A1111's, or Civitai's AutoV2) starts like `short`."""
    short = short.strip().lower()
    if len(short) < 8:
        return None
    for candidate in available():
        if short_hash(candidate).startswith(short) or _file_sha256(candidate).startswith(short):
            return candidate
    return None


def short_hash(path: Path) -> str:
    """The hash A1111 writes in "Lora hashes": for a .safetensors file the SHA-256 of its
    tensors (the bytes after the header, so edited metadata keeps the hash), else of the
    whole file; the first 12 hex digits."""
    return file_hashes.sha256(path, skip_header=_is_safetensors(path))[:12]


def _file_sha256(path: Path) -> str:
    return file_hashes.sha256(path)


def _is_safetensors(path: Path) -> bool:
    return path.suffix.lower() == ".safetensors"


# -- what a file says about itself ---------------------------------------------------------


@dataclass
class LoraInfo:
    path: Path
    name: str
    family: str = ""  # "SD 1.x", "SDXL", "Flux.1", … when its name, header or keys tell
    triggers: list[str] = field(default_factory=list)  # words the trainer tagged most
    preview: Path | None = None  # a picture beside it, as A1111 and Civitai helpers keep
    thumbnail: bytes = b""  # or one in its metadata (ModelSpec's data: URI), image bytes


def describe(path: Path) -> LoraInfo:
    """What the panel shows of a LoRA: its family, trigger words and preview picture, from
    its name, its metadata (kohya's `ss_*`, ModelSpec's `modelspec.*`), its tensor names
    and sibling files; never more than the header is read."""
    info = LoraInfo(path, printable(path.stem))
    info.preview = next(
        (
            path.with_name(path.stem + suffix)
            for suffix in PREVIEW_SUFFIXES
            if is_regular_file(path.with_name(path.stem + suffix))
        ),
        None,
    )
    info.family = family_from_name(path.stem)  # a .pt file's or a damaged header's too
    if not _is_safetensors(path):
        return info
    try:
        metadata = safetensors_metadata(path)
        keys = safetensors_keys(path)
    except (OSError, ValueError, UnicodeDecodeError):
        return info
    info.family = info.family or _family_of(metadata, keys)
    info.triggers = _triggers(metadata)
    info.thumbnail = _thumbnail(metadata)
    return info


def family(path: Path) -> str:
    """The family a LoRA file is for: the one its name says, else the one its header shows
    (read only then: the fast setting asks this of every acceleration LoRA found)."""
    return family_from_name(path.stem) or describe(path).family


# What a LoRA's name says it was made for, most specific first. The name wins over the
# header: it tells what the header cannot (a Klein or Flux.2 LoRA's keys and ModelSpec
# architecture read as Flux.1, an SSD-1B one's as SDXL, a Qwen edit one's as Qwen-Image).
_NAMED_FAMILIES: tuple[tuple[str, str], ...] = (
    (r"qwen.*edit", "Qwen-Image-Edit"),
    (r"qwen", "Qwen-Image"),
    (r"klein", "Flux.2 Klein"),
    (r"flux[-_ .]?2", "Flux.2 dev"),  # a Flux.2 dev LoRA fits no Klein (another width)
    (r"flux", "Flux.1"),
    (r"ssd[-_]?1b", "SSD-1B"),  # SDXL's layout, distilled smaller: fits no full SDXL model
    (r"sdxl|(^|[^a-z])xl([^a-z]|$)", "SDXL"),
    (r"sd[-_ .]?3", "SD 3.x"),
    (r"sd[-_ .]?v?2[-_.]?[01x]?([^0-9]|$)", "SD 2.x"),
    (r"sd[-_ .]?v?1[-_.]?[5x]|sd15", "SD 1.x"),
)


def family_from_name(name: str) -> str:
    """The family a LoRA's file name names ("lcm-lora-sdxl" → "SDXL"); "" when none."""
    lowered = name.lower()
    for pattern, label in _NAMED_FAMILIES:
        if re.search(pattern, lowered):
            return label
    return ""


MAX_THUMBNAIL_BYTES = 2 * 2**20


def _thumbnail(metadata: dict[str, str]) -> bytes:
    """The picture ModelSpec keeps as `data:image/…;base64,…`; b"" when none or damaged."""
    import base64

    uri = metadata.get("modelspec.thumbnail", "")
    head, _, data = uri.partition(",")
    if not (head.startswith("data:image/") and head.endswith(";base64") and data):
        return b""
    if len(data) > MAX_THUMBNAIL_BYTES * 4 // 3 + 4:
        return b""
    try:
        return base64.b64decode(data, validate=True)
    except ValueError:
        return b""


_BASE_MODELS = {  # kohya's ss_base_model_version and ModelSpec's architecture, shortened
    "sd_v1": "SD 1.x",
    "sd_v2": "SD 2.x",
    "sdxl": "SDXL",
    "flux": "Flux.1",
    "sd3": "SD 3.x",
    "stable-diffusion-v1": "SD 1.x",
    "stable-diffusion-xl": "SDXL",
    "studio-tiny": "studio-tiny",  # the embedded LoRAs'
}


def _family_of(metadata: dict[str, str], keys: list[str]) -> str:
    stated = (
        metadata.get("ss_base_model_version") or metadata.get("modelspec.architecture") or ""
    ).lower()
    for prefix, label in _BASE_MODELS.items():
        if stated.startswith(prefix):
            return label
    joined = " ".join(keys[:400])
    if "lora_te2_" in joined or "text_encoder_2." in joined or "add_embedding" in joined:
        return "SDXL"
    if "double_blocks" in joined or "single_transformer_blocks" in joined:
        return "Flux.1"
    if "lora_unet_" in joined or "unet." in joined:
        # SDXL's UNet stacks several transformer blocks in an attention layer, SD 1.x and
        # 2.x one: a UNet-only SDXL LoRA (LCM-LoRA, Lightning, Hyper-SD) has no te2 to say so
        if "transformer_blocks_1" in joined or "transformer_blocks.1." in joined:
            return "SDXL"
        return "SD 1.x"  # or 2.x: the names are the same; shapes would tell
    return ""


def _triggers(metadata: dict[str, str], most: int = 5) -> list[str]:
    phrase = metadata.get("modelspec.trigger_phrase")
    if phrase:
        return [printable(t.strip()) for t in phrase.split(",") if t.strip()][:most]
    try:
        frequencies = json.loads(metadata.get("ss_tag_frequency") or "{}")
    except ValueError:
        return []
    counts: dict[str, int] = {}
    if isinstance(frequencies, dict):
        for tags in frequencies.values():
            if isinstance(tags, dict):
                for tag, count in tags.items():
                    if isinstance(count, int):
                        counts[str(tag).strip()] = counts.get(str(tag).strip(), 0) + count
    ranked = sorted(counts, key=lambda t: -counts[t])
    return [printable(t) for t in ranked if t][:most]


def _files(folder: Path) -> list[Path]:
    """LoRA files directly in a folder and one level down (a bounded look)."""
    found: list[Path] = []
    try:
        entries = sorted(os.scandir(folder), key=lambda e: e.name)
    except OSError:
        return found
    for entry in entries[:5000]:
        path = Path(entry.path)
        if entry.is_file() and entry.name.lower().endswith(LORA_SUFFIXES):
            found.append(path)
        elif entry.is_dir(follow_symlinks=False):
            try:
                found.extend(
                    Path(e.path)
                    for e in list(os.scandir(path))[:5000]
                    if e.is_file() and e.name.lower().endswith(LORA_SUFFIXES)
                )
            except OSError:
                continue
    return found


# -- metadata -------------------------------------------------------------------------------


def hashes_field(prompt: str) -> str:
    """A1111's "Lora hashes" value for the LoRAs a prompt names ("name: hash, …"); those not
    found are left out (the job would not have run with them)."""
    _, tags = split_lora_tags(prompt)
    pairs = []
    for tag in tags:
        path = find(tag.name)
        if path is not None:
            pairs.append(f"{tag.name}: {short_hash(path)}")
    return ", ".join(pairs)


def restore_tags(prompt: str, hashes: str | None) -> tuple[str, list[str]]:
    """A restored prompt's LoRA tags made to name the files here: a LoRA not found by its
    name but by its hash ("Lora hashes") is renamed in its tag; those found neither way are
    named in a note (their tags stay, and Generate says so again)."""
    _, tags = split_lora_tags(prompt)
    known = _parse_hashes(hashes or "")
    notes: list[str] = []
    missing: list[str] = []
    for tag in tags:
        if find(tag.name) is not None:
            continue
        here = find_by_hash(known.get(tag.name, ""))
        if here is None:
            missing.append(printable(tag.name))
            continue
        prompt = re.sub(
            rf"<(lora|lyco):{re.escape(tag.name)}(?=[:>])", rf"<\1:{here.stem}", prompt, flags=re.I
        )
        notes.append(f"The LoRA '{printable(tag.name)}' is here as '{printable(here.stem)}'.")
    if missing:
        names = ", ".join(f"'{name}'" for name in missing)
        notes.append(f"Not in your LoRA folders: {names}. Add them there to use them.")
    return prompt, notes


def _parse_hashes(text: str) -> dict[str, str]:
    found: dict[str, str] = {}
    for part in text.split(","):
        name, _, value = part.rpartition(":")
        if name.strip() and value.strip():
            found[name.strip()] = value.strip()
    return found


def missing_note(prompt: str) -> str:
    """A line under the prompt naming the LoRAs its tags ask for that are not here (the job
    would stop on them); "" when every one is found."""
    _, tags = split_lora_tags(prompt)
    missing = [printable(tag.name) for tag in tags if find(tag.name) is None]
    if not missing:
        return ""
    names = ", ".join(f"'{name}'" for name in missing)
    return f"No LoRA called {names} in your LoRA folders: add the file or remove the tag."
