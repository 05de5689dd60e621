"""Small dialogs: the studio's settings and the list of keyboard shortcuts."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

from PySide6.QtCore import Qt
from PySide6.QtGui import QGuiApplication
from PySide6.QtWidgets import (
    QCheckBox,
    QComboBox,
    QDialog,
    QDialogButtonBox,
    QFileDialog,
    QFormLayout,
    QFrame,
    QGroupBox,
    QHBoxLayout,
    QHeaderView,
    QLabel,
    QLineEdit,
    QPushButton,
    QScrollArea,
    QSpinBox,
    QTableWidget,
    QTableWidgetItem,
    QVBoxLayout,
    QWidget,
)

from studio.core import memory_policy, speedup_figures
from studio.core.formats import PNG, SaveFormat
from studio.core.paths import output_dir
from studio.core.settings import (
    MAX_BRANCH_MEMORY_MB,
    PREVIEW_METHODS,
    SPEEDUPS,
    EngineSettings,
)
from studio.ui.theme import THEMES

SHORTCUTS: tuple[tuple[str, str], ...] = (
    ("Ctrl+Enter", "Generate (queues another job while one runs)"),
    ("Esc", "Cancel the current job"),
    ("Delete, Ctrl+Up / Down", "Cancel or move a waiting job (in the queue list)"),
    ("Ctrl+1 … Ctrl+5", "Text→Image, Image→Image, Inpaint, Upscale, Edit"),
    ("Ctrl+Up / Ctrl+Down", "Earlier / later prompts (in a prompt box)"),
    ("Ctrl+O", "Open an image"),
    ("Ctrl+V", "Paste an image"),
    ("B / E", "Brush / eraser (Inpaint, canvas focused)"),
    ("[ / ]", "Smaller / larger brush (Inpaint, canvas focused)"),
    ("Shift+wheel", "Brush size (Inpaint)"),
    ("Ctrl+Z / Ctrl+Shift+Z", "Undo / redo the mask"),
    ("Ctrl+I", "Invert the mask"),
    ("M", "Show / hide the mask (Inpaint, canvas focused)"),
    ("Wheel, + / -", "Zoom the canvas"),
    ("Middle drag, Space+drag", "Pan the canvas"),
    ("Ctrl+0, F, double-click", "Zoom to fit"),
    ("Ctrl+,", "Settings"),
    ("F1", "This list"),
)

_FORMAT_LABELS = {"png": "PNG (lossless)", "jpeg": "JPEG", "webp": "WebP"}
_PREVIEW_LABELS = {
    "linear": "Fast (linear latent → RGB)",
    "vae": "Exact (VAE decode; slower)",
    "none": "Off",
}


@dataclass(frozen=True)
class StudioSettings:
    """What the Settings dialog edits: where images go, how the engine runs, the theme."""

    output_dir: Path
    engine: EngineSettings
    theme: str
    save_as: SaveFormat = PNG
    models_dir: Path | None = None  # the artist's AUTOMATIC1111 / ComfyUI models folder
    lora_dir: Path | None = None  # a LoRA folder besides the models folder's
    backend: str = "local"  # "local": this machine; "ray": a Ray cluster at ray_address
    ray_address: str = "auto"


class _Choice(QComboBox):
    """A combo box over a fixed list of values, `None` ("Automatic") included."""

    def __init__(self, choices: list[tuple[str, Any]], value: Any, tip: str = "") -> None:
        super().__init__()
        self._values: list[Any] = []
        for label, choice in choices:
            self.addItem(label)
            self._values.append(choice)
        if value not in self._values:  # a hand-edited setting ("cuda:1") stays choosable
            self.addItem(str(value))
            self._values.append(value)
        self.setCurrentIndex(self._values.index(value))
        self.setToolTip(tip)

    def value(self) -> Any:
        return self._values[self.currentIndex()]


_AUTO_ON_OFF: list[tuple[str, bool | None]] = [("Automatic", None), ("On", True), ("Off", False)]


class SettingsDialog(QDialog):
    def __init__(self, values: StudioSettings, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.setWindowTitle("Settings")
        engine = values.engine
        self.folder_edit = QLineEdit(str(values.output_dir))
        browse = QPushButton("Browse…")
        browse.clicked.connect(self._browse)
        reset = QPushButton("Default")
        reset.setToolTip(str(output_dir()))
        reset.clicked.connect(lambda: self.folder_edit.setText(str(output_dir())))
        folder_row = QHBoxLayout()
        folder_row.addWidget(self.folder_edit, 1)
        folder_row.addWidget(browse)
        folder_row.addWidget(reset)
        self.theme = QComboBox()
        for name in THEMES:
            self.theme.addItem(name.capitalize(), name)
        self.theme.setCurrentIndex(max(0, self.theme.findData(values.theme)))
        studio_box = QGroupBox("Studio")
        studio_form = _form(studio_box)
        studio_form.addRow("Output folder", folder_row)
        self.models_edit = QLineEdit(str(values.models_dir or ""))
        self.models_edit.setPlaceholderText("AUTOMATIC1111's, Forge's or ComfyUI's folder")
        self.models_edit.setToolTip(
            "The studio lists the checkpoints it finds there (models/Stable-diffusion, "
            "models/checkpoints, diffusers folders…), as those tools keep them"
        )
        models_browse = QPushButton("Browse…")
        models_browse.clicked.connect(self._browse_models)
        models_row = QHBoxLayout()
        models_row.addWidget(self.models_edit, 1)
        models_row.addWidget(models_browse)
        studio_form.addRow("Models folder", models_row)
        self.lora_edit = QLineEdit(str(values.lora_dir or ""))
        self.lora_edit.setPlaceholderText("Optional: another folder of LoRAs")
        self.lora_edit.setToolTip("Searched for <lora:NAME> besides the models folder's LoRAs")
        lora_browse = QPushButton("Browse…")
        lora_browse.clicked.connect(lambda: self._browse_into(self.lora_edit, "LoRA folder"))
        lora_row = QHBoxLayout()
        lora_row.addWidget(self.lora_edit, 1)
        lora_row.addWidget(lora_browse)
        studio_form.addRow("LoRA folder", lora_row)
        self.save_kind = QComboBox()
        for kind, label in _FORMAT_LABELS.items():
            self.save_kind.addItem(label, kind)
        self.save_kind.setCurrentIndex(max(0, self.save_kind.findData(values.save_as.kind)))
        self.save_kind.setToolTip(
            "Every format carries the parameters as AUTOMATIC1111 writes them, and the "
            "studio's own record, so a file can be dropped back to restore everything."
        )
        self.save_quality = QSpinBox()
        self.save_quality.setRange(1, 100)
        self.save_quality.setValue(values.save_as.quality)
        self.save_quality.setSuffix(" quality")
        self.save_quality.setToolTip("JPEG and WebP: higher is better and larger")
        format_row = QHBoxLayout()
        format_row.addWidget(self.save_kind, 1)
        format_row.addWidget(self.save_quality)
        self.save_kind.currentIndexChanged.connect(self._update_quality)
        self._update_quality()
        studio_form.addRow("Save as", format_row)
        studio_form.addRow("Theme", self.theme)

        self.preview_method = QComboBox()
        for method in PREVIEW_METHODS:
            self.preview_method.addItem(_PREVIEW_LABELS.get(method, method), method)
        self.preview_method.setCurrentIndex(
            max(0, self.preview_method.findData(engine.preview_method))
        )
        self.preview_every = QSpinBox()
        self.preview_every.setRange(1, 50)
        self.preview_every.setValue(engine.preview_every)
        self.preview_every.setSuffix(" step(s)")
        preview_box = QGroupBox("Live preview")
        preview_form = _form(preview_box)
        preview_form.addRow("Method", self.preview_method)
        preview_form.addRow("Every", self.preview_every)
        self.branch_memory = QSpinBox()
        self.branch_memory.setRange(0, MAX_BRANCH_MEMORY_MB)
        self.branch_memory.setSingleStep(64)
        self.branch_memory.setValue(engine.branch_memory_mb)
        self.branch_memory.setSuffix(" MB")
        self.branch_memory.setToolTip(
            'Memory for the steps of recent jobs, so that "Continue from here" starts at '
            "once; past it the oldest jobs' steps go, and continuing from them computes their "
            "first steps again."
        )
        preview_form.addRow("Steps kept", self.branch_memory)

        backend_box = self._build_backend(values)
        performance_box = self._build_performance(engine)
        _align_labels(studio_form, preview_form, backend_box.layout(), performance_box.layout())
        layout = QVBoxLayout(self)
        content = QWidget()
        columns = QHBoxLayout(content)
        columns.setContentsMargins(0, 0, 0, 0)
        left = QVBoxLayout()
        left.addWidget(studio_box)
        left.addWidget(preview_box)
        left.addWidget(backend_box)
        left.addWidget(performance_box)
        left.addStretch(1)
        columns.addLayout(left, 5)
        columns.addWidget(self._build_memory_table(), 4)
        # in a scroll area: the settings are taller than a 768-pixel laptop screen, and OK
        # and Cancel below them must stay on it
        scroll = QScrollArea()
        scroll.setWidgetResizable(True)
        scroll.setFrameShape(QFrame.Shape.NoFrame)
        scroll.setWidget(content)
        layout.addWidget(scroll, 1)
        buttons = QDialogButtonBox(
            QDialogButtonBox.StandardButton.Ok | QDialogButtonBox.StandardButton.Cancel
        )
        buttons.accepted.connect(self.accept)
        buttons.rejected.connect(self.reject)
        layout.addWidget(buttons)
        # The wrapped hint needs its height for this width, which a plain resize ignores;
        # no taller than the screen has room for.
        width = 1060
        margins = layout.contentsMargins()
        inner = width - margins.left() - margins.right()
        height = (
            columns.totalHeightForWidth(inner)
            + buttons.sizeHint().height()
            + layout.spacing()
            + margins.top()
            + margins.bottom()
        )
        screen = parent.screen() if parent is not None else QGuiApplication.primaryScreen()
        if screen is not None:
            room = screen.availableGeometry()
            width, height = min(width, room.width()), min(height, room.height() - 40)
        self.resize(width, height)

    def _build_backend(self, values: StudioSettings) -> QGroupBox:
        """Where jobs run: this machine, or the engines of a Ray cluster at an address."""
        self.backend = QComboBox()
        self.backend.addItem("This machine", "local")
        self.backend.addItem("Ray cluster", "ray")
        self.backend.setCurrentIndex(max(0, self.backend.findData(values.backend)))
        self.backend.setToolTip(
            "A Ray cluster runs the queue on its GPUs (one engine each), with the same "
            "previews, cancel and saved files; every node needs the studio installed."
        )
        self.ray_address = QLineEdit(values.ray_address)
        self.ray_address.setPlaceholderText("ray://host:10001, auto or local")
        self.ray_address.setToolTip(
            "ray://host:10001: a cluster's head (ray start --head); auto: the cluster this "
            "machine joined; local: a cluster of this machine alone, to try it out"
        )
        box = QGroupBox("Backend")
        form = _form(box)
        form.addRow("Jobs run on", self.backend)
        form.addRow("Address", self.ray_address)
        self.backend.currentIndexChanged.connect(self._update_backend)
        self._update_backend()
        return box

    def _update_backend(self) -> None:
        self.ray_address.setEnabled(self.backend.currentData() == "ray")

    def _build_performance(self, engine: EngineSettings) -> QGroupBox:
        # Only names here: probing CUDA or MPS would import torch on the UI thread. A device
        # this machine lacks is reported by the engine, in one sentence, when it loads.
        self.device = _Choice(
            [
                ("Automatic", None),
                ("CPU", "cpu"),
                ("CUDA (NVIDIA GPU)", "cuda"),
                ("Apple MPS", "mps"),
            ],
            engine.device,
            "Where models run. Automatic picks a CUDA GPU, then Apple MPS, then the CPU.",
        )
        self.dtype = _Choice(
            [("Automatic", None)] + [(name, name) for name in ("float16", "bfloat16", "float32")],
            engine.dtype,
            "Automatic: float16 on GPUs, float32 on the CPU. float32 is exact but needs twice "
            "the memory; bfloat16 needs a recent GPU.",
        )
        self.attention_slicing = _Choice(
            _AUTO_ON_OFF,
            engine.attention_slicing,
            "Attention in slices: less GPU memory, a little slower. Automatic: on for GPUs "
            "with less than 8 GB.",
        )
        self.vae_tiling = _Choice(
            _AUTO_ON_OFF,
            engine.vae_tiling,
            "Decode the image in tiles so large sizes fit in memory. Automatic: on above "
            "1536×1536.",
        )
        self.cpu_offload = _Choice(
            _AUTO_ON_OFF,
            engine.cpu_offload,
            "Keep each part of the model on the CPU until it is needed: the least GPU memory, "
            "much slower. CUDA only. Automatic: by the model's size and the GPU memory free "
            "when it loads (the table beside).",
        )
        self.speedups = {s.field: QCheckBox(s.label) for s in SPEEDUPS}
        # what each bought when studio bench last measured it here, beside its checkbox
        self.speedup_figures = {s.field: _hint_label(wrap=False) for s in SPEEDUPS}
        for label in self.speedup_figures.values():
            label.setTextFormat(Qt.TextFormat.PlainText)
        box = QGroupBox("Performance")
        form = _form(box)
        form.addRow("Device", self.device)
        form.addRow("Precision", self.dtype)
        form.addRow("Attention slicing", self.attention_slicing)
        form.addRow("VAE tiling", self.vae_tiling)
        form.addRow("Model CPU offload", self.cpu_offload)
        self.fp8_weights = QCheckBox("Store the denoiser's weights in fp8")
        self.fp8_weights.setChecked(engine.fp8_weights)
        self.fp8_weights.setToolTip(
            "Half the denoiser's GPU memory (Flux.1: 12 GB instead of 24), computed in 16 "
            "bits: a big model fits a smaller GPU, with slightly less fine detail. CUDA only."
        )
        form.addRow("fp8 weights", self.fp8_weights)
        for index, speedup in enumerate(SPEEDUPS):
            check = self.speedups[speedup.field]
            check.setChecked(getattr(engine, speedup.field))
            if speedup.needs:  # e.g. CUDA graphs are recorded by the compiler
                needed = self.speedups[speedup.needs]
                check.setEnabled(needed.isChecked())
                needed.toggled.connect(check.setEnabled)
            row = QHBoxLayout()
            row.addWidget(check)
            row.addStretch(1)
            row.addWidget(self.speedup_figures[speedup.field])
            form.addRow("Speed-ups" if index == 0 else "", row)
        self.measured_caption = _hint_label()
        form.addRow(self.measured_caption)
        hint = _hint_label(
            "Compilation makes the first generation at each size slow and the rest faster; "
            "fused projections and CUDA graphs hold more GPU memory. Memory savers let large "
            "images fit on small GPUs at some cost in speed. Changes reload the model at the "
            "next generation."
        )
        form.addRow(hint)
        self._measurements = speedup_figures.load()
        self.device.currentIndexChanged.connect(self._show_speedup_figures)
        self._show_speedup_figures()
        return box

    def _show_speedup_figures(self) -> None:
        """The figures studio bench measured on the chosen device (for Automatic, on the
        likeliest one measured), or how to measure them."""
        measurement = speedup_figures.for_device(self._measurements, self.device.value())
        figures = measurement.figures() if measurement else {}
        for speedup in SPEEDUPS:
            figure = figures.get(speedup.field)
            label = self.speedup_figures[speedup.field]
            label.setText(figure.short() if figure else "")
            tip = speedup.tip + (f"\n\n{figure.detail()}" if figure else "")
            self.speedups[speedup.field].setToolTip(tip)
            label.setToolTip(tip)
        if measurement is not None:  # device names come from a file: shown as they are
            self.measured_caption.setTextFormat(Qt.TextFormat.PlainText)
            self.measured_caption.setText(measurement.caption())
        else:
            self.measured_caption.setTextFormat(Qt.TextFormat.RichText)
            self.measured_caption.setText(
                "Run <code>studio bench</code> (<code>studio bench --gpu</code> on an NVIDIA "
                "GPU) to see here what each speed-up buys on this machine."
            )

    def _build_memory_table(self) -> QGroupBox:
        """Each family's GPU memory at its native size, and where the studio would place it
        on this machine's GPU (asked of nvidia-smi, not torch: this is the UI thread)."""
        self.gpu = memory_policy.detect_gpu()
        self.memory_table = QTableWidget(len(memory_policy.FAMILY_MEMORY), 4)
        self.memory_table.setHorizontalHeaderLabels(["Family", "Precision", "GPU memory", "Here"])
        self.memory_table.setEditTriggers(QTableWidget.EditTrigger.NoEditTriggers)
        self.memory_table.setSelectionMode(QTableWidget.SelectionMode.NoSelection)
        self.memory_table.setFocusPolicy(Qt.FocusPolicy.NoFocus)
        self.memory_table.verticalHeader().setVisible(False)
        self.memory_table.setShowGrid(False)
        self.memory_table.setWordWrap(False)
        self.memory_table.setAlternatingRowColors(True)
        header = self.memory_table.horizontalHeader()
        header.setSectionResizeMode(QHeaderView.ResizeMode.ResizeToContents)
        header.setStretchLastSection(True)
        self.memory_caption = _hint_label()
        self.memory_caption.setTextFormat(Qt.TextFormat.PlainText)
        hint = _hint_label(
            "GPU memory: the weights in 16 bits (the denoiser in 8 with fp8 weights) and a "
            "generation at the family's native size. With Model CPU offload on Automatic, "
            "the studio places each model by the GPU memory free when it loads: all on the "
            "GPU when it fits; else one network at a time (model offload), a little slower; "
            "else layer by layer (group offload), slowest."
        )
        box = QGroupBox("GPU memory by model family")
        column = QVBoxLayout(box)
        column.addWidget(self.memory_caption)
        column.addWidget(self.memory_table, 1)
        column.addWidget(hint)
        self.fp8_weights.toggled.connect(self._show_memory_table)
        self._show_memory_table()
        return box

    def _show_memory_table(self) -> None:
        fp8 = self.fp8_weights.isChecked()
        free = self.gpu.free_gib if self.gpu is not None else None
        for row, (family, gib, dtype, placement) in enumerate(memory_policy.table(free, fp8)):
            cells = (family, dtype, f"{gib:.1f} GB", placement or "–")
            for column, text in enumerate(cells):
                item = QTableWidgetItem(text)
                if column == 2:
                    item.setTextAlignment(
                        Qt.AlignmentFlag.AlignRight | Qt.AlignmentFlag.AlignVCenter
                    )
                self.memory_table.setItem(row, column, item)
        if self.gpu is None:
            self.memory_caption.setText(
                "No NVIDIA GPU found here: models run on the CPU, in main memory. On a "
                "GPU, “Here” would say where each family goes."
            )
        else:
            self.memory_caption.setText(
                f"{self.gpu.name}: {self.gpu.free_gib:.1f} of {self.gpu.total_gib:.1f} GB free "
                "now. “Here” is where each family would go."
            )
        self.memory_table.resizeColumnsToContents()

    def folder(self) -> Path:
        return Path(self.folder_edit.text().strip() or str(output_dir())).expanduser()

    def engine_settings(self) -> EngineSettings:
        return EngineSettings(
            device=self.device.value(),
            dtype=self.dtype.value(),
            attention_slicing=self.attention_slicing.value(),
            vae_tiling=self.vae_tiling.value(),
            cpu_offload=self.cpu_offload.value(),
            fp8_weights=self.fp8_weights.isChecked(),
            preview_method=self.preview_method.currentData(),
            preview_every=self.preview_every.value(),
            branch_memory_mb=self.branch_memory.value(),
            **{
                s.field: self.speedups[s.field].isChecked()
                and (s.needs is None or self.speedups[s.needs].isChecked())
                for s in SPEEDUPS
            },
        )

    def values(self) -> StudioSettings:
        save_as = SaveFormat(self.save_kind.currentData(), self.save_quality.value())
        models = self.models_edit.text().strip()
        lora = self.lora_edit.text().strip()
        return StudioSettings(
            self.folder(),
            self.engine_settings(),
            self.theme.currentData(),
            save_as,
            Path(models).expanduser() if models else None,
            Path(lora).expanduser() if lora else None,
            self.backend.currentData(),
            self.ray_address.text().strip() or "auto",
        )

    def _update_quality(self) -> None:
        self.save_quality.setEnabled(self.save_kind.currentData() != "png")

    def _browse_models(self) -> None:
        self._browse_into(self.models_edit, "Models folder")

    def _browse_into(self, edit: QLineEdit, title: str) -> None:
        folder = QFileDialog.getExistingDirectory(self, title, edit.text())
        if folder:
            edit.setText(folder)

    def _browse(self) -> None:
        folder = QFileDialog.getExistingDirectory(self, "Output folder", self.folder_edit.text())
        if folder:
            self.folder_edit.setText(folder)


def _hint_label(text: str = "", wrap: bool = True) -> QLabel:
    label = QLabel(text)
    label.setObjectName("hint")
    label.setWordWrap(wrap)
    return label


def _form(box: QGroupBox) -> QFormLayout:
    form = QFormLayout(box)
    form.setFieldGrowthPolicy(QFormLayout.FieldGrowthPolicy.AllNonFixedFieldsGrow)
    return form


def _align_labels(*forms: Any) -> None:
    """One label width for several forms, so their fields line up from group to group."""
    labels = []
    for form in forms:
        for row in range(form.rowCount()):
            item = form.itemAt(row, QFormLayout.ItemRole.LabelRole)
            if item is not None and isinstance(item.widget(), QLabel):
                labels.append(item.widget())
    width = max((label.sizeHint().width() for label in labels), default=0)
    for label in labels:
        label.setMinimumWidth(width)


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
        table.resizeRowsToContents()
        table.horizontalHeader().setStretchLastSection(True)
        # Every row in view: the list is short, and scrolling hides half of it.
        table.setVerticalScrollBarPolicy(Qt.ScrollBarPolicy.ScrollBarAlwaysOff)
        table.setHorizontalScrollBarPolicy(Qt.ScrollBarPolicy.ScrollBarAlwaysOff)
        frame = 2 * table.frameWidth()
        height = table.horizontalHeader().sizeHint().height() + frame
        height += sum(table.rowHeight(row) for row in range(table.rowCount()))
        width = sum(table.columnWidth(column) for column in range(2)) + frame + 16
        table.setMinimumSize(width, height)
        self.table = table
        buttons = QDialogButtonBox(QDialogButtonBox.StandardButton.Close)
        buttons.rejected.connect(self.reject)
        layout = QVBoxLayout(self)
        layout.addWidget(table)
        layout.addWidget(buttons)
