"""The inpainting mask as plain numpy: a crisp uint8 array, brush strokes, per-stroke undo.

No Qt here, so the painting rules can be tested without a widget; the canvas draws the
array. Convention (the engine's): 255 where the user painted (repaint), 0 elsewhere.
"""

from __future__ import annotations

import math
from collections import deque
from dataclasses import dataclass

import numpy as np
from PIL import Image

Box = tuple[int, int, int, int]  # left, top, right, bottom; right and bottom exclusive

PAINTED = 255
HISTORY_STEPS = 50
HISTORY_BYTES = 256 * 2**20  # a few full-mask edits of a large picture, not gigabytes
# Every point lies within 1/√2 of some pixel centre, so the smallest dab marks a pixel.
MIN_RADIUS = 0.71


def stamp_segment(
    mask: np.ndarray, start: tuple[float, float, float], end: tuple[float, float, float], value: int
) -> Box | None:
    """Set to `value` every pixel whose centre lies in the round-capped segment start→end.

    Points are (x, y, radius) in image pixels (pixel (i, j) covers [i, i+1)×[j, j+1)); the
    radius varies linearly along the segment, so pen pressure tapers smoothly. Drawing
    whole capsules between successive mouse positions is what keeps fast strokes gapless.
    Returns the box of pixels examined, or None when the segment misses the mask.
    """
    (x0, y0, r0), (x1, y1, r1) = start, end
    r0, r1 = max(r0, MIN_RADIUS), max(r1, MIN_RADIUS)
    reach = max(r0, r1)
    height, width = mask.shape
    left = max(0, math.floor(min(x0, x1) - reach))
    top = max(0, math.floor(min(y0, y1) - reach))
    right = min(width, math.ceil(max(x0, x1) + reach) + 1)
    bottom = min(height, math.ceil(max(y0, y1) + reach) + 1)
    if left >= right or top >= bottom:
        return None

    px = np.arange(left, right, dtype=np.float32)[None, :] + (0.5 - x0)
    py = np.arange(top, bottom, dtype=np.float32)[:, None] + (0.5 - y0)
    dx, dy = x1 - x0, y1 - y0
    length2 = dx * dx + dy * dy
    t = np.clip((px * dx + py * dy) / length2, 0.0, 1.0) if length2 > 1e-12 else np.float32(0)
    radius = r0 + t * (r1 - r0)
    inside = (px - t * dx) ** 2 + (py - t * dy) ** 2 <= radius * radius
    mask[top:bottom, left:right][inside] = value
    return (left, top, right, bottom)


def changed_box(before: np.ndarray, after: np.ndarray) -> Box | None:
    """The smallest box holding every pixel that differs, or None if none does."""
    diff = before != after
    rows = np.flatnonzero(diff.any(axis=1))
    if rows.size == 0:
        return None
    cols = np.flatnonzero(diff.any(axis=0))
    return (int(cols[0]), int(rows[0]), int(cols[-1]) + 1, int(rows[-1]) + 1)


@dataclass(frozen=True)
class MaskEdit:
    """One undo step: the pixels of `box` before and after the edit."""

    box: Box
    before: np.ndarray
    after: np.ndarray

    @property
    def nbytes(self) -> int:
        return self.before.nbytes + self.after.nbytes


class MaskHistory:
    """Undo and redo as patches of the changed box only, bounded in steps and in bytes."""

    def __init__(self, limit: int = HISTORY_STEPS, max_bytes: int = HISTORY_BYTES) -> None:
        self._undo: deque[MaskEdit] = deque()
        self._redo: list[MaskEdit] = []
        self._limit = limit
        self._max_bytes = max_bytes

    def push(self, edit: MaskEdit) -> None:
        self._undo.append(edit)
        self._redo.clear()
        while len(self._undo) > self._limit or (
            len(self._undo) > 1 and sum(e.nbytes for e in self._undo) > self._max_bytes
        ):
            self._undo.popleft()

    def undo(self, mask: np.ndarray) -> Box | None:
        if not self._undo:
            return None
        edit = self._undo.pop()
        self._redo.append(edit)
        return _put(mask, edit.box, edit.before)

    def redo(self, mask: np.ndarray) -> Box | None:
        if not self._redo:
            return None
        edit = self._redo.pop()
        self._undo.append(edit)
        return _put(mask, edit.box, edit.after)

    def can_undo(self) -> bool:
        return bool(self._undo)

    def can_redo(self) -> bool:
        return bool(self._redo)

    def __len__(self) -> int:
        return len(self._undo)


def _put(mask: np.ndarray, box: Box, patch: np.ndarray) -> Box:
    left, top, right, bottom = box
    mask[top:bottom, left:right] = patch
    return box


def _union(a: Box | None, b: Box | None) -> Box | None:
    if a is None or b is None:
        return a or b
    return (min(a[0], b[0]), min(a[1], b[1]), max(a[2], b[2]), max(a[3], b[3]))


class MaskLayer:
    """A mask the size of the image, painted by strokes; every edit is one undo step.

    Methods that change pixels return the box that changed (for a partial redraw) or
    None when nothing did.
    """

    def __init__(self, width: int, height: int, history_limit: int = HISTORY_STEPS) -> None:
        self.array = np.zeros((height, width), dtype=np.uint8)
        self.history = MaskHistory(history_limit)
        self._stroke_before: np.ndarray | None = None
        self._stroke_box: Box | None = None
        self._stroke_value = PAINTED
        self._last: tuple[float, float, float] | None = None

    @property
    def size(self) -> tuple[int, int]:
        return self.array.shape[1], self.array.shape[0]

    def is_empty(self) -> bool:
        return not self.array.any()

    def to_image(self) -> Image.Image:
        # A copy: fromarray would share memory with the array the brush keeps painting.
        return Image.fromarray(self.array.copy())

    # Strokes -------------------------------------------------------------------------

    @property
    def in_stroke(self) -> bool:
        return self._stroke_before is not None

    def begin_stroke(self, erase: bool = False) -> None:
        # A full snapshot is a memcpy; the history keeps only the changed box of it.
        self._stroke_before = self.array.copy()
        self._stroke_box = None
        self._stroke_value = 0 if erase else PAINTED
        self._last = None

    def stroke_to(self, x: float, y: float, radius: float) -> Box | None:
        """Extend the stroke to (x, y); the first call of a stroke leaves a single dab."""
        if self._stroke_before is None:
            raise RuntimeError("stroke_to() called outside a stroke")
        point = (x, y, radius)
        box = stamp_segment(self.array, self._last or point, point, self._stroke_value)
        self._last = point
        self._stroke_box = _union(self._stroke_box, box)
        return box

    def end_stroke(self) -> Box | None:
        """Finish the stroke as one undo step; returns the changed box, None if unchanged."""
        before, box = self._stroke_before, self._stroke_box
        self._stroke_before = self._stroke_box = self._last = None
        if before is None or box is None:
            return None
        left, top, right, bottom = box
        region = (slice(top, bottom), slice(left, right))
        changed = changed_box(before[region], self.array[region])
        if changed is None:
            return None
        changed = (left + changed[0], top + changed[1], left + changed[2], top + changed[3])
        return self._record(before, changed)

    def cancel_stroke(self) -> Box | None:
        """Throw the stroke in progress away, restoring the pixels it changed."""
        before, box = self._stroke_before, self._stroke_box
        self._stroke_before = self._stroke_box = self._last = None
        if before is None or box is None:
            return None
        left, top, right, bottom = box
        return _put(self.array, box, before[top:bottom, left:right])

    # Whole-mask edits ----------------------------------------------------------------

    def clear(self) -> Box | None:
        return self._replace(np.zeros_like(self.array))

    def invert(self) -> Box | None:
        return self._replace(PAINTED - self.array)

    def replace(self, array: np.ndarray) -> Box | None:
        """Put in another mask of the same shape; anything painted (≥ 128) becomes 255."""
        if array.shape != self.array.shape:
            raise ValueError(
                f"The mask is {array.shape[1]}×{array.shape[0]} pixels but the image is "
                f"{self.size[0]}×{self.size[1]}."
            )
        return self._replace(np.where(array >= 128, PAINTED, 0).astype(np.uint8))

    def undo(self) -> Box | None:
        self._finish_pending()
        return self.history.undo(self.array)

    def redo(self) -> Box | None:
        self._finish_pending()
        return self.history.redo(self.array)

    def _replace(self, new: np.ndarray) -> Box | None:
        self._finish_pending()
        box = changed_box(self.array, new)
        if box is None:
            return None
        before = self.array.copy()
        self.array[...] = new  # in place: the canvas's overlay reads this very buffer
        return self._record(before, box)

    def _record(self, before: np.ndarray, box: Box) -> Box:
        left, top, right, bottom = box
        region = (slice(top, bottom), slice(left, right))
        self.history.push(MaskEdit(box, before[region].copy(), self.array[region].copy()))
        return box

    def _finish_pending(self) -> None:
        if self.in_stroke:
            self.end_stroke()
