"""The inpainting tools above the canvas: brush and eraser, brush size, undo and redo,
invert and clear, show or hide the mask and its opacity. The canvas holds the tool, the
size and the mask; the bar shows them and sends the artist's clicks to it."""

from __future__ import annotations

from PySide6.QtCore import Qt
from PySide6.QtWidgets import QHBoxLayout, QLabel, QToolButton, QWidget
from superqt import QFlowLayout, QLabeledSlider

from studio.ui import icons
from studio.ui.canvas import ImageCanvas


class MaskBar(QWidget):
    def __init__(self, canvas: ImageCanvas, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.canvas = canvas
        # Three groups that wrap onto a second line in a narrow window, so the bar never
        # makes the canvas wider than the window allows.
        flow = QFlowLayout(self)
        flow.setContentsMargins(0, 0, 0, 0)
        flow.setSpacing(10)

        def group() -> QHBoxLayout:
            holder = QWidget()
            row = QHBoxLayout(holder)
            row.setContentsMargins(0, 0, 0, 0)
            row.setSpacing(3)
            flow.addWidget(holder)
            return row

        def tool(row: QHBoxLayout, icon_name: str, tip: str, checkable: bool = False):  # noqa: ANN202
            button = QToolButton()
            icons.themed(button, icon_name)
            button.setToolTip(tip)
            button.setCheckable(checkable)
            row.addWidget(button)
            return button

        painting = group()
        self.brush_button = tool(painting, "brush", "Brush: paint the area to repaint (B)", True)
        self.eraser_button = tool(painting, "eraser", "Eraser: unpaint (E)", True)
        label = QLabel("Size")
        label.setContentsMargins(6, 0, 2, 0)
        painting.addWidget(label)
        self.brush_size = QLabeledSlider(Qt.Orientation.Horizontal)
        self.brush_size.setRange(*canvas.brush_range())
        self.brush_size.setToolTip(
            "Brush diameter in image pixels ([ and ]); up to the picture's shorter side"
        )
        self.brush_size.setFixedWidth(150)
        painting.addWidget(self.brush_size)

        history = group()
        self.undo_button = tool(history, "undo", "Undo (Ctrl+Z)")
        self.redo_button = tool(history, "redo", "Redo (Ctrl+Shift+Z)")
        self.invert_button = tool(history, "invert", "Invert the mask (Ctrl+I)")
        self.clear_button = tool(history, "clear", "Clear the mask")

        view = group()
        self.show_button = tool(
            view, "eye", "Show or hide the mask (M); hidden, it still applies", True
        )
        self.opacity = QLabeledSlider(Qt.Orientation.Horizontal)
        self.opacity.setRange(0, 100)
        self.opacity.setValue(round(canvas.mask_opacity() * 100))
        self.opacity.setToolTip("How strongly the mask tints the picture, in percent")
        self.opacity.setFixedWidth(120)
        view.addWidget(self.opacity)

        self.brush_button.clicked.connect(lambda: canvas.set_tool("brush"))
        self.eraser_button.clicked.connect(lambda: canvas.set_tool("eraser"))
        self.brush_size.valueChanged.connect(canvas.set_brush_size)
        self.undo_button.clicked.connect(canvas.undo)
        self.redo_button.clicked.connect(canvas.redo)
        self.invert_button.clicked.connect(canvas.invert_mask)
        self.clear_button.clicked.connect(canvas.clear_mask)
        self.show_button.toggled.connect(canvas.set_mask_shown)
        self.opacity.valueChanged.connect(lambda value: canvas.set_mask_opacity(value / 100))
        canvas.toolChanged.connect(self._show_tool)
        canvas.brushRangeChanged.connect(self._show_range)
        canvas.brushSizeChanged.connect(self._show_size)
        canvas.maskChanged.connect(self._update_history)
        canvas.maskShownChanged.connect(self._show_mask_shown)
        self._show_tool(canvas.tool)
        self._show_size(canvas.brush_size)
        self._show_mask_shown(canvas.mask_shown())
        self._update_history()

    def _show_tool(self, tool: str) -> None:
        self.brush_button.setChecked(tool == "brush")
        self.eraser_button.setChecked(tool == "eraser")

    def _show_range(self, smallest: int, largest: int) -> None:
        self.brush_size.blockSignals(True)  # the canvas sets the size that goes with it
        self.brush_size.setRange(smallest, largest)
        self.brush_size.blockSignals(False)

    def _show_mask_shown(self, shown: bool) -> None:
        self.show_button.blockSignals(True)
        self.show_button.setChecked(shown)
        self.show_button.blockSignals(False)
        icons.themed(self.show_button, "eye" if shown else "eye-off")

    def _show_size(self, size: int) -> None:
        if self.brush_size.value() != size:
            self.brush_size.blockSignals(True)
            self.brush_size.setValue(size)
            self.brush_size.blockSignals(False)

    def _update_history(self) -> None:
        """Undo and redo are offered only when there is something to undo or redo."""
        self.undo_button.setEnabled(self.canvas.can_undo())
        self.redo_button.setEnabled(self.canvas.can_redo())
