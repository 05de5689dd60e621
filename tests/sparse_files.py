"""Model files the tests only inspect: a .safetensors header naming tensors and their shapes,
over a hole of the right size, so no weight is ever written (a published model's names and
shapes cost nothing on disk)."""

from __future__ import annotations

import json
import math
from collections.abc import Mapping, Sequence
from pathlib import Path

# bytes a value of each safetensors dtype takes
_SIZES = {"U8": 1, "F8_E4M3": 1, "F8_E5M2": 1, "F16": 2, "BF16": 2, "F32": 4}


def sparse_safetensors(
    path: Path,
    tensors: Mapping[str, Sequence[int] | tuple[Sequence[int], str]],
    dtype: str = "F16",
    metadata: Mapping[str, str] | None = None,
) -> Path:
    """Write `path`: each tensor a shape, or (shape, dtype) where it is not `dtype`; the
    header's free-form `metadata` where given."""
    header: dict = {"__metadata__": dict(metadata)} if metadata else {}
    offset = 0
    for name, given in tensors.items():
        shape, kind = given if len(given) == 2 and isinstance(given[1], str) else (given, dtype)
        size = _SIZES[kind] * math.prod(shape)
        header[name] = {
            "dtype": kind,
            "shape": list(shape),
            "data_offsets": [offset, offset + size],
        }
        offset += size
    data = json.dumps(header).encode()
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "wb") as handle:
        handle.write(len(data).to_bytes(8, "little") + data)
        handle.truncate(8 + len(data) + offset)
    return path
