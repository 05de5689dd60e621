"""The engine never imports Qt, and the parts the UI thread uses never import torch."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

ENGINE = Path(__file__).resolve().parents[2] / "studio" / "engine"


def test_engine_modules_import_no_qt() -> None:
    modules = [f"studio.engine.{p.stem}" for p in ENGINE.glob("*.py") if p.stem != "__init__"]
    code = (
        "import importlib, sys\n"
        f"for m in {modules!r}: importlib.import_module(m)\n"
        "bad = [m for m in sys.modules if m.split('.')[0] in ('PySide6', 'shiboken6', 'superqt')]\n"
        "assert not bad, bad\n"
        "assert not any(m.startswith('studio.ui') for m in sys.modules)\n"
    )
    subprocess.run([sys.executable, "-c", code], check=True, timeout=300)


def test_ui_facing_engine_modules_import_no_torch() -> None:
    code = (
        "import sys\n"
        "import studio.core.request, studio.core.catalog, studio.metadata\n"
        "import studio.core.saving, studio.core.settings, studio.engine.schedulers\n"
        "import studio.core.imaging, studio.core.paths, studio.core.speedup_figures\n"
        "assert 'torch' not in sys.modules and 'diffusers' not in sys.modules\n"
    )
    subprocess.run([sys.executable, "-c", code], check=True, timeout=120)
