"""Listing the gallery's folder off the UI thread: the whole folder is read and sorted
newest first on a worker, then handed to the model in batches (a small first one, so the
first screen fills at once), each by queued signal."""

from __future__ import annotations

import heapq
import os
import re
import stat
import threading
import time
from collections.abc import Callable
from pathlib import Path

from PySide6.QtCore import QObject, QRunnable, QThreadPool, Signal

from studio.core.imaging import is_image_name

FIRST_BATCH = 256  # a screenful or more, at once
BATCH = 4096
SORT_SLICE = 2048  # entries sorted at once (a few milliseconds)


def scan_images(folder: Path, stop: Callable[[], bool] = lambda: False) -> list[str]:
    """The images in a folder as path strings, newest first (modification time, then name,
    descending). One bad entry costs that entry only: a link in a loop, a file deleted while
    the folder is read (a sync tool at work), a pipe, a half-written file (the studio's own
    start with a dot) are passed over. Empty when `stop()` turns true on the way."""
    try:
        scan = os.scandir(folder)
    except (OSError, ValueError):
        return []
    found: list[tuple[float, str, str]] = []
    with scan:
        for number, entry in enumerate(scan):
            if number % 1024 == 1023 and stop():
                return []
            name = entry.name
            if name.startswith(".") or not is_image_name(name):
                continue
            try:
                info = entry.stat()  # through links; a loop or a vanished file raises
            except OSError:
                continue
            if stat.S_ISREG(info.st_mode):
                found.append((info.st_mtime, name, entry.path))
    return branches_under_parents([path for _, _, path in _sorted_newest_first(found)])


# A branch is saved as PARENT-stepK.png (-1, -2… when taken): core.saving.default_stem
_BRANCH_NAME = re.compile(r"^(?P<parent>.+)-step\d+(?:-\d+)?$")


def branches_under_parents(paths: list[str]) -> list[str]:
    """`paths` in their order, but each branch right after its parent (a branch of a branch
    after that one), when the parent is there too. A few passes, each letting the window's
    thread run every few thousand entries (this runs on a worker, holding the interpreter)."""
    if not any("-step" in path for path in paths):
        return paths  # the usual folder: nothing to do
    stems = {}
    for number, path in enumerate(paths):
        stems.setdefault(os.path.splitext(os.path.basename(path))[0], path)
        if number % SORT_SLICE == SORT_SLICE - 1:
            time.sleep(0)  # let the UI thread have the interpreter
    children: dict[str, list[str]] = {}
    placed_under: set[str] = set()
    for path in paths:
        if "-step" not in path:
            continue
        found = _BRANCH_NAME.match(os.path.splitext(os.path.basename(path))[0])
        parent = stems.get(found.group("parent")) if found else None
        if parent is not None and parent != path:
            children.setdefault(parent, []).append(path)
            placed_under.add(path)
    if not children:
        return paths
    ordered: list[str] = []
    for path in paths:
        if path in placed_under:
            continue
        stack = [path]
        while stack:  # depth first: a branch, then its own branches
            current = stack.pop()
            ordered.append(current)
            stack.extend(reversed(children.get(current, ())))
    return ordered


def _sorted_newest_first(found: list[tuple[float, str, str]]) -> list[tuple[float, str, str]]:
    """`found` sorted in descending order, in slices merged together: one sort of 100,000
    entries holds the interpreter for 40 ms, during which the window could not move."""
    if len(found) <= SORT_SLICE:
        return sorted(found, reverse=True)
    slices = [
        sorted(found[start : start + SORT_SLICE], reverse=True)
        for start in range(0, len(found), SORT_SLICE)
    ]
    return list(heapq.merge(*slices, reverse=True))


def list_images(folder: Path) -> list[Path]:
    """Images in a folder, newest first (see `scan_images`), at once, on this thread."""
    return [Path(path) for path in scan_images(folder)]


class _List(QRunnable):
    def __init__(self, lister: FolderLister, ticket: int, folder: Path) -> None:
        super().__init__()
        self._lister, self._ticket, self._folder = lister, ticket, folder
        self._stop = lister._stop

    def run(self) -> None:
        stop = self._stop.is_set
        paths = scan_images(self._folder, stop)
        start, size = 0, FIRST_BATCH
        while start < len(paths) and not stop():
            self._lister.batch.emit(self._ticket, paths[start : start + size])
            start, size = start + size, BATCH
        if not stop():
            self._lister.finished.emit(self._ticket)


class FolderLister(QObject):
    """Lists one folder at a time on a worker; starting another listing, or shutting down,
    stops the one under way. Every signal carries the ticket `start` returned."""

    batch = Signal(int, object)  # ticket, list[str]: the next paths, newest first
    finished = Signal(int)  # ticket: the folder is listed

    def __init__(self, parent: QObject | None = None) -> None:
        super().__init__(parent)
        self._pool = QThreadPool(self)
        self._pool.setMaxThreadCount(1)
        self._ticket = 0
        self._stop = threading.Event()

    def start(self, folder: Path) -> int:
        self._stop.set()  # the listing under way stops and says nothing more
        self._stop = threading.Event()
        self._ticket += 1
        self._pool.start(_List(self, self._ticket, folder))
        return self._ticket

    def shutdown(self) -> None:
        self._stop.set()
        self._pool.clear()
        self._pool.waitForDone(2000)
