"""The gallery: every image in the output folder, newest first, thumbnails made lazily
off the UI thread, with the actions an artist expects on a result."""

from __future__ import annotations

import logging
import os
import stat
from pathlib import Path

from PIL import Image
from PySide6.QtCore import (
    QAbstractListModel,
    QFile,
    QModelIndex,
    QObject,
    QPersistentModelIndex,
    QRunnable,
    QSize,
    Qt,
    QThreadPool,
    QUrl,
    Signal,
)
from PySide6.QtGui import QColor, QDesktopServices, QImage, QPixmap
from PySide6.QtWidgets import (
    QAbstractItemView,
    QHBoxLayout,
    QLabel,
    QListView,
    QMenu,
    QPlainTextEdit,
    QSplitter,
    QToolButton,
    QVBoxLayout,
    QWidget,
)

from studio.core.imaging import is_image_name
from studio.core.request import Mode
from studio.core.text import printable, printable_lines
from studio.metadata import ImageParameters, format_a1111
from studio.ui.icons import themed
from studio.ui.parameter_reader import ParameterReader
from studio.ui.qt_images import pil_to_qimage
from studio.ui.thumbnail_delegate import ThumbnailDelegate

log = logging.getLogger(__name__)

THUMB_SIZE = 96
PathRole = Qt.ItemDataRole.UserRole + 1

Index = QModelIndex | QPersistentModelIndex


def make_thumbnail(path: Path, size: int = THUMB_SIZE) -> QImage:
    """A small QImage of an image file (safe off the UI thread: QImage, not QPixmap)."""
    try:
        with Image.open(path) as image:
            image.draft("RGB", (size, size))  # JPEG: decode at a reduced scale
            image.thumbnail((size, size), Image.Resampling.LANCZOS)
            small = image.convert("RGB")
    except (OSError, ValueError, Image.DecompressionBombError):
        broken = QImage(size, size, QImage.Format.Format_RGB888)
        broken.fill(QColor("#552222"))
        return broken
    if small.width < size // 2:  # tiny pictures (64×64) look better enlarged crisply
        factor = max(1, size // max(small.size))
        small = small.resize(
            (small.width * factor, small.height * factor), Image.Resampling.NEAREST
        )
    return pil_to_qimage(small)


class _ThumbnailJob(QRunnable):
    def __init__(self, path: Path, done: Signal) -> None:
        super().__init__()
        self._path = path
        self._done = done

    def run(self) -> None:
        self._done.emit(str(self._path), make_thumbnail(self._path))


class ThumbnailLoader(QObject):
    """Makes thumbnails on a small thread pool and hands them back by queued signal."""

    loaded = Signal(str, QImage)

    def __init__(self, parent: QObject | None = None) -> None:
        super().__init__(parent)
        self._pool = QThreadPool(self)
        self._pool.setMaxThreadCount(1)  # one core is plenty; leave the rest to generation
        self._pending: set[str] = set()
        self.loaded.connect(lambda path, _image: self._pending.discard(path))

    def request(self, path: Path) -> None:
        key = str(path)
        if key in self._pending:
            return
        self._pending.add(key)
        self._pool.start(_ThumbnailJob(path, self.loaded))

    def shutdown(self) -> None:
        self._pool.clear()
        self._pool.waitForDone(2000)


def list_images(folder: Path) -> list[Path]:
    """Images in a folder, newest first. One bad entry costs that entry only: a link in a
    loop, a file deleted while the folder is read (a sync tool at work), a pipe, a
    half-written file (the studio's own start with a dot) are passed over."""
    try:
        scan = os.scandir(folder)
    except (OSError, ValueError):
        return []
    found: list[tuple[float, str, str]] = []
    with scan:
        for entry in scan:
            if entry.name.startswith(".") or not is_image_name(entry.name):
                continue
            try:
                info = entry.stat()  # through links; a loop or a vanished file raises
            except OSError:
                continue
            if stat.S_ISREG(info.st_mode):
                found.append((info.st_mtime, entry.name, entry.path))
    found.sort(reverse=True)
    return [Path(path) for _, _, path in found]


class GalleryModel(QAbstractListModel):
    def __init__(self, folder: Path, parent: QObject | None = None) -> None:
        super().__init__(parent)
        self.folder = folder
        self._paths: list[Path] = []
        self._thumbs: dict[str, QPixmap] = {}
        self._placeholder = QPixmap(THUMB_SIZE, THUMB_SIZE)
        self._placeholder.fill(QColor("#303236"))
        self.loader = ThumbnailLoader(self)
        self.loader.loaded.connect(self._on_thumbnail)

    # -- Qt model --------------------------------------------------------------------------

    def rowCount(self, parent: Index = QModelIndex()) -> int:  # noqa: N802, B008 - Qt API
        return 0 if parent.isValid() else len(self._paths)

    def data(self, index: Index, role: int = Qt.ItemDataRole.DisplayRole):  # noqa: ANN201
        if not index.isValid() or index.row() >= len(self._paths):
            return None
        path = self._paths[index.row()]
        if role == Qt.ItemDataRole.DecorationRole:
            thumb = self._thumbs.get(str(path))
            if thumb is None:
                self.loader.request(path)  # lazily: only rows the view asks for
                return self._placeholder
            return thumb
        if role == Qt.ItemDataRole.ToolTipRole:
            return printable(path.name)
        if role == PathRole:
            return str(path)
        return None

    # -- contents -----------------------------------------------------------------------------

    def paths(self) -> list[Path]:
        return list(self._paths)

    def set_folder(self, folder: Path) -> None:
        self.folder = folder
        self.reload()

    def reload(self) -> None:
        self.beginResetModel()
        self._paths = list_images(self.folder)
        self.endResetModel()

    def add(self, paths: list[Path]) -> None:
        """New results go first, in the order given."""
        new = [p for p in paths if p not in self._paths]
        if not new:
            return
        self.beginInsertRows(QModelIndex(), 0, len(new) - 1)
        self._paths[0:0] = new
        self.endInsertRows()

    def remove(self, path: Path) -> None:
        if path in self._paths:
            row = self._paths.index(path)
            self.beginRemoveRows(QModelIndex(), row, row)
            del self._paths[row]
            self.endRemoveRows()
        self._thumbs.pop(str(path), None)

    def index_of(self, path: Path) -> QModelIndex:
        return self.index(self._paths.index(path)) if path in self._paths else QModelIndex()

    def _on_thumbnail(self, key: str, image: QImage) -> None:
        self._thumbs[key] = QPixmap.fromImage(image)
        path = Path(key)
        if path in self._paths:
            index = self.index(self._paths.index(path))
            self.dataChanged.emit(index, index, [Qt.ItemDataRole.DecorationRole])


def move_to_trash(path: Path) -> bool:
    """The system trash where there is one; False when the file could not go there."""
    result = QFile(str(path)).moveToTrash()
    return bool(result[0] if isinstance(result, tuple) else result)


class ParametersView(QWidget):
    """The selected image, large, with its generation parameters as text."""

    parametersShown = Signal()  # the parameters (or why there are none) are shown

    def __init__(self, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.preview = QLabel()
        self.preview.setAlignment(Qt.AlignmentFlag.AlignCenter)
        self.preview.setMinimumHeight(140)
        self.title = QLabel()
        self.title.setObjectName("hint")
        self.title.setWordWrap(True)
        self.text = QPlainTextEdit()
        self.text.setReadOnly(True)
        self.text.setPlaceholderText("Select an image to see its parameters")
        layout = QVBoxLayout(self)
        layout.setContentsMargins(0, 0, 0, 0)
        layout.addWidget(self.preview)
        layout.addWidget(self.title)
        layout.addWidget(self.text, 1)
        self.parameters: ImageParameters | None = None
        self.reader = ParameterReader(self)

    def show_file(self, path: Path | None) -> None:
        self.parameters = None
        if path is None:
            self.preview.clear()
            self.title.clear()
            self.text.clear()
            return
        image = QImage(str(path))
        if not image.isNull():
            scaled = image.scaled(
                220,
                220,
                Qt.AspectRatioMode.KeepAspectRatio,
                Qt.TransformationMode.FastTransformation
                if image.width() < 220
                else Qt.TransformationMode.SmoothTransformation,
            )
            self.preview.setPixmap(QPixmap.fromImage(scaled))
            self.title.setText(f"{printable(path.name)} · {image.width()}×{image.height()}")
        self.text.setPlainText("Reading its parameters…")

        def show(parameters: ImageParameters | None, why: str) -> None:
            self.parameters = parameters
            if parameters is None:
                self.text.setPlainText(printable(why))
            else:  # what each stage ran, as the file says (our own say it truthfully)
                self.text.setPlainText(printable_lines(format_a1111(parameters)))
            self.parametersShown.emit()

        self.reader.read(path, show)


class GalleryPanel(QWidget):
    """Thumbnails, actions, and the parameters of the selected image."""

    selected = Signal(object)  # Path | None
    activated = Signal(object)  # Path (double-click)
    restoreRequested = Signal(object)  # Path
    sendRequested = Signal(object, object)  # Path, Mode
    message = Signal(str, bool)  # text, is_error
    trashFailed = Signal(object)  # Path: no trash here; the window may offer to delete

    def __init__(self, folder: Path, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.model = GalleryModel(folder, self)
        self.view = QListView()
        self.view.setModel(self.model)
        self.view.setViewMode(QListView.ViewMode.IconMode)
        self.view.setResizeMode(QListView.ResizeMode.Adjust)
        self.view.setMovement(QListView.Movement.Static)
        self.view.setUniformItemSizes(True)
        self.view.setIconSize(QSize(THUMB_SIZE, THUMB_SIZE))
        self.view.setGridSize(QSize(THUMB_SIZE + 8, THUMB_SIZE + 8))
        self.view.setSpacing(2)
        self.view.setItemDelegate(ThumbnailDelegate(self.view))
        self.view.setSelectionMode(QAbstractItemView.SelectionMode.SingleSelection)
        self.view.setContextMenuPolicy(Qt.ContextMenuPolicy.CustomContextMenu)
        self.view.customContextMenuRequested.connect(self._context_menu)
        self.view.selectionModel().currentChanged.connect(self._on_current)
        self.view.doubleClicked.connect(self._on_double_click)
        self.params = ParametersView()

        self.buttons: dict[str, QToolButton] = {}
        row = QHBoxLayout()
        row.setSpacing(2)
        for key, icon_name, tip, slot in (
            ("restore", "restore", "Restore all parameters of this image", self._restore),
            ("img2img", "send", "Send to Image→Image", lambda: self._send(Mode.IMAGE_TO_IMAGE)),
            ("inpaint", "brush", "Send to Inpaint", lambda: self._send(Mode.INPAINT)),
            ("upscale", "zoom-fit", "Send to Upscale", lambda: self._send(Mode.UPSCALE)),
            ("folder", "folder", "Open the output folder", self.open_folder),
            ("delete", "trash", "Move to the trash", self.delete_selected),
        ):
            button = QToolButton()
            themed(button, icon_name)
            button.setToolTip(tip)
            button.clicked.connect(slot)
            row.addWidget(button)
            self.buttons[key] = button
            if key == "upscale":
                row.addStretch(1)
        self.count_label = QLabel()
        self.count_label.setObjectName("hint")

        top = QWidget()
        top_layout = QVBoxLayout(top)
        top_layout.setContentsMargins(0, 0, 0, 0)
        top_layout.addLayout(row)
        top_layout.addWidget(self.view, 1)
        top_layout.addWidget(self.count_label)
        splitter = QSplitter(Qt.Orientation.Vertical)
        splitter.addWidget(top)
        splitter.addWidget(self.params)
        splitter.setStretchFactor(0, 3)
        splitter.setStretchFactor(1, 2)
        splitter.setChildrenCollapsible(False)
        layout = QVBoxLayout(self)
        layout.setContentsMargins(4, 4, 4, 4)
        layout.addWidget(splitter)

        self.params.parametersShown.connect(self._update_state)
        self.model.modelReset.connect(self._update_state)
        self.model.rowsInserted.connect(self._update_state)
        self.model.rowsRemoved.connect(self._update_state)
        self.model.reload()

    # -- queries / commands --------------------------------------------------------------------

    def selected_path(self) -> Path | None:
        index = self.view.currentIndex()
        return Path(index.data(PathRole)) if index.isValid() else None

    def select(self, path: Path) -> None:
        index = self.model.index_of(path)
        if index.isValid():
            self.view.setCurrentIndex(index)
            self.view.scrollTo(index)

    def add(self, paths: list[Path], select: bool = True) -> None:
        self.model.add(paths)
        if select and paths:
            self.select(paths[0])

    def set_folder(self, folder: Path) -> None:
        self.model.set_folder(folder)

    def open_folder(self) -> None:
        folder = self.model.folder
        folder.mkdir(parents=True, exist_ok=True)
        QDesktopServices.openUrl(QUrl.fromLocalFile(str(folder)))

    def delete_selected(self) -> None:
        path = self.selected_path()
        if path is None:
            return
        if not move_to_trash(path):
            self.trashFailed.emit(path)
            return
        self.message.emit(f"Moved {path.name} to the trash.", False)
        self._forget(path)

    def delete_for_good(self, path: Path) -> None:
        """For systems without a trash, after the artist confirmed."""
        try:
            path.unlink()
        except OSError as e:
            self.message.emit(f"{path.name} could not be deleted: {e.strerror}.", True)
            return
        self.message.emit(f"Deleted {path.name}.", False)
        self._forget(path)

    def _forget(self, path: Path) -> None:
        row = self.model.index_of(path).row()
        self.model.remove(path)
        if self.model.rowCount() and row >= 0:
            self.view.setCurrentIndex(self.model.index(min(row, self.model.rowCount() - 1)))

    def shutdown(self) -> None:
        self.model.loader.shutdown()
        self.params.reader.shutdown()

    # -- internals ---------------------------------------------------------------------------------

    def _on_current(self, current: QModelIndex, _previous: QModelIndex) -> None:
        path = Path(current.data(PathRole)) if current.isValid() else None
        self.params.show_file(path)
        self._update_state()
        self.selected.emit(path)

    def _on_double_click(self, index: QModelIndex) -> None:
        if index.isValid():
            self.activated.emit(Path(index.data(PathRole)))

    def _restore(self) -> None:
        path = self.selected_path()
        if path is not None:
            self.restoreRequested.emit(path)

    def _send(self, mode: Mode) -> None:
        path = self.selected_path()
        if path is not None:
            self.sendRequested.emit(path, mode)

    def _update_state(self) -> None:
        count = self.model.rowCount()
        self.count_label.setText(
            f"{count} image{'s' if count != 1 else ''} in {self.model.folder}"
            if count
            else f"No images yet in {self.model.folder}"
        )
        has = self.selected_path() is not None
        for key in ("restore", "img2img", "inpaint", "upscale", "delete"):
            self.buttons[key].setEnabled(has)
        self.buttons["restore"].setEnabled(has and self.params.parameters is not None)

    def _context_menu(self, pos) -> None:  # noqa: ANN001
        index = self.view.indexAt(pos)
        if not index.isValid():
            return
        self.view.setCurrentIndex(index)
        menu = QMenu(self)
        menu.addAction("Restore parameters", self._restore).setEnabled(
            self.params.parameters is not None
        )
        menu.addSeparator()
        menu.addAction("Send to Image→Image", lambda: self._send(Mode.IMAGE_TO_IMAGE))
        menu.addAction("Send to Inpaint", lambda: self._send(Mode.INPAINT))
        menu.addAction("Send to Upscale", lambda: self._send(Mode.UPSCALE))
        menu.addSeparator()
        menu.addAction("Open the output folder", self.open_folder)
        menu.addAction("Move to the trash", self.delete_selected)
        menu.exec(self.view.viewport().mapToGlobal(pos))
        menu.deleteLater()
