"""Where the studio's log goes: a file (`paths.log_file()`), never the terminal, unless
`--debug` asks for it there too.

A user sees one sentence for each failure; the details behind it (tracebacks, library
warnings) go to the log file, which the sentence for an unexpected failure names. The
libraries' own messages (transformers' and diffusers' loggers, Python warnings) are routed
to the same file instead of stderr.
"""

from __future__ import annotations

import logging
import logging.handlers
import os
import sys
from pathlib import Path

from studio.core.paths import log_file

FORMAT = "%(asctime)s %(levelname)s %(name)s: %(message)s"
MAX_BYTES = 2 * 1024 * 1024
BACKUPS = 2
_OURS = "_latent_studio"  # marks the handlers this module installed


def setup_logging(debug: bool = False) -> Path | None:
    """Send every log record and warning to the log file (and stderr with `debug`); returns
    the file, or None when it cannot be written (then nothing is logged, nothing fails)."""
    root = logging.getLogger()
    for handler in [h for h in root.handlers if getattr(h, _OURS, False)]:
        root.removeHandler(handler)
        handler.close()
    root.setLevel(logging.DEBUG if debug else logging.INFO)
    path: Path | None = log_file()
    handler: logging.Handler
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        handler = logging.handlers.RotatingFileHandler(
            path, maxBytes=MAX_BYTES, backupCount=BACKUPS, encoding="utf-8", delay=True
        )
    except (OSError, ValueError):  # an unwritable or impossible folder: no file, no crash
        handler, path = logging.NullHandler(), None
    handler.setFormatter(logging.Formatter(FORMAT))
    _install(root, handler)
    if debug:
        stream = logging.StreamHandler(sys.stderr)
        stream.setFormatter(logging.Formatter(FORMAT))
        _install(root, stream)
    logging.captureWarnings(True)  # warnings.warn() from any library: to the log too
    # transformers and diffusers give their loggers a stderr handler of their own when first
    # imported; these keep the import-time ones quiet (quiet_libraries() takes it from there)
    for variable in ("TRANSFORMERS_VERBOSITY", "DIFFUSERS_VERBOSITY"):
        os.environ.setdefault(variable, "info" if debug else "error")
    return path


def _install(root: logging.Logger, handler: logging.Handler) -> None:
    setattr(handler, _OURS, True)
    root.addHandler(handler)
