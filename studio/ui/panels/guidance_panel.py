"""Every numeric knob of a request: steps, CFG, scheduler, seed, size, batch, strength,
the advanced guidance controls, inpaint options and the upscaler.

Each widget is bound to its field of the draft (`ui.bind`); the panel holds no values of
its own. Ranges come from `request.RANGES`, so a widget never allows what the request
refuses.
"""

from __future__ import annotations

from typing import Any

from PySide6.QtCore import Qt
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

from studio.core.catalog import model_defaults, model_family
from studio.core.draft import UPSCALE_METHOD, Draft, Source
from studio.core.imaging import size_note, sizes_at_area
from studio.core.prompt_syntax import CLIP_SKIP_FAMILIES
from studio.core.request import (
    MAX_SEED,
    RANDOM_SEED,
    RANGES,
    SIDE_STEP,
    Mode,
    Upscaler,
    snap_side,
    snap_to_8,
)
from studio.core.schedulers import SCHEDULER_NAMES, closest_scheduler
from studio.core.text import printable
from studio.ui.bind import bind, follow
from studio.ui.icons import themed, themed_section
from studio.ui.panels.classifier_panel import ClassifierSection
from studio.ui.panels.model_picker import ModelPicker, short_model_name

MAX_BATCH_SHOWN = 16  # the request allows more (the command line); the window offers these
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


class SizeSpinBox(QSpinBox):
    """A side length in the model's steps (8 pixels, 16 for a transformer family): typed
    values snap to the nearest, and the arrows go from step to step."""

    def __init__(self, what: str, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self._what = what
        limit = RANGES["width"]
        self.setRange(int(limit.low), int(limit.high))
        self.setAccelerated(True)
        self.set_side_step(SIDE_STEP)

    def set_side_step(self, step: int) -> None:
        """The model's step (`Family.size_step`); a value off it stays until changed (the
        engine runs it cut down to the step and says so)."""
        self.setSingleStep(step)
        self.setToolTip(f"{self._what} in pixels (a multiple of {step} for this model)")

    def valueFromText(self, text: str) -> int:  # noqa: N802 - Qt API
        digits = "".join(c for c in text if c.isdigit())
        return snap_side(int(digits), self.singleStep()) if digits else self.minimum()

    def stepBy(self, steps: int) -> None:  # noqa: N802 - Qt API
        step, value = self.singleStep(), self.value()
        below = value // step * step  # a value off the step goes to the step first
        target = below + step * (steps + (1 if value != below and steps < 0 else 0))
        self.setValue(max(self.minimum(), min(self.maximum(), target)))


def _slider(field: str, tip: str, maximum: int | None = None) -> QLabeledSlider:
    """A slider over the field's range (or a narrower one the window offers)."""
    limit = RANGES[field]
    slider = QLabeledSlider(Qt.Orientation.Horizontal)
    slider.setRange(int(limit.low), int(limit.high if maximum is None else maximum))
    slider.setToolTip(tip)
    return slider


def _dslider(
    field: str, step: float, decimals: int, tip: str, maximum: float | None = None
) -> QLabeledDoubleSlider:
    limit = RANGES[field]
    slider = QLabeledDoubleSlider(Qt.Orientation.Horizontal)
    low = limit.low if not limit.above_low else max(limit.low + step, step)
    slider.setRange(low, limit.high if maximum is None else maximum)
    slider.setSingleStep(step)
    slider.setDecimals(decimals)
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


def _what_it_runs(spec: str) -> str:
    """The settings an upscaler runs with (its card's), as the metadata will record them."""
    card = model_defaults(spec)
    if not card:
        return ""
    parts = [f"{card['steps']} steps" if "steps" in card else ""]
    parts.append(str(card.get("scheduler", "")))
    parts.append(f"CFG {card['cfg_scale']:g}" if "cfg_scale" in card else "")
    return "Runs " + ", ".join(p for p in parts if p) + "."


class GuidancePanel(QWidget):
    """The generation knobs, bound to a draft; which of them show follows the draft's mode."""

    def __init__(self, draft: Draft, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.draft = draft
        layout = QVBoxLayout(self)
        layout.setContentsMargins(0, 0, 0, 0)
        layout.addWidget(self._build_basic())
        layout.addWidget(self._build_inpaint())
        layout.addWidget(self._build_upscale())
        layout.addWidget(self._build_advanced())
        # inside Advanced guidance (folded, it costs no height); only for a model with one
        self.classifier = ClassifierSection(draft)
        self.advanced.addWidget(self.classifier)
        for widget in (self.steps, self.cfg_scale, self.scheduler, self.batch_size):
            widget.setProperty("usualTip", widget.toolTip())
        self.cfg_rescale.setProperty("usualTip", self.cfg_rescale.toolTip())
        self.clip_skip.setProperty("usualTip", self.clip_skip.toolTip())
        self._family = model_family(str(draft["model"]))
        self._bind()
        follow(draft.changed, self, self._on_draft_changed)
        follow(draft.lastSeedChanged, self, self._on_last_seed)
        self._show_mode(draft.mode)
        self._update_upscale_rows()
        self._update_threshold_rows()
        self._native = model_defaults(str(draft["model"]))
        self._offer_samplers()
        self._show_size_step()
        self._update_applicability()
        self._update_size_warning()

    # -- building ---------------------------------------------------------------------------

    def _build_basic(self) -> QGroupBox:
        box = QGroupBox("Generation")
        form = _form()
        box.setLayout(form)

        self.steps = _slider("steps", "Denoising steps: more is slower and usually finer", 150)
        self.cfg_scale = _dslider(
            "cfg_scale", 0.5, 1, "CFG scale: how strongly the image follows the prompt", 30
        )
        self.scheduler = QComboBox()
        self.scheduler.addItems(SCHEDULER_NAMES)
        for index, name in enumerate(SCHEDULER_NAMES):
            self.scheduler.setItemData(index, name)
        self.scheduler.setToolTip("Sampler (scheduler) of the denoising loop")

        self.seed = QLargeIntSpinBox()
        self.seed.setRange(RANDOM_SEED, MAX_SEED)
        self.seed.setToolTip(
            "The seed of the next image: the same seed and parameters give the same image. "
            "−1: a new random seed every time."
        )
        self.dice = _tool_button("dice", "Random: a new seed every time (−1)")
        self.dice.clicked.connect(self.draft.randomise_seed)
        self.reuse_seed = _tool_button("restore", "Reuse the seed of the last image")
        self.reuse_seed.clicked.connect(self.draft.reuse_last_seed)
        self.reuse_seed.setEnabled(self.draft.last_seed is not None)
        seed_row = QHBoxLayout()
        seed_row.setSpacing(4)
        seed_row.addWidget(self.seed, 1)
        seed_row.addWidget(self.dice)
        seed_row.addWidget(self.reuse_seed)

        self.width_box = SizeSpinBox("Width")
        self.height_box = SizeSpinBox("Height")
        self.swap = _tool_button("swap", "Swap width and height")
        self.swap.clicked.connect(self.swap_size)
        self.presets = QToolButton()
        self.presets.setText("Presets")
        self.presets.setToolTip("Common sizes")
        self.presets.setPopupMode(QToolButton.ToolButtonPopupMode.InstantPopup)
        menu = QMenu(self.presets)
        self._fill_presets(menu, with_model=False)
        menu.aboutToShow.connect(lambda: self._fill_presets(menu))
        self.presets.setMenu(menu)
        size_row = self._size_row = QHBoxLayout()
        size_row.setSpacing(4)
        size_row.addWidget(self.width_box, 1)
        size_row.addWidget(QLabel("×"))
        size_row.addWidget(self.height_box, 1)
        size_row.addWidget(self.swap)
        size_row.addWidget(self.presets)
        # Said before the artist generates: a size far from the model's own gives noise.
        self.size_warning = QLabel()
        self.size_warning.setObjectName("warning")
        self.size_warning.setWordWrap(True)
        self.size_warning.hide()

        self.batch_size = QSpinBox()
        self.batch_size.setRange(1, MAX_BATCH_SHOWN)
        self.batch_size.setToolTip("Images per generation (seed, seed+1, …)")
        self.strength = _dslider(
            "strength", 0.01, 2, "How much the image may change: 0 keeps it, 1 replaces it"
        )

        self._generation_form = form
        form.addRow("Steps", self.steps)
        form.addRow("CFG scale", self.cfg_scale)
        form.addRow("Sampler", self.scheduler)
        form.addRow("Seed", seed_row)
        form.addRow("Size (px)", size_row)
        form.addRow(self.size_warning)
        form.addRow("Batch", self.batch_size)
        form.addRow("Strength", self.strength)
        self._strength_label = form.labelForField(self.strength)
        return box

    def _build_inpaint(self) -> QGroupBox:
        self.inpaint_box = QGroupBox("Inpaint")
        form = _form()
        self.inpaint_box.setLayout(form)
        self.mask_blur = _slider("mask_blur", "Feather: how softly the repainted area blends in")
        self.only_masked = QCheckBox("Only the masked area")
        self.only_masked.setToolTip(
            "Work on a crop around the mask at full resolution, then paste it back"
        )
        self.padding = _slider(
            "inpaint_padding", "Context around the mask for 'only the masked area'", 256
        )
        form.addRow("Feather", self.mask_blur)
        form.addRow("", self.only_masked)
        form.addRow("Padding", self.padding)
        self._inpaint_form = form
        return self.inpaint_box

    def _build_upscale(self) -> QGroupBox:
        self.upscale_box = QGroupBox("Upscale")
        form = _form()
        self.upscale_box.setLayout(form)
        # The generation modes may upscale after generating (or not); the Upscale mode
        # always upscales, by one of the two methods: two choices, each kept.
        self.upscaler = QComboBox()
        self.upscaler.setToolTip("Enlarge the result after generating it")
        self.upscale_method = QComboBox()
        self.upscale_method.setToolTip("How the canvas image is enlarged")
        for label, value in _UPSCALERS:
            self.upscaler.addItem(label, value.value if value else None)
            if value is not None:
                self.upscale_method.addItem(label, value.value)
        self.upscale_strength = _dslider(
            "upscale_strength", 0.01, 2, "Hires fix: how much the enlarged image may change"
        )
        self.upscale_steps = _slider(
            "upscale_steps",
            "Hires fix: the steps of its pass, of which it runs this × strength "
            "(0: as many as Steps, as in A1111)",
            150,
        )
        self.noise_level = _slider(
            "upscale_noise_level", "×4 upscaler: noise added to the input (detail)"
        )
        self.upscale_model = ModelPicker("upscaler", show_hint=False)
        self.upscale_runs = QLabel()
        self.upscale_runs.setObjectName("hint")
        self.upscale_runs.setWordWrap(True)
        form.addRow("Upscaler", self.upscaler)
        form.addRow("Method", self.upscale_method)
        form.addRow("Model", self.upscale_model)
        form.addRow("", self.upscale_runs)
        form.addRow("Strength", self.upscale_strength)
        form.addRow("Hires steps", self.upscale_steps)
        form.addRow("Noise", self.noise_level)
        self._upscale_form = form
        return self.upscale_box

    def _build_advanced(self) -> QCollapsible:
        self.advanced = QCollapsible("Advanced guidance")
        self.advanced.setDuration(0)
        themed_section(self.advanced)
        content = QWidget()
        form = _form()
        content.setLayout(form)
        self.cfg_rescale = _dslider(
            "cfg_rescale", 0.05, 2, "CFG rescale: tames over-saturation at high CFG (0 = off)"
        )
        self.dynamic_thresholding = QCheckBox("Dynamic thresholding (Imagen)")
        self.dynamic_thresholding.setToolTip(
            "Clip the predicted image at a percentile: allows high CFG without burning"
        )
        self.percentile = _dslider(
            "threshold_percentile", 0.1, 1, "Percentile of |x₀| used as threshold"
        )
        self.ceiling = _dslider("threshold_max", 0.1, 1, "The largest threshold allowed", 10)
        form.addRow("CFG rescale", self.cfg_rescale)
        self.clip_skip = _slider(
            "clip_skip",
            "CLIP skip (A1111's Clip skip): read the prompt this many layers from the text "
            "encoder's last; 2 for the many SD 1.x anime models made for it",
        )
        form.addRow("CLIP skip", self.clip_skip)
        form.addRow("", self.dynamic_thresholding)
        form.addRow("Percentile", self.percentile)
        form.addRow("Ceiling", self.ceiling)
        self.advanced.addWidget(content)
        return self.advanced

    def _bind(self) -> None:
        for name, widget in (
            ("steps", self.steps),
            ("cfg_scale", self.cfg_scale),
            ("scheduler", self.scheduler),
            ("seed", self.seed),
            ("width", self.width_box),
            ("height", self.height_box),
            ("batch_size", self.batch_size),
            ("strength", self.strength),
            ("mask_blur", self.mask_blur),
            ("inpaint_only_masked", self.only_masked),
            ("inpaint_padding", self.padding),
            ("upscaler", self.upscaler),
            (UPSCALE_METHOD, self.upscale_method),
            ("upscale_strength", self.upscale_strength),
            ("upscale_steps", self.upscale_steps),
            ("upscale_noise_level", self.noise_level),
            ("cfg_rescale", self.cfg_rescale),
            ("clip_skip", self.clip_skip),
            ("dynamic_thresholding", self.dynamic_thresholding),
            ("threshold_percentile", self.percentile),
            ("threshold_max", self.ceiling),
        ):
            bind(self.draft, name, widget)
        self.upscale_model.bind(self.draft, "upscale_model")

    # -- what the panel offers ----------------------------------------------------------------

    def size(self) -> tuple[int, int]:
        return self.draft["width"], self.draft["height"]

    def set_size(self, width: int, height: int) -> None:
        self.draft.apply({"width": snap_to_8(width), "height": snap_to_8(height)}, Source.USER)

    def _fill_presets(self, menu: QMenu, with_model: bool = True) -> None:
        """The common sizes, after the picked model's own and its aspect ratios at the same
        area: a Qwen-Image model's 1328×1328 was in no preset, so a size once changed could
        not be chosen back."""
        menu.clear()
        defaults = self._native if with_model else {}
        native = (defaults.get("width"), defaults.get("height"))
        if isinstance(native[0], int) and isinstance(native[1], int):
            model = self._family.label if self._family else short_model_name(self.draft["model"])
            menu.addSection(f"{printable(model)}: its size, then others of its area")
            for n, (w, h) in enumerate(sizes_at_area((native[0], native[1]))):
                label = f"{w} × {h}" + (" (its own)" if n == 0 else "")
                menu.addAction(label).triggered.connect(
                    lambda _=False, w=w, h=h: self.set_size(w, h)
                )
            menu.addSection("Common sizes")
        for label, w, h in SIZE_PRESETS:
            menu.addAction(label).triggered.connect(lambda _=False, w=w, h=h: self.set_size(w, h))

    def swap_size(self) -> None:
        width, height = self.size()
        self.set_size(height, width)

    # -- following the draft --------------------------------------------------------------------

    def _on_draft_changed(self, values: dict[str, Any], source: Source) -> None:
        if "mode" in values:
            self._show_mode(self.draft.mode)
        if {"upscaler", UPSCALE_METHOD, "mode", "upscale_model"} & values.keys():
            self._update_upscale_rows()
        if "dynamic_thresholding" in values:
            self._update_threshold_rows()
        if "inpaint_only_masked" in values:
            self._show_padding()
        if "model" in values:
            self._native = model_defaults(str(self.draft["model"]))
            self._family = model_family(str(self.draft["model"]))
            self._offer_samplers()
            self._show_size_step()
        if {"model", "mode", UPSCALE_METHOD} & values.keys():
            self._update_applicability()
        if {"width", "height", "model", "mode"} & values.keys():
            self._update_size_warning()

    def _show_size_step(self) -> None:
        step = self._family.size_step if self._family else SIDE_STEP
        for box in (self.width_box, self.height_box):
            box.set_side_step(step)

    def _offer_samplers(self) -> None:
        """The samplers the model's family runs (flow models have their own); a chosen one
        it cannot run becomes its closest relative."""
        offered = (self._family.samplers if self._family else ()) or SCHEDULER_NAMES
        if tuple(self.scheduler.itemData(i) for i in range(self.scheduler.count())) != offered:
            self.scheduler.blockSignals(True)
            self.scheduler.clear()
            for name in offered:
                self.scheduler.addItem(name, name)
            self.scheduler.setCurrentIndex(max(0, self.scheduler.findData(self.draft["scheduler"])))
            self.scheduler.blockSignals(False)
        if self.draft["scheduler"] not in offered:
            relative = closest_scheduler(self.draft["scheduler"], offered) or offered[0]
            self.draft.apply({"scheduler": relative}, Source.MODEL)

    def _update_applicability(self) -> None:
        """Controls the mode or the model's family does not use are hidden or disabled, and
        say why. An upscale reads no size or batch (one picture in, one out, at the
        picture's size); the ×4 upscaler runs its own steps, sampler and CFG (the line in
        the Upscale section says which), while the hires fix runs the generator with them."""
        upscaling = self.draft.mode is Mode.UPSCALE
        own_settings = self.upscaler_runs_its_own_settings()
        guidance = self._family.guidance if self._family else None
        label = self._family.label if self._family else ""
        cfg_note = ""
        if guidance is not None and guidance.kind == "distilled":
            cfg_note = (
                f"{label} takes the guidance strength as an input (guidance-distilled): "
                f"{guidance.default_scale:g} is its usual value; it has no negative prompt."
            )
        elif guidance is not None and not guidance.scale:
            cfg_note = f"{label} is distilled to run unguided: a guidance scale does nothing."
        form = self._generation_form
        for widget in (self.steps, self.cfg_scale, self.scheduler):
            form.setRowVisible(widget, not own_settings)
            widget.setEnabled(True)
            widget.setToolTip(widget.property("usualTip"))
        form.setRowVisible(self.batch_size, not upscaling)
        form.setRowVisible(self._size_row, not upscaling)
        self.advanced.setEnabled(not own_settings)
        self.classifier.setEnabled(not own_settings)  # it steers the hires pass too
        if cfg_note:
            self.cfg_scale.setToolTip(cfg_note)
            self.cfg_scale.setEnabled(bool(guidance and guidance.scale))
        rescale = guidance is None or guidance.cfg_rescale
        self.cfg_rescale.setEnabled(rescale)
        self.cfg_rescale.setToolTip(
            self.cfg_rescale.property("usualTip")
            if rescale
            else f"CFG rescale needs CFG's two predictions in one call, which {label} does not "
            "make: it does not apply."
        )
        skips = self._family is None or self._family.name in CLIP_SKIP_FAMILIES
        self.clip_skip.setEnabled(skips)
        self.clip_skip.setToolTip(
            self.clip_skip.property("usualTip")
            if skips
            else f"{label} reads no CLIP skip (A1111 applies it to SD 1.x): it does not apply."
        )

    def _update_size_warning(self) -> None:
        native = self._native
        note = ""
        if self.draft.mode is not Mode.UPSCALE and "width" in native and "height" in native:
            model = printable(short_model_name(str(self.draft["model"])))
            note = size_note(self.size(), (native["width"], native["height"]), model)
        self.size_warning.setText(note)
        self.size_warning.setVisible(bool(note))

    def _on_last_seed(self, seed: int | None) -> None:
        self.reuse_seed.setEnabled(seed is not None)
        self.reuse_seed.setToolTip(f"Reuse the seed of the last image ({seed})")

    def _show_mode(self, mode: Mode) -> None:
        uses_strength = mode.uses_strength
        self.strength.setVisible(uses_strength)
        self._strength_label.setVisible(uses_strength)
        self.inpaint_box.setVisible(mode is Mode.INPAINT)
        self._update_applicability()
        self._show_padding()

    def _show_padding(self) -> None:
        """The padding applies to 'only the masked area': shown only with it."""
        self._inpaint_form.setRowVisible(self.padding, bool(self.draft["inpaint_only_masked"]))

    def upscaler_runs_its_own_settings(self) -> bool:
        """The Upscale mode's ×4 upscaler: its card's steps, sampler and CFG run."""
        return self.draft.mode is Mode.UPSCALE and self.upscaler_choice() is Upscaler.X4

    def upscaler_choice(self) -> Upscaler | None:
        """The upscaler the next job runs in the current mode."""
        if self.draft.mode is Mode.UPSCALE:
            return Upscaler(self.draft[UPSCALE_METHOD])
        value = self.draft["upscaler"]
        return Upscaler(value) if value else None

    def _update_upscale_rows(self) -> None:
        choice = self.upscaler_choice()
        upscaling = self.draft.mode is Mode.UPSCALE
        self.upscale_runs.setText(_what_it_runs(self.draft["upscale_model"]))
        for widget, visible in (
            (self.upscaler, not upscaling),
            (self.upscale_method, upscaling),
            (self.upscale_strength, choice is Upscaler.HIRES),
            (self.upscale_steps, choice is Upscaler.HIRES),
            (self.noise_level, choice is Upscaler.X4),
            # in the Upscale mode the upscaler is picked at the top, where the model is
            (self.upscale_model, choice is Upscaler.X4 and not upscaling),
            (self.upscale_runs, choice is Upscaler.X4),
        ):
            widget.setVisible(visible)
            label = self._upscale_form.labelForField(widget)
            if label is not None:
                label.setVisible(visible)

    def _update_threshold_rows(self) -> None:
        on = bool(self.draft["dynamic_thresholding"])
        self.percentile.setEnabled(on)
        self.ceiling.setEnabled(on)
