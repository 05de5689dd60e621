"""Segmented buttons choosing the mode: Text→Image, Image→Image, Inpaint, Upscale, Edit;
the modes the model's family has no pipeline for are disabled, with the reason."""

from __future__ import annotations

from typing import Any

from PySide6.QtCore import Signal
from PySide6.QtWidgets import QButtonGroup, QHBoxLayout, QSizePolicy, QToolButton, QWidget

from studio.core import catalog
from studio.core.draft import Draft, Source
from studio.core.request import Mode
from studio.ui.bind import Adapter, bind

_TIPS = {
    Mode.TEXT_TO_IMAGE: "Make an image from the prompt (Ctrl+1)",
    Mode.IMAGE_TO_IMAGE: "Push the canvas image towards the prompt (Ctrl+2)",
    Mode.INPAINT: "Repaint the masked part of the canvas image (Ctrl+3)",
    Mode.UPSCALE: "Enlarge the canvas image ×4 with a diffusion upscaler (Ctrl+4)",
    Mode.EDIT: "Change the canvas image as the prompt says: 'make the circle blue' (Ctrl+5)",
}


class ModeBar(QWidget):
    modeChanged = Signal(object)  # Mode

    def __init__(self, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        layout = QHBoxLayout(self)
        layout.setContentsMargins(0, 0, 0, 0)
        layout.setSpacing(0)
        self._group = QButtonGroup(self)
        self._group.setExclusive(True)
        self.buttons: dict[Mode, QToolButton] = {}
        for index, mode in enumerate(Mode):
            button = QToolButton(self)
            button.setObjectName("modeButton")
            button.setText(mode.label)
            button.setToolTip(_TIPS[mode])
            button.setCheckable(True)
            button.setSizePolicy(QSizePolicy.Policy.Expanding, QSizePolicy.Policy.Fixed)
            self._group.addButton(button, index)
            layout.addWidget(button)
            self.buttons[mode] = button
        self.buttons[Mode.TEXT_TO_IMAGE].setChecked(True)
        self._group.idToggled.connect(self._on_toggled)

    def mode(self) -> Mode:
        return list(Mode)[self._group.checkedId()]

    def bind(self, draft: Draft) -> None:
        """Show the draft's mode; a click sets it."""
        bind(
            draft, "mode", self, Adapter(lambda: self.mode().value, self.set_mode, self.modeChanged)
        )

        draft.changed.connect(self._on_draft_changed)
        self.show_family(catalog.model_family(str(draft["model"])))

    def show_family(self, family: Any) -> None:
        """Enable the modes the family has (every mode for a model of no known family: the
        engine finds out); the upscaler is a model of its own, always there."""
        for mode, button in self.buttons.items():
            has = family is None or family.offers(mode.value)
            button.setEnabled(has)
            button.setToolTip(
                _TIPS[mode] if has else f"{family.label} models have no {mode.label} mode."
            )

    def _on_draft_changed(self, values: dict[str, Any], _source: Source) -> None:
        if "model" in values:
            self.show_family(catalog.model_family(str(values["model"])))

    def set_mode(self, mode: Mode) -> None:
        self.buttons[Mode(mode)].setChecked(True)

    def _on_toggled(self, index: int, checked: bool) -> None:
        if checked:
            self.modeChanged.emit(list(Mode)[index])
