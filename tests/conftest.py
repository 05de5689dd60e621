"""Shared test setup: headless Qt, strict leak checks for UI tests, tiny model fixtures.

UI tests (files named test_ui_*.py, or any test using qtbot/qapp) run under a fixture
that fails the test if it leaves a QThread running, a QTimer it started still active,
or a top-level widget alive — napari's rule: a dangling thread is a bug, not noise.
Qt is only imported for those tests, so engine tests stay free of it.
"""

from __future__ import annotations

import os
import sys
import time
import weakref
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

os.environ.setdefault("QT_QPA_PLATFORM", "offscreen")

sys.path.insert(0, str(Path(__file__).parent))

REPO = Path(__file__).resolve().parents[1]
EMBEDDED = REPO / "resources" / "models"
INTEROP = REPO.parent / "shared" / "interop"

# Qt creates a few windows of its own (tooltips, popups); they are not the test's leaks.
_QT_INTERNAL_WINDOWS = {"QTipLabel", "QComboBoxPrivateContainer", "QWhatsThat"}


# -- tracking of QThreads and QTimers started from Python --------------------------------


class _Tracker:
    def __init__(self) -> None:
        self.threads: list[weakref.ref] = []
        self.timers: list[weakref.ref] = []
        self.installed = False

    def install(self) -> None:
        if self.installed:
            return
        from PySide6.QtCore import QThread, QTimer

        thread_start, timer_start = QThread.start, QTimer.start
        tracker = self

        def tracked_thread_start(thread, *args, **kwargs):  # noqa: ANN001
            tracker.threads.append(weakref.ref(thread))
            return thread_start(thread, *args, **kwargs)

        def tracked_timer_start(timer, *args, **kwargs):  # noqa: ANN001
            tracker.timers.append(weakref.ref(timer))
            return timer_start(timer, *args, **kwargs)

        QThread.start = tracked_thread_start
        QTimer.start = tracked_timer_start
        self.installed = True

    def reset(self) -> None:
        self.threads.clear()
        self.timers.clear()


_tracker = _Tracker()


def _alive(ref: weakref.ref, check: str) -> bool:
    obj = ref()
    if obj is None:
        return False
    try:
        return bool(getattr(obj, check)())
    except RuntimeError:  # the C++ object is already deleted
        return False


def _is_ui_test(request: pytest.FixtureRequest) -> bool:
    name = Path(str(request.node.fspath)).name
    return name.startswith("test_ui") or bool({"qtbot", "qapp"} & set(request.fixturenames))


def _flush_qt() -> None:
    from PySide6.QtCore import QCoreApplication, QEvent

    app = QCoreApplication.instance()
    if app is None:
        return
    for _ in range(3):
        app.processEvents()
        QCoreApplication.sendPostedEvents(None, QEvent.Type.DeferredDelete)


def _window_name(widget) -> str:  # noqa: ANN001
    try:
        return widget.metaObject().className()
    except RuntimeError:
        return "?"


@pytest.fixture(autouse=True)
def _qt_leak_check(request: pytest.FixtureRequest) -> Iterator[None]:
    """Fail a UI test that leaves a QThread, an active QTimer or a top-level widget behind."""
    if not _is_ui_test(request):
        yield
        return
    _tracker.install()
    from PySide6.QtWidgets import QApplication

    app = QApplication.instance() or QApplication([])
    before = {id(w) for w in app.topLevelWidgets()}
    _tracker.reset()
    yield
    _flush_qt()
    problems: list[str] = []

    # A thread gets a short grace period: its event loop may be ending right now.
    deadline = time.monotonic() + 2.0
    while any(_alive(r, "isRunning") for r in _tracker.threads) and time.monotonic() < deadline:
        time.sleep(0.01)
    running = [r() for r in _tracker.threads if _alive(r, "isRunning")]
    if running:
        problems.append(f"{len(running)} QThread(s) still running: {running}")
    active = [r() for r in _tracker.timers if _alive(r, "isActive")]
    if active:
        problems.append(f"{len(active)} QTimer(s) still active: {active}")
    left = [
        w
        for w in app.topLevelWidgets()
        if id(w) not in before and _window_name(w) not in _QT_INTERNAL_WINDOWS
    ]
    if left:
        problems.append(f"{len(left)} top-level widget(s) left: {[_window_name(w) for w in left]}")
        for w in left:  # do not let one leak fail every following test
            w.close()
            w.deleteLater()
        _flush_qt()
    for thread in running:
        thread.quit()
        thread.wait(2000)
    for timer in active:
        timer.stop()
    _tracker.reset()
    if problems:
        pytest.fail("; ".join(problems), pytrace=False)


@pytest.fixture(autouse=True)
def _isolated_home(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory):
    """UI tests never touch the real output folder or settings."""
    if not _is_ui_test(request):
        yield
        return
    home = tmp_path_factory.mktemp("home")
    mp = pytest.MonkeyPatch()
    mp.setenv("LATENT_STUDIO_OUTPUT", str(home / "outputs"))
    mp.setenv("XDG_CONFIG_HOME", str(home / "config"))
    mp.setenv("XDG_CACHE_HOME", str(home / "cache"))
    (home / "data").mkdir()
    mp.setenv("XDG_DATA_HOME", str(home / "data"))  # the trash lives here
    mp.setenv("LATENT_STUDIO_CONFIG", str(home / "studio-config"))
    mp.setenv("HF_HUB_OFFLINE", "1")
    from PySide6.QtCore import QSettings

    QSettings.setPath(QSettings.Format.IniFormat, QSettings.Scope.UserScope, str(home / "qt"))
    yield
    mp.undo()


# -- models --------------------------------------------------------------------------------


def embedded_model_available(name: str = "studio-tiny") -> bool:
    return (EMBEDDED / name / "model_index.json").is_file()


@dataclass(frozen=True)
class UiModels:
    """Which models UI end-to-end tests run: studio-tiny when shipped, else random ones."""

    generator: str
    upscaler: str
    size: int  # a native size of the generator
    embedded: bool


@pytest.fixture(scope="session")
def tiny_sd(tmp_path_factory: pytest.TempPathFactory) -> Path:
    from fixtures import build_tiny_sd

    return build_tiny_sd(tmp_path_factory.mktemp("tiny-sd"))


@pytest.fixture(scope="session")
def tiny_upscaler(tmp_path_factory: pytest.TempPathFactory) -> Path:
    from fixtures import build_tiny_upscaler

    return build_tiny_upscaler(tmp_path_factory.mktemp("tiny-x4"))


@pytest.fixture(scope="session")
def ui_models(request: pytest.FixtureRequest) -> UiModels:
    if embedded_model_available("studio-tiny") and embedded_model_available("studio-tiny-x4"):
        return UiModels("studio-tiny", "studio-tiny-x4", 64, True)
    sd = request.getfixturevalue("tiny_sd")
    up = request.getfixturevalue("tiny_upscaler")
    return UiModels(str(sd), str(up), 32, False)


@pytest.fixture(scope="session")
def shared_engine_factory():  # noqa: ANN201
    """An engine factory handing every window the same engine, as if the studio had been
    left open: the model loads once per session instead of once per window. The engine keeps
    no cancel state between jobs: each window's worker passes every job its own cancel flag
    (`Engine.run(..., cancel=)`), so one window's cancel or close never reaches another's job."""
    engines: list = []

    def factory(settings):  # noqa: ANN001, ANN202
        if not engines:
            from studio.engine.generate import Engine

            engines.append(Engine(settings))
        engine = engines[0]
        engine.settings = settings
        return engine

    return factory


@pytest.fixture
def out_dir(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """The output folder of the windows a test makes."""
    folder = tmp_path / "outputs"
    monkeypatch.setenv("LATENT_STUDIO_OUTPUT", str(folder))
    return folder


@pytest.fixture
def make_window(qtbot, tmp_path: Path, out_dir: Path):  # noqa: ANN001, ARG001
    """Build studio windows on a temporary settings file; pytest-qt closes them."""
    from studio.ui.main_window import MainWindow
    from studio.ui.settings import Settings

    def make(**kwargs):  # noqa: ANN003, ANN202
        window = MainWindow(Settings(tmp_path / "studio.ini"), **kwargs)
        qtbot.addWidget(window)
        window.show()
        qtbot.waitExposed(window)
        return window

    return make


@pytest.fixture
def interop_dir() -> Path:
    if not INTEROP.is_dir():
        pytest.skip("../shared/interop/ is not here")
    return INTEROP
