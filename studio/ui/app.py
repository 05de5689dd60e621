"""The `studio` entry point: show the window at once, load the engine behind it."""

from __future__ import annotations

import argparse
import gc
import logging
import os
import sys
from pathlib import Path
from typing import TYPE_CHECKING, Any

from PySide6.QtCore import Qt, QTimer
from PySide6.QtWidgets import QApplication

from studio.core.logs import setup_logging
from studio.ui import platform_check
from studio.ui.icons import app_icon
from studio.ui.settings import Settings
from studio.ui.theme import apply_theme

if TYPE_CHECKING:
    from studio.ui.main_window import MainWindow

APP_ID = "io.github.latentstudio.LatentStudio"  # the AppStream id in packaging/
WINDOW_HOOK: Any = None  # studio bench: called with the window once it is built


def _parse(argv: list[str]) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="studio", description="Latent Studio, the window.")
    parser.add_argument("image", nargs="?", help="an image to open (its parameters are offered)")
    parser.add_argument("--no-preload", action="store_true", help="load the model on first use")
    parser.add_argument("--settings", type=Path, help="a settings file other than the default")
    parser.add_argument("--debug", action="store_true", help="also log to the terminal")
    return parser.parse_args(argv)


def create_window(settings: Path | None = None, preload: bool | str = True) -> MainWindow:
    """Build, theme and show the window, then start the engine behind it.

    settings: a settings file, or a folder to keep studio.ini in (None: the user's).
    preload: True loads the chosen model at once, a model spec loads that one.
    """
    if settings is not None and settings.is_dir():
        settings = settings / "studio.ini"
    store = Settings(settings)
    app = QApplication.instance()
    if isinstance(app, QApplication):
        apply_theme(app, store.theme())
    from studio.ui.main_window import MainWindow

    window = MainWindow(store)
    window.show()
    # Start-up's objects live as long as the process: the collector need not walk them
    # again. A full collection of them took 25 ms, a stall wherever it fell (a scroll).
    gc.freeze()
    # The engine thread starts once the window is on screen: torch loads behind it.
    QTimer.singleShot(0, window, lambda: window.start_engine(preload))
    return window


def main(argv: list[str] | None = None, end_process: bool = False) -> int:
    """Run the studio window; returns the exit code.

    `end_process` (the `studio` command): once the window has closed and everything is
    saved, end the process at once. Python's own teardown with torch and Qt loaded takes
    1.5 s more and saves nothing, and the desktop should not wait for it."""
    args = _parse(sys.argv[1:] if argv is None else argv)
    setup_logging(args.debug)
    if QApplication.instance() is None:
        cannot = platform_check.problem()
        if cannot:  # before Qt aborts the process with a message that names the wrong library
            logging.getLogger(__name__).error("%s", cannot)
            print(f"studio: {cannot}", file=sys.stderr)
            return 1
    app = QApplication.instance() or QApplication([sys.argv[0]])
    app.setApplicationName("Latent Studio")
    app.setOrganizationName("Latent Studio")
    app.setDesktopFileName("latent-studio")  # packaging/latent-studio.desktop
    app.setWindowIcon(app_icon())
    window = create_window(args.settings, preload=not args.no_preload)
    window.setAttribute(Qt.WidgetAttribute.WA_DeleteOnClose)
    if WINDOW_HOOK is not None:
        WINDOW_HOOK(window)
    if args.image:
        QTimer.singleShot(0, window, lambda: window.load_image(args.image))
    code = app.exec()
    if not window.engine_stopped:
        # A model download cannot be interrupted; do not hang the desktop waiting for it.
        logging.getLogger(__name__).info("exiting while the engine thread is busy")
    if end_process or not window.engine_stopped:
        logging.shutdown()  # the log is written out; settings were synced on close
        sys.stdout.flush()
        sys.stderr.flush()
        os._exit(code)
    return code


if __name__ == "__main__":
    raise SystemExit(main(end_process=True))
