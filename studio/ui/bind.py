"""`bind()`: one widget shows and edits one field of the draft.

An edit in the widget sets the field (as the artist's value); a change of the field from
anywhere else (a restored file, a model's defaults, the last session) shows in the widget
without echoing back. Each kind of widget has one adapter: how to read it, how to set it
quietly, and which signal says the artist changed it.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from PySide6.QtCore import QObject
from PySide6.QtWidgets import (
    QAbstractButton,
    QComboBox,
    QDoubleSpinBox,
    QPlainTextEdit,
    QSpinBox,
    QWidget,
)
from superqt import QLabeledDoubleSlider, QLabeledSlider, QLargeIntSpinBox

from studio.core.draft import Draft, Source

DECIMALS = 3  # a float slider's value is kept to this many decimals: 7.0, not 7.000000001


class Adapter:
    """How `bind` talks to one widget: read its value, write one quietly, and the signal
    of the artist's edits."""

    def __init__(
        self,
        read: Callable[[], Any],
        write: Callable[[Any], None],
        edited: Any,
    ) -> None:
        self.read, self.write, self.edited = read, write, edited


def _within(widget: Any, value: float) -> None:
    """Widen a widget's offered range to hold `value`: a slider offers the usual values
    (steps up to 150), the request allows more (a restored file's 300 steps), and the
    widget must show the value that will run, not a clamped one."""
    if value > widget.maximum():
        widget.setMaximum(value)
    if value < widget.minimum():
        widget.setMinimum(value)


def _number_adapter(widget: Any, kind: type) -> Adapter:
    def write(value: Any) -> None:
        _within(widget, kind(value))
        if kind is float and hasattr(widget, "setDecimals"):
            # show every decimal the value has (7.25, not 7.2): the label is what will run
            shown = f"{float(value):.{DECIMALS}f}".rstrip("0").split(".")[1]
            if len(shown) > widget.decimals():
                widget.setDecimals(len(shown))
        widget.setValue(kind(value))

    def read() -> Any:
        value = kind(widget.value())
        return round(value, DECIMALS) if kind is float else value

    return Adapter(read, write, widget.valueChanged)


def _adapter(widget: QWidget) -> Adapter:
    if isinstance(widget, QLabeledDoubleSlider | QDoubleSpinBox):
        return _number_adapter(widget, float)
    if isinstance(widget, QLabeledSlider | QLargeIntSpinBox | QSpinBox):
        return _number_adapter(widget, int)
    if isinstance(widget, QComboBox):

        def select(value: Any) -> None:
            index = widget.findData(value)
            if index < 0:
                index = widget.findText(str(value))
            if index >= 0:
                widget.setCurrentIndex(index)

        def current() -> Any:
            data = widget.currentData()
            return widget.currentText() if data is None and widget.currentIndex() < 0 else data

        return Adapter(current, select, widget.currentIndexChanged)
    if isinstance(widget, QAbstractButton) and widget.isCheckable():
        return Adapter(widget.isChecked, lambda v: widget.setChecked(bool(v)), widget.toggled)
    if isinstance(widget, QPlainTextEdit):

        def set_text(value: Any) -> None:
            if widget.toPlainText() != value:  # keep the cursor where the artist is typing
                widget.setPlainText(str(value))

        return Adapter(widget.toPlainText, set_text, widget.textChanged)
    raise TypeError(f"bind() does not know {type(widget).__name__}")


def bind(draft: Draft, name: str, widget: QWidget, adapter: Adapter | None = None) -> None:
    """Keep `widget` and the draft's field `name` in step, both ways, for the widget's life."""
    adapter = adapter or _adapter(widget)
    quiet = False

    def show(values: dict[str, Any], source: Source) -> None:
        nonlocal quiet
        if name not in values or quiet:
            return
        quiet = True
        blocked = widget.blockSignals(True)
        try:
            adapter.write(values[name])
        finally:
            widget.blockSignals(blocked)
            quiet = False

    def edit(*_: Any) -> None:
        nonlocal quiet
        if quiet:
            return
        quiet = True  # the draft's echo of this very edit is not written back
        try:
            draft.set(name, adapter.read(), Source.USER)
        finally:
            quiet = False
        # the draft may have refused or adjusted it (a value out of range): show its value
        if adapter.read() != draft[name] and not isinstance(widget, QPlainTextEdit):
            show({name: draft[name]}, Source.USER)

    show({name: draft[name]}, Source.SESSION)
    adapter.edited.connect(edit)
    follow(draft.changed, widget, show)


def follow(signal: Any, owner: QObject, callback: Callable[..., Any]) -> None:
    """Connect a model's (psygnal) signal to a callback for as long as `owner` lives: a
    widget deleted by Qt must not be called again, whatever Python still holds."""
    signal.connect(callback)
    owner.destroyed.connect(lambda *_: signal.disconnect(callback, missing_ok=True))
