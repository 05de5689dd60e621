"""The "Classifier guidance" section: steer each step toward a shape and colour with the
model's noise-aware classifier (studio/engine/classifier_guidance.py).

Shown only when the chosen model has a classifier beside it (studio/core/classifiers.py).
The scale slider is bound to `classifier_scale` like every other knob (`ui.bind`); the two
combo boxes together write one field, `classifier_class` ("red star", "star", "red").
"""

from __future__ import annotations

from typing import Any

from PySide6.QtCore import Qt
from PySide6.QtWidgets import QComboBox, QFormLayout, QLabel, QWidget
from superqt import QCollapsible, QLabeledDoubleSlider

from studio.core import classifiers
from studio.core.draft import Draft, Source
from studio.core.request import RANGES
from studio.ui.bind import bind, follow
from studio.ui.icons import themed_section

# Measured (README, the embedded model): it steers even against the prompt, and at high
# scales it adds stray copies of the object rather than fidelity
EXPLANATION = (
    "Pushes each step toward the chosen shape and colour, even against the prompt; "
    "high scales add stray copies."
)
SCALE_SHOWN = 10.0  # the slider's end; the request allows more (the command line)


class ClassifierSection(QCollapsible):
    """Target shape, target colour ("any" allowed) and the scale, bound to the draft."""

    def __init__(self, draft: Draft, parent: QWidget | None = None) -> None:
        super().__init__("Classifier guidance", parent)
        self.draft = draft
        self.setDuration(0)
        themed_section(self)
        content = QWidget()
        form = QFormLayout(content)
        form.setFieldGrowthPolicy(QFormLayout.FieldGrowthPolicy.AllNonFixedFieldsGrow)
        form.setLabelAlignment(Qt.AlignmentFlag.AlignRight | Qt.AlignmentFlag.AlignVCenter)
        form.setContentsMargins(0, 0, 0, 0)
        self.explanation = QLabel(EXPLANATION)
        self.explanation.setObjectName("hint")
        self.explanation.setWordWrap(True)
        self.shape = QComboBox()
        self.shape.setToolTip("The shape each step is pushed toward (any: no shape)")
        self.colour = QComboBox()
        self.colour.setToolTip("The colour each step is pushed toward (any: no colour)")
        limit = RANGES["classifier_scale"]
        self.scale = QLabeledDoubleSlider(Qt.Orientation.Horizontal)
        self.scale.setRange(limit.low, SCALE_SHOWN)
        self.scale.setSingleStep(0.25)
        self.scale.setDecimals(2)
        self.scale.setToolTip(
            "Classifier guidance scale s: how hard the classifier's gradient pushes (0 = off)"
        )
        form.addRow(self.explanation)
        form.addRow("Shape", self.shape)
        form.addRow("Colour", self.colour)
        form.addRow("Scale", self.scale)
        self.addWidget(content)
        self._classes: classifiers.Classes | None = None
        bind(draft, "classifier_scale", self.scale)
        self.shape.currentIndexChanged.connect(self._on_combo)
        self.colour.currentIndexChanged.connect(self._on_combo)
        follow(draft.changed, self, self._on_draft_changed)
        self._on_model()

    # -- following the draft ------------------------------------------------------------------

    def _on_draft_changed(self, values: dict[str, Any], source: Source) -> None:
        if "model" in values:
            self._on_model()
        elif self._classes is None and self.draft["classifier_scale"]:
            # a restored file's guidance on a model without a classifier: off, as above
            self.draft.apply({"classifier_scale": 0.0}, Source.MODEL)
        elif "classifier_class" in values:
            self._show_target()

    def _on_model(self) -> None:
        """Offer the model's classes, or hide the section when it has no classifier."""
        self._classes = classifiers.classes_for(str(self.draft["model"]))
        self.setVisible(self._classes is not None)
        for combo, names in (
            (self.shape, self._classes.shapes if self._classes else []),
            (self.colour, self._classes.colours if self._classes else []),
        ):
            combo.blockSignals(True)
            combo.clear()
            combo.addItem(classifiers.ANY, "")
            for name in names:
                combo.addItem(name, name)
            combo.blockSignals(False)
        if self._classes is None and self.draft["classifier_scale"]:
            # a model without a classifier cannot run it: off, rather than a failed job
            self.draft.apply({"classifier_scale": 0.0}, Source.MODEL)
        self._show_target()

    def _show_target(self) -> None:
        """The combos show the draft's target; a word the classifier lacks shows as any."""
        words = str(self.draft["classifier_class"]).split()
        for combo in (self.shape, self.colour):
            found = next((i for w in words if (i := combo.findData(w)) > 0), 0)
            combo.blockSignals(True)
            combo.setCurrentIndex(found)
            combo.blockSignals(False)

    def _on_combo(self, _index: int = 0) -> None:
        words = [self.colour.currentData() or "", self.shape.currentData() or ""]
        self.draft.apply({"classifier_class": " ".join(w for w in words if w)}, Source.USER)

    def target(self) -> str:
        return str(self.draft["classifier_class"])
