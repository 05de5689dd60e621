"""Every numeric knob of a request: steps, CFG, scheduler, seed, size, batch, strength,
the advanced guidance controls, inpaint options and the upscaler.

`values()` returns the request fields this panel owns; `set_values()` fills them back
(from the last session, or from an image's parameters).
"""

from __future__ import annotations

import contextlib
import random
from typing import Any

from PySide6.QtCore import Qt, Signal
from PySide6.QtWidgets import (
    QCheckBox,
    QComboBox,
    QFormLayout,
    QGroupBox,
    QHBoxLayout,
    QLabel,
    QMenu,
    QSpinBox,
    QToolButton,
    QVBoxLayout,
    QWidget,
)
from superqt import QCollapsible, QLabeledDoubleSlider, QLabeledSlider, QLargeIntSpinBox

from studio.core.request import MAX_BATCH, MAX_SIDE, Mode, Upscaler
from studio.core.schedulers import SCHEDULER_NAMES
from studio.ui.icons import themed
from studio.ui.panels.model_picker import ModelPicker

MAX_SEED = 2**32 - 1
SIZE_PRESETS: tuple[tuple[str, int, int], ...] = (
    ("64 × 64 (studio-tiny)", 64, 64),
    ("128 × 128", 128, 128),
    ("256 × 256", 256, 256),
    ("512 × 512 (SD 1.5)", 512, 512),
    ("768 × 768 (SD 2)", 768, 768),
    ("1024 × 1024 (SDXL)", 1024, 1024),
    ("512 × 768 (2:3 portrait)", 512, 768),
    ("768 × 512 (3:2 landscape)", 768, 512),
    ("576 × 1024 (9:16)", 576, 1024),
    ("1024 × 576 (16:9)", 1024, 576),
    ("832 × 1216 (SDXL portrait)", 832, 1216),
    ("1216 × 832 (SDXL landscape)", 1216, 832),
)
_UPSCALERS: tuple[tuple[str, Upscaler | None], ...] = (
    ("None", None),
    ("×4 diffusion upscaler", Upscaler.X4),
    ("Hires fix (×2, then image→image)", Upscaler.HIRES),
)


def round_to_8(value: float) -> int:
    return max(8, min(MAX_SIDE, int(round(value / 8)) * 8))


class SizeSpinBox(QSpinBox):
    """A side length that is always a multiple of 8: typed values snap to the nearest."""

    def __init__(self, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.setRange(8, MAX_SIDE)
        self.setSingleStep(8)
        self.setSuffix(" px")
        self.setAccelerated(True)

    def valueFromText(self, text: str) -> int:  # noqa: N802 - Qt API
        digits = "".join(c for c in text if c.isdigit())
        return round_to_8(int(digits)) if digits else self.minimum()


def _slider(minimum: int, maximum: int, value: int, tip: str) -> QLabeledSlider:
    slider = QLabeledSlider(Qt.Orientation.Horizontal)
    slider.setRange(minimum, maximum)
    slider.setValue(value)
    slider.setToolTip(tip)
    return slider


def _dslider(
    minimum: float, maximum: float, value: float, step: float, decimals: int, tip: str
) -> QLabeledDoubleSlider:
    slider = QLabeledDoubleSlider(Qt.Orientation.Horizontal)
    slider.setRange(minimum, maximum)
    slider.setSingleStep(step)
    slider.setDecimals(decimals)
    slider.setValue(value)
    slider.setToolTip(tip)
    return slider


def _tool_button(icon_name: str, tip: str, checkable: bool = False) -> QToolButton:
    button = QToolButton()
    themed(button, icon_name)
    button.setToolTip(tip)
    button.setCheckable(checkable)
    button.setAutoRaise(False)
    return button


def _form() -> QFormLayout:
    form = QFormLayout()
    form.setFieldGrowthPolicy(QFormLayout.FieldGrowthPolicy.AllNonFixedFieldsGrow)
    form.setLabelAlignment(Qt.AlignmentFlag.AlignRight | Qt.AlignmentFlag.AlignVCenter)
    form.setContentsMargins(0, 0, 0, 0)
    return form


class GuidancePanel(QWidget):
    sizeChanged = Signal(int, int)

    def __init__(self, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self._mode = Mode.TEXT_TO_IMAGE
        self._upscaler_list = "generate"
        self._upscaler_memory: dict[str, Upscaler | None] = {"upscale": Upscaler.X4}
        layout = QVBoxLayout(self)
        layout.setContentsMargins(0, 0, 0, 0)
        layout.addWidget(self._build_basic())
        layout.addWidget(self._build_inpaint())
        layout.addWidget(self._build_upscale())
        layout.addWidget(self._build_advanced())
        self.set_mode(Mode.TEXT_TO_IMAGE)

    # -- building ---------------------------------------------------------------------------

    def _build_basic(self) -> QGroupBox:
        box = QGroupBox("Generation")
        form = _form()
        box.setLayout(form)

        self.steps = _slider(1, 150, 20, "Denoising steps: more is slower and usually finer")
        self.cfg_scale = _dslider(
            0, 30, 7.0, 0.5, 1, "CFG scale: how strongly the image follows the prompt"
        )
        self.scheduler = QComboBox()
        self.scheduler.addItems(SCHEDULER_NAMES)
        self.scheduler.setToolTip("Sampler (scheduler) of the denoising loop")

        self.seed = QLargeIntSpinBox()
        self.seed.setRange(0, MAX_SEED)
        self.seed.setToolTip("The seed: the same seed and parameters give the same image")
        self.seed.setValue(random.randrange(MAX_SEED + 1))
        self.seed_lock = _tool_button(
            "unlock", "Lock the seed (otherwise every generation gets a new one)", True
        )
        self.seed_lock.toggled.connect(self._on_lock_toggled)
        self.dice = _tool_button("dice", "A new random seed")
        self.dice.clicked.connect(self.roll_seed)
        seed_row = QHBoxLayout()
        seed_row.setSpacing(4)
        seed_row.addWidget(self.seed, 1)
        seed_row.addWidget(self.seed_lock)
        seed_row.addWidget(self.dice)

        self.width_box = SizeSpinBox()
        self.height_box = SizeSpinBox()
        self.width_box.setValue(64)
        self.height_box.setValue(64)
        self.width_box.setToolTip("Width in pixels (a multiple of 8)")
        self.height_box.setToolTip("Height in pixels (a multiple of 8)")
        self.swap = _tool_button("swap", "Swap width and height")
        self.swap.clicked.connect(self.swap_size)
        self.presets = QToolButton()
        self.presets.setText("Presets")
        self.presets.setToolTip("Common sizes")
        self.presets.setPopupMode(QToolButton.ToolButtonPopupMode.InstantPopup)
        menu = QMenu(self.presets)
        for label, w, h in SIZE_PRESETS:
            menu.addAction(label).triggered.connect(lambda _=False, w=w, h=h: self.set_size(w, h))
        self.presets.setMenu(menu)
        size_row = QHBoxLayout()
        size_row.setSpacing(4)
        size_row.addWidget(self.width_box, 1)
        size_row.addWidget(QLabel("×"))
        size_row.addWidget(self.height_box, 1)
        size_row.addWidget(self.swap)
        size_row.addWidget(self.presets)
        for box_ in (self.width_box, self.height_box):
            box_.valueChanged.connect(lambda _=0: self.sizeChanged.emit(*self.size()))

        self.batch_size = QSpinBox()
        self.batch_size.setRange(1, min(16, MAX_BATCH))
        self.batch_size.setToolTip("Images per generation (seed, seed+1, …)")
        self.strength = _dslider(
            0.01, 1.0, 0.75, 0.01, 2, "How much the image may change: 0 keeps it, 1 replaces it"
        )

        form.addRow("Steps", self.steps)
        form.addRow("CFG scale", self.cfg_scale)
        form.addRow("Sampler", self.scheduler)
        form.addRow("Seed", seed_row)
        form.addRow("Size", size_row)
        form.addRow("Batch", self.batch_size)
        form.addRow("Strength", self.strength)
        self._strength_label = form.labelForField(self.strength)
        return box

    def _build_inpaint(self) -> QGroupBox:
        self.inpaint_box = QGroupBox("Inpaint")
        form = _form()
        self.inpaint_box.setLayout(form)
        self.mask_blur = _slider(0, 64, 4, "Feather: how softly the repainted area blends in")
        self.only_masked = QCheckBox("Only the masked area")
        self.only_masked.setToolTip(
            "Work on a crop around the mask at full resolution, then paste it back"
        )
        self.padding = _slider(0, 256, 32, "Context around the mask for 'only the masked area'")
        self.only_masked.toggled.connect(self.padding.setEnabled)
        self.padding.setEnabled(False)
        form.addRow("Feather", self.mask_blur)
        form.addRow("", self.only_masked)
        form.addRow("Padding", self.padding)
        return self.inpaint_box

    def _build_upscale(self) -> QGroupBox:
        self.upscale_box = QGroupBox("Upscale")
        form = _form()
        self.upscale_box.setLayout(form)
        self.upscaler = QComboBox()
        self.upscaler.setToolTip("Enlarge the result after generating it")
        self.upscale_strength = _dslider(
            0.05, 1.0, 0.35, 0.01, 2, "Hires fix: how much the enlarged image may change"
        )
        self.noise_level = _slider(0, 350, 20, "×4 upscaler: noise added to the input (detail)")
        self.upscale_model = ModelPicker("upscaler", show_hint=False)
        self.upscaler.currentIndexChanged.connect(self._update_upscale_rows)
        form.addRow("Upscaler", self.upscaler)
        form.addRow("Model", self.upscale_model)
        form.addRow("Strength", self.upscale_strength)
        form.addRow("Noise", self.noise_level)
        self._upscale_form = form
        return self.upscale_box

    def _build_advanced(self) -> QCollapsible:
        self.advanced = QCollapsible("Advanced guidance")
        self.advanced.setDuration(0)
        content = QWidget()
        form = _form()
        content.setLayout(form)
        self.cfg_rescale = _dslider(
            0, 1, 0.0, 0.05, 2, "CFG rescale: tames over-saturation at high CFG (0 = off)"
        )
        self.dynamic_thresholding = QCheckBox("Dynamic thresholding (Imagen)")
        self.dynamic_thresholding.setToolTip(
            "Clip the predicted image at a percentile: allows high CFG without burning"
        )
        self.percentile = _dslider(50, 100, 99.5, 0.1, 1, "Percentile of |x₀| used as threshold")
        self.ceiling = _dslider(1, 10, 2.5, 0.1, 1, "The largest threshold allowed")
        self.dynamic_thresholding.toggled.connect(self._update_threshold_rows)
        form.addRow("CFG rescale", self.cfg_rescale)
        form.addRow("", self.dynamic_thresholding)
        form.addRow("Percentile", self.percentile)
        form.addRow("Ceiling", self.ceiling)
        self.advanced.addWidget(content)
        self._update_threshold_rows(False)
        return self.advanced

    # -- mode ----------------------------------------------------------------------------------

    def set_mode(self, mode: Mode) -> None:
        self._mode = Mode(mode)
        uses_strength = self._mode in (Mode.IMAGE_TO_IMAGE, Mode.INPAINT)
        self.strength.setVisible(uses_strength)
        self._strength_label.setVisible(uses_strength)
        self.inpaint_box.setVisible(self._mode is Mode.INPAINT)
        upscaling = self._mode is Mode.UPSCALE
        # An upscale job enlarges the canvas image: the generation knobs do not apply.
        for widget in (self.cfg_scale, self.scheduler, self.batch_size, self.width_box):
            widget.setEnabled(not upscaling)
        for widget in (self.height_box, self.swap, self.presets):
            widget.setEnabled(not upscaling)
        self.advanced.setEnabled(not upscaling)
        # The Upscale mode has its own choice (×4 or hires, never none); switching back
        # gives the generation modes theirs.
        if self.upscaler.count():
            self._upscaler_memory[self._upscaler_list] = self.upscaler_choice()
        self._upscaler_list = "upscale" if upscaling else "generate"
        self.upscaler.blockSignals(True)
        self.upscaler.clear()
        for label, value in _UPSCALERS:
            if upscaling and value is None:
                continue
            self.upscaler.addItem(label, value.value if value else None)
        self.upscaler.blockSignals(False)
        self._select_upscaler(self._upscaler_memory.get(self._upscaler_list))
        self._update_upscale_rows()

    # -- values --------------------------------------------------------------------------------

    def size(self) -> tuple[int, int]:
        return self.width_box.value(), self.height_box.value()

    def set_size(self, width: int, height: int) -> None:
        self.width_box.setValue(round_to_8(width))
        self.height_box.setValue(round_to_8(height))

    def swap_size(self) -> None:
        width, height = self.size()
        self.set_size(height, width)

    def roll_seed(self) -> None:
        self.seed.setValue(random.randrange(MAX_SEED + 1))

    def seed_locked(self) -> bool:
        return self.seed_lock.isChecked()

    def set_seed_locked(self, locked: bool) -> None:
        self.seed_lock.setChecked(locked)

    def show_used_seed(self, seed: int) -> None:
        """After a job: display its seed, so the artist can lock it to keep the image."""
        if not self.seed_locked():
            self.seed.setValue(seed)

    def upscaler_choice(self) -> Upscaler | None:
        value = self.upscaler.currentData()  # Qt hands the str enum back as a plain str
        return Upscaler(value) if value else None

    def values(self) -> dict[str, Any]:
        width, height = self.size()
        upscaler = self.upscaler_choice()
        return {
            "steps": self.steps.value(),
            "cfg_scale": round(float(self.cfg_scale.value()), 3),
            "scheduler": self.scheduler.currentText(),
            "seed": int(self.seed.value()) if self.seed_locked() else -1,
            "width": width,
            "height": height,
            "batch_size": self.batch_size.value(),
            "strength": round(float(self.strength.value()), 3),
            "mask_blur": self.mask_blur.value(),
            "inpaint_only_masked": self.only_masked.isChecked(),
            "inpaint_padding": self.padding.value(),
            "upscaler": upscaler.value if upscaler else None,
            "upscale_model": self.upscale_model.model(),
            "upscale_strength": round(float(self.upscale_strength.value()), 3),
            "upscale_noise_level": self.noise_level.value(),
            "cfg_rescale": round(float(self.cfg_rescale.value()), 3),
            "dynamic_thresholding": self.dynamic_thresholding.isChecked(),
            "threshold_percentile": round(float(self.percentile.value()), 3),
            "threshold_max": round(float(self.ceiling.value()), 3),
        }

    def set_values(self, data: dict[str, Any]) -> None:
        """Fill in every known field present in `data`; others keep their value."""
        setters = {
            "steps": lambda v: self.steps.setValue(int(v)),
            "cfg_scale": lambda v: self.cfg_scale.setValue(float(v)),
            "scheduler": self._set_scheduler,
            "seed": self._set_seed,
            "batch_size": lambda v: self.batch_size.setValue(int(v)),
            "strength": lambda v: self.strength.setValue(float(v)),
            "mask_blur": lambda v: self.mask_blur.setValue(int(v)),
            "inpaint_only_masked": lambda v: self.only_masked.setChecked(bool(v)),
            "inpaint_padding": lambda v: self.padding.setValue(int(v)),
            "upscaler": lambda v: self._select_upscaler(Upscaler(v) if v else None),
            "upscale_model": lambda v: self.upscale_model.set_model(str(v)),
            "upscale_strength": lambda v: self.upscale_strength.setValue(float(v)),
            "upscale_noise_level": lambda v: self.noise_level.setValue(int(v)),
            "cfg_rescale": lambda v: self.cfg_rescale.setValue(float(v)),
            "dynamic_thresholding": lambda v: self.dynamic_thresholding.setChecked(bool(v)),
            "threshold_percentile": lambda v: self.percentile.setValue(float(v)),
            "threshold_max": lambda v: self.ceiling.setValue(float(v)),
        }
        for key, setter in setters.items():
            value = data.get(key)
            if value is None and key != "upscaler":
                continue
            if key == "upscaler" and key not in data:
                continue
            try:
                setter(value)
            except (TypeError, ValueError):
                continue  # a foreign file with an odd value: keep ours
        if data.get("width") and data.get("height"):
            with contextlib.suppress(TypeError, ValueError):
                self.set_size(int(data["width"]), int(data["height"]))

    # -- internals ------------------------------------------------------------------------------

    def _set_scheduler(self, name: str) -> None:
        index = self.scheduler.findText(str(name))
        if index >= 0:
            self.scheduler.setCurrentIndex(index)

    def _set_seed(self, seed: int) -> None:
        seed = int(seed)
        if 0 <= seed <= MAX_SEED:
            self.seed.setValue(seed)
            self.seed_lock.setChecked(True)  # a restored seed is meant to be reused

    def _select_upscaler(self, value: Upscaler | None) -> None:
        index = self.upscaler.findData(value.value if value else None)
        self.upscaler.setCurrentIndex(max(0, index))

    def _on_lock_toggled(self, locked: bool) -> None:
        themed(self.seed_lock, "lock" if locked else "unlock")

    def _update_upscale_rows(self) -> None:
        choice = self.upscaler_choice()
        for widget, visible in (
            (self.upscale_strength, choice is Upscaler.HIRES),
            (self.noise_level, choice is Upscaler.X4),
            (self.upscale_model, choice is Upscaler.X4),
        ):
            widget.setVisible(visible)
            label = self._upscale_form.labelForField(widget)
            if label is not None:
                label.setVisible(visible)

    def _update_threshold_rows(self, on: bool) -> None:
        self.percentile.setEnabled(on)
        self.ceiling.setEnabled(on)
