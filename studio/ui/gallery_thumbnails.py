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
from PySide6.QtCore import QObject, QRunnable, QSize, Qt, QThreadPool, Signal
from PySide6.QtGui import QColor, QImage, QImageReader, QPixmap

from studio.ui.qt_images import pil_to_qimage

log = logging.getLogger(__name__)

THUMB_SIZE = 96
MEMORY_BYTES = 16 * 1024 * 1024  # about 450 thumbnails of 96×96: a dozen full screens
DISK_BYTES = 64 * 1024 * 1024  # the sidecar cache on disk, pruned oldest first beyond this
SIDECAR_MIN_BYTES = 64 * 1024  # smaller files decode as fast as a thumbnail reads back
QUEUE_LIMIT = 512  # requests waiting; the oldest are dropped beyond it
_SIDECAR_NAME = re.compile(r"^[0-9a-f]{40}\.png$")  # the only files the cache ever deletes


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


class PixmapCache:
    """Thumbnails by key on the UI thread, at most `limit` bytes of pixels; reading one
    makes it the most recently used, and the least recently used go when it is full."""

    def __init__(self, limit: int = MEMORY_BYTES) -> None:
        self.limit = limit
        self.bytes = 0
        self._items: OrderedDict[str, tuple[QPixmap, int]] = OrderedDict()

    def __len__(self) -> int:
        return len(self._items)

    def __contains__(self, key: object) -> bool:
        return key in self._items

    def get(self, key: str) -> QPixmap | None:
        item = self._items.get(key)
        if item is None:
            return None
        self._items.move_to_end(key)
        return item[0]

    def put(self, key: str, pixmap: QPixmap) -> None:
        self.pop(key)
        cost = pixmap.width() * pixmap.height() * max(1, pixmap.depth() // 8)
        self._items[key] = (pixmap, cost)
        self.bytes += cost
        while self.bytes > self.limit and len(self._items) > 1:
            _, (_, freed) = self._items.popitem(last=False)
            self.bytes -= freed

    def pop(self, key: str) -> None:
        item = self._items.pop(key, None)
        if item is not None:
            self.bytes -= item[1]

    def clear(self) -> None:
        self._items.clear()
        self.bytes = 0


def sidecar_dir() -> Path:
    from studio.core.paths import cache_dir

    return cache_dir() / "thumbnails"


class SidecarStore:
    """Thumbnails on disk, one PNG each, named by a hash of the picture's path, size on
    disk, modification time and the thumbnail size (a changed file is a new name). Files
    are written whole (a temporary file renamed over), only ever into this store's own
    folder, and the store stays under `limit` bytes by deleting its least recently used
    files, which are only ever its own (40 hex digits and .png). Used from the worker."""

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
            loader.loaded.emit(key, image)


class ThumbnailLoader(QObject):
    """Makes thumbnails on one worker thread and hands them back by queued signal."""

    loaded = Signal(str, QImage)  # key (the path as text), the thumbnail

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
        self._lock = threading.Lock()
        self._queue: OrderedDict[str, None] = OrderedDict()
        self._in_flight: str | None = None
        self._draining = False
        self._stopped = False
        self._hold_until = 0.0  # time.monotonic() before which no thumbnail is started

    def request(self, key: str) -> None:
        """Make the thumbnail of the file at `key` (ahead of earlier requests)."""
        with self._lock:
            if self._stopped or key == self._in_flight:
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
        self._pool.start(_Drain(self))

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
                    self._in_flight = key
                    return key
            time.sleep(min(wait, 0.005))  # the queue may be pruned meanwhile

    def _finish(self) -> bool:
        with self._lock:
            self._in_flight = None
            if self._stopped:
                self._draining = False
                return False
            return True
