"""Before Qt opens a window on X11: are the libraries of its xcb platform there?

On a minimal Linux (a container, WSL, a fresh Debian) Qt aborts with a message about
libxcb-cursor0 whatever is really missing. This looks at what the xcb plugin links to
(with `ldd`, without loading Qt) and names the Debian/Ubuntu packages to install, in one
sentence. Free of Qt: it runs before Qt is imported.
"""

from __future__ import annotations

import importlib.util
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

# The libraries Qt's xcb platform links to, and the Debian/Ubuntu package of each.
PACKAGES = {
    "libxcb-cursor.so.0": "libxcb-cursor0",
    "libxcb-icccm.so.4": "libxcb-icccm4",
    "libxcb-image.so.0": "libxcb-image0",
    "libxcb-keysyms.so.1": "libxcb-keysyms1",
    "libxcb-randr.so.0": "libxcb-randr0",
    "libxcb-render-util.so.0": "libxcb-render-util0",
    "libxcb-render.so.0": "libxcb-render0",
    "libxcb-shape.so.0": "libxcb-shape0",
    "libxcb-shm.so.0": "libxcb-shm0",
    "libxcb-sync.so.1": "libxcb-sync1",
    "libxcb-util.so.1": "libxcb-util1",
    "libxcb-xfixes.so.0": "libxcb-xfixes0",
    "libxcb-xinerama.so.0": "libxcb-xinerama0",
    "libxcb-xinput.so.0": "libxcb-xinput0",
    "libxcb-xkb.so.1": "libxcb-xkb1",
    "libxcb.so.1": "libxcb1",
    "libX11-xcb.so.1": "libx11-xcb1",
    "libX11.so.6": "libx11-6",
    "libxkbcommon-x11.so.0": "libxkbcommon-x11-0",
    "libxkbcommon.so.0": "libxkbcommon0",
    "libEGL.so.1": "libegl1",
    "libGL.so.1": "libgl1",
    "libOpenGL.so.0": "libopengl0",
    "libGLX.so.0": "libglx0",
    "libfontconfig.so.1": "libfontconfig1",
    "libfreetype.so.6": "libfreetype6",
    "libdbus-1.so.3": "libdbus-1-3",
    "libglib-2.0.so.0": "libglib2.0-0",
    "libSM.so.6": "libsm6",
    "libICE.so.6": "libice6",
}
_NOT_FOUND = re.compile(r"^\s*(\S+)\s*=>\s*not found", re.MULTILINE)


def uses_xcb(environ: dict[str, str] | os._Environ = os.environ) -> bool:
    """Whether Qt will open its windows through xcb (X11) here."""
    if not sys.platform.startswith("linux"):
        return False
    chosen = environ.get("QT_QPA_PLATFORM", "")
    if chosen:
        return chosen.split(":")[0].split(";")[0] == "xcb"
    return not environ.get("WAYLAND_DISPLAY")  # Qt prefers Wayland in a Wayland session


def xcb_plugin() -> Path | None:
    spec = importlib.util.find_spec("PySide6")
    if spec is None or not spec.submodule_search_locations:
        return None
    plugin = Path(spec.submodule_search_locations[0]) / "Qt" / "plugins" / "platforms"
    plugin = plugin / "libqxcb.so"
    return plugin if plugin.is_file() else None


def missing_libraries(plugin: Path | None = None) -> list[str]:
    """The libraries the xcb plugin (and Qt's xcb support behind it) cannot find."""
    plugin = plugin or xcb_plugin()
    ldd = shutil.which("ldd")
    if plugin is None or ldd is None:
        return []  # nothing to look at: Qt will say what it says
    missing: list[str] = []
    for library in (plugin, plugin.parents[2] / "lib" / "libQt6XcbQpa.so.6"):
        if not library.is_file():
            continue
        try:
            listing = subprocess.run(
                [ldd, str(library)], capture_output=True, text=True, timeout=20, check=False
            ).stdout
        except (OSError, subprocess.SubprocessError):
            return []
        for name in _NOT_FOUND.findall(listing):  # ldd names a library once per user of it
            if name not in missing:
                missing.append(name)
    return missing


def problem(environ: dict[str, str] | os._Environ = os.environ) -> str | None:
    """One sentence when the window cannot open here, saying what to do; None when it can
    (or when it is not ours to tell)."""
    if not uses_xcb(environ):
        return None
    if not environ.get("DISPLAY"):
        return (
            "There is no display to open the window on (DISPLAY is not set): start the studio "
            "in a desktop session, or use the command line (studio generate --help)."
        )
    missing = missing_libraries()
    if not missing:
        return None
    packages = sorted({PACKAGES.get(name, name) for name in missing})
    return (
        f"The window cannot open: this system lacks {', '.join(missing)}, which Qt needs to "
        f"draw on X11. Install {'it' if len(packages) == 1 else 'them'} with: sudo apt-get "
        f"install {' '.join(packages)} (README lists every package the window needs)."
    )
