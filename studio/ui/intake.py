"""Pictures and parameters coming in: opened, pasted or dropped files, the gallery's "send
to" and "restore". Opening changes nothing by itself: the banner offers what to do with
the picture (restore its parameters, use it for Image→Image, Inpaint or Upscale), and only
the artist's pick touches the draft or the canvas.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

from PIL import Image
from PySide6.QtCore import QMimeData, QObject
from PySide6.QtGui import QGuiApplication, QImage

from studio.core.catalog import ModelError, model_defaults, model_family, resolve
from studio.core.draft import Applied, Draft, Source
from studio.core.imaging import ImageLoadError, input_size, open_image
from studio.core.request import Mode
from studio.core.restore import RestorePlan, carried_prompt, plan_restore
from studio.core.text import printable
from studio.metadata import ImageParameters
from studio.ui.banner import Banner
from studio.ui.canvas import ImageCanvas
from studio.ui.image_input import dropped_image_path, dropped_pixels, refusal
from studio.ui.parameter_reader import ParameterReader
from studio.ui.qt_images import qimage_to_pil

_USES = (
    ("Image→Image", Mode.IMAGE_TO_IMAGE),
    ("Inpaint", Mode.INPAINT),
    ("Edit", Mode.EDIT),
    ("Upscale", Mode.UPSCALE),
)


def mode_refusal(model: str, mode: Mode) -> str:
    """Why `mode` cannot be used with `model` (its family has no pipeline for it), or ""."""
    family = model_family(model)
    if family is None or family.offers(mode.value):
        return ""
    return f"{family.label} models have no {mode.label} mode."


class Intake(QObject):
    def __init__(
        self,
        draft: Draft,
        canvas: ImageCanvas,
        banner: Banner,
        say: Callable[[str], None],
        show_error: Callable[[str], None],
        input_changed: Callable[[], None],
        add_model: Callable[[str], None],
        parent: QObject | None = None,
        rebuild: Callable[[dict[str, Any]], Any] | None = None,
        restore_controls: Callable[[list[dict[str, Any]]], None] | None = None,
    ) -> None:
        """`say` puts a line in the status bar; `input_changed` is called when the canvas
        gets a new input (the window clears the timeline of the picture it replaced);
        `add_model` asks the artist to add a model (a restored file's, on request)."""
        super().__init__(parent)
        self.draft = draft
        self.canvas = canvas
        self.banner = banner
        self.say = say
        self.show_error = show_error
        self.input_changed = input_changed
        self.add_model = add_model
        self.rebuild = rebuild  # runs a restored branch's whole request again
        # a restored file's ControlNet settings (not the draft's: the image is the canvas's)
        self.restore_controls = restore_controls
        self.reader = ParameterReader(self)

    # -- files ------------------------------------------------------------------------------

    def open_file(self, path: str | Path) -> bool:
        """Open an image file and offer what to do with it; False (with a sentence) when it
        cannot be opened."""
        path = Path(path)
        try:
            image = open_image(path)
        except ImageLoadError as e:
            self.show_error(str(e))
            return False
        name = printable(path.name)
        about = f"{name} ({image.width}×{image.height})"

        def offer(parameters: ImageParameters | None, _why: str) -> None:
            plan = plan_restore(parameters) if parameters is not None else None
            self._offer(image, about, plan, name, carried_prompt(parameters))

        self.reader.read(path, offer)  # at once for a small file, else when read
        return True

    def take_mime(self, mime: QMimeData | None) -> bool:
        """A drop or the clipboard: a local image file, else raw pixels."""
        path = dropped_image_path(mime)
        if path is not None:
            return self.open_file(path)
        image = dropped_pixels(mime)
        if image is None:
            refused = refusal(mime)  # files, none an image: say why nothing opens
            if refused:
                self.show_error(refused)
            return bool(refused)
        self.take_pixels(image)
        return True

    def paste(self) -> None:
        clipboard = QGuiApplication.clipboard()
        if not self.take_mime(clipboard.mimeData()):
            image = clipboard.image()
            if image.isNull():
                self.show_error("The clipboard holds no image.")
                return
            self.take_pixels(image)

    def take_pixels(self, image: QImage) -> None:
        picture = qimage_to_pil(image).convert("RGB")
        about = f"A pasted image ({image.width()}×{image.height()})"
        self._offer(picture, about, None, "")

    def _offer(
        self,
        image: Image.Image,
        about: str,
        plan: RestorePlan | None,
        name: str,
        carried: str = "",
    ) -> None:
        actions: list[tuple[str, Callable[[], Any]]] = []
        if plan is not None:
            actions.append(("Restore parameters", lambda: self.restore(plan, name)))
        current = self.draft.mode
        family = model_family(str(self.draft["model"]))
        offered = [use for use in _USES if family is None or family.offers(use[1].value)]
        uses = sorted(offered, key=lambda use: use[1] is not current)  # the current mode first
        for label, mode in uses:
            actions.append((label, lambda m=mode: self.use_as_input(image, m, name, carried)))
        if plan is None:
            self.banner.offer(f"{about}. Use it for:", actions)
        else:
            self.banner.offer(f"{about} carries parameters from {plan.source_name}.", actions)
        self.say(f"Opened {about}.")

    # -- uses -----------------------------------------------------------------------------

    def use_as_input(
        self, image: Image.Image, mode: Mode, name: str = "", carried: str = ""
    ) -> None:
        """An image becomes the input of a mode: the canvas shows it, and the size keeps the
        model's native area in the image's shape (a photo on a 64-pixel model stays small).
        An upscale with no prompt written is guided by the prompt the picture carries
        (`carried`), as `studio upscale` is. A mode the model has not (the gallery's "Send
        to Edit" on SD) is said, and nothing changes: the window would sit on a greyed mode
        that Generate refuses."""
        if why := mode_refusal(str(self.draft["model"]), mode):
            self.say(why)
            return
        values: dict[str, Any] = {"mode": mode.value}
        guided = mode is Mode.UPSCALE and bool(carried) and not str(self.draft["prompt"]).strip()
        if guided:
            values["prompt"] = carried
        if mode is not Mode.UPSCALE:
            native = model_defaults(self.draft["model"]).get("width")
            family = model_family(str(self.draft["model"]))
            step = family.size_step if family else None
            values["width"], values["height"] = input_size(image.size, native, step)
        self.draft.apply(values, Source.USER)
        self.canvas.set_image(image)
        self.canvas.fit_to_view()
        self.input_changed()
        what = f"{name} is" if name else "The image is"
        also = " (the prompt it carries guides the upscale)" if guided else ""
        self.say(f"{what} the input of {mode.label}{also}.")

    def send(self, path: Path, mode: Mode) -> None:
        """The gallery's "send to": that file as the input of that mode."""
        try:
            image = open_image(path)
        except ImageLoadError as e:
            self.show_error(str(e))
            return

        def use(parameters: ImageParameters | None, _why: str) -> None:
            self.use_as_input(image, mode, printable(path.name), carried_prompt(parameters))

        self.reader.read(path, use)  # at once for a small file, else when read

    # -- parameters -------------------------------------------------------------------------

    def restore_from(self, path: Path) -> None:
        """Restore a file's parameters (read off the UI thread if it is large)."""

        def restore(parameters: ImageParameters | None, why: str) -> None:
            if parameters is None:
                self.show_error(why)
            else:
                self.restore(plan_restore(parameters), printable(path.name))

        self.reader.read(path, restore)

    def restore(self, plan: RestorePlan, name: str = "") -> Applied:
        """Fill the draft from an image's parameters (the mode and the canvas stay), and say
        what could not be taken, and why."""
        applied = self.draft.apply(plan.values, Source.RESTORED)
        units = plan.values.get("controls")
        if units and isinstance(units, list) and self.restore_controls is not None:
            self.restore_controls(units)
        what = "all parameters" if plan.complete else "the parameters"
        source = f" from {plan.source_name}" if plan.source != "studio" else ""
        message = f"Restored {what}{source}" + (f" of {name}" if name else "") + "."
        notes = [*plan.notes, *applied.notes]
        if notes:
            message += " " + " ".join(notes)
        actions: list[tuple[str, Callable[[], Any]]] = []
        missing = applied.skipped.get("model")
        if isinstance(missing, str) and _addable(missing):
            # never behind the artist's back: the file's model is added (and downloaded,
            # for a hub id) only when they ask for it
            actions.append(("Add this model…", lambda: self.add_model(missing)))
        branch = plan.values.get("branch") if plan.complete else None
        if isinstance(branch, dict) and self.rebuild is not None:
            rebuild = self.rebuild
            message += (
                f" It continues another picture from its step {branch.get('at_step')}: "
                "Rebuild makes it again."
            )
            actions.append(("Rebuild this branch", lambda: rebuild(dict(plan.values))))
        self.banner.offer(message, actions)
        self.say(message)
        return applied


def _addable(spec: str) -> bool:
    """Whether a model a file names could be added as it is (a hub id, or a file or
    folder on this machine), rather than being a name only its tool understood."""
    try:
        resolve(spec)
    except ModelError:
        return False
    return True
