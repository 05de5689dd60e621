"""A message strip above the canvas: errors as one clear sentence, and offers such as
"this image carries parameters — Restore". Non-modal, so it never blocks work (or tests).
Its text is always plain: a file name or a message from a file never renders as markup."""

from __future__ import annotations

from collections.abc import Callable

from PySide6.QtCore import Qt
from PySide6.QtWidgets import QFrame, QHBoxLayout, QLabel, QPushButton, QToolButton, QWidget

from studio.core.text import printable

MAX_ACTIONS = 4


class Banner(QFrame):
    def __init__(self, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.setObjectName("banner")
        self.setProperty("kind", "info")
        self.label = QLabel()
        self.label.setTextFormat(Qt.TextFormat.PlainText)
        self.label.setWordWrap(True)
        self.label.setTextInteractionFlags(Qt.TextInteractionFlag.TextSelectableByMouse)
        self.buttons: list[QPushButton] = []
        for index in range(MAX_ACTIONS):
            button = QPushButton()
            button.setVisible(False)
            button.clicked.connect(lambda _=False, i=index: self._run_action(i))
            self.buttons.append(button)
        close = QToolButton()
        close.setText("✕")
        close.setAutoRaise(True)
        close.setToolTip("Dismiss")
        close.clicked.connect(self.dismiss)
        layout = QHBoxLayout(self)
        layout.setContentsMargins(10, 6, 6, 6)
        layout.addWidget(self.label, 1)
        for button in self.buttons:
            layout.addWidget(button)
        layout.addWidget(close)
        self._actions: list[Callable[[], None]] = []
        self.setVisible(False)

    @property
    def action_button(self) -> QPushButton:
        """The first action's button."""
        return self.buttons[0]

    def actions_shown(self) -> list[str]:
        return [b.text() for b in self.buttons if b.isVisibleTo(self)]

    @property
    def kind(self) -> str:
        return str(self.property("kind"))

    def text(self) -> str:
        return self.label.text() if self.isVisibleTo(self.parentWidget()) else ""

    def show_error(self, message: str) -> None:
        self._show("error", message, [])

    def show_info(
        self, message: str, action: str | None = None, callback: Callable[[], None] | None = None
    ) -> None:
        self._show("info", message, [(action, callback)] if action and callback else [])

    def offer(self, message: str, actions: list[tuple[str, Callable[[], None]]]) -> None:
        """An information with up to MAX_ACTIONS buttons, the first one the default."""
        self._show("info", message, actions[:MAX_ACTIONS])

    def dismiss(self) -> None:
        self._actions = []
        self.setVisible(False)

    def _show(self, kind: str, message: str, actions: list[tuple[str, Callable[[], None]]]) -> None:
        self.setProperty("kind", kind)
        self.style().unpolish(self)  # the stylesheet picks its colours by the kind property
        self.style().polish(self)
        self.label.setText(printable(message))
        self._actions = [callback for _, callback in actions]
        for index, button in enumerate(self.buttons):
            shown = index < len(actions)
            button.setText(actions[index][0] if shown else "")
            button.setDefault(index == 0)
            button.setVisible(shown)
        self.setVisible(True)

    def _run_action(self, index: int) -> None:
        actions = self._actions
        self.dismiss()
        if index < len(actions):
            actions[index]()
