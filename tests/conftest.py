"""Shared test setup: headless Qt, napari-style leak checks, one set of tiny model fixtures.

Every test fails if it leaves behind what it started: a Python thread, and, once Qt is in
the process, a QThread still running, a QThreadPool still busy, a QTimer still active, a
QTimer.singleShot not yet fired, or a top-level widget. The failure names each leak and
where it was started (the test's own frames of the stack), because a dangling thread is
a bug, not noise — it runs into the next test.
"""

from __future__ import annotations

import os
import sys
import threading
import time
import traceback
import weakref
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

os.environ.setdefault("QT_QPA_PLATFORM", "offscreen")

sys.path.insert(0, str(Path(__file__).parent))

pytest_plugins = ["pytester"]  # tests/test_leak_checks.py runs these checks on leaky tests

REPO = Path(__file__).resolve().parents[1]
EMBEDDED = REPO / "resources" / "models"
INTEROP = REPO.parent / "shared" / "interop"

# Qt creates a few windows of its own (tooltips, popups); they are not the test's leaks.
_QT_INTERNAL_WINDOWS = {"QTipLabel", "QComboBoxPrivateContainer", "QWhatsThat"}
GRACE_S = 2.0  # a thread's event loop may be ending as the test ends


# -- where things were started ---------------------------------------------------------


_OURS = (str(REPO / "studio"), str(Path(__file__).resolve().parent))


def _is_ours(filename: str) -> bool:
    """A frame of the studio or of the tests (not of a library installed in the checkout)."""
    return filename.startswith(_OURS) and not filename.endswith("conftest.py")


def _origin() -> str:
    """The innermost frames of the caller's stack that are the studio's or the tests'."""
    ours = [f for f in traceback.extract_stack()[:-2] if _is_ours(f.filename)]
    return " <- ".join(f"{Path(f.filename).name}:{f.lineno} {f.name}" for f in ours[-3:][::-1])


@dataclass
class _Started:
    obj: Callable[[], Any]  # a weak reference, or a holder of a strong one
    origin: str


@dataclass
class _Tracker:
    """What the current test started, with where; installed once per session."""

    threads: list[_Started] = field(default_factory=list)
    qthreads: list[_Started] = field(default_factory=list)
    timers: list[_Started] = field(default_factory=list)
    pools: list[_Started] = field(default_factory=list)
    single_shots: dict[int, str] = field(default_factory=dict)  # id -> origin, until fired
    qt_installed: bool = False

    def reset(self) -> None:
        self.threads.clear()
        self.qthreads.clear()
        self.timers.clear()
        self.pools.clear()
        self.single_shots.clear()


_tracker = _Tracker()


# Libraries whose thread pools live as long as the process, by design: torch.compile's
# compile workers are started on the first cold compile and kept for the next one; Ray's
# threads (its log and error listeners, its core worker's) live as long as its connection,
# which a test module's cluster fixture ends.
_PROCESS_LONG_POOLS = (f"torch{os.sep}_inductor{os.sep}", f"{os.sep}ray{os.sep}")


def _starter(stack: traceback.StackSummary) -> str:
    """The file that asked for the thread: the first frame outside threading and executors."""
    for frame in reversed(stack):
        if not frame.filename.endswith(
            ("threading.py", f"concurrent{os.sep}futures{os.sep}thread.py")
        ):
            return frame.filename
    return ""


def _install_thread_hook() -> None:
    start = threading.Thread.start

    def tracked_start(thread: threading.Thread, *args: Any, **kwargs: Any) -> Any:
        # Threads our code starts; a library's own process-long helper (tqdm's monitor, a
        # compiler's pool) is started from the library's frames and is not the test's.
        starter = _starter(traceback.extract_stack()[:-1])
        process_long = any(pool in starter for pool in _PROCESS_LONG_POOLS)
        if _is_ours(starter) or not (thread.daemon or process_long):
            _tracker.threads.append(_Started(weakref.ref(thread), _origin()))
        return start(thread, *args, **kwargs)

    threading.Thread.start = tracked_start  # type: ignore[method-assign]


def _install_qt_hooks() -> None:
    """Wrap the ways a test can start Qt work, to know what is still going at its end."""
    if _tracker.qt_installed:
        return
    try:
        from PySide6.QtCore import QThread, QThreadPool, QTimer
    except ImportError:  # no Qt here: the Qt checks have nothing to check
        return

    thread_start, timer_start, pool_start = QThread.start, QTimer.start, QThreadPool.start
    single_shot = QTimer.singleShot

    def tracked_thread_start(thread: Any, *args: Any, **kwargs: Any) -> Any:
        _tracker.qthreads.append(_Started(weakref.ref(thread), _origin()))
        return thread_start(thread, *args, **kwargs)

    def tracked_timer_start(timer: Any, *args: Any, **kwargs: Any) -> Any:
        _tracker.timers.append(_Started(weakref.ref(timer), _origin()))
        return timer_start(timer, *args, **kwargs)

    def tracked_pool_start(pool: Any, *args: Any, **kwargs: Any) -> Any:
        # held strongly (for the test's length): QThreadPool.globalInstance() hands out a
        # wrapper that Python drops at once, and a weak reference would lose the pool
        _tracker.pools.append(_Started(lambda p=pool: p, _origin()))
        return pool_start(pool, *args, **kwargs)

    def tracked_single_shot(*args: Any) -> Any:
        # singleShot(msec, [receiver or timer type,] callable or slot): wrap the callable
        # so that it marks itself fired
        *head, target = args
        if not callable(target):
            return single_shot(*args)
        key = id(target) ^ int(time.perf_counter_ns())
        _tracker.single_shots[key] = _origin()
        receiver = next((a for a in head[1:] if hasattr(a, "destroyed")), None)
        if receiver is not None:  # deleting the receiver cancels the shot
            receiver.destroyed.connect(lambda *_: _tracker.single_shots.pop(key, None))

        def fire(*fired: Any) -> Any:
            _tracker.single_shots.pop(key, None)
            return target(*fired)

        return single_shot(*head, fire)

    QThread.start = tracked_thread_start
    QTimer.start = tracked_timer_start
    QThreadPool.start = tracked_pool_start
    QTimer.singleShot = staticmethod(tracked_single_shot)
    _tracker.qt_installed = True


def pytest_configure(config: pytest.Config) -> None:
    _install_thread_hook()
    _install_qt_hooks()


def _alive(started: _Started, check: Callable[[Any], bool]) -> bool:
    obj = started.obj()
    if obj is None:
        return False
    try:
        return bool(check(obj))
    except RuntimeError:  # the C++ object is already deleted
        return False


def _qt_app() -> Any:
    if "PySide6.QtCore" not in sys.modules:
        return None
    from PySide6.QtCore import QCoreApplication

    return QCoreApplication.instance()


def _flush_qt() -> None:
    from PySide6.QtCore import QCoreApplication, QEvent

    app = QCoreApplication.instance()
    if app is None:
        return
    for _ in range(3):
        app.processEvents()
        QCoreApplication.sendPostedEvents(None, QEvent.Type.DeferredDelete)


def _window_name(widget: Any) -> str:
    try:
        return widget.metaObject().className()
    except RuntimeError:
        return "?"


def _top_level_widgets() -> list[Any]:
    app = _qt_app()
    if app is None or not hasattr(app, "topLevelWidgets"):
        return []
    return list(app.topLevelWidgets())


def _wait_until(condition: Callable[[], bool], seconds: float = GRACE_S) -> None:
    deadline = time.monotonic() + seconds
    while not condition() and time.monotonic() < deadline:
        if _qt_app() is not None:
            _flush_qt()
        time.sleep(0.01)


def _leaks() -> list[str]:
    """Everything the test started that is still going, each with where it started."""
    has_qt = _qt_app() is not None

    def running_qthreads() -> list[_Started]:
        return [s for s in _tracker.qthreads if _alive(s, lambda t: t.isRunning())]

    def busy_pools() -> list[_Started]:
        return [s for s in _tracker.pools if _alive(s, lambda p: p.activeThreadCount() > 0)]

    def live_threads() -> list[_Started]:
        return [s for s in _tracker.threads if _alive(s, lambda t: t.is_alive())]

    _wait_until(lambda: not (running_qthreads() or busy_pools() or live_threads()))
    if has_qt:
        _flush_qt()
    problems = []
    for label, leaked in (
        ("Python thread still running", live_threads()),
        ("QThread still running", running_qthreads()),
        ("QThreadPool still busy", busy_pools()),
        ("QTimer still active", [s for s in _tracker.timers if _alive(s, lambda t: t.isActive())]),
    ):
        problems += [f"{label}, started at {s.origin}" for s in leaked]
    problems += [
        f"QTimer.singleShot not yet fired, set at {o}" for o in _tracker.single_shots.values()
    ]
    return problems


def _stop_leaks() -> None:
    """Do not let one test's leak fail every following test."""
    for started in _tracker.qthreads:
        thread = started.obj()
        if thread is not None and _alive(started, lambda t: t.isRunning()):
            thread.quit()
            thread.wait(2000)
    for started in _tracker.timers:
        timer = started.obj()
        if timer is not None and _alive(started, lambda t: t.isActive()):
            timer.stop()
    for started in _tracker.pools:
        pool = started.obj()
        try:
            if pool is not None:
                pool.clear()
                pool.waitForDone(2000)
        except RuntimeError:  # the C++ pool is already deleted: nothing runs there
            pass


@pytest.fixture(autouse=True)
def _leak_check(request: pytest.FixtureRequest) -> Iterator[None]:
    """Fail a test that leaves a thread, a pool, a timer or a window behind."""
    before = {id(w) for w in _top_level_widgets()}
    _tracker.reset()
    yield
    problems = _leaks()
    left = [
        w
        for w in _top_level_widgets()
        if id(w) not in before and _window_name(w) not in _QT_INTERNAL_WINDOWS
    ]
    if left:
        problems.append(f"top-level widget(s) left: {[_window_name(w) for w in left]}")
        for widget in left:
            widget.close()
            widget.deleteLater()
        _flush_qt()
    _stop_leaks()
    _tracker.reset()
    if problems:
        pytest.fail("Left running by this test: " + "; ".join(problems), pytrace=False)


def _is_ui_test(request: pytest.FixtureRequest) -> bool:
    name = Path(str(request.node.fspath)).name
    return name.startswith("test_ui") or bool({"qtbot", "qapp"} & set(request.fixturenames))


@pytest.fixture(autouse=True)
def _isolated_home(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory):
    """No test touches the real output folder, settings, caches or the network."""
    home = tmp_path_factory.mktemp("home")
    mp = pytest.MonkeyPatch()
    mp.setenv("LATENT_STUDIO_OUTPUT", str(home / "outputs"))
    mp.setenv("LATENT_STUDIO_CONFIG", str(home / "studio-config"))
    mp.setenv("LATENT_STUDIO_LOGS", str(home / "logs"))
    mp.setenv("HF_HUB_OFFLINE", "1")
    if _is_ui_test(request):
        mp.setenv("XDG_CONFIG_HOME", str(home / "config"))
        mp.setenv("XDG_CACHE_HOME", str(home / "cache"))
        (home / "data").mkdir()
        mp.setenv("XDG_DATA_HOME", str(home / "data"))  # the trash lives here
        from PySide6.QtCore import QSettings

        QSettings.setPath(QSettings.Format.IniFormat, QSettings.Scope.UserScope, str(home / "qt"))
    yield
    mp.undo()


# -- models: one set of tiny fixtures, built once per session ------------------------------


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
def tiny_sd(tmp_path_factory: pytest.TempPathFactory) -> str:
    """A random-weight SD 1.x pipeline folder (its model spec)."""
    from studio.bench.random_models import build_tiny_sd

    return str(build_tiny_sd(tmp_path_factory.mktemp("tiny-sd")))


@pytest.fixture(scope="session")
def tiny_upscaler(tmp_path_factory: pytest.TempPathFactory) -> str:
    """A random-weight ×4 upscaler pipeline folder (its model spec)."""
    from studio.bench.random_models import build_tiny_upscaler

    return str(build_tiny_upscaler(tmp_path_factory.mktemp("tiny-x4")))


@pytest.fixture(scope="session")
def ui_models(request: pytest.FixtureRequest) -> UiModels:
    if embedded_model_available("studio-tiny") and embedded_model_available("studio-tiny-x4"):
        return UiModels("studio-tiny", "studio-tiny-x4", 64, True)
    sd = request.getfixturevalue("tiny_sd")
    up = request.getfixturevalue("tiny_upscaler")
    return UiModels(sd, up, 32, False)


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
        # Closing with jobs waiting asks; a test's teardown must not block on the question
        # (a test of the question puts the real method back).
        window.confirm_dropping_jobs = lambda _count: True
        qtbot.addWidget(window)
        window.show()
        qtbot.waitExposed(window)
        return window

    return make


@pytest.fixture
def engine_window(make_window, ui_models, shared_engine_factory):  # noqa: ANN001, ANN201
    """Windows on the session's shared engine with the UI tests' model at its size, the
    prompt given and the draft values given (seed, steps, sampler…)."""

    def make(prompt: str, **values: Any):  # noqa: ANN202
        window = make_window(engine_factory=shared_engine_factory)
        size = ui_models.size
        window.draft.edit({"model": ui_models.generator, "width": size, "height": size, **values})
        window.start_engine(preload=False)
        window.prompt_panel.set_prompts(prompt, "")
        return window

    return make


@pytest.fixture
def interop_dir() -> Path:
    if not INTEROP.is_dir():
        pytest.skip("../shared/interop/ is not here")
    return INTEROP


@pytest.fixture(scope="module")
def one_thread() -> Iterator[None]:
    """Torch on one thread for a module's tests: tiny models run faster on one thread than
    two threads fighting over two cores (a module asks with usefixtures)."""
    import torch

    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)
