"""The gallery's thumbnails: made off the UI thread, only for the rows the view asks for,
kept in memory in a cache bounded in bytes (the least recently used goes first), and for
large pictures also kept on disk, in a small sidecar cache of the studio's own, so that a
restart does not decode them again.

Thread rules: the worker makes QImages only; QPixmaps are made and kept on the UI thread.
Requests wait in a last-in-first-out queue (what the artist looks at now comes first), and
the view drops those it scrolled past (`ThumbnailLoader.retain`) before they are decoded.
"""

from __future__ import annotations

import contextlib
import hashlib
import logging
import math
import os
import re
import stat
import tempfile
import threading
import time
from collections import OrderedDict
from collections.abc import Collection
from pathlib import Path

from PIL import Image
from PySide6.QtCore import QObject, QRect, QRunnable, QSize, Qt, QThreadPool, Signal
from PySide6.QtGui import QColor, QImage, QImageReader, QPainter, QPixmap

from studio.ui.qt_images import pil_to_qimage

log = logging.getLogger(__name__)

THUMB_SIZE = 96
MEMORY_BYTES = 16 * 1024 * 1024  # 384 thumbnails of 96×96 (six pages): ten full screens
DISK_BYTES = 64 * 1024 * 1024  # the sidecar cache on disk, pruned oldest first beyond this
SIDECAR_MIN_BYTES = 64 * 1024  # smaller files decode as fast as a thumbnail reads back
QUEUE_LIMIT = 512  # requests waiting; the oldest are dropped beyond it
# the only files the cache ever deletes: its thumbnails, and what a write cut short left
_SIDECAR_NAME = re.compile(r"^([0-9a-f]{40}|\.part-\w+)\.png$")


def make_thumbnail(path: Path, size: int = THUMB_SIZE) -> QImage:
    """The picture of an image file fitted into a size×size square, its aspect kept (made
    smaller, or larger when it is small): safe off the UI thread (a QImage, not a QPixmap).
    Qt's reader decodes (in C++, letting go of Python's lock, so the window keeps its
    turns; JPEG at a reduced scale); what it cannot read goes through PIL; a file neither
    can read gives a dark red square."""
    reader = QImageReader(str(path))
    reader.setAutoTransform(True)  # EXIF orientation, as a photo viewer shows it
    whole = reader.size()
    if whole.isValid() and not whole.isEmpty():
        fitted = _fitted(whole.width(), whole.height(), size)
        scale = fitted[0] / whole.width()
        if scale < 2:  # smaller, or a little larger: scaled smoothly while decoding
            reader.setScaledSize(QSize(*fitted))
        image = reader.read()
        if not image.isNull():
            if image.width() != fitted[0] or image.height() != fitted[1]:
                # small pictures (64×64 and less) enlarged crisply, or turned by EXIF
                image = image.scaled(
                    *_fitted(image.width(), image.height(), size),
                    Qt.AspectRatioMode.IgnoreAspectRatio,
                    Qt.TransformationMode.FastTransformation,
                )
            return image
    return _pil_thumbnail(path, size)


def _fitted(width: int, height: int, size: int) -> tuple[int, int]:
    scale = size / max(width, height, 1)
    return max(1, round(width * scale)), max(1, round(height * scale))


def _pil_thumbnail(path: Path, size: int) -> QImage:
    try:
        with Image.open(path) as image:
            image.draft("RGB", (size, size))  # JPEG: decode at a reduced scale
            fitted = _fitted(image.width, image.height, size)
            rgb = image.convert("RGB")
            smaller = fitted[0] < image.width
            method = Image.Resampling.LANCZOS if smaller else Image.Resampling.NEAREST
            small = rgb.resize(fitted, method, reducing_gap=3.0 if smaller else None)
    except (OSError, ValueError, Image.DecompressionBombError):
        broken = QImage(size, size, QImage.Format.Format_RGB888)
        broken.fill(QColor("#552222"))
        return broken
    return pil_to_qimage(small)


class ThumbnailAtlas:
    """Thumbnails in memory on the UI thread, drawn into a few large pixmaps (pages) of
    square slots, at most `limit` bytes of pages; reading one makes it the most recently
    used, and when every slot is taken the least recently used gives up its slot.

    Why pages and not one QPixmap per thumbnail: each QPixmap held from Python is an object
    the garbage collector tracks, and thousands of them passing through while the artist
    scrolls made it walk every object of the process (25 ms here, more with torch loaded)
    in the middle of a scroll. A slot is a plain int; the pages are a handful of objects.
    """

    def __init__(self, limit: int = MEMORY_BYTES, size: int = THUMB_SIZE) -> None:
        if not 0 < size < 256:
            raise ValueError("a thumbnail's sides are kept in a byte each")
        self.size = size
        self._pitch = size + 1  # a gutter: smooth scaling never samples the neighbour
        self.set_limit(limit)

    def set_limit(self, limit: int) -> None:
        """A new bound (what is kept is dropped): pages as large as fit it, up to 8×8."""
        self.limit = limit
        slot_bytes = self._pitch * self._pitch * 4
        self._side = max(1, min(8, math.isqrt(max(1, limit // slot_bytes))))
        self._page_bytes = (self._side * self._pitch) ** 2 * 4
        self._max_pages = max(1, limit // self._page_bytes)
        self.clear()

    @property
    def bytes(self) -> int:
        """The memory the pages take (all their slots, used or not)."""
        return sum(p.width() * p.height() * max(1, p.depth() // 8) for p in self._pages)

    def __len__(self) -> int:
        return len(self._slots)

    def __contains__(self, key: object) -> bool:
        return key in self._slots

    def find(self, key: str) -> tuple[QPixmap, QRect] | None:
        """The page holding the thumbnail of `key` and where on it, or None."""
        code = self._slots.get(key)
        if code is None:
            return None
        self._slots.move_to_end(key)
        return self._locate(code)

    def pixmap(self, key: str) -> QPixmap | None:
        """The thumbnail of `key` on a pixmap of its own (a copy), or None."""
        found = self.find(key)
        return None if found is None else found[0].copy(found[1])

    def put(self, key: str, image: QImage) -> None:
        self.pop(key)
        if image.width() > self.size or image.height() > self.size:
            image = image.scaled(
                self.size,
                self.size,
                Qt.AspectRatioMode.KeepAspectRatio,
                Qt.TransformationMode.SmoothTransformation,
            )
        slot = self._free_slot()
        page, rect = self._locate(slot << _SLOT_SHIFT)
        painter = QPainter(page)
        painter.setCompositionMode(QPainter.CompositionMode.CompositionMode_Source)
        painter.drawImage(rect.topLeft(), image)
        painter.end()
        self._slots[key] = slot << _SLOT_SHIFT | image.width() << 8 | image.height()

    def pop(self, key: str) -> None:
        code = self._slots.pop(key, None)
        if code is not None:
            self._free.append(code >> _SLOT_SHIFT)

    def clear(self) -> None:
        self._pages: list[QPixmap] = []
        self._slots: OrderedDict[str, int] = OrderedDict()  # key -> slot, width, height
        self._free: list[int] = []

    def _free_slot(self) -> int:
        if self._free:
            return self._free.pop()
        if len(self._pages) < self._max_pages:
            page = QPixmap(self._side * self._pitch, self._side * self._pitch)
            page.fill(Qt.GlobalColor.transparent)
            self._pages.append(page)
            first = (len(self._pages) - 1) * self._side * self._side
            self._free = list(range(first + self._side * self._side - 1, first, -1))
            return first
        _, code = self._slots.popitem(last=False)  # the least recently used
        return code >> _SLOT_SHIFT

    def _locate(self, code: int) -> tuple[QPixmap, QRect]:
        slot = code >> _SLOT_SHIFT
        page, place = divmod(slot, self._side * self._side)
        row, column = divmod(place, self._side)
        width, height = (code >> 8) & 0xFF, code & 0xFF
        rect = QRect(column * self._pitch, row * self._pitch, width, height)
        return self._pages[page], rect


_SLOT_SHIFT = 16  # a slot's code: slot << 16 | width << 8 | height (sizes up to 255)


def sidecar_dir() -> Path:
    from studio.core.paths import cache_dir

    return cache_dir() / "thumbnails"


class SidecarStore:
    """Thumbnails on disk, one PNG each, named by a hash of the picture's path, size on
    disk, modification time and the thumbnail size (a changed file is a new name). Files
    are written whole (a temporary file renamed over), only ever into this store's own
    folder, and the store stays under `limit` bytes by deleting its least recently used
    files, which are only ever its own (40 hex digits and .png, or a temporary file a write
    cut short left behind). Used from the worker."""

    def __init__(self, folder: Path, limit: int = DISK_BYTES) -> None:
        self.folder = folder
        self.limit = limit
        self._bytes: int | None = None  # counted at the first write
        self._lock = threading.Lock()

    @staticmethod
    def key(path: Path, info: os.stat_result, size: int) -> str:
        text = f"{os.path.abspath(path)}\0{info.st_size}\0{info.st_mtime_ns}\0{size}"
        return hashlib.sha1(text.encode("utf-8", "surrogatepass")).hexdigest()  # noqa: S324

    def get(self, key: str) -> QImage | None:
        file = self.folder / f"{key}.png"
        image = QImage(str(file))
        if image.isNull():
            return None
        with contextlib.suppress(OSError):
            os.utime(file)  # recently used: pruned last
        return image

    def put(self, key: str, image: QImage) -> None:
        try:
            self.folder.mkdir(parents=True, exist_ok=True)
            handle, temporary = tempfile.mkstemp(prefix=".part-", suffix=".png", dir=self.folder)
            os.close(handle)
            if not image.save(temporary, "PNG"):
                os.unlink(temporary)
                return
            written = os.path.getsize(temporary)
            os.replace(temporary, self.folder / f"{key}.png")
        except OSError as e:  # a full disk or a read-only cache costs only the cache
            log.debug("thumbnail cache not written: %s", e)
            return
        with self._lock:
            if self._bytes is None:
                self._bytes = self._count()
            else:
                self._bytes += written
            if self._bytes > self.limit:
                self._bytes = self._prune(self.limit * 3 // 4)

    def _own_files(self) -> list[tuple[float, int, Path]]:
        found = []
        try:
            with os.scandir(self.folder) as entries:
                for entry in entries:
                    if not _SIDECAR_NAME.match(entry.name):
                        continue
                    with contextlib.suppress(OSError):
                        info = entry.stat(follow_symlinks=False)
                        found.append((info.st_mtime, info.st_size, Path(entry.path)))
        except OSError:
            pass
        return found

    def _count(self) -> int:
        return sum(size for _, size, _ in self._own_files())

    def _prune(self, target: int) -> int:
        files = sorted(self._own_files())
        total = sum(size for _, size, _ in files)
        for _, size, file in files:
            if total <= target:
                break
            with contextlib.suppress(OSError):
                file.unlink()
                total -= size
        return total


class _Drain(QRunnable):
    """Makes the queued thumbnails one after another, newest request first."""

    def __init__(self, loader: ThumbnailLoader) -> None:
        super().__init__()
        self._loader = loader

    def run(self) -> None:
        loader = self._loader
        while True:
            key = loader._next()
            if key is None:
                return
            image = loader.produce(Path(key))
            if not loader._finish():
                return
            loader._made.emit(key, image)


class ThumbnailLoader(QObject):
    """Makes thumbnails on one worker thread and hands them back by queued signal."""

    loaded = Signal(str, QImage)  # key (the path as text), the thumbnail
    _made = Signal(str, QImage)  # the worker's side of `loaded`, received on the UI thread

    def __init__(
        self,
        size: int = THUMB_SIZE,
        sidecar: SidecarStore | None = None,
        parent: QObject | None = None,
    ) -> None:
        super().__init__(parent)
        self.size = size
        self.sidecar = sidecar
        self._pool = QThreadPool(self)
        self._pool.setMaxThreadCount(1)  # one core is plenty; leave the rest to generation
        self._drain = _Drain(self)  # one, started again whenever requests come
        self._drain.setAutoDelete(False)
        self._lock = threading.Lock()
        self._queue: OrderedDict[str, None] = OrderedDict()
        # taken by the worker and not yet received on the UI thread: a repaint meanwhile
        # (the view has no thumbnail until `loaded` is received) must not decode it again
        self._unreceived: set[str] = set()
        self._made.connect(self._hand_over)
        self._draining = False
        self._stopped = False
        self._hold_until = 0.0  # time.monotonic() before which no thumbnail is started

    def request(self, key: str) -> None:
        """Make the thumbnail of the file at `key` (ahead of earlier requests)."""
        with self._lock:
            if self._stopped or key in self._unreceived:
                return
            if key in self._queue:
                self._queue.move_to_end(key)
            else:
                self._queue[key] = None
                if len(self._queue) > QUEUE_LIMIT:
                    self._queue.popitem(last=False)
            if self._draining:
                return
            self._draining = True
        self._pool.start(self._drain)

    def retain(self, keys: Collection[str]) -> None:
        """Drop the waiting requests that are not among `keys` (rows scrolled past)."""
        with self._lock:
            for key in [k for k in self._queue if k not in keys]:
                del self._queue[key]

    def hold(self, seconds: float) -> None:
        """Start no thumbnail for `seconds`: the view is scrolling, and painting it comes
        first (on a machine whose cores are busy generating, the worker would take the
        UI thread's turns)."""
        with self._lock:
            self._hold_until = max(self._hold_until, time.monotonic() + seconds)

    def waiting(self) -> list[str]:
        with self._lock:
            return list(self._queue)

    def shutdown(self) -> None:
        with self._lock:
            self._stopped = True
            self._queue.clear()
        self._pool.waitForDone(2000)

    def produce(self, path: Path) -> QImage:
        """The thumbnail of `path`: from the sidecar cache when it has it, else decoded (and
        kept there when the file is large). Runs on the worker."""
        try:
            info = path.stat()
        except (OSError, ValueError):
            info = None
        if info is None or not stat.S_ISREG(info.st_mode):  # gone, or a pipe: never read
            broken = QImage(self.size, self.size, QImage.Format.Format_RGB888)
            broken.fill(QColor("#552222"))
            return broken
        store = self.sidecar
        key = SidecarStore.key(path, info, self.size) if store is not None else ""
        if store is not None:
            cached = store.get(key)
            if cached is not None:
                return cached
        image = make_thumbnail(path, self.size)
        if store is not None and info.st_size >= SIDECAR_MIN_BYTES:
            store.put(key, image)
        return image

    def _hand_over(self, key: str, image: QImage) -> None:
        """On the UI thread: the thumbnail has arrived, so a later request is a new one."""
        with self._lock:
            self._unreceived.discard(key)
        self.loaded.emit(key, image)

    # -- the worker's side ----------------------------------------------------------------

    def _next(self) -> str | None:
        while True:
            with self._lock:
                if self._stopped or not self._queue:
                    self._draining = False
                    return None
                wait = self._hold_until - time.monotonic()
                if wait <= 0:
                    key, _ = self._queue.popitem(last=True)
                    self._unreceived.add(key)
                    return key
            time.sleep(min(wait, 0.005))  # the queue may be pruned meanwhile

    def _finish(self) -> bool:
        with self._lock:
            if self._stopped:
                self._draining = False
                return False
            return True
