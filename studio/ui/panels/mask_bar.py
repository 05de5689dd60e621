"""The inpainting tools above the canvas: brush and eraser, brush size, undo and redo,
invert and clear. The canvas holds the tool, the size and the mask; the bar shows them and
sends the artist's clicks to it."""

from __future__ import annotations

from PySide6.QtCore import Qt
from PySide6.QtWidgets import QHBoxLayout, QLabel, QToolButton, QWidget
from superqt import QLabeledSlider

from studio.ui import icons
from studio.ui.canvas import MAX_BRUSH, MIN_BRUSH, ImageCanvas


class MaskBar(QWidget):
    def __init__(self, canvas: ImageCanvas, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.canvas = canvas
        row = QHBoxLayout(self)
        row.setContentsMargins(0, 0, 0, 0)
        row.setSpacing(3)

        def tool(icon_name: str, tip: str, checkable: bool = False) -> QToolButton:
            button = QToolButton()
            icons.themed(button, icon_name)
            button.setToolTip(tip)
            button.setCheckable(checkable)
            row.addWidget(button)
            return button

        self.brush_button = tool("brush", "Brush: paint the area to repaint (B)", True)
        self.eraser_button = tool("eraser", "Eraser: unpaint (E)", True)
        label = QLabel("Size")
        label.setContentsMargins(8, 0, 2, 0)
        row.addWidget(label)
        self.brush_size = QLabeledSlider(Qt.Orientation.Horizontal)
        self.brush_size.setRange(MIN_BRUSH, MAX_BRUSH)
        self.brush_size.setToolTip("Brush size in image pixels ([ and ])")
        self.brush_size.setMaximumWidth(220)
        row.addWidget(self.brush_size)
        row.addSpacing(8)
        self.undo_button = tool("undo", "Undo (Ctrl+Z)")
        self.redo_button = tool("redo", "Redo (Ctrl+Shift+Z)")
        self.invert_button = tool("invert", "Invert the mask (Ctrl+I)")
        self.clear_button = tool("clear", "Clear the mask")
        row.addStretch(1)
        hint = QLabel("Paint over the area to repaint")
        hint.setObjectName("hint")
        row.addWidget(hint)

        self.brush_button.clicked.connect(lambda: canvas.set_tool("brush"))
        self.eraser_button.clicked.connect(lambda: canvas.set_tool("eraser"))
        self.brush_size.valueChanged.connect(canvas.set_brush_size)
        self.undo_button.clicked.connect(canvas.undo)
        self.redo_button.clicked.connect(canvas.redo)
        self.invert_button.clicked.connect(canvas.invert_mask)
        self.clear_button.clicked.connect(canvas.clear_mask)
        canvas.toolChanged.connect(self._show_tool)
        canvas.brushSizeChanged.connect(self._show_size)
        canvas.maskChanged.connect(self._update_history)
        self._show_tool(canvas.tool)
        self._show_size(canvas.brush_size)
        self._update_history()

    def _show_tool(self, tool: str) -> None:
        self.brush_button.setChecked(tool == "brush")
        self.eraser_button.setChecked(tool == "eraser")

    def _show_size(self, size: int) -> None:
        if self.brush_size.value() != size:
            self.brush_size.blockSignals(True)
            self.brush_size.setValue(size)
            self.brush_size.blockSignals(False)

    def _update_history(self) -> None:
        """Undo and redo are offered only when there is something to undo or redo."""
        self.undo_button.setEnabled(self.canvas.can_undo())
        self.redo_button.setEnabled(self.canvas.can_redo())
