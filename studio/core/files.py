"""Reading files that come from anywhere (a model download, a synced folder) without
ever blocking or running out of memory: regular files only, reads bounded in size."""

from __future__ import annotations

import json
import os
import stat
from pathlib import Path
from typing import Any

MAX_JSON_BYTES = 64 * 1024 * 1024  # the largest tokenizer JSON models ship is ~35 MB


def is_regular_file(path: Path) -> bool:
    """A regular file (through links), never a pipe, socket or device, which could block."""
    try:
        return stat.S_ISREG(os.stat(path).st_mode)
    except (OSError, ValueError):
        return False


def is_folder(path: Path) -> bool:
    """A folder (through links); False for a path that cannot be looked at (a name too
    long), where Path.is_dir raises."""
    try:
        return stat.S_ISDIR(os.stat(path).st_mode)
    except (OSError, ValueError):
        return False


def read_json_object(path: Path, limit: int = MAX_JSON_BYTES) -> dict[str, Any]:
    """A JSON object from a regular file of at most `limit` bytes; ValueError otherwise."""
    if not is_regular_file(path):
        raise ValueError("not a regular file")
    with open(path, "rb") as handle:
        data = handle.read(limit + 1)
    if len(data) > limit:
        raise ValueError("too large")
    try:
        value = json.loads(data.decode("utf-8"))
    except (UnicodeDecodeError, RecursionError) as e:
        raise ValueError(str(e)) from None
    if not isinstance(value, dict):
        raise ValueError("not a JSON object")
    return value
