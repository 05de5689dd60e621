"""The noising view: what image→image and inpaint start from at the chosen strength.

The seed documents teach diffusion from the forward process, q(x_t | x_0), which adds noise
to an image step by step until nothing is left; the strength slider picks the step the
reverse process starts from, and artists set it by trial. While the slider moves, a view
over the canvas's corner shows the input image noised to that strength with the job's
seed, as the model's network will first see it, decoded as the live preview decodes;
Image → Forward process… scrubs through the whole noising sequence of the canvas image,
for teaching.

The engine makes the pictures (Engine.noising_view) on the backend's thread; each ask
carries a token and only the latest is answered, so dragging the slider never piles up.
"""

from __future__ import annotations

import itertools
from collections.abc import Callable
from typing import Any

from PIL import Image
from PySide6.QtCore import QObject, Qt, QTimer, Signal
from PySide6.QtGui import QPixmap
from PySide6.QtWidgets import (
    QDialog,
    QLabel,
    QSlider,
    QVBoxLayout,
    QWidget,
)

from studio.core.request import GenerationRequest, Mode
from studio.ui.backends import Backend
from studio.ui.qt_images import array_to_qimage

VIEW_SIDE = 192  # over the canvas's corner
CAPTION_HEIGHT = 0
MARGIN = 8
SHOWN_MS = 2500  # how long the view stays after the slider stops
SCRUBBER_SIDE = 320
ASK_DELAY_MS = 60  # the slider moves many times a second: ask for the last position only
_tokens = itertools.count(1)  # one sequence for every asker: the backend answers the latest


class NoisingAsker(QObject):
    """Asks a backend for noising views, the last one of each burst; emits what comes back."""

    shown = Signal(object)  # H×W×3 uint8 array, or None when there is nothing to show

    def __init__(self, backend: Callable[[], Backend], parent: QObject | None = None) -> None:
        super().__init__(parent)
        self._backend = backend
        self._listening: Backend | None = None
        self._token = 0
        self._pending: GenerationRequest | None = None
        self._timer = QTimer(self)
        self._timer.setSingleShot(True)
        self._timer.setInterval(ASK_DELAY_MS)
        self._timer.timeout.connect(self._send)

    def ask(self, request: GenerationRequest | None) -> None:
        """Show what `request` starts from (None: nothing to show)."""
        if request is None or not request.mode.uses_strength or request.init_image is None:
            self._pending = None
            self._timer.stop()
            self._token = next(_tokens)  # an answer still on its way is stale now
            self.shown.emit(None)
            return
        self._pending = request
        self._timer.start()

    def _send(self) -> None:
        request, self._pending = self._pending, None
        if request is None:
            return
        backend = self._backend()
        if backend is not self._listening:
            if self._listening is not None:
                self._listening.noised.disconnect(self._on_noised)
            backend.noised.connect(self._on_noised)
            self._listening = backend
        self._token = next(_tokens)
        backend.show_noising(self._token, request)

    def _on_noised(self, token: int, picture: Any) -> None:
        if token == self._token:
            self.shown.emit(picture)


class NoisingView(QLabel):
    """Over the canvas's corner while the strength slider moves: the input image noised to
    that strength with the job's seed, as the model's network first sees it; it goes a
    moment after the slider stops. `open_scrubber` opens the forward-process scrubber."""

    def __init__(
        self,
        backend: Callable[[], Backend],
        build_request: Callable[[], GenerationRequest],
        canvas_image: Callable[[], Image.Image | None],
        parent: QWidget,
    ) -> None:
        super().__init__(parent)
        self._build_request = build_request
        self._canvas_image = canvas_image
        self._backend = backend
        self.asker = NoisingAsker(backend, self)
        self.setObjectName("noisingView")
        self.setFixedSize(VIEW_SIDE, VIEW_SIDE + CAPTION_HEIGHT)
        self.setAlignment(Qt.AlignmentFlag.AlignCenter)
        self.setToolTip(
            "What the denoising starts from at this strength: the input image noised with "
            "this seed, as the model first sees it. What still shows here is kept."
        )
        self._hide_timer = QTimer(self)
        self._hide_timer.setSingleShot(True)
        self._hide_timer.setInterval(SHOWN_MS)
        self._hide_timer.timeout.connect(self.hide)
        self.asker.shown.connect(self._show)
        self.shown_picture: Any = None
        self._strength = 0.0
        self.hide()

    def show_for(self, request: GenerationRequest) -> None:
        """Show what `request` starts from, soon (the last of a burst of changes)."""
        viewable = _viewable(request)
        if viewable is None:
            self.asker.ask(None)
            return
        self._strength = viewable.strength
        self.asker.ask(viewable)

    def refresh(self) -> None:
        self.show_for(self._build_request())

    def dismiss(self) -> None:
        """Out of the way, with any answer still on its way (a job is starting: the answer
        would come after it and cover its result)."""
        self.asker.ask(None)

    def _show(self, picture: Any) -> None:
        self.shown_picture = picture
        if picture is None:
            self.hide()
            return
        pixmap = _scaled(picture, VIEW_SIDE)
        self.setPixmap(pixmap)
        self.setText("")
        self.setPixmap(pixmap)
        self.setToolTip(f"Image→image at strength {self._strength:g} starts from this")
        self.move(MARGIN, MARGIN)
        self.show()
        self.raise_()
        self._hide_timer.start()

    def open_scrubber(self) -> ForwardProcessDialog | None:
        """The scrubber over the canvas image's noising, in any mode."""
        image = self._canvas_image()
        if image is None:
            return None
        wanted = self._build_request().replace(
            mode=Mode.IMAGE_TO_IMAGE, init_image=image, mask=None
        )
        request = _viewable(wanted)
        if request is None:
            return None
        dialog = ForwardProcessDialog(self._backend, request, self.window())
        dialog.setAttribute(Qt.WidgetAttribute.WA_DeleteOnClose)
        dialog.open()
        return dialog


class ForwardProcessDialog(QDialog):
    """A slider over the noising sequence of one image, 1 % to 100 % of the schedule."""

    def __init__(
        self, backend: Callable[[], Backend], request: GenerationRequest, parent: QWidget
    ) -> None:
        super().__init__(parent)
        self.setWindowTitle("The forward process")
        self._request = request
        self.asker = NoisingAsker(backend, self)
        self.picture = QLabel()
        self.picture.setFixedSize(SCRUBBER_SIDE, SCRUBBER_SIDE)
        self.picture.setAlignment(Qt.AlignmentFlag.AlignCenter)
        self.slider = QSlider(Qt.Orientation.Horizontal)
        self.slider.setRange(1, 100)
        self.slider.setValue(50)
        self.caption = QLabel()
        self.caption.setWordWrap(True)
        layout = QVBoxLayout(self)
        layout.addWidget(self.picture, 0, Qt.AlignmentFlag.AlignHCenter)
        layout.addWidget(self.slider)
        layout.addWidget(self.caption)
        self.slider.valueChanged.connect(self._ask)
        self.asker.shown.connect(self._show)
        self._ask(self.slider.value())

    def _ask(self, percent: int) -> None:
        self.caption.setText(
            f"{percent} % of the way to pure noise: x_t = √ᾱ_t · x_0 + √(1 − ᾱ_t) · ε, with "
            f"the seed {self._request.seed}. Image→image at strength {percent / 100:g} starts "
            "here."
        )
        self.asker.ask(self._request.replace(strength=percent / 100))

    def _show(self, picture: Any) -> None:
        if picture is not None:
            self.picture.setPixmap(_scaled(picture, SCRUBBER_SIDE))


def _viewable(request: GenerationRequest) -> GenerationRequest | None:
    """The request a view shows: one image, with a seed (a random one shows seed 0's noise)
    and a prompt (the text changes nothing before the first step)."""
    if not request.mode.uses_strength or request.init_image is None:
        return None
    prompt = request.prompt if request.prompt.strip() else "noise"
    return request.replace(
        seed=max(0, request.seed), batch_size=1, controls=(), upscaler=None, prompt=prompt
    )


def _scaled(picture: Any, side: int) -> QPixmap:
    image = array_to_qimage(picture)
    return QPixmap.fromImage(
        image.scaled(
            side,
            side,
            Qt.AspectRatioMode.KeepAspectRatio,
            Qt.TransformationMode.FastTransformation,  # latent-sized previews stay crisp
        )
    )
