"""The window says under the prompt what a plain-text encoder will not read."""

from __future__ import annotations

from studio.core.draft import Draft, Source
from tests.core.test_prompt_syntax import chroma_like


def test_a_long_weighted_prompt_for_a_t5_model_gets_a_note(qtbot, tmp_path):  # noqa: ANN001
    from studio.ui.panels.prompt_panel import PromptPanel

    draft = Draft()
    panel = PromptPanel(draft)
    qtbot.addWidget(panel)
    note = panel.vocabulary_note
    draft.apply({"model": str(chroma_like(tmp_path / "chroma"))}, Source.USER)
    draft.apply({"prompt": "a red " + "red " * 520}, Source.USER)
    assert not note.isHidden()
    assert note.text() == "The prompt is 522 tokens; Chroma reads 512: the rest is cut."
    draft.apply({"prompt": "a (red:1.3)"}, Source.USER)
    assert note.text() == "Chroma reads no weights: the prompt's (…), […] and BREAK are ignored."
    draft.apply({"prompt": "a red"}, Source.USER)
    assert note.isHidden()
