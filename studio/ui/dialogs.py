"""Small dialogs: the studio's settings and the list of keyboard shortcuts."""

from __future__ import annotations

from pathlib import Path

from PySide6.QtWidgets import (
    QComboBox,
    QDialog,
    QDialogButtonBox,
    QFileDialog,
    QFormLayout,
    QHBoxLayout,
    QLineEdit,
    QPushButton,
    QSpinBox,
    QTableWidget,
    QTableWidgetItem,
    QVBoxLayout,
    QWidget,
)

from studio.engine.paths import output_dir
from studio.engine.settings import PREVIEW_METHODS
from studio.ui.theme import THEMES

SHORTCUTS: tuple[tuple[str, str], ...] = (
    ("Ctrl+Enter", "Generate (queues another job while one runs)"),
    ("Esc", "Cancel the current job"),
    ("Ctrl+1 … Ctrl+4", "Text→Image, Image→Image, Inpaint, Upscale"),
    ("Ctrl+Up / Ctrl+Down", "Earlier / later prompts (in a prompt box)"),
    ("Ctrl+O", "Open an image"),
    ("Ctrl+V", "Paste an image"),
    ("B / E", "Brush / eraser (Inpaint, canvas focused)"),
    ("[ / ]", "Smaller / larger brush (Inpaint, canvas focused)"),
    ("Shift+wheel", "Brush size (Inpaint)"),
    ("Ctrl+Z / Ctrl+Shift+Z", "Undo / redo the mask"),
    ("Ctrl+I", "Invert the mask"),
    ("Wheel, + / -", "Zoom the canvas"),
    ("Middle drag, Space+drag", "Pan the canvas"),
    ("Ctrl+0, F, double-click", "Zoom to fit"),
    ("Ctrl+,", "Settings"),
    ("F1", "This list"),
)

_PREVIEW_LABELS = {
    "linear": "Fast (linear latent → RGB)",
    "vae": "Exact (VAE decode; slower)",
    "none": "Off",
}


class SettingsDialog(QDialog):
    def __init__(
        self,
        folder: Path,
        preview_method: str,
        preview_every: int,
        theme: str,
        parent: QWidget | None = None,
    ) -> None:
        super().__init__(parent)
        self.setWindowTitle("Settings")
        self.folder_edit = QLineEdit(str(folder))
        browse = QPushButton("Browse…")
        browse.clicked.connect(self._browse)
        reset = QPushButton("Default")
        reset.setToolTip(str(output_dir()))
        reset.clicked.connect(lambda: self.folder_edit.setText(str(output_dir())))
        folder_row = QHBoxLayout()
        folder_row.addWidget(self.folder_edit, 1)
        folder_row.addWidget(browse)
        folder_row.addWidget(reset)

        self.preview_method = QComboBox()
        for method in PREVIEW_METHODS:
            self.preview_method.addItem(_PREVIEW_LABELS.get(method, method), method)
        self.preview_method.setCurrentIndex(max(0, self.preview_method.findData(preview_method)))
        self.preview_every = QSpinBox()
        self.preview_every.setRange(1, 50)
        self.preview_every.setValue(preview_every)
        self.preview_every.setSuffix(" step(s)")
        self.theme = QComboBox()
        for name in THEMES:
            self.theme.addItem(name.capitalize(), name)
        self.theme.setCurrentIndex(max(0, self.theme.findData(theme)))

        form = QFormLayout()
        form.addRow("Output folder", folder_row)
        form.addRow("Live preview", self.preview_method)
        form.addRow("Preview every", self.preview_every)
        form.addRow("Theme", self.theme)
        buttons = QDialogButtonBox(
            QDialogButtonBox.StandardButton.Ok | QDialogButtonBox.StandardButton.Cancel
        )
        buttons.accepted.connect(self.accept)
        buttons.rejected.connect(self.reject)
        layout = QVBoxLayout(self)
        layout.addLayout(form)
        layout.addWidget(buttons)
        self.resize(560, 0)

    def folder(self) -> Path:
        return Path(self.folder_edit.text().strip() or str(output_dir())).expanduser()

    def values(self) -> tuple[Path, str, int, str]:
        return (
            self.folder(),
            self.preview_method.currentData(),
            self.preview_every.value(),
            self.theme.currentData(),
        )

    def _browse(self) -> None:
        folder = QFileDialog.getExistingDirectory(self, "Output folder", self.folder_edit.text())
        if folder:
            self.folder_edit.setText(folder)


class ShortcutsDialog(QDialog):
    def __init__(self, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.setWindowTitle("Keyboard shortcuts")
        table = QTableWidget(len(SHORTCUTS), 2)
        table.setHorizontalHeaderLabels(["Keys", "Action"])
        table.verticalHeader().setVisible(False)
        table.setEditTriggers(QTableWidget.EditTrigger.NoEditTriggers)
        for row, (keys, action) in enumerate(SHORTCUTS):
            table.setItem(row, 0, QTableWidgetItem(keys))
            table.setItem(row, 1, QTableWidgetItem(action))
        table.resizeColumnsToContents()
        table.horizontalHeader().setStretchLastSection(True)
        buttons = QDialogButtonBox(QDialogButtonBox.StandardButton.Close)
        buttons.rejected.connect(self.reject)
        layout = QVBoxLayout(self)
        layout.addWidget(table)
        layout.addWidget(buttons)
        self.resize(520, 440)
