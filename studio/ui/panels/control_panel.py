"""The ControlNet section: which ControlNet, its control image on the canvas's control layer
(drawn with the mask's brush, or made from a picture by a built-in preprocessor), how
strongly it steers and over which part of the schedule. The job takes it when it is on."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from PIL import Image
from PySide6.QtCore import Qt, Signal
from PySide6.QtWidgets import (
    QCheckBox,
    QComboBox,
    QFileDialog,
    QFormLayout,
    QLabel,
    QToolButton,
    QWidget,
)
from superqt import QFlowLayout, QLabeledDoubleRangeSlider, QLabeledDoubleSlider

from studio.core import catalog, models_folder, preprocessors
from studio.core.imaging import ImageLoadError, file_dialog_filter, open_image
from studio.core.paths import EMBEDDED_MODELS_DIR
from studio.core.request import CONTROL_TYPES, EMBEDDED_CONTROLNETS, Control, Mode
from studio.core.text import printable
from studio.ui.canvas import ImageCanvas

PREPROCESSOR_LABELS = {
    "none": "As drawn (scribble, or a map you have)",
    "canny": "Canny edges",
    "lineart": "Line art",
}
OTHER = "__other__"
ENABLED_TIP = "Conditions the picture on the control layer: lines, edges or a scribble"
TYPE_LABELS = {
    "mlsd": "MLSD (straight lines)",
    "softedge": "Soft edge",
    "low-quality": "Low quality",
}


class ControlPanel(QWidget):
    problem = Signal(str)  # one sentence: a file that is not an image, no image to use
    titleChanged = Signal(str)  # "ControlNet", "ControlNet (on)"

    def __init__(self, canvas: ImageCanvas, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self._title = "ControlNet"
        self.canvas = canvas
        self.enabled = QCheckBox("Steer the next jobs with a ControlNet")
        self.enabled.setToolTip(ENABLED_TIP)
        self.model = QComboBox()
        self.model.setToolTip("The ControlNet model: one for the generator's family")
        self.model.activated.connect(self._on_model_activated)
        self.preprocessor = QComboBox()
        for name, label in PREPROCESSOR_LABELS.items():
            self.preprocessor.addItem(label, name)
        self.preprocessor.setToolTip(
            "How a picture becomes the control image (drawing on the layer needs none)"
        )
        self.control_type = QComboBox()
        self.control_type.addItem("Auto (as the layer was made)", "")
        for name in CONTROL_TYPES:
            self.control_type.addItem(TYPE_LABELS.get(name, name.capitalize()), name)
        self.control_type.setToolTip(
            "For a union ControlNet (one network for several kinds of control image): what "
            "the control image is. Auto: Canny or line art when the layer was made so, "
            "otherwise a scribble"
        )
        self._made_by = ""  # the preprocessor that made the layer, when it was one
        self._by_hand: list[str] = []  # ControlNets picked with Other…, kept for every model
        self._applies = ""  # "" while the generator's family runs ControlNets, else why not
        self._family: Any = None  # the generator's family, when it has a known one
        self.draw = QToolButton()
        self.draw.setText("Draw")
        self.draw.setCheckable(True)
        self.draw.setToolTip("Paint the control layer with the brush (B, E, [ ]); Ctrl+Z undoes")
        self.draw.toggled.connect(canvas.set_control_drawing)
        self.from_canvas = QToolButton()
        self.from_canvas.setText("From picture")
        self.from_canvas.setToolTip("Make the control image from the canvas picture")
        self.from_canvas.clicked.connect(self.use_canvas_picture)
        self.load = QToolButton()
        self.load.setText("Open…")
        self.load.setToolTip("Make the control image from a picture file")
        self.load.clicked.connect(self._open_file)
        self.show_layer = QToolButton()
        self.show_layer.setText("Show")
        self.show_layer.setCheckable(True)
        self.show_layer.setChecked(True)
        self.show_layer.setToolTip("Show or hide the control layer over the picture")
        self.show_layer.toggled.connect(canvas.set_control_shown)
        self.clear = QToolButton()
        self.clear.setText("Clear")
        self.clear.clicked.connect(self._clear)
        self.scale = QLabeledDoubleSlider(Qt.Orientation.Horizontal)
        self.scale.setRange(0.0, 2.0)
        self.scale.setSingleStep(0.05)
        self.scale.setValue(1.0)
        self.scale.setToolTip("How strongly the control image steers (0: not at all)")
        self.range = QLabeledDoubleRangeSlider(Qt.Orientation.Horizontal)
        self.range.setRange(0.0, 1.0)
        self.range.setSingleStep(0.05)
        self.range.setValue((0.0, 1.0))
        # one line, like the other sliders: the values at the ends, none above the handles
        self.range.setHandleLabelPosition(QLabeledDoubleRangeSlider.LabelPosition.NoLabel)
        self.range.setEdgeLabelMode(QLabeledDoubleRangeSlider.EdgeLabelMode.LabelIsValue)
        self.range.setToolTip("The part of the schedule it steers: 0 is the first step, 1 the last")
        self.state = QLabel()
        self.state.setObjectName("hint")
        self.state.setWordWrap(True)

        tools_box = QWidget()  # wraps on a narrow panel instead of widening it
        tools = QFlowLayout(tools_box)
        tools.setContentsMargins(0, 0, 0, 0)
        for button in (self.draw, self.from_canvas, self.load, self.show_layer, self.clear):
            tools.addWidget(button)
        form = QFormLayout(self)
        form.setContentsMargins(0, 0, 0, 0)
        form.addRow(self.enabled)
        form.addRow("Model", self.model)
        form.addRow("Image", tools_box)
        form.addRow("Preprocess", self.preprocessor)
        form.addRow("Type", self.control_type)
        form.addRow("Strength", self.scale)
        form.addRow("Steps", self.range)
        form.addRow(self.state)
        canvas.controlChanged.connect(self._show_state)
        self.enabled.toggled.connect(self._show_state)
        self.set_generator("")

    # -- the models -------------------------------------------------------------------------

    def set_generator(self, model: str, mode: Mode | None = None) -> None:
        """List the ControlNets: the generator's embedded one, the models folder's, and any
        picked by hand (kept at the end); a generator of a family the studio runs no
        ControlNets on (in `mode`, when given) turns the section off, saying why."""
        self._family = catalog.model_family(model) if model else None
        self.set_mode(mode)
        current = self.model.currentData()
        picked = list(self._by_hand)
        self.model.clear()
        names: list[str] = []
        embedded = EMBEDDED_CONTROLNETS.get(model)
        if embedded and (EMBEDDED_MODELS_DIR / embedded / "config.json").is_file():
            names.append(embedded)
        found = models_folder.current()
        if found is not None:
            names.extend(str(path) for path in found.controlnets)
        for spec in [*names, *picked]:
            if self.model.findData(spec) < 0:
                self.model.addItem(_short(spec), spec)
        self.model.addItem("Other… (a folder or file)", OTHER)
        index = self.model.findData(current)
        self.model.setCurrentIndex(index if index >= 0 and current != OTHER else 0)
        self._show_state()

    def set_mode(self, mode: Mode | None) -> None:
        """The window's mode: a family with no ControlNet pipeline for it (SD 3 in
        Image→Image) turns the section off, saying why."""
        family = self._family
        self._applies = family.controlnet_refusal(mode and mode.value) if family else ""
        if self._applies:
            self.draw.setChecked(False)  # the brush goes back to the mask
        for widget in self.findChildren(QWidget):
            if widget is not self.state:
                widget.setEnabled(not self._applies)
        self.enabled.setToolTip(self._applies or ENABLED_TIP)
        self._show_state()

    def _on_model_activated(self, index: int) -> None:
        if self.model.itemData(index) != OTHER:
            return
        path, _ = QFileDialog.getOpenFileName(
            self,
            "A ControlNet (its config.json or .safetensors)",
            "",
            "ControlNet (*.json *.safetensors)",
        )
        if not path:
            self.model.setCurrentIndex(0)
            return
        spec = str(Path(path).parent if path.endswith(".json") else path)
        if spec not in self._by_hand:
            self._by_hand.append(spec)
        self.model.insertItem(self.model.count() - 1, _short(spec), spec)
        self.model.setCurrentIndex(self.model.findData(spec))

    def model_spec(self) -> str:
        """The chosen ControlNet, "" while none is (the job then says to choose one)."""
        data = self.model.currentData()
        return "" if data in (None, OTHER) else str(data)

    # -- the control image ------------------------------------------------------------------

    def use_canvas_picture(self) -> None:
        picture = self.canvas.image()
        if picture is None:
            self.problem.emit("There is no picture on the canvas to make a control image of.")
            return
        self._set_map(picture)

    def use_picture(self, picture: Image.Image) -> None:
        self._set_map(picture)

    def _open_file(self) -> None:
        path, _ = QFileDialog.getOpenFileName(
            self, "A picture to take lines from", "", file_dialog_filter()
        )
        if not path:
            return
        try:
            self._set_map(open_image(path))
        except ImageLoadError as e:
            self.problem.emit(str(e))

    def _clear(self) -> None:
        self.canvas.clear_control()
        self._made_by = ""

    def _set_map(self, picture: Image.Image) -> None:
        if not self.canvas.has_image():
            self.problem.emit("Open or generate a picture first: the control layer is its size.")
            return
        width, height = self.canvas.image().size
        name = self.preprocessor.currentData()
        lines = preprocessors.run(name, picture.convert("RGB"), width, height)
        self.canvas.set_control_image(lines)
        self._made_by = name if name in ("canny", "lineart") else ""
        self.enabled.setChecked(True)

    # -- what the job takes -----------------------------------------------------------------

    def controls(self) -> tuple[Control, ...]:
        """The ControlNet of the next job, when on (its image is the control layer now)."""
        if not self.enabled.isChecked() or self._applies:
            return ()
        start, end = self.range.value()
        return (
            Control(
                model=self.model_spec(),
                image=self.canvas.control_image(),
                scale=round(self.scale.value(), 2),
                start=round(start, 2),
                end=round(end, 2),
                # the layer is already the map (made by a preprocessor, then maybe drawn
                # on): the engine takes it as it is, and the metadata says so
                preprocessor="none",
                control_type=self.control_type.currentData() or self._made_by,
            ),
        )

    def restore(self, units: list[dict[str, Any]]) -> None:
        """A restored file's first ControlNet: its control type (a union ControlNet's), its
        strength and its steps. The model, the control layer and whether it is on stay the
        artist's: the file has neither the image nor, often, a model this machine knows."""
        unit = units[0] if units and isinstance(units[0], dict) else {}
        index = self.control_type.findData(unit.get("control_type", ""))
        self.control_type.setCurrentIndex(max(index, 0))
        scale, start, end = unit.get("scale", 1.0), unit.get("start", 0.0), unit.get("end", 1.0)
        if all(isinstance(v, int | float) for v in (scale, start, end)) and start < end:
            self.scale.setValue(float(scale))
            self.range.setValue((float(start), float(end)))

    def _show_state(self) -> None:
        empty = self.canvas.control_is_empty()
        on = self.enabled.isChecked() and not self._applies
        self.state.setText(
            self._applies
            or (
                "The control layer is empty: draw on it, or make it from a picture."
                if empty and on
                else ""
            )
        )
        self.state.setVisible(bool(self.state.text()))
        title = "ControlNet (on)" if on else "ControlNet"
        if title != self._title:
            self._title = title
            self.titleChanged.emit(title)

    def text(self) -> str:
        return self._title


def _short(spec: str) -> str:
    parts = printable(spec).replace("\\", "/").rstrip("/").split("/")
    return parts[-1] if parts else spec
