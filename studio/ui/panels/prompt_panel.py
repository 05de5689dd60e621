"""Prompt and negative prompt, with a history of the prompts that were generated."""

from __future__ import annotations

from PySide6.QtCore import Qt, Signal
from PySide6.QtGui import QKeyEvent
from PySide6.QtWidgets import (
    QHBoxLayout,
    QLabel,
    QMenu,
    QPlainTextEdit,
    QToolButton,
    QVBoxLayout,
    QWidget,
)

from studio.core.draft import Draft, Source
from studio.ui.bind import bind
from studio.ui.settings import MAX_HISTORY


class PromptEdit(QPlainTextEdit):
    """A multi-line prompt; Ctrl+Up / Ctrl+Down walk through the history."""

    historyStep = Signal(int)  # -1 older, +1 newer

    def __init__(self, placeholder: str, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.setPlaceholderText(placeholder)
        self.setTabChangesFocus(True)

    def keyPressEvent(self, event: QKeyEvent) -> None:  # noqa: N802 - Qt API
        if event.modifiers() == Qt.KeyboardModifier.ControlModifier:
            if event.key() == Qt.Key.Key_Up:
                self.historyStep.emit(-1)
                return
            if event.key() == Qt.Key.Key_Down:
                self.historyStep.emit(+1)
                return
        super().keyPressEvent(event)


class PromptPanel(QWidget):
    """The prompt and negative prompt, bound to the draft, with the history of prompts."""

    def __init__(self, draft: Draft, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.draft = draft
        self.prompt_edit = PromptEdit("Describe the image: a large yellow star in the centre…")
        self.prompt_edit.setToolTip("The prompt. Ctrl+Up / Ctrl+Down: earlier prompts.")
        self.negative_edit = PromptEdit("What to avoid (negative prompt)")
        self.negative_edit.setToolTip("The negative prompt: what the image should not show.")
        self.prompt_edit.setMinimumHeight(64)
        self.prompt_edit.setMaximumHeight(120)
        self.negative_edit.setMinimumHeight(40)
        self.negative_edit.setMaximumHeight(64)
        self.history_button = QToolButton(self)
        self.history_button.setText("History")
        self.history_button.setToolTip("Prompts you generated before")
        self.history_button.setPopupMode(QToolButton.ToolButtonPopupMode.InstantPopup)
        self._menu = QMenu(self.history_button)
        self.history_button.setMenu(self._menu)
        self._menu.aboutToShow.connect(self._fill_menu)

        title_row = QHBoxLayout()
        title = QLabel("Prompt")
        title.setObjectName("sectionTitle")
        title_row.addWidget(title)
        title_row.addStretch(1)
        title_row.addWidget(self.history_button)
        layout = QVBoxLayout(self)
        layout.setContentsMargins(0, 0, 0, 0)
        layout.addLayout(title_row)
        layout.addWidget(self.prompt_edit)
        layout.addWidget(self.negative_edit)

        self._history: list[tuple[str, str]] = []  # newest first
        self._position = -1  # -1: not browsing
        self.prompt_edit.historyStep.connect(self._step_history)
        self.negative_edit.historyStep.connect(self._step_history)
        bind(draft, "prompt", self.prompt_edit)
        bind(draft, "negative_prompt", self.negative_edit)

    # -- values -------------------------------------------------------------------------------

    def prompt(self) -> str:
        return str(self.draft["prompt"]).strip()

    def negative_prompt(self) -> str:
        return str(self.draft["negative_prompt"]).strip()

    def set_prompts(self, prompt: str, negative: str) -> None:
        self.draft.apply({"prompt": prompt, "negative_prompt": negative}, Source.USER)

    # -- history ------------------------------------------------------------------------------

    def history(self) -> list[tuple[str, str]]:
        return list(self._history)

    def set_history(self, entries: list[tuple[str, str]]) -> None:
        self._history = entries[:MAX_HISTORY]
        self._position = -1

    def remember(self, prompt: str, negative: str) -> None:
        entry = (prompt, negative)
        if not prompt and not negative:
            return
        if entry in self._history:
            self._history.remove(entry)
        self._history.insert(0, entry)
        del self._history[MAX_HISTORY:]
        self._position = -1

    def _step_history(self, direction: int) -> None:
        if not self._history:
            return
        position = self._position - direction  # older = further down the list
        position = max(-1, min(len(self._history) - 1, position))
        self._position = position
        if position == -1:
            return
        self.set_prompts(*self._history[position])
        self.prompt_edit.moveCursor(self.prompt_edit.textCursor().MoveOperation.End)

    def _fill_menu(self) -> None:
        self._menu.clear()
        if not self._history:
            action = self._menu.addAction("No prompts yet")
            action.setEnabled(False)
            return
        for prompt, negative in self._history[:20]:
            text = prompt if len(prompt) <= 60 else prompt[:57] + "…"
            action = self._menu.addAction(text or "(negative prompt only)")
            action.setToolTip(f"{prompt}\nNegative: {negative}" if negative else prompt)
            action.triggered.connect(lambda _=False, p=prompt, n=negative: self.set_prompts(p, n))
