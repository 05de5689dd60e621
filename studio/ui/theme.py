"""Dark (default) and light themes: Fusion with a palette, plus a little styling for the
studio's own widgets (the Generate button, the mode bar, the message banner)."""

from __future__ import annotations

from PySide6.QtGui import QColor, QPalette
from PySide6.QtWidgets import QApplication

THEMES = ("dark", "light")
ACCENT = "#3d8bfd"

_DARK = {
    QPalette.ColorRole.Window: "#26282b",
    QPalette.ColorRole.WindowText: "#e3e3e3",
    QPalette.ColorRole.Base: "#1b1c1e",
    QPalette.ColorRole.AlternateBase: "#2c2e32",
    QPalette.ColorRole.ToolTipBase: "#34363a",
    QPalette.ColorRole.ToolTipText: "#e3e3e3",
    QPalette.ColorRole.PlaceholderText: "#7d8086",
    QPalette.ColorRole.Text: "#e3e3e3",
    QPalette.ColorRole.Button: "#313337",
    QPalette.ColorRole.ButtonText: "#e3e3e3",
    QPalette.ColorRole.BrightText: "#ff6b6b",
    QPalette.ColorRole.Light: "#45484d",
    QPalette.ColorRole.Midlight: "#3a3c41",
    QPalette.ColorRole.Mid: "#2a2c2f",
    QPalette.ColorRole.Dark: "#18191b",
    QPalette.ColorRole.Shadow: "#0c0c0d",
    QPalette.ColorRole.Highlight: ACCENT,
    QPalette.ColorRole.HighlightedText: "#ffffff",
    QPalette.ColorRole.Link: "#6ea8fe",
}
_DARK_DISABLED = {
    QPalette.ColorRole.WindowText: "#6c6f75",
    QPalette.ColorRole.Text: "#6c6f75",
    QPalette.ColorRole.ButtonText: "#6c6f75",
    QPalette.ColorRole.Base: "#222326",
    QPalette.ColorRole.Button: "#2a2c2f",
    QPalette.ColorRole.Highlight: "#3a3c41",
}

_STYLE = """
QPushButton#generateButton {
    background: %(accent)s; color: white; font-weight: bold; padding: 6px 14px;
    border-radius: 4px; border: 1px solid %(accent)s;
}
QPushButton#generateButton:hover { background: #5a9dfd; }
QPushButton#generateButton:disabled { background: %(disabled)s; border-color: %(disabled)s; }
QToolButton#modeButton {
    padding: 5px 2px; border: 1px solid %(border)s; background: %(button)s;
}
QToolButton:checked {
    background: %(checked)s; border: 1px solid %(accent)s; border-radius: 3px;
}
QToolButton#modeButton:checked { background: %(accent)s; color: white; border-color: %(accent)s; }
QFrame#banner[kind="error"] { background: #5c1f24; border: 1px solid #a33a42; border-radius: 4px; }
QFrame#banner[kind="info"] { background: #1d3a5c; border: 1px solid #34679e; border-radius: 4px; }
QFrame#banner QLabel { color: #f3f3f3; }
QLabel#hint { color: %(hint)s; }
QLabel#warning { color: %(warning)s; }
QLabel#sectionTitle { font-weight: bold; }
QStatusBar QLabel#errorStatus { color: #ff7b7b; }
"""


def stylesheet(name: str) -> str:
    dark = name != "light"
    return _STYLE % {
        "accent": ACCENT,
        "disabled": "#4a4d52" if dark else "#b8bcc2",
        "border": "#45484d" if dark else "#b8bcc2",
        "button": "#313337" if dark else "#eceef1",
        "hint": "#9a9ea5" if dark else "#5f636a",
        "warning": "#f0b35a" if dark else "#9a5a00",
        "checked": "#24466f" if dark else "#cfe0fb",
    }


def palette(name: str) -> QPalette:
    if name == "light":
        from PySide6.QtWidgets import QStyleFactory

        style = QStyleFactory.create("Fusion")
        pal = style.standardPalette()
        pal.setColor(QPalette.ColorRole.Highlight, QColor(ACCENT))
        return pal
    pal = QPalette()
    for role, colour in _DARK.items():
        pal.setColor(QPalette.ColorGroup.All, role, QColor(colour))
    for role, colour in _DARK_DISABLED.items():
        pal.setColor(QPalette.ColorGroup.Disabled, role, QColor(colour))
    return pal


def apply_theme(app: QApplication, name: str = "dark") -> None:
    """Fusion everywhere, so the palette is honoured on every platform."""
    name = name if name in THEMES else "dark"
    app.setStyle("Fusion")
    app.setPalette(palette(name))
    app.setStyleSheet(stylesheet(name))
