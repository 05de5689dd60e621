"""SHA-256 hashes of model files, as artists' tools write them in an image's metadata:
"Model hash" (AUTOMATIC1111's and Civitai's AutoV2: the first ten hex digits of the whole
file's) and "Lora hashes" (the tensors' bytes after a .safetensors header).

A checkpoint of 7 GB takes seconds to hash, so each hash is kept, in memory and in the
cache folder (`file-hashes.json`), under the file's path, size and time: a file changed
or replaced is hashed again.
"""

from __future__ import annotations

import hashlib
import json
import logging
import threading
from pathlib import Path

from studio.core.paths import cache_dir

log = logging.getLogger(__name__)

CACHE_NAME = "file-hashes.json"
MOST_KEPT = 2000  # files remembered on disk; the oldest go first

_lock = threading.Lock()  # one hash of a file at a time, whichever thread asks
_kept: dict[str, str] | None = None  # key → hex digest, read from disk once


def sha256(path: Path, skip_header: bool = False) -> str:
    """The file's SHA-256 in hex; with `skip_header`, of the bytes after a .safetensors
    header (so that edited metadata keeps the hash). OSError when it cannot be read."""
    stat = path.stat()
    kind = "tensors" if skip_header else "file"
    key = f"{kind}:{path.resolve()}:{stat.st_size}:{stat.st_mtime_ns}"
    with _lock:
        kept = _read()
        found = kept.get(key)
        if found is None:
            found = _hash(path, skip_header)
            kept[key] = found
            _write(kept)
    return found


def model_hash(path: Path) -> str:
    """The "Model hash" of a single-file model: its whole SHA-256's first ten hex digits."""
    return sha256(path)[:10]


def _hash(path: Path, skip_header: bool) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        if skip_header:
            length = int.from_bytes(handle.read(8), "little")
            handle.seek(8 + length)
        for block in iter(lambda: handle.read(1024 * 1024), b""):
            digest.update(block)
    return digest.hexdigest()


def _cache_file() -> Path:
    return cache_dir() / CACHE_NAME


def _read() -> dict[str, str]:
    global _kept
    if _kept is None:
        try:
            data = json.loads(_cache_file().read_text(encoding="utf-8"))
        except (OSError, ValueError):
            data = {}
        valid = isinstance(data, dict)
        _kept = {k: v for k, v in data.items() if isinstance(v, str)} if valid else {}
    return _kept


def _write(kept: dict[str, str]) -> None:
    """The hashes on disk, whole or not at all; a cache that cannot be written costs only
    the time of hashing again next session."""
    from studio.core.saving import write_atomically

    while len(kept) > MOST_KEPT:
        del kept[next(iter(kept))]
    data = json.dumps(kept, indent=0).encode()
    try:
        _cache_file().parent.mkdir(parents=True, exist_ok=True)
        write_atomically(_cache_file(), lambda handle: handle.write(data))
    except OSError:
        log.warning("the file hashes could not be kept in %s", _cache_file(), exc_info=True)
