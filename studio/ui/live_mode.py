"""Live mode: while it is on, every change starts a new generation at once.

A change of the prompt or any other parameter, a stroke on the mask or the ControlNet layer,
a new canvas image: the job in flight is cancelled (within a step; a stale job is never
shown) and a new one is queued with a fixed seed and the model's fast setting
(`core.fast_setting`: a distilled model's steps, CFG and sampler, or an acceleration LoRA's,
added to the prompt; else a short schedule, and the view says how to get one). The
newest picture shows in a view beside the canvas, so the brush stays on the canvas: painting
and seeing the result follow is the point, as in Krita's AI plugin. Live pictures are not
saved; Generate makes the keeper with the full settings.
"""

from __future__ import annotations

import random
import time
from collections.abc import Callable
from typing import Any

import numpy as np
from PySide6.QtCore import QObject, Qt, QTimer, Signal
from PySide6.QtGui import QPixmap
from PySide6.QtWidgets import QLabel, QSizePolicy, QVBoxLayout, QWidget

from studio.core.draft import Draft
from studio.core.fast_setting import LIVE_STEPS, FastSetting, for_request
from studio.core.jobs import GenerationResult
from studio.core.request import RANDOM_SEED, GenerationRequest, Mode
from studio.ui.bind import follow
from studio.ui.controller import JobController
from studio.ui.qt_images import array_to_qimage

__all__ = ["LIVE_STEPS", "LiveMode", "LiveView", "live_request"]
COALESCE_MS = 0  # changes made in one turn of the event loop start one job


def live_request(request: GenerationRequest, seed: int) -> tuple[GenerationRequest, FastSetting]:
    """The live version of the panel's request: one image, the fixed seed, the model's fast
    setting (few steps), no upscale pass; and that setting."""
    setting = for_request(request)
    live = setting.apply(request)
    return live.replace(seed=seed, batch_size=1, upscaler=None, branch=None), setting


class LiveView(QWidget):
    """The newest live picture, beside the canvas, with what it is."""

    def __init__(self, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.picture = QLabel()
        self.picture.setAlignment(Qt.AlignmentFlag.AlignCenter)
        self.picture.setMinimumSize(160, 160)
        self.picture.setSizePolicy(QSizePolicy.Policy.Expanding, QSizePolicy.Policy.Expanding)
        self.caption = QLabel("Live: change anything to see it")
        self.caption.setObjectName("hint")
        self.caption.setWordWrap(True)
        layout = QVBoxLayout(self)
        layout.setContentsMargins(0, 0, 0, 0)
        layout.addWidget(self.picture, 1)
        layout.addWidget(self.caption)
        self.shown: np.ndarray | None = None
        self._pixmap: QPixmap | None = None

    def show_result(self, image: Any, caption: str) -> None:
        self.shown = np.asarray(image.convert("RGB"))
        self._pixmap = QPixmap.fromImage(array_to_qimage(self.shown))
        self._fit()
        self.caption.setText(caption)

    def say(self, caption: str) -> None:
        self.caption.setText(caption)

    def resizeEvent(self, event: Any) -> None:  # noqa: N802 - Qt's name
        super().resizeEvent(event)
        self._fit()

    def _fit(self) -> None:
        if self._pixmap is None:
            return
        size = self.picture.size()
        self.picture.setPixmap(
            self._pixmap.scaled(
                size, Qt.AspectRatioMode.KeepAspectRatio, Qt.TransformationMode.SmoothTransformation
            )
        )


class LiveMode(QObject):
    """Follows the draft and the canvas while on; one live job at a time."""

    toggled = Signal(bool)
    shown = Signal(int)  # the live job whose picture is now shown

    def __init__(
        self,
        draft: Draft,
        controller: JobController,
        build_request: Callable[[], GenerationRequest],
        view: LiveView,
        changes: list[Any],
        parent: QObject | None = None,
    ) -> None:
        """`changes`: the signals that mean "the picture to make changed" besides the
        draft's (the canvas's mask and ControlNet strokes)."""
        super().__init__(parent)
        self.draft = draft
        self.controller = controller
        self._build_request = build_request
        self.view = view
        self.enabled = False
        self._seed = 0
        self._job: int | None = None
        self._started: dict[int, float] = {}  # live job → when the change that made it came
        self._setting: FastSetting | None = None  # the fast setting the live job runs
        self._told: set[str] = set()  # models whose missing fast setting the view has named
        self._timer = QTimer(self)
        self._timer.setSingleShot(True)
        self._timer.setInterval(COALESCE_MS)
        self._timer.timeout.connect(self._run)
        follow(draft.changed, self, self._on_draft_changed)
        for signal in changes:
            signal.connect(self.changed)
        controller.jobFinished.connect(self._on_finished)
        controller.jobFailed.connect(self._on_failed)

    def set_enabled(self, on: bool) -> None:
        if on == self.enabled:
            return
        self.enabled = on
        self.view.setVisible(on)
        if on:
            seed = int(self.draft["seed"])
            # a random seed would change the picture at every stroke: one is fixed for the
            # session of live mode, as the field shows it
            self._seed = seed if seed != RANDOM_SEED else random.randrange(2**32)
            self.changed()
        else:
            self._timer.stop()
            self._cancel_current()
        self.toggled.emit(on)

    def changed(self, *_: Any) -> None:
        """Something the picture depends on changed: a new live job, soon."""
        if self.enabled:
            if not self._timer.isActive():
                self._started[-1] = time.perf_counter()  # the first change of this burst
            self._timer.start()

    def _on_draft_changed(self, values: dict[str, Any], _source: Any) -> None:
        if "seed" in values and values["seed"] != RANDOM_SEED:
            self._seed = int(values["seed"])
        self.changed()

    def _run(self) -> None:
        request, setting = live_request(self._build_request(), self._seed)
        problems = request.problems()
        if problems:
            self.view.say(f"Live: {problems[0]}")
            return
        self._cancel_current()
        self._job = self.controller.submit(request, live=True)
        self._started[self._job] = self._started.pop(-1, time.perf_counter())
        self._setting = setting

    def _cancel_current(self) -> None:
        if self._job is not None:
            self.controller.cancel(self._job)  # within a step; its late signals are dropped
            self._started.pop(self._job, None)
            self._job = None

    def _on_finished(self, job_id: int, result: GenerationResult) -> None:
        if job_id != self._job or not result.images:
            return
        began = self._started.pop(job_id, None)
        took = f" in {time.perf_counter() - began:.2f} s" if began is not None else ""
        request = result.request
        mode = "" if request.mode is Mode.TEXT_TO_IMAGE else f" · {request.mode.label}"
        setting, self._setting = self._setting, None
        what = setting.caption(request.steps) if setting else f"{request.steps} steps"
        caption = f"Live · {what} · seed {request.seed}{mode}{took}"
        if setting is not None and setting.hint:
            self.view.setToolTip(setting.hint)
            if request.model not in self._told:  # said once a model; the tooltip keeps it
                self._told.add(request.model)
                caption += f"\n{setting.hint}"
        else:
            self.view.setToolTip("")
        self.view.show_result(result.images[0], caption)
        self._job = None
        self.shown.emit(job_id)

    def _on_failed(self, job_id: int, message: str) -> None:
        if job_id == self._job:
            self._job = None
            self.view.say(f"Live: {message}")
