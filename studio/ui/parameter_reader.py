"""Reading an image's parameters without holding up the window.

A small file is read at once (a few milliseconds, bounded by the reader's own limits); a
large one (a big ComfyUI graph, a stealth-coded picture) is read on a worker and handed
back by queued signal. Only the latest request of each reader is answered: a result for a
file the artist has already moved away from is dropped.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

from PySide6.QtCore import QObject, QRunnable, QThreadPool, Signal

from studio.metadata import ImageParameters, MetadataError, read_parameters

ON_THE_SPOT_BYTES = 256 * 1024  # read at once below this size
Answer = Callable[[ImageParameters | None, str], None]  # parameters, or None and why


class _Read(QRunnable):
    def __init__(self, ticket: int, path: Path, done: Signal) -> None:
        super().__init__()
        self.ticket, self.path, self.done = ticket, path, done

    def run(self) -> None:
        parameters, why = read(self.path)
        self.done.emit(self.ticket, parameters, why)


def read(path: Path) -> tuple[ImageParameters | None, str]:
    try:
        return read_parameters(path), ""
    except MetadataError as e:
        return None, str(e)


class ParameterReader(QObject):
    _done = Signal(int, object, str)  # ticket, parameters or None, why not

    def __init__(self, parent: QObject | None = None) -> None:
        super().__init__(parent)
        self._pool = QThreadPool(self)
        self._pool.setMaxThreadCount(1)
        self._ticket = 0
        self._answer: Answer | None = None
        self._done.connect(self._on_done)

    def read(self, path: Path, answer: Answer) -> None:
        """Answer with the parameters of `path` (or None and the sentence why not), at once
        for a small file, else once read; a later request replaces this one."""
        self._ticket += 1
        self._answer = answer
        try:
            small = path.stat().st_size <= ON_THE_SPOT_BYTES
        except OSError:
            small = True  # the reader says what is wrong, at once
        if small:
            answer(*read(path))
            self._answer = None
        else:
            self._pool.start(_Read(self._ticket, path, self._done))

    def shutdown(self) -> None:
        self._answer = None
        self._pool.clear()
        self._pool.waitForDone(2000)

    def _on_done(self, ticket: int, parameters: ImageParameters | None, why: str) -> None:
        if ticket == self._ticket and self._answer is not None:
            answer, self._answer = self._answer, None
            answer(parameters, why)
