"""The studio window: controls on the left, the canvas and its timeline in the centre,
the gallery on the right, engine status and step progress in the status bar.

The window is layout, menus and wiring. The request being edited is the draft
(`core.draft`), which every panel binds to; Generate freezes it with the canvas's image
and mask and hands it to the controller, which runs it on a backend. The window never
touches torch; the engine thread starts only after the window is shown.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

from PIL import Image
from PySide6.QtCore import Qt, Slot
from PySide6.QtGui import (
    QAction,
    QActionGroup,
    QCloseEvent,
    QDragEnterEvent,
    QDropEvent,
    QGuiApplication,
    QImage,
    QKeySequence,
)
from PySide6.QtWidgets import (
    QApplication,
    QDockWidget,
    QFileDialog,
    QHBoxLayout,
    QLabel,
    QMainWindow,
    QMessageBox,
    QProgressBar,
    QPushButton,
    QScrollArea,
    QSizePolicy,
    QToolButton,
    QVBoxLayout,
    QWidget,
)
from superqt import QElidingLabel, QLabeledSlider

from studio.core.catalog import ModelError, model_defaults
from studio.core.draft import Applied, Draft, Source
from studio.core.imaging import ImageLoadError, file_dialog_filter, input_size, open_image
from studio.core.jobs import GenerationResult, JobRecord, StepProgress
from studio.core.request import GenerationRequest, Mode
from studio.core.restore import RestorePlan, plan_restore
from studio.core.settings import EngineSettings
from studio.core.text import printable
from studio.metadata import MetadataError, read_parameters
from studio.ui import icons
from studio.ui.backends import EngineFactory
from studio.ui.banner import Banner
from studio.ui.bind import follow
from studio.ui.canvas import ImageCanvas
from studio.ui.controller import JobController, describe_progress, fraction_or_none
from studio.ui.dialogs import SettingsDialog, ShortcutsDialog, StudioSettings
from studio.ui.gallery import GalleryPanel
from studio.ui.image_input import dropped_image_path
from studio.ui.panels.guidance_panel import GuidancePanel
from studio.ui.panels.mode_bar import ModeBar
from studio.ui.panels.model_picker import AddModelDialog, ModelPicker
from studio.ui.panels.prompt_panel import PromptPanel
from studio.ui.qt_images import pil_to_qimage, qimage_to_pil
from studio.ui.settings import Settings
from studio.ui.theme import apply_theme
from studio.ui.timeline import Timeline

log = logging.getLogger(__name__)

TITLE = "Latent Studio"
LEFT_WIDTH = 370


class MainWindow(QMainWindow):
    def __init__(
        self,
        settings: Settings | None = None,
        engine_factory: EngineFactory | None = None,
        parent: QWidget | None = None,
    ) -> None:
        super().__init__(parent)
        self.settings = settings or Settings()
        self.setWindowTitle(TITLE)
        self.setWindowIcon(icons.app_icon())
        self.setAcceptDrops(True)
        self.setDockOptions(QMainWindow.DockOption.AnimatedDocks)
        self.draft = Draft()
        self.controller = JobController(
            self.settings.output_dir(), self.settings.engine_settings(), engine_factory, self
        )
        self.engine_stopped = True  # False if the engine thread outlived closing
        self._shown_job: int | None = None  # the job whose steps the canvas and timeline show
        self._last_folder: Path | None = None  # where the Open dialog starts

        self._build_centre()
        self._build_controls()
        self._build_gallery()
        self._build_status_bar()
        self._build_actions()
        self._connect()
        self._restore_settings()
        self._show_mode(self.draft.mode)
        self._set_busy(False)
        self.prompt_panel.prompt_edit.setFocus()  # ready to type a prompt at once

    # ------------------------------------------------------------------ building

    def _build_centre(self) -> None:
        self.banner = Banner()
        self.canvas = ImageCanvas()
        self.canvas.setSizePolicy(QSizePolicy.Policy.Expanding, QSizePolicy.Policy.Expanding)
        self.timeline = Timeline()
        self.mask_bar = self._build_mask_bar()
        centre = QWidget()
        layout = QVBoxLayout(centre)
        layout.setContentsMargins(6, 6, 6, 4)
        layout.setSpacing(4)
        layout.addWidget(self.banner)
        layout.addWidget(self.mask_bar)
        layout.addWidget(self.canvas, 1)
        layout.addWidget(self.timeline)
        self.setCentralWidget(centre)

    def _build_mask_bar(self) -> QWidget:
        bar = QWidget()
        row = QHBoxLayout(bar)
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
        self.brush_button.setChecked(True)
        label = QLabel("Size")
        label.setContentsMargins(8, 0, 2, 0)
        row.addWidget(label)
        self.brush_size = QLabeledSlider(Qt.Orientation.Horizontal)
        self.brush_size.setRange(1, 512)
        self.brush_size.setValue(self.canvas.brush_size)
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
        return bar

    def _build_controls(self) -> None:
        self.mode_bar = ModeBar()
        self.mode_bar.bind(self.draft)
        self.model_picker = ModelPicker("generator")
        self.model_picker.bind(self.draft, "model")
        self.prompt_panel = PromptPanel(self.draft)
        self.generate_button = QPushButton("Generate")
        self.generate_button.setObjectName("generateButton")
        self.generate_button.setToolTip("Generate (Ctrl+Enter); queues another job while one runs")
        self.cancel_button = QPushButton("Cancel")
        self.cancel_button.setToolTip("Cancel the current job (Esc)")
        self.queue_label = QLabel()
        self.queue_label.setObjectName("hint")
        self.guidance = GuidancePanel(self.draft)

        buttons = QHBoxLayout()
        buttons.addWidget(self.generate_button, 2)
        buttons.addWidget(self.cancel_button, 1)
        model_title = QLabel("Model")
        model_title.setObjectName("sectionTitle")

        panel = QWidget()
        layout = QVBoxLayout(panel)
        layout.setContentsMargins(8, 8, 8, 8)
        layout.setSpacing(6)
        layout.addWidget(self.mode_bar)
        layout.addWidget(model_title)
        layout.addWidget(self.model_picker)
        layout.addWidget(self.prompt_panel)
        layout.addLayout(buttons)
        layout.addWidget(self.queue_label)
        layout.addWidget(self.guidance)
        layout.addStretch(1)

        scroll = QScrollArea()
        scroll.setWidget(panel)
        scroll.setWidgetResizable(True)
        scroll.setHorizontalScrollBarPolicy(Qt.ScrollBarPolicy.ScrollBarAlwaysOff)
        scroll.setFrameShape(QScrollArea.Shape.NoFrame)
        # Room for the panel and a scroll bar, so nothing is clipped when the Inpaint
        # controls make the column scroll.
        scrollbar = scroll.verticalScrollBar().sizeHint().width()
        scroll.setMinimumWidth(max(LEFT_WIDTH, panel.minimumSizeHint().width()) + scrollbar)
        self.controls_dock = QDockWidget("Controls", self)
        self.controls_dock.setObjectName("controlsDock")
        self.controls_dock.setWidget(scroll)
        self.controls_dock.setFeatures(
            QDockWidget.DockWidgetFeature.DockWidgetMovable
            | QDockWidget.DockWidgetFeature.DockWidgetFloatable
        )
        self.addDockWidget(Qt.DockWidgetArea.LeftDockWidgetArea, self.controls_dock)

    def _build_gallery(self) -> None:
        self.gallery = GalleryPanel(self.controller.output_dir)
        self.gallery_dock = QDockWidget("Gallery", self)
        self.gallery_dock.setObjectName("galleryDock")
        self.gallery_dock.setWidget(self.gallery)
        self.gallery_dock.setMinimumWidth(280)
        self.addDockWidget(Qt.DockWidgetArea.RightDockWidgetArea, self.gallery_dock)

    def _build_status_bar(self) -> None:
        bar = self.statusBar()
        self.engine_label = QElidingLabel("Starting…")
        self.engine_label.setMinimumWidth(220)
        self.step_label = QLabel()
        self.progress_bar = QProgressBar()
        self.progress_bar.setMaximumWidth(220)
        self.progress_bar.setTextVisible(False)
        self.progress_bar.setVisible(False)
        bar.addWidget(self.engine_label, 1)
        bar.addPermanentWidget(self.step_label)
        bar.addPermanentWidget(self.progress_bar)

    def _action(self, menu: Any, text: str, slot: Any, keys: Any = None, tip: str = "") -> QAction:
        action = QAction(text, self)
        if keys is not None:
            sequences = keys if isinstance(keys, list) else [keys]
            action.setShortcuts([QKeySequence(k) for k in sequences])
        if tip:
            action.setStatusTip(tip)
        action.triggered.connect(slot)
        if menu is not None:
            menu.addAction(action)
        self.addAction(action)  # shortcuts work even while menus are hidden
        return action

    def _build_actions(self) -> None:
        menus = self.menuBar()
        file_menu = menus.addMenu("&File")
        self._action(
            file_menu, "&Open image…", self.open_image_dialog, QKeySequence.StandardKey.Open
        )
        self._action(file_menu, "&Paste image", self.paste_image, QKeySequence.StandardKey.Paste)
        self._action(file_menu, "Open the output &folder", self.gallery.open_folder)
        file_menu.addSeparator()
        self._action(file_menu, "&Settings…", self.open_settings, "Ctrl+,")
        file_menu.addSeparator()
        self._action(file_menu, "&Quit", self.close, QKeySequence.StandardKey.Quit)

        image_menu = menus.addMenu("&Image")
        self.generate_action = self._action(
            image_menu, "&Generate", self.generate, ["Ctrl+Return", "Ctrl+Enter"]
        )
        self.cancel_action = self._action(image_menu, "&Cancel", self.cancel, "Esc")
        image_menu.addSeparator()
        for index, mode in enumerate(Mode, start=1):
            self._action(
                image_menu, mode.label, lambda _=False, m=mode: self.set_mode(m), f"Ctrl+{index}"
            )

        mask_menu = menus.addMenu("&Mask")
        self.mask_actions = [
            self._action(mask_menu, "&Undo", self.canvas.undo, QKeySequence.StandardKey.Undo),
            self._action(mask_menu, "&Redo", self.canvas.redo, ["Ctrl+Shift+Z", "Ctrl+Y"]),
            self._action(mask_menu, "&Invert", self.canvas.invert_mask, "Ctrl+I"),
            self._action(mask_menu, "&Clear", self.canvas.clear_mask),
            # B, E, [ and ] are the canvas's own keys (while it has the focus).
            self._action(mask_menu, "&Brush", lambda: self.canvas.set_tool("brush")),
            self._action(mask_menu, "&Eraser", lambda: self.canvas.set_tool("eraser")),
        ]

        view_menu = menus.addMenu("&View")
        self._action(view_menu, "Zoom to &fit", self.canvas.fit_to_view, "Ctrl+0")
        view_menu.addSeparator()
        view_menu.addAction(self.controls_dock.toggleViewAction())
        view_menu.addAction(self.gallery_dock.toggleViewAction())
        view_menu.addSeparator()
        theme_group = QActionGroup(self)
        self.theme_actions: dict[str, QAction] = {}
        for name in ("dark", "light"):
            action = QAction(f"{name.capitalize()} theme", self, checkable=True)
            action.triggered.connect(lambda _=False, n=name: self.set_theme(n))
            theme_group.addAction(action)
            view_menu.addAction(action)
            self.theme_actions[name] = action
        self.theme_actions[self.settings.theme()].setChecked(True)

        help_menu = menus.addMenu("&Help")
        self._action(help_menu, "Keyboard &shortcuts", self.show_shortcuts, "F1")
        self._action(help_menu, "&About Latent Studio", self.show_about)

    def _connect(self) -> None:
        c = self.controller
        c.jobStarted.connect(self._on_job_started)
        c.progress.connect(self._on_progress)
        c.jobFinished.connect(self._on_job_finished)
        c.jobFailed.connect(self._on_job_failed)
        c.jobCancelled.connect(self._on_job_cancelled)
        c.busyChanged.connect(self._set_busy)
        c.jobQueued.connect(lambda _id: self._update_queue_label())
        c.engineStatus.connect(self._on_engine_status)
        c.engineReady.connect(self._on_engine_ready)

        follow(self.draft.changed, self, self._on_draft_changed)
        follow(self.draft.defaultsApplied, self, self._announce_defaults)

        self.generate_button.clicked.connect(self.generate)
        self.cancel_button.clicked.connect(self.cancel)
        self.model_picker.addRequested.connect(lambda: self._ask_for_model(self.model_picker))
        self.guidance.upscale_model.addRequested.connect(
            lambda: self._ask_for_model(self.guidance.upscale_model)
        )

        self.brush_button.clicked.connect(lambda: self.canvas.set_tool("brush"))
        self.eraser_button.clicked.connect(lambda: self.canvas.set_tool("eraser"))
        self.brush_size.valueChanged.connect(self.canvas.set_brush_size)
        self.canvas.brushSizeChanged.connect(self._on_canvas_brush_size)
        self.canvas.toolChanged.connect(self._on_canvas_tool)
        self.undo_button.clicked.connect(self.canvas.undo)
        self.redo_button.clicked.connect(self.canvas.redo)
        self.invert_button.clicked.connect(self.canvas.invert_mask)
        self.clear_button.clicked.connect(self.canvas.clear_mask)
        self.canvas.imageDropped.connect(self.load_image)
        self.canvas.imagePasted.connect(self._on_image_pasted)
        self.timeline.frameChosen.connect(self._on_frame_chosen)

        self.gallery.selected.connect(self._on_gallery_selected)
        self.gallery.activated.connect(self._show_file_in_canvas)
        self.gallery.restoreRequested.connect(self.restore_parameters_from)
        self.gallery.sendRequested.connect(self.send_to)
        self.gallery.message.connect(self._on_gallery_message)
        self.gallery.trashFailed.connect(self._offer_permanent_delete)

    # ------------------------------------------------------------------ engine

    def start_engine(self, preload: bool | str = True) -> None:
        """Start the engine thread (torch loads there); call after the window is shown.

        `preload`: True loads the chosen model at once, a spec selects and loads that one.
        """
        if isinstance(preload, str) and preload:
            self.draft.set("model", preload, Source.SESSION)
        model = self.draft["model"] if preload else ""
        self.controller.start_engine(model)
        self.engine_label.setText(f"Loading {model}…" if model else "Loading the engine…")

    @Slot(str, float)
    def _on_engine_status(self, message: str, fraction: float) -> None:
        self._set_status(message)
        value = fraction_or_none(fraction)
        if not self.controller.is_busy:
            self.progress_bar.setVisible(value is not None and value < 1.0)
            if value is not None:
                self.progress_bar.setRange(0, 1000)
                self.progress_bar.setValue(int(value * 1000))

    @Slot(str)
    def _on_engine_ready(self, summary: str) -> None:
        if not self.controller.is_busy:
            self._set_status(summary)
            self.progress_bar.setVisible(False)

    # ------------------------------------------------------------------ generation

    def mode(self) -> Mode:
        return self.draft.mode

    def set_mode(self, mode: Mode) -> None:
        self.draft.set("mode", Mode(mode).value)

    def build_request(self) -> GenerationRequest:
        """The draft frozen with the canvas's image and mask (the mode takes what it uses)."""
        return self.draft.freeze(self.canvas.image(), self.canvas.mask())

    @Slot()
    def generate(self) -> int | None:
        """Queue a job from the draft; returns its id, or None with a message."""
        request = self.build_request()
        problems = request.problems()
        if problems:
            # One clear sentence at a time: the first problem is the one to fix first.
            self.show_error(problems[0])
            self.banner.setToolTip("\n".join(problems))
            return None
        self.banner.dismiss()
        self.prompt_panel.remember(request.prompt, request.negative_prompt)
        self.settings.set_last_request(request.to_dict())
        return self.controller.submit(request)

    @Slot()
    def cancel(self) -> None:
        if self.controller.cancel():
            self._set_status("Cancelled.")

    @Slot(int)
    def _on_job_started(self, job_id: int) -> None:
        self._shown_job = job_id
        self.timeline.clear("Generating…")
        self.step_label.setText("")
        self.progress_bar.setRange(0, 100)
        self.progress_bar.setValue(0)
        self.progress_bar.setVisible(True)
        record = self.controller.job(job_id)
        verb = "Upscaling" if record and record.request.mode is Mode.UPSCALE else "Generating"
        self._set_status(f"{verb}…")
        self._update_queue_label()

    @Slot(int, object)
    def _on_progress(self, job_id: int, progress: StepProgress) -> None:
        self.step_label.setText(describe_progress(progress))
        self.progress_bar.setRange(0, progress.total)
        self.progress_bar.setValue(progress.step)
        if progress.preview is not None:
            record = self.controller.job(job_id)
            size = None
            if record is not None and progress.stage == "generate":
                size = (record.request.width, record.request.height)
            self.canvas.show_preview(progress.preview, size)

    @Slot(int, object)
    def _on_job_finished(self, job_id: int, result: GenerationResult) -> None:
        self.canvas.clear_preview()
        if result.images:
            # the canvas shows the result (the mask of a same-size image stays, to repaint)
            self.canvas.set_image(result.images[0])
        self.gallery.add(result.paths)
        record = self.controller.job(job_id)
        self._show_timeline(record)
        self.draft.set_last_seed(result.request.seed)
        seconds = result.timings.get("total")
        took = f" in {seconds:.1f} s" if seconds else ""
        names = result.paths[0].name if len(result.paths) == 1 else f"{len(result.paths)} images"
        self._set_status(f"Done{took} · saved {names}")
        self._finish_progress()

    @Slot(int, str)
    def _on_job_failed(self, job_id: int, message: str) -> None:
        self.canvas.clear_preview()
        self.timeline.clear()
        self.show_error(message)
        self._set_status("The last job failed.")
        self._finish_progress()

    @Slot(int)
    def _on_job_cancelled(self, job_id: int) -> None:
        if job_id == self._shown_job:
            self.canvas.clear_preview()
            self.timeline.clear("Cancelled")
            self._finish_progress()
        self._set_status("Cancelled.")
        self._update_queue_label()

    def _finish_progress(self) -> None:
        self.step_label.setText("")
        self.progress_bar.setVisible(False)
        self._update_queue_label()

    @Slot(bool)
    def _set_busy(self, busy: bool) -> None:
        self.cancel_button.setEnabled(busy)
        self.cancel_action.setEnabled(busy)
        self._update_queue_label()

    def _update_queue_label(self) -> None:
        queued = len(self.controller.queued_jobs)
        self.queue_label.setText(f"{queued} job(s) waiting" if queued else "")
        self.queue_label.setVisible(bool(queued))

    @Slot(int)
    def _on_frame_chosen(self, index: int) -> None:
        record = self.controller.job(self._shown_job) if self._shown_job else None
        if record is None or index >= len(record.frames):
            self.canvas.clear_preview()  # the last position is the result itself
        else:
            self.canvas.show_preview(record.frames[index].preview)

    # ------------------------------------------------------------------ the draft

    def _on_draft_changed(self, values: dict[str, Any], _source: Source) -> None:
        if "mode" in values:
            self._show_mode(self.draft.mode)

    def _show_mode(self, mode: Mode) -> None:
        inpaint = mode is Mode.INPAINT
        self.canvas.set_mask_editing(inpaint)
        self.mask_bar.setVisible(inpaint)
        for action in self.mask_actions:
            action.setEnabled(inpaint)
        self.generate_button.setText("Upscale" if mode is Mode.UPSCALE else "Generate")
        self.prompt_panel.prompt_edit.setPlaceholderText(
            "Optional: what the enlarged image shows"
            if mode is Mode.UPSCALE
            else "Describe the image: a large yellow star in the centre…"
        )

    def _announce_defaults(self, spec: str, defaults: dict[str, Any]) -> None:
        """Say what a model's defaults changed: a 64×64 model left at 512×512 gives noise."""
        parts = []
        if "width" in defaults or "height" in defaults:
            parts.append(f"{self.draft['width']}×{self.draft['height']}")
        if "steps" in defaults:
            parts.append(f"{defaults['steps']} steps")
        if "cfg_scale" in defaults:
            parts.append(f"CFG {defaults['cfg_scale']:g}")
        if "scheduler" in defaults:
            parts.append(str(defaults["scheduler"]))
        name = Path(spec).name or spec
        self._set_status(f"Using {printable(name)}'s defaults: {', '.join(parts)}.")

    # ------------------------------------------------------------------ tools

    @Slot(str)
    def _on_canvas_tool(self, tool: str) -> None:
        self.brush_button.setChecked(tool == "brush")
        self.eraser_button.setChecked(tool == "eraser")

    @Slot(int)
    def _on_canvas_brush_size(self, size: int) -> None:
        if self.brush_size.value() != size:
            self.brush_size.blockSignals(True)
            self.brush_size.setValue(size)
            self.brush_size.blockSignals(False)

    # ------------------------------------------------------------------ images in

    def load_image(self, path: str | Path) -> bool:
        """Open an image file and offer what to do with it; nothing changes until the artist
        picks an action (restore its parameters, or use it as an input)."""
        path = Path(path)
        try:
            image = open_image(path)
        except ImageLoadError as e:
            self.show_error(str(e))
            return False
        self._last_folder = path.parent
        try:
            plan: RestorePlan | None = plan_restore(read_parameters(path))
        except MetadataError:
            plan = None
        name = printable(path.name)
        about = f"{name} ({image.width}×{image.height})"
        if plan is not None:
            about += f" carries parameters from {plan.source_name}"
        self._offer_image(image, about, plan, name)
        return True

    def _offer_image(
        self, image: Image.Image, about: str, plan: RestorePlan | None, name: str
    ) -> None:
        actions = []
        if plan is not None:
            actions.append(("Restore parameters", lambda: self.apply_restore(plan, name)))
        uses = [
            ("Image→Image", Mode.IMAGE_TO_IMAGE),
            ("Inpaint", Mode.INPAINT),
            ("Upscale", Mode.UPSCALE),
        ]
        current = self.mode()
        uses.sort(key=lambda use: use[1] is not current)  # the current mode's use first
        for label, mode in uses:
            actions.append((label, lambda m=mode: self.use_as_input(image, m, name)))
        self.banner.offer(f"{about}. Use it for:" if plan is None else f"{about}.", actions)
        self._set_status(f"Opened {about}.")

    def use_as_input(self, image: Image.Image, mode: Mode, name: str = "") -> None:
        """An image becomes the input of a mode: the canvas shows it, and the size keeps the
        model's native area in the image's shape (a photo on a 64-pixel model stays small)."""
        values: dict[str, Any] = {"mode": mode.value}
        if mode is not Mode.UPSCALE:
            native = model_defaults(self.draft["model"])
            side = native.get("width") if native else None
            values["width"], values["height"] = input_size(image.size, side)
        self.draft.apply(values, Source.USER)
        self.canvas.set_image(image)
        self.canvas.fit_to_view()
        self.timeline.clear()
        self._shown_job = None
        what = f"{name} is" if name else "The image is"
        self._set_status(f"{what} the input of {mode.label}.")

    @Slot()
    def open_image_dialog(self) -> None:
        start = self._last_folder or self.controller.output_dir
        path, _ = QFileDialog.getOpenFileName(
            self, "Open an image", str(start), file_dialog_filter()
        )
        if path:
            self.load_image(path)

    @Slot()
    def paste_image(self) -> None:
        clipboard = QGuiApplication.clipboard()
        mime = clipboard.mimeData()
        path = dropped_image_path(mime) if mime is not None else None
        if path is not None:
            self.load_image(path)
            return
        image = clipboard.image()
        if image.isNull():
            self.show_error("The clipboard holds no image.")
            return
        self._on_image_pasted(image)

    @Slot(QImage)
    def _on_image_pasted(self, image: QImage) -> None:
        picture = qimage_to_pil(image).convert("RGB")
        self._offer_image(picture, f"A pasted image ({image.width()}×{image.height()})", None, "")

    def dragEnterEvent(self, event: QDragEnterEvent) -> None:  # noqa: N802 - Qt API
        if dropped_image_path(event.mimeData()) is not None:
            event.acceptProposedAction()

    def dropEvent(self, event: QDropEvent) -> None:  # noqa: N802 - Qt API
        path = dropped_image_path(event.mimeData())
        if path is not None:
            event.acceptProposedAction()
            self.load_image(path)

    # ------------------------------------------------------------------ gallery

    @Slot(object)
    def _on_gallery_selected(self, path: Path | None) -> None:
        # In Text→Image the canvas is only a viewer, so the selection shows there; in the
        # other modes the canvas holds the input, which a click must not replace.
        if path is not None and self.mode() is Mode.TEXT_TO_IMAGE and not self.controller.is_busy:
            self._show_file_in_canvas(path, quiet=True)

    def _show_file_in_canvas(self, path: Path, quiet: bool = False) -> None:
        try:
            image = open_image(path)
        except ImageLoadError as e:
            if not quiet:
                self.show_error(str(e))
            return
        self.canvas.set_image(image)
        self._show_timeline(self.controller.job_that_made(path))

    def _show_timeline(self, record: JobRecord | None) -> None:
        """The steps of a finished job (still in memory) in the timeline, or none."""
        self._shown_job = record.id if record is not None else None
        if record is None or record.result is None:
            self.timeline.clear()
            return
        images = record.result.images
        self.timeline.set_frames(record.frames, pil_to_qimage(images[0]) if images else None)

    @Slot(object)
    def restore_parameters_from(self, path: Path) -> bool:
        try:
            params = read_parameters(path)
        except MetadataError as e:
            self.show_error(str(e))
            return False
        self.apply_restore(plan_restore(params), printable(path.name))
        return True

    def apply_restore(self, plan: RestorePlan, name: str = "") -> Applied:
        """Fill the draft from an image's parameters (the mode and the canvas stay)."""
        applied = self.draft.apply(plan.values, Source.RESTORED)
        what = "all parameters" if plan.complete else "the parameters"
        source = f" from {plan.source_name}" if plan.source != "studio" else ""
        message = f"Restored {what}{source}" + (f" of {name}" if name else "") + "."
        notes = [*plan.notes, *applied.notes]
        if notes:
            message += " " + " ".join(notes)
        self.banner.show_info(message)
        self._set_status(message)
        return applied

    @Slot(object, object)
    def send_to(self, path: Path, mode: Mode) -> None:
        try:
            image = open_image(path)
        except ImageLoadError as e:
            self.show_error(str(e))
            return
        self.use_as_input(image, mode, printable(path.name))

    @Slot(str, bool)
    def _on_gallery_message(self, text: str, is_error: bool) -> None:
        if is_error:
            self.show_error(text)
        else:
            self._set_status(text)

    @Slot(object)
    def _offer_permanent_delete(self, path: Path) -> None:
        self.banner.show_info(
            f"{printable(path.name)} cannot go to the trash on this system.",
            "Delete for good",
            lambda: self.gallery.delete_for_good(path),
        )

    # ------------------------------------------------------------------ models

    def _ask_for_model(self, picker: ModelPicker) -> None:
        dialog = AddModelDialog(self)
        try:
            if dialog.exec() != AddModelDialog.DialogCode.Accepted:
                return
            spec = dialog.spec()
        finally:
            dialog.deleteLater()
        try:
            picker.add_model(spec)
        except ModelError as e:
            self.show_error(str(e))
            return
        self._set_status(f"Added {printable(spec)}; it loads (or downloads) when first used.")

    # ------------------------------------------------------------------ messages

    def show_error(self, message: str) -> None:
        """Errors are one sentence in the window: never a traceback, never a frozen window."""
        self.banner.show_error(message)
        self._set_status(message, error=True)

    def _set_status(self, message: str, error: bool = False) -> None:
        self.engine_label.setText(printable(message))
        self.engine_label.setObjectName("errorStatus" if error else "")
        self.engine_label.style().unpolish(self.engine_label)
        self.engine_label.style().polish(self.engine_label)

    # ------------------------------------------------------------------ settings and dialogs

    def set_theme(self, name: str) -> None:
        app = QApplication.instance()
        if isinstance(app, QApplication):
            apply_theme(app, name)
            icons.refresh_all()
        self.settings.set_theme(name)
        self.theme_actions[name].setChecked(True)

    def open_settings(self) -> None:
        current = StudioSettings(
            self.controller.output_dir, self.settings.engine_settings(), self.settings.theme()
        )
        dialog = SettingsDialog(current, self)
        try:
            if dialog.exec() != SettingsDialog.DialogCode.Accepted:
                return
            chosen = dialog.values()
        finally:
            dialog.deleteLater()
        self.apply_settings(chosen)

    def apply_settings(self, chosen: StudioSettings) -> None:
        """Persist the dialog's choices and apply them: the engine takes new settings between
        jobs (reloading its model only when placement changed), the gallery its folder."""
        self.settings.set_output_dir(chosen.output_dir)
        self.settings.set_engine_settings(chosen.engine)
        self.controller.output_dir = chosen.output_dir
        self.controller.configure(self.settings.engine_settings())
        self.gallery.set_folder(chosen.output_dir)
        if chosen.theme != self.settings.theme():
            self.set_theme(chosen.theme)

    def engine_settings(self) -> EngineSettings:
        return self.settings.engine_settings()

    def show_shortcuts(self) -> None:
        dialog = ShortcutsDialog(self)
        dialog.exec()
        dialog.deleteLater()

    def show_about(self) -> None:
        QMessageBox.about(
            self,
            "About Latent Studio",
            "<b>Latent Studio</b><br>Latent diffusion on your own machine: text→image, "
            "image→image, inpainting and upscaling, with a live view of every step.",
        )

    def _restore_settings(self) -> None:
        geometry = self.settings.geometry()
        if geometry is None or not self.restoreGeometry(geometry):
            self.resize(1280, 800)
        state = self.settings.window_state()
        if state is not None:
            self.restoreState(state)
        else:
            self.resizeDocks(
                [self.controls_dock, self.gallery_dock],
                [LEFT_WIDTH, 300],
                Qt.Orientation.Horizontal,
            )
        self.prompt_panel.set_history(self.settings.prompt_history())
        last = self.settings.last_request()
        if isinstance(last, dict) and last:
            applied = self.draft.apply(last, Source.SESSION)
            for note in applied.notes:
                log.warning("the last session's parameters: %s", note)
        else:  # a first start: the default model's own size, steps, CFG and sampler
            self.draft.apply(model_defaults(self.draft["model"]), Source.MODEL)

    def save_settings(self) -> None:
        self.settings.save_window(self.saveGeometry(), self.saveState())
        self.settings.set_last_request(self.build_request().to_dict())
        self.settings.set_prompt_history(self.prompt_panel.history())
        self.settings.sync()

    def closeEvent(self, event: QCloseEvent) -> None:  # noqa: N802 - Qt API
        """Cancel any job and end the engine thread (within two seconds), then close."""
        try:
            self.save_settings()
        except Exception:  # noqa: BLE001 - settings must never keep the window open
            log.exception("saving the settings failed")
        ended = self.controller.shutdown(2000)
        self.engine_stopped = ended
        self.gallery.shutdown()
        if not ended:
            log.warning("the engine thread was still busy at exit")
        super().closeEvent(event)
