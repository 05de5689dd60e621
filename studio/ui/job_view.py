"""What the window shows of jobs: the live preview on the canvas, progress in the status
line, the timeline of a finished job, the gallery's new files and the Cancel
button. It follows the controller's signals; the controller has already dropped every late
signal of a job that is no longer current.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

from PySide6.QtCore import QObject, Slot
from PySide6.QtGui import QAction
from PySide6.QtWidgets import QFileDialog, QPushButton

from studio.core.animation import write_animation
from studio.core.draft import Draft
from studio.core.errors import UserError
from studio.core.formats import SaveFormat
from studio.core.jobs import GenerationResult, JobRecord, StepProgress
from studio.core.request import Mode
from studio.core.saving import default_stem, save_image
from studio.core.text import os_reason, printable
from studio.ui.canvas import ImageCanvas
from studio.ui.controller import JobController
from studio.ui.gallery import GalleryPanel
from studio.ui.qt_images import pil_to_qimage
from studio.ui.status_bar import StatusLine
from studio.ui.timeline import Timeline


class JobView(QObject):
    def __init__(
        self,
        controller: JobController,
        draft: Draft,
        canvas: ImageCanvas,
        timeline: Timeline,
        gallery: GalleryPanel,
        status: StatusLine,
        show_error: Callable[[str], None],
        cancel_controls: tuple[QPushButton, QAction],
    ) -> None:
        super().__init__(controller)
        self.controller = controller
        self.draft = draft
        self.canvas = canvas
        self.timeline = timeline
        self.gallery = gallery
        self.status = status
        self.show_error = show_error
        self.cancel_controls = cancel_controls
        self.shown_job: int | None = None  # the job whose steps the canvas and timeline show
        self._place = ""  # where the current job runs, said again at its first step

        controller.jobStarted.connect(self._on_started)
        controller.jobPlaced.connect(self._on_placed)
        controller.progress.connect(self._on_progress)
        controller.jobFinished.connect(self._on_finished)
        controller.jobFailed.connect(self._on_failed)
        controller.jobCancelled.connect(self._on_cancelled)
        controller.busyChanged.connect(self._set_busy)
        timeline.frameChosen.connect(self._on_frame_chosen)
        timeline.exportRequested.connect(self._ask_where_to_export)
        self._set_busy(False)

    def show_timeline(self, record: JobRecord | None) -> None:
        """The steps of a finished job (still in memory) in the timeline, or none."""
        self.shown_job = record.id if record is not None else None
        if record is None or record.result is None:
            self.timeline.clear()
            return
        images = record.result.images
        result = pil_to_qimage(images[0]) if images else None
        self.timeline.set_frames(
            record.timeline(),
            result,
            shared=len(record.shared),
            steps_kept=self.controller.steps_kept(record.id),
        )
        self.timeline.set_can_continue(False)  # the result is chosen, not a step

    def _is_live(self, job_id: int) -> bool:
        """A live mode draft: live_mode.LiveView shows it; the canvas and timeline stay."""
        record = self.controller.job(job_id)
        return record is not None and record.live

    @Slot(int)
    def _on_started(self, job_id: int) -> None:
        if self._is_live(job_id):
            self.status.started()
            return
        self.shown_job = job_id
        self._place = ""
        self.timeline.clear("Generating…")
        self.status.started()
        record = self.controller.job(job_id)
        upscaling = record is not None and record.request.mode is Mode.UPSCALE
        self.status.say("Upscaling…" if upscaling else "Generating…")

    @Slot(int, str)
    def _on_placed(self, job_id: int, where: str) -> None:
        record = self.controller.job(job_id)
        upscaling = record is not None and record.request.mode is Mode.UPSCALE
        self._place = f"{'Upscaling' if upscaling else 'Generating'} on {where}…"
        self.status.say(self._place)  # the engine's loading lines may follow: said again

    @Slot(int, object)
    def _on_progress(self, job_id: int, progress: StepProgress) -> None:
        self.status.stepped(progress)
        if self._is_live(job_id):
            return
        if self._place:
            self.status.say(self._place)
            self._place = ""
        if progress.preview is not None:
            record = self.controller.job(job_id)
            size = None
            if record is not None and progress.stage == "generate":
                size = (record.request.width, record.request.height)
            self.canvas.show_preview(progress.preview, size)

    @Slot(int, object)
    def _on_finished(self, job_id: int, result: GenerationResult) -> None:
        shown = self.controller.job(self.shown_job) if self.shown_job is not None else None
        if shown is not None and shown.id != job_id and shown.result is not None:
            # the new job's steps may have pushed the shown job's out of the engine's memory
            self.timeline.set_steps_kept(self.controller.steps_kept(shown.id))
        if self._is_live(job_id):
            self._finish()
            return
        self.canvas.clear_preview()
        if result.images:
            # the canvas shows the result (the mask of a same-size image stays, to repaint)
            self.canvas.set_image(result.images[0])
            if result.request.mode is Mode.INPAINT:
                self.canvas.set_mask_shown(False)  # the artist wants to see what changed
        self.gallery.add(result.paths)
        self.show_timeline(self.controller.job(job_id))
        self.draft.set_last_seed(result.request.seed)
        seconds = result.timings.get("total")
        took = f" in {seconds:.1f} s" if seconds else ""
        if result.unsaved:  # shown and exportable, not lost: said where it could not go
            self.show_error(result.unsaved)
            self.status.say(f"Done{took} · not saved")
            self._finish()
            return
        names = result.paths[0].name if len(result.paths) == 1 else f"{len(result.paths)} images"
        folder = result.paths[0].parent if result.paths else None
        if folder is not None and folder != self.controller.output_dir:
            # a job that started before the output folder changed: not where the gallery says
            names += f" in {folder}"
        self.status.say(f"Done{took} · saved {names}")
        self._finish()

    @Slot(int, str)
    def _on_failed(self, job_id: int, message: str) -> None:
        if self._is_live(job_id):  # said in the live view
            self._finish()
            return
        self.canvas.clear_preview()
        self.timeline.clear()
        self.show_error(message)
        self._finish()

    @Slot(int)
    def _on_cancelled(self, job_id: int) -> None:
        if self._is_live(job_id):  # replaced by a newer live draft: nothing to say
            return
        if job_id == self.shown_job:
            self.canvas.clear_preview()
            self.timeline.clear("Cancelled")
            self._finish()
        self.status.say("Cancelled.")

    @Slot(int)
    def _on_frame_chosen(self, index: int) -> None:
        record = self.controller.job(self.shown_job) if self.shown_job else None
        frames = record.timeline() if record is not None else []
        self.timeline.set_can_continue(
            record is not None and record.branchable_step(index) is not None
        )
        if record is None or index >= len(frames):
            self.canvas.clear_preview()  # the last position is the result itself
        else:
            self.canvas.show_preview(frames[index].preview)

    def export_steps(self, path: Path) -> Path | None:
        """The shown job's steps and result as an animation at `path` (.webp or .gif)."""
        record = self.controller.job(self.shown_job) if self.shown_job else None
        if record is None or record.result is None or not record.result.images:
            return None
        previews = [frame.preview for frame in record.timeline() if frame.stage == "generate"]
        try:
            written = write_animation(previews, record.result.images[0], path)
        except UserError as e:
            self.show_error(str(e))
            return None
        except OSError as e:
            self.show_error(f"{printable(path.name)} could not be saved ({os_reason(e)}).")
            return None
        self.status.say(f"Saved the steps as {written.name}.")
        return written

    def save_result_as(self, path: Path) -> Path | None:
        """The shown job's picture, with its parameters, at `path` (.png, .jpg or .webp),
        replacing a file there (the dialog asked): a result the output folder could not
        take is saved this way."""
        record = self.controller.job(self.shown_job) if self.shown_job else None
        if record is None or record.result is None or not record.result.images:
            self.show_error("No generated picture is shown: generate one, then save it.")
            return None
        save_as = SaveFormat.for_suffix(path.suffix)
        if save_as is None:
            self.show_error(f"{printable(path.name)}: save as .png, .jpg or .webp.")
            return None
        result = record.result
        # of a batch, the picture the gallery has selected (the canvas shows it), else the first
        selected = self.gallery.selected_path()
        index = result.paths.index(selected) if selected in result.paths else 0
        seed = result.seeds[min(index, len(result.seeds) - 1)]
        try:
            written = save_image(
                result.images[index], result.request, seed, path.parent, path.stem,
                overwrite=True, stages=result.stages, save_as=save_as,
            )  # fmt: skip
        except OSError as e:
            self.show_error(f"{printable(path.name)} could not be saved ({os_reason(e)}).")
            return None
        self.status.say(f"Saved {written.name}.")
        return written

    def ask_where_to_save(self) -> None:
        record = self.controller.job(self.shown_job) if self.shown_job else None
        if record is None or record.result is None or not record.result.images:
            self.show_error("No generated picture is shown: generate one, then save it.")
            return
        path, _ = QFileDialog.getSaveFileName(
            self.canvas.window(),
            "Save the picture",
            str(self._suggested(record, ".png")),
            "PNG (*.png);;JPEG (*.jpg *.jpeg);;WebP (*.webp)",
        )
        if path:
            self.save_result_as(Path(path))

    def _suggested(self, record: JobRecord, suffix: str) -> Path:
        """Where a save or export dialog starts: beside the job's file, or in the output
        folder when it has none (it could not be saved)."""
        result = record.result
        assert result is not None
        if result.paths:
            return result.paths[0].with_suffix(suffix)
        folder = self.controller.output_dir
        folder = folder if folder.is_dir() else Path.home()
        return folder / f"{default_stem(result.request, result.seeds[0])}{suffix}"

    def _ask_where_to_export(self) -> None:
        record = self.controller.job(self.shown_job) if self.shown_job else None
        if record is None or not record.result or not record.result.images:
            return
        chosen = self._suggested(record, ".webp")
        suggested = chosen.with_name(chosen.stem + "-steps.webp")
        path, _ = QFileDialog.getSaveFileName(
            self.canvas.window(),
            "Export the steps",
            str(suggested),
            "Animated WebP (*.webp);;Animated GIF (*.gif)",
        )
        if path:
            self.export_steps(Path(path))

    def _finish(self) -> None:
        if not self.controller.is_busy:  # another engine's job may still be running
            self.status.finished()

    @Slot(bool)
    def _set_busy(self, busy: bool) -> None:
        for control in self.cancel_controls:
            control.setEnabled(busy)
