"""On a minimal Linux the window says which packages it lacks, in one sentence, instead of
Qt aborting with a message that names the wrong library."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest

from studio.ui import platform_check


def test_the_missing_xcb_libraries_are_named_with_their_packages(monkeypatch) -> None:  # noqa: ANN001
    monkeypatch.setattr(
        platform_check,
        "missing_libraries",
        lambda plugin=None: ["libxcb-icccm.so.4", "libxcb-keysyms.so.1"],
    )
    sentence = platform_check.problem({"DISPLAY": ":0"})
    assert sentence == (
        "The window cannot open: this system lacks libxcb-icccm.so.4, libxcb-keysyms.so.1, "
        "which Qt needs to draw on X11. Install them with: sudo apt-get install "
        "libxcb-icccm4 libxcb-keysyms1 (README lists every package the window needs)."
    )
    assert platform_check.problem({"DISPLAY": ":0", "QT_QPA_PLATFORM": "offscreen"}) is None
    assert platform_check.problem({"DISPLAY": ":0", "WAYLAND_DISPLAY": "wayland-0"}) is None


def test_every_library_the_xcb_plugin_needs_has_its_package() -> None:
    """What this machine's Qt links to is in the table (so the sentence names packages)."""
    plugin = platform_check.xcb_plugin()
    if plugin is None or not sys.platform.startswith("linux"):
        pytest.skip("no xcb plugin here")
    listing = subprocess.run(["ldd", str(plugin)], capture_output=True, text=True).stdout
    needed = {line.split()[0] for line in listing.splitlines() if "libxcb" in line}
    assert needed <= set(platform_check.PACKAGES)


def test_the_studio_says_why_it_cannot_open_a_window_and_exits(tmp_path) -> None:  # noqa: ANN001
    env = {k: v for k, v in os.environ.items() if k not in ("DISPLAY", "QT_QPA_PLATFORM")}
    env.pop("WAYLAND_DISPLAY", None)
    env["LATENT_STUDIO_CONFIG"] = str(tmp_path)
    env["LATENT_STUDIO_LOGS"] = str(tmp_path / "logs")
    done = subprocess.run(
        [sys.executable, "-m", "studio.cli"], capture_output=True, text=True, env=env, timeout=60
    )
    assert done.returncode == 1
    assert done.stderr.strip() == (
        "studio: There is no display to open the window on (DISPLAY is not set): start the "
        "studio in a desktop session, or use the command line (studio generate --help)."
    )
