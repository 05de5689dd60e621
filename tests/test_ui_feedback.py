"""The controls tell the artist, before a job runs, what will not work as expected."""

from __future__ import annotations

from studio.core.draft import Draft, Source
from studio.core.imaging import size_note
from studio.core.request import Mode
from studio.ui.panels.guidance_panel import GuidancePanel


def test_words_the_model_does_not_know_are_underlined_and_named(qtbot, tmp_path):  # noqa: ANN001
    from PySide6.QtGui import QTextCharFormat

    from studio.ui.panels.prompt_panel import PromptPanel

    draft = Draft()
    panel = PromptPanel(draft)
    qtbot.addWidget(panel)
    panel.resize(380, 260)
    panel.show()
    qtbot.waitExposed(panel)
    note = panel.vocabulary_note
    assert note.isHidden()
    qtbot.keyClicks(panel.prompt_edit, "a photo of a red cat")
    assert not note.isHidden()
    assert note.text() == "studio-tiny does not know 'photo', 'of', 'cat': ignored."

    def underlined(edit, word: str) -> bool:  # noqa: ANN001
        block = edit.document().firstBlock()
        start = block.text().index(word)
        for fmt in block.layout().formats():
            if fmt.start <= start < fmt.start + fmt.length:
                style = fmt.format.underlineStyle()
                return style == QTextCharFormat.UnderlineStyle.SpellCheckUnderline
        return False

    edit = panel.prompt_edit
    assert underlined(edit, "cat") and underlined(edit, "photo")
    assert not underlined(edit, "red")
    # hovering a marked word says why
    rect = edit.cursorRect(edit.document().find("cat"))
    span = edit.unknown_word_at(rect.center().x() - 2, rect.center().y())
    assert span is not None and span.word == "cat"
    assert edit.unknown_word_at(2, rect.center().y()) is None  # "a" is known
    panel.grab().save(str(tmp_path / "prompt.png"))

    # the negative prompt counts too; a known prompt clears the note
    panel.set_prompts("a red circle", "blurry")
    assert note.text() == "studio-tiny does not know 'blurry': ignored."
    panel.set_prompts("a red circle", "")
    assert note.isHidden()
    # a model without a vocabulary marks nothing
    panel.set_prompts("a photo of a cat", "")
    draft.set("model", "stabilityai/sd-turbo")
    assert note.isHidden() and not underlined(edit, "cat")


def test_a_size_far_from_the_models_own_is_flagged() -> None:
    assert size_note((64, 64), (64, 64), "m") == ""
    assert size_note((96, 80), (64, 64), "m") == ""  # a little larger is fine
    assert size_note((512, 400), (64, 64), "studio-tiny") == (
        "studio-tiny draws at 64×64: at 512×400 expect repeated or broken shapes, and each "
        "step takes about 50× as long."
    )
    assert "too few pixels" in size_note((8, 8), (64, 64), "m")
    assert "too few pixels" in size_note((512, 512), (1024, 1024), "sdxl")
    assert size_note((512, 512), None, "m") == ""


def test_the_size_warning_shows_next_to_the_size_fields(qtbot) -> None:  # noqa: ANN001
    draft = Draft()
    panel = GuidancePanel(draft)
    qtbot.addWidget(panel)
    panel.show()
    warning = panel.size_warning
    assert warning.isHidden()  # the model's own 64×64
    draft.apply({"width": 512, "height": 400}, Source.RESTORED)  # from a file
    assert warning.isVisible() and warning.text().startswith("studio-tiny draws at 64×64")
    assert panel.size_warning.geometry().top() > panel.width_box.geometry().top()
    draft.set("mode", Mode.UPSCALE.value)  # the size fields do not apply
    assert warning.isHidden()
    draft.set("mode", Mode.TEXT_TO_IMAGE.value)
    assert warning.isVisible()
    panel.set_size(72, 56)
    assert warning.isHidden()
    draft.set("model", "stabilityai/sd-turbo")  # no size known without the files
    panel.set_size(8, 8)
    assert warning.isHidden()
