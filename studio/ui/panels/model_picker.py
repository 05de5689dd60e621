"""Choosing a model: the embedded ones, and any added by hub id, folder or checkpoint file.

Nothing is loaded here (the catalog only looks at names and files); loading and
download progress happen on the engine thread and show in the status bar.
"""

from __future__ import annotations

import logging
from collections import Counter
from collections.abc import Callable
from pathlib import Path

from PySide6.QtCore import QRunnable, Qt, QThreadPool, Signal
from PySide6.QtWidgets import (
    QComboBox,
    QDialog,
    QDialogButtonBox,
    QFileDialog,
    QHBoxLayout,
    QLabel,
    QLineEdit,
    QPushButton,
    QVBoxLayout,
    QWidget,
)
from superqt import QElidingLabel

from studio.core import catalog, models_folder
from studio.core.catalog import ModelError
from studio.core.draft import Draft, Source
from studio.core.model_files import check_model_folder, gguf_keys, safetensors_header
from studio.core.request import DEFAULT_MODEL, DEFAULT_UPSCALE_MODEL
from studio.core.text import printable
from studio.ui.bind import follow

log = logging.getLogger(__name__)

ADD_MODEL = "__add__"
MAX_NAME_FOLDERS = 4  # the folders a listed name may show (models_folder.MAX_DEPTH)
HINT_LINES = 2


def describe_model(spec: str, role: str) -> tuple[str, bool]:
    """One or two lines about a model for the hint under the picker: its family and size on
    disk, then what it is (an embedded model's card describes it: studio-tiny's lists the
    words it understands), or why it cannot work; and whether it is that warning."""
    for info in catalog.embedded_models():
        if info.name == spec:  # its own card says what it is
            size = _size_label(spec)
            return (f"{size}. " if size else "") + (
                printable(info.description) or f"Embedded {info.role}."
            ), False
    facts = [part for part in (_family_label(spec), _size_label(spec)) if part]
    lead = " · ".join(facts) + ". " if facts else ""
    try:
        source = catalog.resolve(spec)
    except ModelError as e:
        return str(e), True
    problem = files_problem(source)
    if problem:
        return lead + problem, True
    return lead + {
        "hub": "A Hugging Face hub model: downloaded once on first use, then cached.",
        "folder": f"A diffusers folder: {printable(source.location)}",
        "checkpoint": f"A single-file checkpoint: {printable(source.location)}",
        "embedded": "Embedded model.",
    }.get(source.kind, ""), False


def files_problem(source: catalog.ModelSource) -> str:
    """The sentence generating would end with when a model's files cannot work as they are
    (a damaged or half-downloaded file, a folder missing a part), found from their headers
    and configs alone, so the picker says it before the artist writes a prompt; "" when
    nothing is wrong that can be seen without loading."""
    if source.kind == "folder":
        folder = Path(source.location)
        try:
            shared = catalog.shared_components(folder, catalog.read_model_card(folder))
            check_model_folder(folder, provided=shared, weights=True)
        except ModelError as e:
            return str(e)
        return ""
    path = Path(source.location)
    kind = {".safetensors": ".safetensors", ".gguf": "GGUF"}.get(path.suffix.lower())
    if source.kind != "checkpoint" or kind is None:
        return ""
    try:
        if kind == "GGUF":
            gguf_keys(path)
        else:
            safetensors_header(path)
    except (OSError, ValueError, UnicodeDecodeError, OverflowError):
        return (
            f"'{printable(path.name)}' is not a readable {kind} file (damaged or incompletely "
            "downloaded)."
        )
    return ""


def _family_label(spec: str) -> str:
    family = catalog.model_family(spec)
    return family.label if family is not None else ""


def _size_label(spec: str) -> str:
    size = catalog.size_on_disk(spec)
    if not size:
        return ""
    for unit, scale in (("GB", 1e9), ("MB", 1e6), ("kB", 1e3)):
        if size >= scale:
            return f"{size / scale:.1f} {unit}"
    return f"{size} bytes"


class AddModelDialog(QDialog):
    """Asks for a hub id, a diffusers folder or a .safetensors file, and checks it."""

    def __init__(self, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.setWindowTitle("Add a model")
        self.spec_edit = QLineEdit()
        self.spec_edit.setPlaceholderText("stabilityai/sd-turbo, a folder, or a .safetensors file")
        folder = QPushButton("Folder…")
        file = QPushButton("File…")
        folder.clicked.connect(self._pick_folder)
        file.clicked.connect(self._pick_file)
        self.error = QLabel()
        self.error.setObjectName("hint")
        self.error.setWordWrap(True)
        buttons = QDialogButtonBox(
            QDialogButtonBox.StandardButton.Ok | QDialogButtonBox.StandardButton.Cancel
        )
        buttons.accepted.connect(self._check_and_accept)
        buttons.rejected.connect(self.reject)

        row = QHBoxLayout()
        row.addWidget(self.spec_edit, 1)
        row.addWidget(folder)
        row.addWidget(file)
        layout = QVBoxLayout(self)
        layout.addWidget(QLabel("A Hugging Face hub id, a diffusers folder or a checkpoint file:"))
        layout.addLayout(row)
        layout.addWidget(self.error)
        layout.addWidget(buttons)
        self.resize(520, 0)

    def spec(self) -> str:
        return self.spec_edit.text().strip()

    def _pick_folder(self) -> None:
        folder = QFileDialog.getExistingDirectory(self, "A diffusers model folder")
        if folder:
            self.spec_edit.setText(folder)

    def _pick_file(self) -> None:
        path, _ = QFileDialog.getOpenFileName(
            self, "A checkpoint file", "", "Safetensors checkpoints (*.safetensors)"
        )
        if path:
            self.spec_edit.setText(path)

    def _check_and_accept(self) -> None:
        try:
            catalog.resolve(self.spec())
        except ModelError as e:
            self.error.setText(str(e))
            return
        self.accept()


def _description(spec: str) -> str:
    """A model's family and size ("SDXL · 6.9 GB"), from its headers and configs."""
    try:
        return " · ".join(part for part in (_family_label(spec), _size_label(spec)) if part)
    except Exception:  # noqa: BLE001 - a file that cannot be read is listed by its name
        log.warning("could not describe %s", spec, exc_info=True)
        return ""


class _Describe(QRunnable):
    """Reads each listed model's family and size off the window's thread: a models folder
    of a hundred checkpoints is a hundred headers to parse (about a second)."""

    def __init__(self, ticket: int, specs: list[str], done: Signal) -> None:
        super().__init__()
        self.ticket, self.specs, self.done = ticket, specs, done

    def run(self) -> None:
        for spec in self.specs:
            self.done.emit(self.ticket, spec, _description(spec))


class _Combo(QComboBox):
    """A combo that says when its list is about to open."""

    aboutToShowPopup = Signal()

    def showPopup(self) -> None:  # noqa: N802 - Qt API
        self.aboutToShowPopup.emit()
        super().showPopup()


class ModelPicker(QWidget):
    """A combo of models for one role ("generator" or "upscaler") with a hint below it.

    Bound to a field of the draft (`bind`): it shows the draft's model and sets it when the
    artist picks one. "Add model…" asks the window for a spec (`addRequested`).
    """

    modelChanged = Signal(str)  # the shown model changed, from anywhere
    addRequested = Signal()
    _described = Signal(int, str, str)  # ticket, spec, its family and size

    def __init__(
        self, role: str = "generator", show_hint: bool = True, parent: QWidget | None = None
    ) -> None:
        super().__init__(parent)
        self.role = role
        self.combo = _Combo()
        self.combo.setToolTip("The model; 'Add model…' takes a hub id, a folder or a file")
        # the models folder's entries: their listed name, until the list first opens and
        # each gets its family and size (read from headers: not at start, for many models)
        self._undescribed: dict[str, str] = {}
        self._describing: dict[str, str] = {}  # those on the worker now
        self._listing = 0  # the ticket of the list as now loaded: older descriptions drop
        self._describer = QThreadPool(self)
        self._describer.setMaxThreadCount(1)
        self._described.connect(self._on_described)
        self.combo.aboutToShowPopup.connect(self._describe_listed)
        # At most HINT_LINES lines (the rest elided, all of it in the tooltip), so a long
        # card does not push the controls below the fold.
        self.hint = QElidingLabel()
        self.hint.setObjectName("hint")
        self.hint.setWordWrap(True)
        self.hint.setMaximumHeight(self.hint.fontMetrics().lineSpacing() * HINT_LINES + 2)
        self.hint.setVisible(show_hint)
        layout = QVBoxLayout(self)
        layout.setContentsMargins(0, 0, 0, 0)
        layout.addWidget(self.combo)
        layout.addWidget(self.hint)
        self._show_hint = show_hint
        self._current = self._default
        self._choose: Callable[[str], object] = self._show
        self.reload()
        self.combo.activated.connect(self._on_activated)

    @property
    def _default(self) -> str:
        return DEFAULT_MODEL if self.role == "generator" else DEFAULT_UPSCALE_MODEL

    def bind(self, draft: Draft, field: str) -> None:
        """Show the draft's `field` and set it when the artist picks a model."""

        def show(values: dict, _source: Source) -> None:
            if field in values:
                self._show(str(values[field]))

        self._show(str(draft[field]))
        self._choose = lambda spec: draft.set(field, spec, Source.USER)
        follow(draft.changed, self, show)

    # -- values ------------------------------------------------------------------------------

    def model(self) -> str:
        return self._current

    def add_model(self, spec: str) -> str:
        """Remember a model spec (shared with the command line) and choose it.

        Raises ModelError (one sentence) when the spec points nowhere usable.
        """
        catalog.add_model(spec)
        if self.combo.findData(spec) < 0:
            self._insert(spec)
        self._choose(spec)
        return spec

    def reload(self) -> None:
        self.combo.blockSignals(True)
        self.combo.clear()
        self._undescribed, self._describing = {}, {}
        self._listing += 1
        names = [m.name for m in catalog.embedded_models() if m.role == self.role]
        if self._default not in names:
            names.insert(0, self._default)
        for name in names:
            self.combo.addItem(name, name)
        for spec in catalog.added_models():
            if self.combo.findData(spec) < 0:
                self.combo.addItem(short_model_name(spec), spec)
        folder = models_folder.current() if self.role == "generator" else None
        if folder is not None and folder.checkpoints:
            self.combo.insertSeparator(self.combo.count())
            for path, name in zip(
                folder.checkpoints, listed_names(folder.checkpoints), strict=True
            ):
                if self.combo.findData(str(path)) < 0:
                    self.combo.addItem(printable(name), str(path))
                    self._undescribed[str(path)] = printable(name)
                    self.combo.setItemData(
                        self.combo.count() - 1, printable(str(path)), Qt.ItemDataRole.ToolTipRole
                    )
        self.combo.insertSeparator(self.combo.count())
        self.combo.addItem("Add model…", ADD_MODEL)
        self.combo.blockSignals(False)
        self._show(self._current)

    # -- internals ---------------------------------------------------------------------------

    def _insert(self, spec: str) -> None:
        separator = self.combo.count() - 2
        self.combo.insertItem(separator, short_model_name(spec), spec)

    def _show(self, spec: str) -> None:
        """Show `spec` as the chosen model (listed for the session if it is not yet)."""
        spec = spec.strip()
        if spec and self.combo.findData(spec) < 0:
            self._insert(spec)
        self.combo.blockSignals(True)
        self.combo.setCurrentIndex(max(0, self.combo.findData(spec)))
        self.combo.blockSignals(False)
        changed = spec != self._current
        self._current = spec
        self.combo.setToolTip(printable(spec))
        if self._show_hint:
            text, warning = describe_model(spec, self.role)
            if self.hint.objectName() != ("warning" if warning else "hint"):
                self.hint.setObjectName("warning" if warning else "hint")
                self.hint.style().unpolish(self.hint)  # the theme's colour of the new name
                self.hint.style().polish(self.hint)
            self.hint.setText(text)
            self.hint.setToolTip(text)
        if changed:
            self.modelChanged.emit(spec)

    def _describe_listed(self) -> None:
        """Each models folder entry says its family and size in the list ("juggernautXL ·
        SDXL · 6.9 GB"), as the hint does for the chosen one: looked up when the list first
        opens, so that a large models folder does not slow the window's start, and on a
        worker, so that it does not hold up the list: each name grows as it is read."""
        if not self._undescribed:
            return
        self._describing.update(self._undescribed)
        specs, self._undescribed = list(self._undescribed), {}
        self._describer.start(_Describe(self._listing, specs, self._described))

    def _on_described(self, ticket: int, spec: str, description: str) -> None:
        name = self._describing.pop(spec, None) if ticket == self._listing else None
        index = self.combo.findData(spec)
        if name is not None and description and index >= 0:
            self.combo.setItemText(index, f"{name} · {description}")

    def shutdown(self) -> None:
        """Stop describing (the window is closing)."""
        self._listing += 1
        self._describer.clear()
        self._describer.waitForDone(2000)

    def _on_activated(self, index: int) -> None:
        spec = self.combo.itemData(index)
        if spec == ADD_MODEL:
            self._show(self._current)  # keep showing the model in use while asking
            self.addRequested.emit()
            return
        if spec != self._current:
            self._choose(spec)


def listed_names(paths: list[Path]) -> list[str]:
    """The picker's name of each model of the models folder: its file name without the
    suffix, as AUTOMATIC1111 lists them; where two share that name, the file name
    (ponyV6.safetensors, ponyV6.gguf), and where they still do, with as many of the folders
    it is in as tell them apart (SDXL/ponyV6.safetensors, SD15/ponyV6.safetensors)."""
    names = [path.stem if path.is_file() else path.name for path in paths]
    for depth in range(MAX_NAME_FOLDERS + 1):
        counts = Counter(names)
        shared = [n for n, name in enumerate(names) if counts[name] > 1]
        if not shared:
            break
        for n in shared:
            path = paths[n]
            names[n] = "/".join([*path.parent.parts[len(path.parent.parts) - depth :], path.name])
    return names


def short_model_name(spec: str) -> str:
    """Long folder paths read badly in a combo: show the last two parts."""
    parts = printable(spec).replace("\\", "/").rstrip("/").split("/")
    return "/".join(parts) if len(parts) <= 2 else "…/" + "/".join(parts[-2:])
