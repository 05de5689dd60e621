"""Prompt and negative prompt, with a history of the prompts that were generated, and
the words the chosen model does not know marked (for models whose card lists them)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from PySide6.QtCore import QEvent, QPoint, QSize, Qt, Signal
from PySide6.QtGui import (
    QColor,
    QHelpEvent,
    QKeyEvent,
    QSyntaxHighlighter,
    QTextCharFormat,
    QTextDocument,
)
from PySide6.QtWidgets import (
    QHBoxLayout,
    QLabel,
    QMenu,
    QPlainTextEdit,
    QToolButton,
    QToolTip,
    QVBoxLayout,
    QWidget,
)

from studio.core import catalog, loras, vocabulary
from studio.core.draft import Draft, Source
from studio.core.prompt_syntax import reading_note
from studio.core.text import printable
from studio.core.vocabulary import Vocabulary, WordSpan
from studio.ui.bind import bind, follow
from studio.ui.settings import MAX_HISTORY

NEGATIVE_PLACEHOLDER = "What to avoid (negative prompt)"
NEGATIVE_TIP = "The negative prompt: what the image should not show."
UNKNOWN_UNDERLINE = QColor(230, 80, 60)  # a spell checker's red, readable in both themes


class UnknownWords(QSyntaxHighlighter):
    """Underlines, like a spell checker, the words the model does not know."""

    def __init__(self, document: QTextDocument) -> None:
        super().__init__(document)
        self.vocabulary: Vocabulary | None = None
        self._format = QTextCharFormat()
        self._format.setUnderlineStyle(QTextCharFormat.UnderlineStyle.SpellCheckUnderline)
        self._format.setUnderlineColor(UNKNOWN_UNDERLINE)

    def set_vocabulary(self, words: Vocabulary | None) -> None:
        if words != self.vocabulary:
            self.vocabulary = words
            self.rehighlight()

    def highlightBlock(self, text: str) -> None:  # noqa: N802 - Qt API
        if self.vocabulary is not None:
            for span in self.vocabulary.unknown(text):
                self.setFormat(span.start, span.end - span.start, self._format)


class PromptEdit(QPlainTextEdit):
    """A multi-line prompt; Ctrl+Up / Ctrl+Down walk through the history."""

    historyStep = Signal(int)  # -1 older, +1 newer

    def __init__(self, placeholder: str, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.setPlaceholderText(placeholder)
        self.setTabChangesFocus(True)
        self.unknown_words = UnknownWords(self.document())

    def sizeHint(self) -> QSize:  # noqa: N802 - Qt API
        # Ask for the least: the controls' column gives the prompt whatever height is spare,
        # and a long column (Inpaint) must not scroll because of an empty box.
        return QSize(super().sizeHint().width(), self.minimumHeight())

    def unknown_word_at(self, x: int, y: int) -> WordSpan | None:
        """The unknown word under viewport point (x, y), if any."""
        words = self.unknown_words.vocabulary
        if words is None:
            return None
        cursor = self.cursorForPosition(QPoint(x, y))
        column = cursor.positionInBlock()
        for span in words.unknown(cursor.block().text()):
            if span.start <= column <= span.end:
                return span
        return None

    def viewportEvent(self, event: QEvent) -> bool:  # noqa: N802 - Qt API
        if event.type() == QEvent.Type.ToolTip and isinstance(event, QHelpEvent):
            span = self.unknown_word_at(event.pos().x(), event.pos().y())
            words = self.unknown_words.vocabulary
            if span is not None and words is not None:
                QToolTip.showText(event.globalPos(), unknown_word_tip(span.word, words), self)
                return True
        return super().viewportEvent(event)

    def keyPressEvent(self, event: QKeyEvent) -> None:  # noqa: N802 - Qt API
        if event.modifiers() == Qt.KeyboardModifier.ControlModifier:
            if event.key() == Qt.Key.Key_Up:
                self.historyStep.emit(-1)
                return
            if event.key() == Qt.Key.Key_Down:
                self.historyStep.emit(+1)
                return
        super().keyPressEvent(event)


class PromptPanel(QWidget):
    """The prompt and negative prompt, bound to the draft, with the history of prompts."""

    def __init__(self, draft: Draft, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.draft = draft
        self.prompt_edit = PromptEdit("Describe the image: a large yellow star in the centre…")
        self.prompt_edit.setToolTip("The prompt. Ctrl+Up / Ctrl+Down: earlier prompts.")
        self.negative_edit = PromptEdit(NEGATIVE_PLACEHOLDER)
        self.negative_edit.setToolTip(NEGATIVE_TIP)
        # Small when the controls are long (Inpaint), larger when there is room.
        self.prompt_edit.setMinimumHeight(60)
        self.prompt_edit.setMaximumHeight(200)
        self.negative_edit.setMinimumHeight(44)
        self.negative_edit.setMaximumHeight(80)
        self.history_button = QToolButton(self)
        self.history_button.setText("History")
        self.history_button.setToolTip("Prompts you generated before")
        self.history_button.setPopupMode(QToolButton.ToolButtonPopupMode.InstantPopup)
        self._menu = QMenu(self.history_button)
        self.history_button.setMenu(self._menu)
        self._menu.aboutToShow.connect(self._fill_menu)

        title_row = QHBoxLayout()
        title = QLabel("Prompt")
        title.setObjectName("sectionTitle")
        title_row.addWidget(title)
        title_row.addStretch(1)
        title_row.addWidget(self.history_button)
        layout = QVBoxLayout(self)
        layout.setContentsMargins(0, 0, 0, 0)
        layout.addLayout(title_row)
        layout.addWidget(self.prompt_edit)
        layout.addWidget(self.negative_edit)
        self.vocabulary_note = QLabel()
        self.vocabulary_note.setObjectName("hint")
        self.vocabulary_note.setWordWrap(True)
        self.vocabulary_note.hide()
        layout.addWidget(self.vocabulary_note)

        self._reads: tuple[Any, Path | None] = (None, None)  # the model's family and folder
        self._history: list[tuple[str, str]] = []  # newest first
        self._position = -1  # -1: not browsing
        self.prompt_edit.historyStep.connect(self._step_history)
        self.negative_edit.historyStep.connect(self._step_history)
        bind(draft, "prompt", self.prompt_edit)
        bind(draft, "negative_prompt", self.negative_edit)
        self._show_vocabulary(draft.values(), Source.USER)
        follow(draft.changed, self, self._show_vocabulary)

    # -- the model's vocabulary and family ------------------------------------------------------

    def _show_negative_applies(self, family: Any) -> None:
        """Guidance-distilled and unguided models take no negative prompt: say so in its box
        (what is typed stays, for the next model that uses one)."""
        applies = family is None or family.guidance.negative_prompt
        why = (
            ""
            if applies
            else f"{family.label} takes no negative prompt (its guidance is distilled)"
        )
        self.negative_edit.setEnabled(applies)
        self.negative_edit.setPlaceholderText(why or NEGATIVE_PLACEHOLDER)
        # the placeholder hides behind text kept from another model: the tooltip says it too
        self.negative_edit.setToolTip(
            f"{why}: what is typed here is not used, and is kept for the next model that takes one."
            if why
            else NEGATIVE_TIP
        )

    def _show_vocabulary(self, values: dict[str, Any], _source: Source) -> None:
        if "model" in values:
            words = vocabulary.of_model(str(self.draft["model"]))
            for edit in (self.prompt_edit, self.negative_edit):
                edit.unknown_words.set_vocabulary(words)
            family = catalog.model_family(str(self.draft["model"]))
            self._show_negative_applies(family)
            self._reads = (family, _model_folder(str(self.draft["model"])))
        if values.keys() & {"model", "prompt", "negative_prompt"}:
            words = self.prompt_edit.unknown_words.vocabulary
            note = words.note(self.prompt(), self.negative_prompt()) if words else ""
            # what a plain-text encoder will not read: weights, text past its maximum
            reads = reading_note(*self._reads, self.prompt(), self.negative_prompt())
            missing = loras.missing_note(self.prompt())  # the job would stop on them
            note = "\n".join(n for n in (note, reads, missing) if n)
            self.vocabulary_note.setText(note)
            self.vocabulary_note.setVisible(bool(note))

    # -- values -------------------------------------------------------------------------------

    def prompt(self) -> str:
        return str(self.draft["prompt"]).strip()

    def negative_prompt(self) -> str:
        return str(self.draft["negative_prompt"]).strip()

    def set_prompts(self, prompt: str, negative: str) -> None:
        self.draft.apply({"prompt": prompt, "negative_prompt": negative}, Source.USER)

    # -- history ------------------------------------------------------------------------------

    def history(self) -> list[tuple[str, str]]:
        return list(self._history)

    def set_history(self, entries: list[tuple[str, str]]) -> None:
        self._history = entries[:MAX_HISTORY]
        self._position = -1

    def remember(self, prompt: str, negative: str) -> None:
        entry = (prompt, negative)
        if not prompt and not negative:
            return
        if entry in self._history:
            self._history.remove(entry)
        self._history.insert(0, entry)
        del self._history[MAX_HISTORY:]
        self._position = -1

    def _step_history(self, direction: int) -> None:
        if not self._history:
            return
        position = self._position - direction  # older = further down the list
        position = max(-1, min(len(self._history) - 1, position))
        self._position = position
        if position == -1:
            return
        self.set_prompts(*self._history[position])
        self.prompt_edit.moveCursor(self.prompt_edit.textCursor().MoveOperation.End)

    def _fill_menu(self) -> None:
        self._menu.clear()
        if not self._history:
            action = self._menu.addAction("No prompts yet")
            action.setEnabled(False)
            return
        for prompt, negative in self._history[:20]:
            text = prompt if len(prompt) <= 60 else prompt[:57] + "…"
            action = self._menu.addAction(text or "(negative prompt only)")
            action.setToolTip(f"{prompt}\nNegative: {negative}" if negative else prompt)
            action.triggered.connect(lambda _=False, p=prompt, n=negative: self.set_prompts(p, n))


def unknown_word_tip(word: str, words: Vocabulary) -> str:
    return (
        f"'{printable(word)}' is not a word {words.model} knows: it is ignored. "
        "The words it knows are listed under Model."
    )


def _model_folder(spec: str) -> Path | None:
    """The model's folder on this machine (its tokenizers are read from it), or None."""
    try:
        return catalog._local_folder(catalog.resolve(spec))  # noqa: SLF001
    except catalog.ModelError:
        return None
