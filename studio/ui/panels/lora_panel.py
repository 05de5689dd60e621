"""The LoRA panel: the LoRAs found (name, family, trigger words, preview picture), a search,
and the active ones with a weight slider each — in sync with the `<lora:NAME:WEIGHT>` tags of
the prompt, which stay the one record of what is active (editing either updates the other,
as A1111's LoRA cards write tags into the prompt)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from PySide6.QtCore import QSize, Qt, Signal
from PySide6.QtGui import QIcon, QPixmap
from PySide6.QtWidgets import (
    QHBoxLayout,
    QLabel,
    QLineEdit,
    QListWidget,
    QListWidgetItem,
    QToolButton,
    QVBoxLayout,
    QWidget,
)
from superqt import QLabeledDoubleSlider

from studio.core import loras
from studio.core.draft import Draft, Source
from studio.core.prompt_tags import (
    WEIGHT_LIMIT,
    remove_lora_tag,
    set_lora_weight,
    split_lora_tags,
)
from studio.core.text import printable
from studio.ui.bind import follow

WEIGHT_RANGE = (-2.0, 2.0)
ICON = 40
PathRole = Qt.ItemDataRole.UserRole


class ActiveLoraRow(QWidget):
    """One active LoRA: its name, a weight slider, and a button that removes it."""

    def __init__(self, name: str, weight: float, found: bool, panel: LoraPanel) -> None:
        super().__init__()
        self.name = name
        self.found = found
        self.label = QLabel(printable(name))
        self.label.setMinimumWidth(60)
        self.slider = QLabeledDoubleSlider(Qt.Orientation.Horizontal)
        self.slider.setSingleStep(0.05)
        self.slider.setDecimals(2)
        self.show_weight(weight)
        self.slider.setToolTip("The LoRA's weight: 0 leaves the model as it is, below 0 inverts it")
        self.remove = QToolButton()
        self.remove.setText("✕")
        self.remove.setToolTip(f"Remove {printable(name)} (takes its tag out of the prompt)")
        if not found:
            self.label.setObjectName("warning")
            self.label.setToolTip("Not in your LoRA folders: Generate will say so")
        layout = QHBoxLayout(self)
        layout.setContentsMargins(0, 0, 0, 0)
        layout.addWidget(self.label, 2)
        layout.addWidget(self.slider, 3)
        layout.addWidget(self.remove)
        self.slider.valueChanged.connect(lambda value: panel.set_weight(name, value))
        self.remove.clicked.connect(lambda: panel.remove(name))

    def show_weight(self, weight: float) -> None:
        """The weight on the slider: its usual range, widened to a weight the prompt gives
        beyond it (up to the weights a LoRA is drawn at), so that it shows as it is."""
        low = max(-WEIGHT_LIMIT, min(WEIGHT_RANGE[0], weight))
        self.slider.setRange(low, min(WEIGHT_LIMIT, max(WEIGHT_RANGE[1], weight)))
        self.slider.setValue(weight)


class LoraPanel(QWidget):
    titleChanged = Signal(str)  # "LoRAs", "LoRAs (2 active)"

    def __init__(self, draft: Draft, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.draft = draft
        self._title = "LoRAs"
        content = self
        self.rows_box = QVBoxLayout()
        self.rows_box.setContentsMargins(0, 0, 0, 0)
        self.rows: dict[str, ActiveLoraRow] = {}
        self.search = QLineEdit()
        self.search.setPlaceholderText("Search LoRAs…")
        self.search.setClearButtonEnabled(True)
        self.search.textChanged.connect(self._filter)
        self.found = QListWidget()
        self.found.setIconSize(QSize(ICON, ICON))
        self.found.setMaximumHeight(4 * (ICON + 6))
        self.found.itemActivated.connect(self._add_item)
        self.found.itemDoubleClicked.connect(self._add_item)
        self.add_button = QToolButton()
        self.add_button.setText("Add")
        self.add_button.setToolTip(
            "Add the selected LoRA to the prompt at weight 1 (or double-click)"
        )
        self.add_button.clicked.connect(lambda: self._add_item(self.found.currentItem()))
        self.empty = QLabel()
        self.empty.setObjectName("hint")
        self.empty.setWordWrap(True)
        search_row = QHBoxLayout()
        search_row.addWidget(self.search, 1)
        search_row.addWidget(self.add_button)
        layout = QVBoxLayout(content)
        layout.setContentsMargins(0, 0, 0, 0)
        layout.addLayout(self.rows_box)
        layout.addLayout(search_row)
        layout.addWidget(self.found)
        layout.addWidget(self.empty)
        self.reload()
        self._show_tags(draft.values(), Source.USER)
        follow(draft.changed, self, self._show_tags)

    # -- the LoRAs found --------------------------------------------------------------------

    def reload(self) -> None:
        """List the LoRA folders again (a new file, another models folder)."""
        self.found.clear()
        for path in loras.available():
            info = loras.describe(path)
            facts = " · ".join(part for part in (info.family, ", ".join(info.triggers)) if part)
            item = QListWidgetItem(info.name + (f"\n{facts}" if facts else ""))
            item.setData(PathRole, str(path))
            item.setToolTip(
                "\n".join(
                    part
                    for part in (
                        printable(str(path)),
                        f"Family: {info.family}" if info.family else "",
                        f"Trigger words: {', '.join(info.triggers)}" if info.triggers else "",
                    )
                    if part
                )
            )
            pixmap = QPixmap()
            if info.preview is not None:
                pixmap = QPixmap(str(info.preview))
            elif info.thumbnail:  # a picture in the file's own metadata
                pixmap.loadFromData(info.thumbnail)
            if not pixmap.isNull():
                item.setIcon(QIcon(pixmap.scaled(ICON, ICON, Qt.AspectRatioMode.KeepAspectRatio)))
            self.found.addItem(item)
        folders = ", ".join(printable(str(f)) for f in loras.lora_dirs()) or "none set"
        self.empty.setText(
            f"No LoRAs found. Folders searched: {folders}; set a models or LoRA folder in Settings."
            if not self.found.count()
            else ""
        )
        self.empty.setVisible(not self.found.count())
        self._filter(self.search.text())

    def _filter(self, text: str) -> None:
        wanted = text.strip().lower()
        for row in range(self.found.count()):
            item = self.found.item(row)
            item.setHidden(bool(wanted) and wanted not in item.text().lower())

    def _add_item(self, item: QListWidgetItem | None) -> None:
        if item is None:
            return
        name = Path(item.data(PathRole)).stem
        if name not in self.rows:
            self.set_weight(name, 1.0)

    # -- the prompt's tags ------------------------------------------------------------------

    def set_weight(self, name: str, weight: float) -> None:
        prompt = str(self.draft["prompt"])
        changed = set_lora_weight(prompt, name, round(weight, 2))
        if changed != prompt:
            self.draft.edit({"prompt": changed})

    def remove(self, name: str) -> None:
        self.draft.edit({"prompt": remove_lora_tag(str(self.draft["prompt"]), name)})

    def active(self) -> list[tuple[str, float]]:
        return [(name, row.slider.value()) for name, row in self.rows.items()]

    def _show_tags(self, values: dict[str, Any], _source: Source) -> None:
        if "prompt" not in values:
            return
        tags = split_lora_tags(str(values["prompt"]))[1]
        if [t.name for t in tags] != list(self.rows):
            self._rebuild(tags)
        else:  # the same LoRAs: only weights move (no rebuild under a dragged slider)
            for tag in tags:
                row = self.rows[tag.name]
                if abs(row.slider.value() - tag.weight) > 1e-6:
                    row.slider.blockSignals(True)
                    row.show_weight(tag.weight)
                    row.slider.blockSignals(False)
        # a tag whose file is not here runs nothing: not counted as active, said apart
        missing = sum(not row.found for row in self.rows.values())
        counts = [f"{len(self.rows) - missing} active"] if len(self.rows) > missing else []
        counts += [f"{missing} not found"] if missing else []
        title = f"LoRAs ({', '.join(counts)})" if counts else "LoRAs"
        if title != self._title:
            self._title = title
            self.titleChanged.emit(title)

    def text(self) -> str:
        """The panel's title: how many LoRAs are active."""
        return self._title

    def _rebuild(self, tags: list[Any]) -> None:
        for row in self.rows.values():
            self.rows_box.removeWidget(row)
            row.deleteLater()
        self.rows = {}
        for tag in tags:
            row = ActiveLoraRow(tag.name, tag.weight, loras.find(tag.name) is not None, self)
            self.rows[tag.name] = row
            self.rows_box.addWidget(row)
