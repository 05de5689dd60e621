"""The window's "Classifier guidance" section: there for studio-tiny, bound to the draft,
absent for a model with no classifier; screenshots in both themes."""

from __future__ import annotations

import pytest

from studio.core.paths import EMBEDDED_MODELS_DIR

pytestmark = pytest.mark.skipif(
    not (EMBEDDED_MODELS_DIR / "studio-tiny-classifier" / "model.safetensors").is_file(),
    reason="studio-tiny-classifier is not in resources/models",
)


def _panel(qtbot, model: str):  # noqa: ANN001, ANN202
    from studio.core.draft import Draft, Source
    from studio.ui.panels.guidance_panel import GuidancePanel

    draft = Draft()
    draft.apply({"model": model}, Source.USER)
    panel = GuidancePanel(draft)
    qtbot.addWidget(panel)
    panel.show()
    qtbot.waitExposed(panel)
    return draft, panel


def test_the_section_shows_for_studio_tiny_and_binds_to_the_draft(qtbot) -> None:  # noqa: ANN001
    from studio.core.draft import Source

    draft, panel = _panel(qtbot, "studio-tiny")
    section = panel.classifier
    panel.advanced.expand(animate=False)  # it sits inside Advanced guidance
    assert section.isVisible()
    shapes = [section.shape.itemText(i) for i in range(section.shape.count())]
    colours = [section.colour.itemText(i) for i in range(section.colour.count())]
    assert shapes[0] == colours[0] == "any" and "star" in shapes and "red" in colours
    section.shape.setCurrentIndex(shapes.index("star"))
    section.colour.setCurrentIndex(colours.index("red"))
    assert draft["classifier_class"] == "red star"
    section.scale.setValue(3.0)
    assert draft["classifier_scale"] == 3.0
    request = draft.freeze()
    assert (request.classifier_class, request.classifier_scale) == ("red star", 3.0)
    # a restored file's target shows in the combos; a word the classifier lacks shows as any
    draft.apply({"classifier_class": "ring", "classifier_scale": 1.5}, Source.RESTORED)
    assert (section.shape.currentText(), section.colour.currentText()) == ("ring", "any")
    assert section.scale.value() == 1.5
    section.shape.setCurrentIndex(0)
    assert draft["classifier_class"] == ""


def test_the_section_is_hidden_for_a_model_without_a_classifier(qtbot, tiny_sd) -> None:  # noqa: ANN001
    from studio.core.draft import Source

    draft, panel = _panel(qtbot, "studio-tiny")
    draft.apply({"classifier_class": "star", "classifier_scale": 2.0}, Source.USER)
    panel.advanced.expand(animate=False)
    draft.apply({"model": tiny_sd}, Source.USER)
    assert not panel.classifier.isVisible()
    assert draft["classifier_scale"] == 0.0  # off: the model cannot run it
    draft.apply({"classifier_class": "red", "classifier_scale": 3.0}, Source.RESTORED)
    assert draft["classifier_scale"] == 0.0  # a restored file's too
    draft.apply({"model": "studio-tiny"}, Source.USER)
    assert panel.classifier.isVisible()


def test_screenshots_in_both_themes(qtbot, tmp_path) -> None:  # noqa: ANN001
    from PySide6.QtWidgets import QApplication

    from studio.ui import icons
    from studio.ui.theme import apply_theme

    _draft, panel = _panel(qtbot, "studio-tiny")
    panel.advanced.expand(animate=False)
    panel.classifier.expand(animate=False)
    panel.classifier.shape.setCurrentIndex(panel.classifier.shape.findText("star"))
    panel.classifier.colour.setCurrentIndex(panel.classifier.colour.findText("red"))
    panel.classifier.scale.setValue(2.0)
    app = QApplication.instance()
    try:
        for theme in ("dark", "light"):
            apply_theme(app, theme)
            icons.refresh_all()
            qtbot.wait(10)
            path = tmp_path / f"classifier_{theme}.png"
            assert panel.classifier.grab().save(str(path))
            assert path.stat().st_size > 1000
    finally:
        apply_theme(app, "dark")
        icons.refresh_all()
