"""A message strip above the canvas: errors as one clear sentence, and offers such as
"this image carries parameters — Restore". Non-modal, so it never blocks work (or tests)."""

from __future__ import annotations

from collections.abc import Callable

from PySide6.QtCore import Qt
from PySide6.QtWidgets import QFrame, QHBoxLayout, QLabel, QPushButton, QToolButton, QWidget


class Banner(QFrame):
    def __init__(self, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.setObjectName("banner")
        self.setProperty("kind", "info")
        self.label = QLabel()
        self.label.setWordWrap(True)
        self.label.setTextInteractionFlags(Qt.TextInteractionFlag.TextSelectableByMouse)
        self.action_button = QPushButton()
        self.action_button.setVisible(False)
        self.action_button.clicked.connect(self._run_action)
        close = QToolButton()
        close.setText("✕")
        close.setAutoRaise(True)
        close.setToolTip("Dismiss")
        close.clicked.connect(self.dismiss)
        layout = QHBoxLayout(self)
        layout.setContentsMargins(10, 6, 6, 6)
        layout.addWidget(self.label, 1)
        layout.addWidget(self.action_button)
        layout.addWidget(close)
        self._action: Callable[[], None] | None = None
        self.setVisible(False)

    @property
    def kind(self) -> str:
        return str(self.property("kind"))

    def text(self) -> str:
        return self.label.text() if self.isVisibleTo(self.parentWidget()) else ""

    def show_error(self, message: str) -> None:
        self._show("error", message, None, None)

    def show_info(
        self, message: str, action: str | None = None, callback: Callable[[], None] | None = None
    ) -> None:
        self._show("info", message, action, callback)

    def dismiss(self) -> None:
        self._action = None
        self.setVisible(False)

    def _show(
        self, kind: str, message: str, action: str | None, callback: Callable[[], None] | None
    ) -> None:
        self.setProperty("kind", kind)
        self.style().unpolish(self)  # the stylesheet picks its colours by the kind property
        self.style().polish(self)
        self.label.setText(message)
        self._action = callback
        self.action_button.setText(action or "")
        self.action_button.setVisible(bool(action and callback))
        self.setVisible(True)

    def _run_action(self) -> None:
        action = self._action
        self.dismiss()
        if action is not None:
            action()
