"""The gallery: every image in the output folder, newest first, for folders of an artist's
size (10,000 to 100,000 images).

The folder is listed off the UI thread and the view fills in batches as they come
(gallery_listing); thumbnails are made off the UI thread only for the rows the view
paints, kept in a cache bounded in bytes, and read back from a sidecar cache on disk for
large pictures (gallery_thumbnails). Every per-image operation is O(1): rows live in two
lists (images added since the listing, oldest first, so each new one is appended; and the
listing, newest first, appended batch by batch), and an index maps each path to its place
in its list, which is all a row is: len(added) + place (places in the added list count
down from -1). Only removing an image touches the index of the images after it.
"""

from __future__ import annotations

import logging
import os
from collections import deque
from pathlib import Path

from PySide6.QtCore import (
    QAbstractListModel,
    QFile,
    QModelIndex,
    QObject,
    QPersistentModelIndex,
    QPoint,
    QSize,
    Qt,
    QTimer,
    QUrl,
    Signal,
)
from PySide6.QtGui import QDesktopServices, QImage
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

from studio.core.request import Mode
from studio.core.text import printable, printable_lines
from studio.metadata import ImageParameters, format_a1111
from studio.ui.gallery_listing import FolderLister, list_images
from studio.ui.gallery_preview import GalleryPreview
from studio.ui.gallery_thumbnails import (
    THUMB_SIZE,
    SidecarStore,
    ThumbnailAtlas,
    ThumbnailLoader,
    make_thumbnail,
    sidecar_dir,
)
from studio.ui.icons import themed
from studio.ui.parameter_reader import ParameterReader
from studio.ui.thumbnail_delegate import CELL_FRAME, ThumbnailDelegate, ThumbnailRole

__all__ = ["THUMB_SIZE", "GalleryModel", "GalleryPanel", "list_images", "make_thumbnail"]

log = logging.getLogger(__name__)

LAYOUT_BATCH = 256
SCROLL_HOLD_S = 0.05  # thumbnails wait while the view flings past (until it settles)
CELL = THUMB_SIZE + 2 * (CELL_FRAME + 1)  # every cell of the grid, frame and gap included
PathRole = Qt.ItemDataRole.UserRole + 1

Index = QModelIndex | QPersistentModelIndex


# Images gone from the folder that `sync` removes one by one; past it, the folder is listed
# again (each removal renumbers the rows after it)
MOST_REMOVED_IN_PLACE = 64


def _key(path: Path | str) -> str:
    return str(Path(path))


class GalleryModel(QAbstractListModel):
    """The images of one folder, newest first, and the thumbnails of those in view."""

    listingFinished = Signal()  # the whole folder is in the model

    def __init__(
        self,
        folder: Path,
        parent: QObject | None = None,
        thumbnail_cache: Path | None = None,
        memory_bytes: int | None = None,
    ) -> None:
        """thumbnail_cache: the sidecar folder (the studio's cache folder when None)."""
        super().__init__(parent)
        self.folder = folder
        self._added: list[str] = []  # added since the listing, oldest first
        self._listed: list[str] = []  # the listing, newest first
        self._place: dict[str, int] = {}  # path -> place: >= 0 in _listed, < 0 in _added
        self._listing = False
        self._ticket = 0
        self._incoming: deque[list[str]] = deque()  # batches listed, not yet rows
        self._all_listed = False
        self._feed = QTimer(self)  # one batch a turn of the event loop: the window moves
        self._feed.setInterval(0)
        self._feed.timeout.connect(self._feed_one)
        self.cache = ThumbnailAtlas() if memory_bytes is None else ThumbnailAtlas(memory_bytes)
        self._store = SidecarStore(thumbnail_cache or sidecar_dir())
        self.loader = ThumbnailLoader(THUMB_SIZE, self._store, self)
        self.loader.loaded.connect(self._on_thumbnail)
        self.lister = FolderLister(self)
        self.lister.batch.connect(self._on_batch)
        self.lister.finished.connect(self._on_listed)
        # `sync`'s own reading of the folder, beside the listing's
        self.syncer = FolderLister(self)
        self.syncer.batch.connect(self._on_sync_batch)
        self.syncer.finished.connect(self._on_synced)
        self._sync_ticket = 0  # the sync under way (0: none)
        self._sync_found: list[str] = []
        self._sync_again = False  # asked for while listing or syncing: once that is done

    # -- Qt model --------------------------------------------------------------------------

    def rowCount(self, parent: Index = QModelIndex()) -> int:  # noqa: N802, B008 - Qt API
        return 0 if parent.isValid() else len(self._added) + len(self._listed)

    def data(self, index: Index, role: int = Qt.ItemDataRole.DisplayRole):  # noqa: ANN201
        if not index.isValid():
            return None
        key = self.key_at(index.row())
        if key is None:
            return None
        if role == ThumbnailRole:  # the delegate: where on which page
            found = self.cache.find(key)
            if found is None:
                self.loader.request(key)  # only rows the view paints ask for theirs
            return found
        if role == Qt.ItemDataRole.DecorationRole:
            thumb = self.cache.pixmap(key)
            if thumb is None:
                self.loader.request(key)
            return thumb
        if role == Qt.ItemDataRole.ToolTipRole:
            return printable(os.path.basename(key))
        if role == PathRole:
            return key
        return None

    # -- rows and paths, each in O(1) -----------------------------------------------------

    def key_at(self, row: int) -> str | None:
        added = len(self._added)
        if 0 <= row < added:
            return self._added[added - 1 - row]
        if added <= row < added + len(self._listed):
            return self._listed[row - added]
        return None

    def row_of(self, path: Path | str) -> int:
        place = self._place.get(_key(path))
        return -1 if place is None else len(self._added) + place

    def index_of(self, path: Path) -> QModelIndex:
        row = self.row_of(path)
        return self.index(row) if row >= 0 else QModelIndex()

    def paths(self) -> list[Path]:
        return [Path(key) for key in (*reversed(self._added), *self._listed)]

    def is_listing(self) -> bool:
        return self._listing

    # -- contents -----------------------------------------------------------------------------

    def set_folder(self, folder: Path) -> None:
        self.folder = folder
        self.reload()

    def sync(self) -> None:
        """Read the folder again, off the UI thread, and bring the rows in line with it
        without starting over: images added outside the studio (the command line, a file
        manager) come first, newest first, and images gone go; the others keep their rows,
        thumbnails and the selection. Asked while the folder is being listed or read, it
        reads it again once that is done: what changed meanwhile may have been read before
        the change."""
        if self._listing or self._sync_ticket:
            self._sync_again = True
            return
        self._sync_again = False
        self._sync_found = []
        self._sync_ticket = self.syncer.start(self.folder)

    def reload(self) -> None:
        """List the folder again, off the UI thread; rows arrive in batches."""
        self._sync_ticket = 0  # a sync under way answers for the old rows: dropped
        self.beginResetModel()
        self._added, self._listed, self._place = [], [], {}
        self.cache.clear()
        self.loader.retain(())
        self._incoming.clear()
        self._feed.stop()
        self._all_listed = False
        self._listing = True
        self._ticket = self.lister.start(self.folder)
        self.endResetModel()

    def add(self, paths: list[Path]) -> None:
        """New results go first, in the order given."""
        new: list[str] = []
        for path in paths:
            key = _key(path)
            if key not in self._place and key not in new:
                new.append(key)
        if not new:
            return
        self.beginInsertRows(QModelIndex(), 0, len(new) - 1)
        for key in reversed(new):
            self._added.append(key)
            self._place[key] = -len(self._added)
        self.endInsertRows()

    def remove(self, path: Path) -> None:
        """Forget one image (the only operation that renumbers the images after it)."""
        key = _key(path)
        place = self._place.get(key)
        self.cache.pop(key)
        if place is None:
            return
        row = len(self._added) + place
        self.beginRemoveRows(QModelIndex(), row, row)
        del self._place[key]
        if place >= 0:
            del self._listed[place]
            for i in range(place, len(self._listed)):
                self._place[self._listed[i]] = i
        else:
            del self._added[-place - 1]
            for i in range(-place - 1, len(self._added)):
                self._place[self._added[i]] = -(i + 1)
        self.endRemoveRows()

    def retain_rows(self, first: int, last: int) -> None:
        """Only rows first..last still want their thumbnails: drop the other requests."""
        count = self.rowCount()
        keys = {self.key_at(row) for row in range(max(0, first), min(count, last + 1))}
        self.loader.retain(keys)  # type: ignore[arg-type]

    def shutdown(self) -> None:
        self._feed.stop()
        self._incoming.clear()
        self.lister.shutdown()
        self.syncer.shutdown()
        self.loader.shutdown()

    def _on_sync_batch(self, ticket: int, keys: list[str]) -> None:
        if ticket == self._sync_ticket:
            self._sync_found.extend(keys)

    def _on_synced(self, ticket: int) -> None:
        if ticket != self._sync_ticket:
            return
        found, self._sync_ticket, self._sync_found = self._sync_found, 0, []
        there = set(found)
        gone = [key for key in self._place if key not in there]
        if len(gone) > MOST_REMOVED_IN_PLACE:  # each removal renumbers the rows after it
            self.reload()
            return
        for key in gone:
            self.remove(Path(key))
        self.add([Path(key) for key in found if key not in self._place])
        if self._sync_again:
            self.sync()

    def _on_batch(self, ticket: int, keys: list[str]) -> None:
        if ticket != self._ticket:
            return  # a listing since replaced
        self._incoming.append(keys)
        if not self._feed.isActive():
            self._feed.start()

    def _on_listed(self, ticket: int) -> None:
        if ticket == self._ticket:
            self._all_listed = True
            if not self._incoming:
                self._finish_listing()

    def _feed_one(self) -> None:
        if self._incoming:
            self._insert_listed(self._incoming.popleft())
        if not self._incoming:
            self._feed.stop()
            if self._all_listed:
                self._finish_listing()

    def _finish_listing(self) -> None:
        if self._listing:
            self._listing = False
            self.listingFinished.emit()
            if self._sync_again:
                self.sync()

    def _insert_listed(self, keys: list[str]) -> None:
        new = [key for key in keys if key not in self._place]  # already added: kept there
        if not new:
            return
        first = self.rowCount()
        self.beginInsertRows(QModelIndex(), first, first + len(new) - 1)
        start = len(self._listed)
        self._listed.extend(new)
        place = self._place
        for offset, key in enumerate(new):
            place[key] = start + offset
        self.endInsertRows()

    def _on_thumbnail(self, key: str, image: QImage) -> None:
        place = self._place.get(key)
        if place is None:
            return  # removed, or another folder's
        self.cache.put(key, image)
        index = self.index(len(self._added) + place)
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
        self.preview = GalleryPreview()  # as tall as its picture, hidden without one
        self.title = QLabel()
        self.title.setObjectName("hint")
        self.title.setWordWrap(True)
        self.title.hide()
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
        self.preview.set_image(None)
        self.title.clear()
        self.title.hide()
        if path is None:
            self.text.clear()
            return
        self.title.show()
        image = QImage(str(path))
        if image.isNull():
            self.title.setText(printable(path.name))
        else:
            self.preview.set_image(image)
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

    def __init__(
        self,
        folder: Path,
        parent: QWidget | None = None,
        thumbnail_cache: Path | None = None,
    ) -> None:
        super().__init__(parent)
        self.model = GalleryModel(folder, self, thumbnail_cache=thumbnail_cache)
        self.view = QListView()
        self.view.setModel(self.model)
        self.view.setViewMode(QListView.ViewMode.IconMode)
        self.view.setResizeMode(QListView.ResizeMode.Adjust)
        self.view.setMovement(QListView.Movement.Static)
        self.view.setUniformItemSizes(True)
        # laid out a few hundred cells per turn of the event loop: 10,000 at once held
        # the window for 40 ms
        self.view.setLayoutMode(QListView.LayoutMode.Batched)
        self.view.setBatchSize(LAYOUT_BATCH)
        self.view.setIconSize(QSize(THUMB_SIZE, THUMB_SIZE))
        self.view.setGridSize(QSize(CELL, CELL))  # every cell alike, whatever the picture
        self.view.setItemDelegate(ThumbnailDelegate(self.view, cell=THUMB_SIZE))
        self.view.setSelectionMode(QAbstractItemView.SelectionMode.SingleSelection)
        self.view.setContextMenuPolicy(Qt.ContextMenuPolicy.CustomContextMenu)
        self.view.customContextMenuRequested.connect(self._context_menu)
        self.view.selectionModel().currentChanged.connect(self._on_current)
        self.view.doubleClicked.connect(self._on_double_click)
        self.view.verticalScrollBar().valueChanged.connect(self._on_scrolled)
        # the row `select` scrolled to, kept in view through later layout passes until the
        # artist scrolls or picks another (see _keep_revealed)
        self._revealed: QPersistentModelIndex | None = None
        self.view.verticalScrollBar().rangeChanged.connect(self._keep_revealed)
        self.view.verticalScrollBar().actionTriggered.connect(self._stop_revealing)
        self._pending: Path | None = None  # asked to select before it was listed
        self._scrolled_to = 0
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
        self.model.rowsInserted.connect(self._on_rows_inserted)
        self.model.rowsRemoved.connect(self._update_state)
        self.model.listingFinished.connect(self._on_listed)
        self.model.reload()  # returns at once: the rows come as the folder is read

    # -- queries / commands --------------------------------------------------------------------

    def selected_path(self) -> Path | None:
        index = self.view.currentIndex()
        return Path(index.data(PathRole)) if index.isValid() else None

    def select(self, path: Path) -> None:
        """Select `path`, now or, while the folder is being read, once it is listed."""
        index = self.model.index_of(path)
        self._pending = None
        if index.isValid():
            self._lay_out_to(index)
            self.view.setCurrentIndex(index)
            self.view.scrollTo(index)
            self._revealed = QPersistentModelIndex(index)
        elif self.model.is_listing():
            self._pending = Path(path)

    def _lay_out_to(self, index: QModelIndex) -> None:
        """The view lays its cells out a batch at a time; a row it has not reached yet has
        no place to scroll to, so the rest is laid out at once (on the artist's request)."""
        if not self.view.visualRect(index).isValid():
            self.view.setLayoutMode(QListView.LayoutMode.SinglePass)
            self.view.doItemsLayout()
            self.view.setLayoutMode(QListView.LayoutMode.Batched)

    def visible_rows(self) -> tuple[int, int] | None:
        """The first and last rows in view (the grid fills row by row), or None."""
        width, height = self.view.viewport().width(), self.view.viewport().height()
        step = max(8, CELL // 2)  # every cell is hit by a probe of its first and last line
        xs = (*range(0, width, step), width - 1)
        ys = (0, step, height - 1 - step, height - 1)
        rows = [self.view.indexAt(QPoint(x, y)).row() for y in ys for x in xs]
        rows = [row for row in rows if row >= 0]
        return (min(rows), max(rows)) if rows else None

    def add(self, paths: list[Path], select: bool = True) -> None:
        self.model.add(paths)
        if select and paths:
            self.select(paths[0])

    def set_folder(self, folder: Path) -> None:
        self.model.set_folder(folder)

    def sync(self) -> None:
        """Files added or removed outside the studio: see GalleryModel.sync."""
        self.model.sync()

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
        self.model.shutdown()
        self.params.reader.shutdown()

    # -- internals ---------------------------------------------------------------------------------

    def _keep_revealed(self, *_range: int) -> None:
        """A layout pass after `select` can start over (the batched layout does on a style
        change): the scroll range shrinks to the rows laid out so far and the selected row
        leaves the view. Each time the range changes it is scrolled to again, once laid
        out (scrollTo only moves the view when the row is not in it)."""
        target = self._revealed
        if target is None or not target.isValid():
            return
        index = self.model.index(target.row(), 0)
        if self.view.visualRect(index).isValid():
            self.view.scrollTo(index)

    def _stop_revealing(self, *_action: int) -> None:
        self._revealed = None  # the artist scrolls: where they go is theirs

    def _on_current(self, current: QModelIndex, _previous: QModelIndex) -> None:
        target = self._revealed
        if target is not None and (not target.isValid() or target.row() != current.row()):
            self._revealed = None  # another row picked: that one's own
        path = Path(current.data(PathRole)) if current.isValid() else None
        self.params.show_file(path)
        self._update_state()
        self.selected.emit(path)

    def _on_scrolled(self, value: int) -> None:
        """Thumbnails asked for by rows now scrolled past are not made; during a fling
        (half a screen or more at a time) none is made until the view settles."""
        moved, self._scrolled_to = abs(value - self._scrolled_to), value
        if moved >= self.view.viewport().height() // 2:
            self.model.loader.hold(SCROLL_HOLD_S)
        rows = self.visible_rows()
        if rows is not None:
            columns = max(1, self.view.viewport().width() // CELL)
            self.model.retain_rows(rows[0] - columns, rows[1] + columns)

    def _on_rows_inserted(self, *_args: object) -> None:
        if self._pending is not None and self.model.index_of(self._pending).isValid():
            self.select(self._pending)
        self._update_state()

    def _on_listed(self) -> None:
        self._pending = None
        self._update_state()

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
        folder = self.model.folder
        if self.model.is_listing():
            text = f"Reading {folder}… {count} image{'s' if count != 1 else ''} so far"
        elif count:
            text = f"{count} image{'s' if count != 1 else ''} in {folder}"
        else:
            text = f"No images yet in {folder}"
        self.count_label.setText(text)
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
        menu.addAction("Send to Edit", lambda: self._send(Mode.EDIT))
        menu.addAction("Send to Upscale", lambda: self._send(Mode.UPSCALE))
        menu.addSeparator()
        menu.addAction("Open the output folder", self.open_folder)
        menu.addAction("Move to the trash", self.delete_selected)
        menu.exec(self.view.viewport().mapToGlobal(pos))
        menu.deleteLater()
