"""The studio's own files that turn out broken (a settings file of garbage, a list of added
models of the wrong shape): set aside, never deleted, replaced by defaults, and reported
once. Nothing a broken file holds may keep the studio from starting.
"""

from __future__ import annotations

import logging
import time
from pathlib import Path

from studio.core.text import printable

log = logging.getLogger(__name__)
_notices: list[str] = []


def set_aside(path: Path, why: str) -> Path | None:
    """Rename a broken file to `<name>.broken-<time>` beside it (kept, for the user to look
    at), note it for the user, and return the new name (None if it could not be moved)."""
    stamp = time.strftime("%Y%m%d-%H%M%S")
    for n in range(100):
        backup = path.with_name(f"{path.name}.broken-{stamp}" + (f"-{n}" if n else ""))
        if backup.exists():
            continue
        try:
            path.rename(backup)
        except OSError as e:
            log.warning("could not set %s aside: %s", path, e)
            backup = None
        break
    else:
        backup = None
    kept = f" (kept as {printable(backup.name)})" if backup else ""
    notice(f"{printable(path.name)} was {why}{kept}; the studio uses its defaults instead.")
    return backup


def notice(text: str) -> None:
    """A message for the user about the studio's own state, shown once."""
    log.warning("%s", text)
    _notices.append(text)


def take_notices() -> list[str]:
    """The notices not shown yet; each is returned once."""
    taken = list(_notices)
    _notices.clear()
    return taken
