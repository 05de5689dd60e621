"""Both themes keep every control readable, also after switching at run time."""

from __future__ import annotations

from PySide6.QtGui import QColor, QImage, QPalette
from PySide6.QtWidgets import QApplication


def _luminance(colour: QColor) -> float:
    def channel(value: float) -> float:
        return value / 12.92 if value <= 0.03928 else ((value + 0.055) / 1.055) ** 2.4

    r, g, b = (channel(c) for c in (colour.redF(), colour.greenF(), colour.blueF()))
    return 0.2126 * r + 0.7152 * g + 0.0722 * b


def _contrast(a: QColor, b: QColor) -> float:
    light, dark = sorted((_luminance(a), _luminance(b)), reverse=True)
    return (light + 0.05) / (dark + 0.05)


def _ink(image: QImage) -> tuple[QColor, float]:
    """The icon's stroke colour and the mean row of its middle column (0 top, 1 bottom)."""
    strongest = QColor(0, 0, 0, 0)
    rows = [
        y for y in range(image.height()) if image.pixelColor(image.width() // 2, y).alpha() > 128
    ]
    for y in range(image.height()):
        for x in range(image.width()):
            pixel = image.pixelColor(x, y)
            if pixel.alpha() > strongest.alpha():
                strongest = pixel
    return strongest, sum(rows) / len(rows) / image.height()


def test_the_advanced_section_arrow_is_readable_and_points_the_right_way(make_window):  # noqa: ANN001
    window = make_window()
    section = window.guidance.advanced
    try:
        for theme in ("light", "dark", "light", "dark"):
            window.set_theme(theme)
            background = QApplication.palette().color(QPalette.ColorRole.Button)
            for expanded in (False, True):
                section.expand(animate=False) if expanded else section.collapse(animate=False)
                icon = section.toggleButton().icon().pixmap(24, 24).toImage()
                colour, row = _ink(icon)
                assert _contrast(colour, background) > 4.5, (theme, colour.name())
                # folded: a chevron pointing down (its tip low); open: pointing up
                assert (row > 0.5) is not expanded, (theme, expanded, row)
    finally:
        window.set_theme("dark")


def test_the_shortcut_list_shows_every_row_without_scrolling(qtbot, tmp_path):  # noqa: ANN001
    from studio.ui.dialogs import SHORTCUTS, ShortcutsDialog

    dialog = ShortcutsDialog()
    qtbot.addWidget(dialog)
    dialog.show()
    qtbot.waitExposed(dialog)
    table = dialog.table
    viewport = table.viewport().rect()
    for row in range(len(SHORTCUTS)):
        for column in range(2):
            cell = table.visualRect(table.model().index(row, column))
            assert viewport.contains(cell), (SHORTCUTS[row], cell, viewport)
    dialog.grab().save(str(tmp_path / "shortcuts.png"))
