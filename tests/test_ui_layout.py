"""The window's layout at the sizes artists use: a laptop's 1280×800 and a small 900×600."""

from __future__ import annotations

import pytest
from PySide6.QtWidgets import QApplication, QDockWidget

from studio.core.request import Mode


def _settle(window) -> None:  # noqa: ANN001
    for _ in range(3):
        QApplication.processEvents()


@pytest.mark.parametrize("theme", ["dark", "light"])
def test_a_small_window_keeps_the_canvas_and_scrolls_the_controls(make_window, theme, tmp_path):  # noqa: ANN001
    window = make_window()
    window.set_theme(theme)
    try:
        for mode in Mode:
            window.set_mode(mode)
            window.resize(900, 600)
            _settle(window)
            assert window.width() <= 900, (mode, window.width())  # nothing forces it wider
            canvas = window.canvas.width()
            assert canvas >= 300 and canvas >= window.width() // 3, (mode, canvas)
            assert window.timeline.slider.width() >= 150  # one still scrubs
            controls, inner = window.controls_dock.widget(), window.controls_dock.widget().widget()
            # what does not fit scrolls: nothing squashed, nothing cut off
            assert inner.height() >= inner.minimumSizeHint().height(), mode
            overflow = inner.height() - controls.viewport().height()
            assert overflow <= controls.verticalScrollBar().maximum(), mode
            if mode is Mode.TEXT_TO_IMAGE:
                assert overflow > 0  # the generation controls do not fit 600 px: they scroll
        window.grab().save(str(tmp_path / f"small-{theme}.png"))
    finally:
        window.set_theme("dark")


def test_the_controls_fit_a_laptop_screen_in_every_mode(make_window):  # noqa: ANN001
    window = make_window()
    window.resize(1280, 800)
    scroll = window.controls_dock.widget().verticalScrollBar()
    # with a line under the prompt naming words the model does not know
    window.prompt_panel.set_prompts("a photo of a red cat", "")
    for mode in (Mode.TEXT_TO_IMAGE, Mode.IMAGE_TO_IMAGE, Mode.INPAINT, Mode.UPSCALE):
        window.set_mode(mode)
        _settle(window)
        assert scroll.maximum() == 0, (mode, scroll.maximum())
    # and a size warning too, in the modes that have no mask controls
    window.draft.edit({"width": 512, "height": 512})
    for mode in (Mode.TEXT_TO_IMAGE, Mode.IMAGE_TO_IMAGE):
        window.set_mode(mode)
        _settle(window)
        assert window.guidance.size_warning.isVisible()
        assert scroll.maximum() == 0, (mode, scroll.maximum())


def test_the_docks_can_be_closed_and_brought_back(make_window):  # noqa: ANN001
    window = make_window()
    for dock in (window.controls_dock, window.gallery_dock):
        assert dock.features() & QDockWidget.DockWidgetFeature.DockWidgetClosable
        before = window.canvas.width()
        dock.close()
        _settle(window)
        assert window.canvas.width() > before  # the canvas takes the room
        dock.toggleViewAction().trigger()
        _settle(window)
        assert dock.isVisible()
