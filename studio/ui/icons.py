"""The studio's icons: small SVGs in resources/icons drawn in the theme's text colour."""

from __future__ import annotations

import weakref
from functools import cache

from PySide6.QtCore import QByteArray, Qt
from PySide6.QtGui import QGuiApplication, QIcon, QPainter, QPalette, QPixmap
from PySide6.QtSvg import QSvgRenderer
from PySide6.QtWidgets import QAbstractButton
from superqt import QCollapsible

from studio.core.paths import RESOURCES_DIR

ICONS_DIR = RESOURCES_DIR / "icons"
APP_ICON = ICONS_DIR / "latent-studio.svg"


def icon(name: str) -> QIcon:
    """An icon whose strokes follow the current palette (dark or light theme)."""
    colour = QGuiApplication.palette().color(QPalette.ColorRole.ButtonText).name()
    return _icon(name, colour)


@cache
def _icon(name: str, colour: str) -> QIcon:
    path = ICONS_DIR / f"{name}.svg"
    try:
        svg = path.read_text(encoding="utf-8").replace("currentColor", colour)
    except OSError:
        return QIcon()  # a missing icon leaves the button's text, never an error
    renderer = QSvgRenderer(QByteArray(svg.encode()))
    result = QIcon()
    for size in (16, 24, 32, 48):
        pixmap = QPixmap(size, size)
        pixmap.fill(Qt.GlobalColor.transparent)
        painter = QPainter(pixmap)
        renderer.render(painter)
        painter.end()
        result.addPixmap(pixmap)
    return result


_themed: weakref.WeakKeyDictionary[QAbstractButton, str] = weakref.WeakKeyDictionary()


def themed(button: QAbstractButton, name: str) -> None:
    """Give a button an icon that follows theme changes (see `refresh_all`)."""
    _themed[button] = name
    button.setIcon(icon(name))


_sections: weakref.WeakSet[QCollapsible] = weakref.WeakSet()

# A folded section offers to drop down, an open one to fold up.
FOLDED_ICON = "chevron-down"
OPEN_ICON = "chevron-up"


def themed_section(section: QCollapsible) -> None:
    """Give a collapsible section the studio's look: arrows that follow theme changes, and
    no frame margins (superqt's 11 px a side cost the controls panel its fit on a laptop)."""
    _sections.add(section)
    _set_section_icons(section)
    section.layout().setContentsMargins(0, 2, 0, 2)


def _set_section_icons(section: QCollapsible) -> None:
    section.setCollapsedIcon(icon(FOLDED_ICON))
    section.setExpandedIcon(icon(OPEN_ICON))


def refresh_all() -> None:
    """Redraw every themed icon in the current palette's colour."""
    for button, name in list(_themed.items()):
        try:
            button.setIcon(icon(name))
        except RuntimeError:  # the widget is gone
            continue
    for section in list(_sections):
        try:
            _set_section_icons(section)
        except RuntimeError:
            continue


def app_icon() -> QIcon:
    png = APP_ICON.with_suffix(".png")
    result = QIcon(str(APP_ICON)) if APP_ICON.is_file() else QIcon()
    if png.is_file():
        result.addFile(str(png))
    return result
