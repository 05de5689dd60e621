"""The studio window: controls on the left, the canvas and its timeline in the centre,
the gallery on the right, engine status and step progress in the status bar.

The window is layout, menus and wiring. The request being edited is the draft
(`core.draft`), which every panel binds to; Generate freezes it with the canvas's image
and mask and hands it to the controller, which runs it on a backend. The window never
touches torch; the engine thread starts only after the window is shown.
"""

from __future__ import annotations

import dataclasses
import logging
from pathlib import Path
from typing import Any

from PySide6.QtCore import QEvent, Qt, Slot
from PySide6.QtGui import (
    QAction,
    QActionGroup,
    QCloseEvent,
    QDragEnterEvent,
    QDropEvent,
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
    QPushButton,
    QScrollArea,
    QSizePolicy,
    QSplitter,
    QTabWidget,
    QVBoxLayout,
    QWidget,
)
from superqt import QCollapsible

from studio.core import loras as lora_files
from studio.core import models_folder
from studio.core.catalog import ModelError, model_defaults, model_family
from studio.core.draft import UPSCALE_METHOD, Draft, Source
from studio.core.imaging import ImageLoadError, file_dialog_filter, open_image
from studio.core.request import GenerationRequest, Mode
from studio.core.saving import folder_problem
from studio.core.settings import EngineSettings
from studio.core.state import notice, take_notices
from studio.core.text import printable
from studio.ui import icons
from studio.ui.backends import Backend, EngineFactory
from studio.ui.banner import Banner
from studio.ui.bind import follow
from studio.ui.canvas import ImageCanvas
from studio.ui.controller import JobController, fraction_or_none
from studio.ui.dialogs import SettingsDialog, ShortcutsDialog, StudioSettings
from studio.ui.gallery import GalleryPanel
from studio.ui.icons import themed_section
from studio.ui.image_input import takes_drop
from studio.ui.intake import Intake, mode_refusal
from studio.ui.job_view import JobView
from studio.ui.live_mode import LiveMode, LiveView
from studio.ui.noising_view import NoisingView
from studio.ui.panels.control_panel import ControlPanel
from studio.ui.panels.guidance_panel import GuidancePanel
from studio.ui.panels.lora_panel import LoraPanel
from studio.ui.panels.mask_bar import MaskBar
from studio.ui.panels.mode_bar import ModeBar
from studio.ui.panels.model_picker import AddModelDialog, ModelPicker
from studio.ui.panels.prompt_panel import PromptPanel
from studio.ui.panels.reference_strip import ReferenceStrip
from studio.ui.queue_view import QueueView
from studio.ui.settings import Settings
from studio.ui.status_bar import StatusLine
from studio.ui.theme import apply_theme
from studio.ui.timeline import Timeline

log = logging.getLogger(__name__)

TITLE = "Latent Studio"
LEFT_WIDTH = 370  # the controls' width on a first start
GALLERY_WIDTH, GALLERY_MIN_WIDTH = 300, 180
CANVAS_MIN_SIZE = (300, 240)
# Docks can be closed (View menu brings them back), moved and floated.
DOCK_FEATURES = (
    QDockWidget.DockWidgetFeature.DockWidgetClosable
    | QDockWidget.DockWidgetFeature.DockWidgetMovable
    | QDockWidget.DockWidgetFeature.DockWidgetFloatable
)
_DESCRIBE = "Describe the image: a large yellow star in the centre…"
_PROMPT_PLACEHOLDERS = {
    Mode.UPSCALE: "Optional: what the enlarged image shows",
    Mode.EDIT: "Say what to change: make the circle blue…",
}


class MainWindow(QMainWindow):
    def __init__(
        self,
        settings: Settings | None = None,
        engine_factory: EngineFactory | None = None,
        parent: QWidget | None = None,
        backend: Backend | None = None,
    ) -> None:
        """`backend`: where jobs run (default: the engine on a local worker thread, built
        by `engine_factory`)."""
        super().__init__(parent)
        self.settings = settings or Settings()
        models_folder.use(self.settings.models_dir(), "setting")  # before any picker lists
        lora_files.use_lora_dir(self.settings.lora_dir())
        self.setWindowTitle(TITLE)
        self.setWindowIcon(icons.app_icon())
        self.setAcceptDrops(True)
        self.setDockOptions(QMainWindow.DockOption.AnimatedDocks)
        self.draft = Draft()
        if backend is None and self.settings.backend() == "ray":
            backend = self._ray_backend(self.settings.ray_address())
        self.controller = JobController(
            self.settings.output_dir(),
            self.settings.engine_settings(),
            engine_factory,
            self,
            backend=backend,
        )
        self.controller.save_as = self.settings.save_format()
        self.engine_stopped = True  # False if the engine thread outlived closing

        self._build_centre()
        self._build_controls()
        self._build_gallery()
        self.status = StatusLine(self.statusBar())
        self._build_actions()
        self.jobs = JobView(
            self.controller,
            self.draft,
            self.canvas,
            self.timeline,
            self.gallery,
            self.status,
            self.show_error,
            (self.cancel_button, self.cancel_action),
        )
        self.intake = Intake(
            self.draft,
            self.canvas,
            self.banner,
            self.status.say,
            self.show_error,
            lambda: self.jobs.show_timeline(None),
            lambda spec: self._ask_for_model(self.model_picker, spec),
            self,
            rebuild=self.rebuild_branch,
            restore_controls=lambda units: self.controlnet.restore(units),
        )
        self.live = LiveMode(
            self.draft,
            self.controller,
            self.build_request,
            self.live_view,
            [self.canvas.maskChanged, self.canvas.controlChanged],
            self,
        )
        self.live_button.toggled.connect(self.live.set_enabled)
        self._connect()
        self._restore_settings()
        self._show_family()
        self._leave_a_mode_the_model_lacks()  # the last session's, with its model
        self._show_mode(self.draft.mode)
        self.prompt_panel.prompt_edit.setFocus()
        notices = take_notices()  # broken state set aside at start: said once
        # an unplugged drive; not the setting's when --models-dir chose another folder
        over = models_folder.chosen_over_setting()
        missing = "" if over is not None else models_folder_note(self.settings.models_dir())
        if missing:
            notices.append(missing)
        if notices:
            self.banner.show_info(" ".join(notices))  # ready to type a prompt at once

    # ------------------------------------------------------------------ building

    def _build_centre(self) -> None:
        self.banner = Banner()
        self.canvas = ImageCanvas()
        self.canvas.setSizePolicy(QSizePolicy.Policy.Expanding, QSizePolicy.Policy.Expanding)
        # The canvas has priority: a small window narrows the docks before the picture.
        self.canvas.setMinimumSize(*CANVAS_MIN_SIZE)
        self.timeline = Timeline()
        self.mask_bar = MaskBar(self.canvas)
        self.references = ReferenceStrip()
        centre = QWidget()
        layout = QVBoxLayout(centre)
        layout.setContentsMargins(6, 6, 6, 4)
        layout.setSpacing(4)
        layout.addWidget(self.banner)
        layout.addWidget(self.mask_bar)
        layout.addWidget(self.references)
        # live mode's picture beside the canvas, so the brush stays on the canvas
        self.live_view = LiveView()
        self.live_view.hide()
        self.canvas_row = QSplitter(Qt.Orientation.Horizontal)
        self.canvas_row.addWidget(self.canvas)
        self.canvas_row.addWidget(self.live_view)
        self.canvas_row.setChildrenCollapsible(False)
        layout.addWidget(self.canvas_row, 1)
        layout.addWidget(self.timeline)
        self.setCentralWidget(centre)

    def _build_addons(self) -> QCollapsible:
        """LoRAs and ControlNet under one folded header (a row each would push the controls
        past a laptop's height), a tab each."""
        self.addons = QCollapsible("LoRAs · ControlNet")
        self.addons.setDuration(0)
        themed_section(self.addons)
        self.addon_tabs = QTabWidget()
        self.addon_tabs.addTab(self.loras, self.loras.text())
        self.addon_tabs.addTab(self.controlnet, self.controlnet.text())

        def retitle(_title: str = "") -> None:
            self.addon_tabs.setTabText(0, self.loras.text())
            self.addon_tabs.setTabText(1, self.controlnet.text())
            self.addons.setText(f"{self.loras.text()} · {self.controlnet.text()}")

        self.loras.titleChanged.connect(retitle)
        self.controlnet.titleChanged.connect(retitle)
        retitle()
        self.addons.addWidget(self.addon_tabs)
        return self.addons

    def _build_controls(self) -> None:
        self.mode_bar = ModeBar()
        self.mode_bar.bind(self.draft)
        self.model_picker = ModelPicker("generator")
        self.model_picker.bind(self.draft, "model")
        # the Upscale mode's model is the upscaler: one picker shows, the mode's own
        self.upscaler_picker = ModelPicker("upscaler")
        self.upscaler_picker.bind(self.draft, "upscale_model")
        self.prompt_panel = PromptPanel(self.draft)
        self.generate_button = QPushButton("Generate")
        self.generate_button.setObjectName("generateButton")
        self.generate_button.setToolTip("Generate (Ctrl+Enter); queues another job while one runs")
        self.cancel_button = QPushButton("Cancel")
        self.cancel_button.setToolTip("Cancel the current job (Esc)")
        self.live_button = QPushButton("Live")
        self.live_button.setCheckable(True)
        self.live_button.setToolTip(
            "Live mode (Ctrl+L): every change — a word, a slider, a brush stroke — makes a new "
            "few-step picture at once, beside the canvas, with a fixed seed; nothing is saved"
        )
        self.queue = QueueView(self.controller)
        self.guidance = GuidancePanel(self.draft)
        self.noising = NoisingView(
            lambda: self.controller.backend, self.build_request, self.canvas.image, self.canvas
        )
        self.loras = LoraPanel(self.draft)
        self.controlnet = ControlPanel(self.canvas)

        buttons = QHBoxLayout()
        buttons.addWidget(self.generate_button, 2)
        buttons.addWidget(self.cancel_button, 1)
        buttons.addWidget(self.live_button, 1)
        model_title = QLabel("Model")
        model_title.setObjectName("sectionTitle")

        panel = QWidget()
        layout = QVBoxLayout(panel)
        layout.setContentsMargins(8, 6, 8, 6)
        layout.setSpacing(4)
        layout.addWidget(self.mode_bar)
        layout.addWidget(model_title)
        layout.addWidget(self.model_picker)
        layout.addWidget(self.upscaler_picker)
        layout.addWidget(self.prompt_panel, 1)  # the prompt box takes the spare height
        layout.addLayout(buttons)
        layout.addWidget(self.queue)
        layout.addWidget(self.guidance)
        layout.addWidget(self._build_addons())

        scroll = QScrollArea()
        scroll.setWidget(panel)
        scroll.setWidgetResizable(True)
        scroll.setHorizontalScrollBarPolicy(Qt.ScrollBarPolicy.ScrollBarAlwaysOff)
        scroll.setFrameShape(QScrollArea.Shape.NoFrame)
        # Room for the panel's narrowest layout and a scroll bar, so nothing is clipped
        # when a small window makes the column scroll.
        scrollbar = scroll.verticalScrollBar().sizeHint().width()
        scroll.setMinimumWidth(panel.minimumSizeHint().width() + scrollbar)
        self.controls_dock = QDockWidget("Controls", self)
        self.controls_dock.setObjectName("controlsDock")
        self.controls_dock.setWidget(scroll)
        self.controls_dock.setFeatures(DOCK_FEATURES)
        self.addDockWidget(Qt.DockWidgetArea.LeftDockWidgetArea, self.controls_dock)

    def _build_gallery(self) -> None:
        self.gallery = GalleryPanel(self.controller.output_dir)
        self.controller.outputDirChanged.connect(self.gallery.set_folder)
        self.gallery_dock = QDockWidget("Gallery", self)
        self.gallery_dock.setObjectName("galleryDock")
        self.gallery_dock.setWidget(self.gallery)
        # the panel's own minimum would win over the dock's: narrow windows narrow it
        self.gallery.setMinimumWidth(GALLERY_MIN_WIDTH)
        self.gallery_dock.setMinimumWidth(GALLERY_MIN_WIDTH)
        self.gallery_dock.setFeatures(DOCK_FEATURES)
        self.addDockWidget(Qt.DockWidgetArea.RightDockWidgetArea, self.gallery_dock)

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
        self.save_as_action = self._action(
            file_menu,
            "&Save image as…",
            lambda: self.jobs.ask_where_to_save(),
            QKeySequence.StandardKey.SaveAs,
            tip="The picture shown, with its parameters, where you choose",
        )
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
        self.mode_actions = {
            mode: self._action(
                image_menu, mode.label, lambda _=False, m=mode: self.set_mode(m), f"Ctrl+{index}"
            )
            for index, mode in enumerate(Mode, start=1)
        }
        self._action(image_menu, "&Live mode", lambda: self.live_button.toggle(), "Ctrl+L")
        image_menu.addSeparator()
        self._action(
            image_menu,
            "&Forward process…",
            self.noising.open_scrubber,
            tip="The canvas image dissolving into noise, step by step: what each strength "
            "starts from",
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
        self.controller.engineStatus.connect(self._on_engine_status)
        self.controller.engineReady.connect(self._on_engine_ready)
        follow(self.draft.changed, self, self._on_draft_changed)
        follow(self.draft.defaultsApplied, self, self._announce_defaults)

        self.generate_button.clicked.connect(self.generate)
        self.timeline.continueRequested.connect(self.continue_from_step)
        follow(self.draft.changed, self, self._refresh_noising)
        self.controller.jobStarted.connect(lambda _job: self.noising.dismiss())
        self.cancel_button.clicked.connect(self.cancel)
        self.references.problem.connect(self.status.say)
        self.controlnet.problem.connect(self.status.say)
        self.model_picker.addRequested.connect(lambda: self._ask_for_model(self.model_picker))
        self.upscaler_picker.addRequested.connect(lambda: self._ask_for_model(self.upscaler_picker))
        self.guidance.upscale_model.addRequested.connect(
            lambda: self._ask_for_model(self.guidance.upscale_model)
        )
        self.canvas.imageDropped.connect(self.intake.open_file)
        self.canvas.imagePasted.connect(self.intake.take_pixels)
        self.canvas.dropRefused.connect(self.show_error)

        self.gallery.selected.connect(self._on_gallery_selected)
        self.gallery.activated.connect(self._show_file_in_canvas)
        self.gallery.restoreRequested.connect(self.intake.restore_from)
        self.gallery.sendRequested.connect(self.intake.send)
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
        self.status.say(f"Loading {model}…" if model else "Loading the engine…")

    @Slot(str, float)
    def _on_engine_status(self, message: str, fraction: float) -> None:
        self.status.say(message)
        if not self.controller.is_busy:
            self.status.fraction(fraction_or_none(fraction))

    @Slot(str)
    def _on_engine_ready(self, summary: str) -> None:
        if not self.controller.is_busy:
            self.status.say(summary)
            self.status.finished()

    # ------------------------------------------------------------------ generation

    def mode(self) -> Mode:
        return self.draft.mode

    def set_mode(self, mode: Mode) -> None:
        """Switch to `mode`, unless the model has no pipeline for it (Ctrl+2 on Flux.2
        Klein): then say so, and stay."""
        mode = Mode(mode)
        if why := mode_refusal(str(self.draft["model"]), mode):
            self.status.say(why)
            return
        self.draft.set("mode", mode.value)

    def build_request(self) -> GenerationRequest:
        """The draft frozen with the canvas's image and mask (the mode takes what it uses)."""
        return self.draft.freeze(
            self.canvas.image(),
            self.canvas.mask(),
            references=self.references.images(),
            controls=self.controlnet.controls(),
        )

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
        self.settings.set_last_request(self.draft.values())
        return self.controller.submit(request)

    def _refresh_noising(self, values: dict[str, Any], source: Source) -> None:
        """While the artist moves the strength slider, the canvas shows what it means; not
        while a job runs, which the answer would wait for and then cover."""
        wanted = "strength" in values and source is Source.USER and self.draft.mode.uses_strength
        if wanted and not self.controller.is_busy:
            self.noising.refresh()

    @Slot(int)
    def continue_from_step(self, index: int) -> int | None:
        """A branch of the job the timeline shows, from its frame `index`, with the panel's
        changes; returns its id, or None with a message."""
        job = self.jobs.shown_job
        if job is None:
            return None
        vary = self.timeline.vary.value() / 100
        job_id, note = self.controller.continue_job(job, index, self.build_request(), vary)
        if job_id is None:
            self.show_error(note)
        elif note:
            self.banner.show_info(note)  # stays while the branch runs, unlike the status line
        return job_id

    def rebuild_branch(self, recorded: dict[str, Any]) -> int | None:
        """Run a restored branch's own record again (its parent rebuilt from it), with the
        canvas's image, mask and control images as its inputs; returns the job's id."""
        mode = Mode(recorded.get("mode", self.draft.mode.value))
        controls = self.controlnet.controls()
        request = GenerationRequest.from_dict(
            recorded,
            init_image=self.canvas.image() if mode.needs_image else None,
            mask=self.canvas.mask() if mode is Mode.INPAINT else None,
        )
        if request.controls:  # the record keeps their settings, the canvas their images
            images = [c.image for c in controls]
            request = request.replace(
                controls=tuple(
                    dataclasses.replace(c, image=images[n] if n < len(images) else None)
                    for n, c in enumerate(request.controls)
                )
            )
        problems = request.problems()
        if problems:
            self.show_error(problems[0])
            return None
        return self.controller.submit(request)

    @Slot()
    def cancel(self) -> None:
        if self.controller.cancel():
            self.status.say("Cancelled.")

    # ------------------------------------------------------------------ the draft

    def _on_draft_changed(self, values: dict[str, Any], _source: Source) -> None:
        if "model" in values:
            self._show_family()
            self._leave_a_mode_the_model_lacks()
        if {"mode", "model", UPSCALE_METHOD} & values.keys():
            self._show_mode(self.draft.mode)
        if "mode" in values and "model" not in values:  # a new model: _show_family told it
            self.controlnet.set_mode(self.draft.mode)

    def _show_family(self) -> None:
        self.controlnet.set_generator(str(self.draft["model"]), self.draft.mode)
        family = model_family(str(self.draft["model"]))
        label = family.label if family else ""
        self.references.set_limit(family.edit_references if family else 0, label)
        for mode, action in self.mode_actions.items():
            action.setEnabled(family is None or family.offers(mode.value))

    def _leave_a_mode_the_model_lacks(self) -> None:
        """A model picked with no pipeline for the mode in use (Flux.2 Klein in
        Image→Image) leaves it for Text→Image, or the model's first mode, and says so:
        the window would stay on a greyed mode that Generate refuses."""
        family = model_family(str(self.draft["model"]))
        mode = self.draft.mode
        if family is None or family.offers(mode.value):
            return
        text = Mode.TEXT_TO_IMAGE.value
        switched = Mode(text if family.offers(text) else family.modes[0])
        self.draft.set("mode", switched.value, Source.MODEL)
        self.banner.show_info(
            f"{family.label} models have no {mode.label} mode: switched to {switched.label}."
        )

    def _show_mode(self, mode: Mode) -> None:
        # the model that will run: the ×4 upscaler, or the generator (the hires fix)
        upscaler = self.guidance.upscaler_runs_its_own_settings()
        self.model_picker.setVisible(not upscaler)
        self.upscaler_picker.setVisible(upscaler)
        inpaint = mode is Mode.INPAINT
        self.canvas.set_mask_editing(inpaint)
        self.mask_bar.setVisible(inpaint)
        self.references.setVisible(mode is Mode.EDIT and self.references.limit > 0)
        for action in self.mask_actions:
            action.setEnabled(inpaint)
        self.generate_button.setText("Upscale" if mode is Mode.UPSCALE else "Generate")
        self.prompt_panel.prompt_edit.setPlaceholderText(_PROMPT_PLACEHOLDERS.get(mode, _DESCRIBE))

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
        self.status.say(f"Using {printable(name)}'s defaults: {', '.join(parts)}.")

    # ------------------------------------------------------------------ images in

    def load_image(self, path: str | Path) -> bool:
        """Open an image and offer what to do with it (nothing changes until one is picked)."""
        return self.intake.open_file(path)

    def restore_parameters_from(self, path: Path) -> None:
        self.intake.restore_from(path)

    @Slot()
    def paste_image(self) -> None:
        self.intake.paste()

    @Slot()
    def open_image_dialog(self) -> None:
        start = self.settings.open_folder() or self.controller.output_dir
        path, _ = QFileDialog.getOpenFileName(
            self, "Open an image", str(start), file_dialog_filter()
        )
        if path:
            self.settings.set_open_folder(Path(path).parent)
            self.intake.open_file(path)

    def dragEnterEvent(self, event: QDragEnterEvent) -> None:  # noqa: N802 - Qt API
        if takes_drop(event.mimeData()):
            event.acceptProposedAction()

    def dropEvent(self, event: QDropEvent) -> None:  # noqa: N802 - Qt API
        if self.intake.take_mime(event.mimeData()):
            event.acceptProposedAction()

    # ------------------------------------------------------------------ gallery

    @Slot(object)
    def _on_gallery_selected(self, path: Path | None) -> None:
        # In Text→Image the canvas is only a viewer, so the selection shows there; in the
        # other modes the canvas holds the input, which a click must not replace.
        if path is not None and self.mode() is Mode.TEXT_TO_IMAGE and not self.controller.is_busy:
            self._show_file_in_canvas(path, quiet=True)

    def _show_file_in_canvas(self, path: Path, quiet: bool = False) -> None:
        """`quiet`: the canvas is a viewer of the gallery's selection (Text→Image), which
        an unreadable or vanished file empties (the panel beside it says why) rather than
        leave another picture there as if it were this one."""
        try:
            image = open_image(path)
        except ImageLoadError as e:
            if quiet:
                self.canvas.set_image(None)
                self.jobs.show_timeline(None)
            else:
                self.show_error(str(e))
            return
        self.canvas.set_image(image)
        self.jobs.show_timeline(self.controller.job_that_made(path))

    @Slot(str, bool)
    def _on_gallery_message(self, text: str, is_error: bool) -> None:
        if is_error:
            self.show_error(text)
        else:
            self.status.say(text)

    @Slot(object)
    def _offer_permanent_delete(self, path: Path) -> None:
        self.banner.show_info(
            f"{printable(path.name)} cannot go to the trash on this system.",
            "Delete for good",
            lambda: self.gallery.delete_for_good(path),
        )

    # ------------------------------------------------------------------ models

    def _ask_for_model(self, picker: ModelPicker, spec: str = "") -> None:
        dialog = AddModelDialog(self)
        dialog.spec_edit.setText(spec)
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
        self.status.say(f"Added {printable(spec)}; it loads (or downloads) when first used.")

    # ------------------------------------------------------------------ messages

    def show_error(self, message: str) -> None:
        """Errors are one sentence in the window: never a traceback, never a frozen window."""
        self.banner.show_error(message)
        self.status.say(message, error=True)

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
            self.controller.output_dir,
            self.settings.engine_settings(),
            self.settings.theme(),
            self.settings.save_format(),
            self.settings.models_dir(),
            self.settings.lora_dir(),
            self.settings.backend(),
            self.settings.ray_address(),
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
        changed = chosen.output_dir != self.controller.output_dir
        if changed and (problem := folder_problem(chosen.output_dir)):
            kept = self.controller.output_dir
            self.show_error(
                f"The output folder {problem}: images are still saved in '{printable(str(kept))}'."
            )
            chosen = dataclasses.replace(chosen, output_dir=kept)
        self.settings.set_output_dir(chosen.output_dir)
        self.settings.set_engine_settings(chosen.engine)
        self.settings.set_save_format(chosen.save_as)
        if chosen.models_dir != self.settings.models_dir():
            self.settings.set_models_dir(chosen.models_dir)
            models_folder.use(chosen.models_dir, "setting")
            self.model_picker.reload()
            self.loras.reload()
            note = models_folder_note(chosen.models_dir, scan=True)
            if note:  # a typo, or the folder one level off: not an empty list and silence
                self.show_error(note)
        if chosen.lora_dir != self.settings.lora_dir():
            self.settings.set_lora_dir(chosen.lora_dir)
            lora_files.use_lora_dir(chosen.lora_dir)
            self.loras.reload()
        self.controller.save_as = chosen.save_as
        self.controller.set_output_dir(chosen.output_dir)  # the gallery follows
        self.controller.configure(self.settings.engine_settings())
        wanted = (chosen.backend, chosen.ray_address)
        if wanted != (self.settings.backend(), self.settings.ray_address()):
            self.settings.set_backend(*wanted)
            self.use_backend(chosen.backend, chosen.ray_address)
        if chosen.theme != self.settings.theme():
            self.set_theme(chosen.theme)

    def use_backend(self, kind: str, address: str = "auto") -> bool:
        """Run the next jobs on this machine ("local") or a Ray cluster ("ray"); while jobs
        run or wait, the change waits for the next start (and the status line says so)."""
        from studio.ui.backends import LocalBackend

        if self.controller.is_busy or self.controller.queued_jobs:
            self.status.say("The new backend is used from the next start: jobs are running.")
            return False
        settings = self.settings.engine_settings()
        backend = self._ray_backend(address) if kind == "ray" else LocalBackend(settings)
        return self.controller.replace_backend(backend)

    def _ray_backend(self, address: str) -> Backend:
        """The Ray backend (no Ray is imported before it starts: it connects on a thread)."""
        from studio.ui.backends.ray import RayBackend

        return RayBackend(address, self.settings.engine_settings())

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
                [LEFT_WIDTH, GALLERY_WIDTH],
                Qt.Orientation.Horizontal,
            )
        self.prompt_panel.set_history(self.settings.prompt_history())
        last = self.settings.last_request()
        if isinstance(last, dict) and last:
            applied = self.draft.apply(last, Source.SESSION)
            for note in applied.notes:
                notice(f"The last session's parameters: {note}")
        else:  # a first start: the default model's own size, steps, CFG and sampler
            self.draft.apply(model_defaults(self.draft["model"]), Source.MODEL)

    def save_settings(self) -> None:
        self.settings.save_window(self.saveGeometry(), self.saveState())
        self.settings.set_last_request(self.draft.values())  # both upscaler choices
        self.settings.set_prompt_history(self.prompt_panel.history())
        self.settings.sync()

    def confirm_dropping_jobs(self, count: int) -> bool:
        """Ask before closing drops jobs that have not started (they cannot be resumed)."""
        jobs = "1 job is" if count == 1 else f"{count} jobs are"
        answer = QMessageBox.question(
            self,
            "Jobs are waiting",
            f"{jobs} waiting to run. Quit and drop them?",
            QMessageBox.StandardButton.Discard | QMessageBox.StandardButton.Cancel,
            QMessageBox.StandardButton.Cancel,
        )
        return answer == QMessageBox.StandardButton.Discard

    def changeEvent(self, event: QEvent) -> None:  # noqa: N802 - Qt API
        # back from the command line or a file manager: the gallery reads its folder again
        if event.type() == QEvent.Type.ActivationChange and self.isActiveWindow():
            self.gallery.sync()
        super().changeEvent(event)

    def closeEvent(self, event: QCloseEvent) -> None:  # noqa: N802 - Qt API
        """Cancel any job and end the engine thread (within two seconds), then close."""
        waiting = len(self.controller.queued_jobs)
        if waiting and not self.confirm_dropping_jobs(waiting):
            event.ignore()
            return
        try:
            self.save_settings()
        except Exception:  # noqa: BLE001 - settings must never keep the window open
            log.exception("saving the settings failed")
        ended = self.controller.shutdown(2000)
        self.engine_stopped = ended
        self.gallery.shutdown()
        self.intake.reader.shutdown()
        for picker in (self.model_picker, self.upscaler_picker, self.guidance.upscale_model):
            picker.shutdown()
        if not ended:
            log.warning("the engine thread was still busy at exit")
        super().closeEvent(event)


def models_folder_note(folder: Path | None, scan: bool = False) -> str:
    """A sentence when the models folder setting lists nothing: the folder is not there, or
    (with `scan`) it holds no model where AUTOMATIC1111, Forge and ComfyUI keep them."""
    if folder is None:
        return ""
    shown = printable(str(folder))
    if folder.exists() and not folder.is_dir():
        return f"The models folder '{shown}' is a file, not a folder: its models are not listed."
    if not folder.is_dir():
        return (
            f"The models folder '{shown}' is not there (moved, or on a drive not plugged in): "
            "its models are not listed."
        )
    if scan and not models_folder.scan(folder).checkpoints:
        return (
            f"No models were found in '{shown}': the studio looks in its "
            "models/Stable-diffusion, models/checkpoints, diffusion_models, unet or diffusers "
            "folders, as AUTOMATIC1111, Forge and ComfyUI keep them."
        )
    return ""
