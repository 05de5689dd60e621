"""The leak checks of tests/conftest.py catch what they promise, and say where it started:
run on a file of leaky tests, each fails with its own leak named."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

LEAKY = """
import threading
import time

from PySide6.QtCore import QThread, QTimer


def test_a_qthread(qtbot):
    thread = QThread()
    thread.start()
    test_a_qthread.kept = thread


def test_a_timer(qtbot):
    timer = QTimer()
    timer.start(10_000)
    test_a_timer.kept = timer


def test_a_single_shot(qtbot):
    QTimer.singleShot(60_000, lambda: None)


def test_a_python_thread():
    stop = threading.Event()
    threading.Thread(target=stop.wait, args=(5,), daemon=True).start()


def test_a_busy_global_pool(qtbot):
    from PySide6.QtCore import QRunnable, QThreadPool

    class Slow(QRunnable):
        def run(self):
            time.sleep(1)  # busy past the grace

    QThreadPool.globalInstance().start(Slow())


def test_a_window(qtbot):
    from PySide6.QtWidgets import QWidget

    window = QWidget()
    window.show()
    test_a_window.kept = window


def test_a_clean_one(qtbot):
    timer = QTimer()
    timer.start(10)
    timer.stop()
"""


def test_leaks_fail_their_test_and_name_where_they_started(pytester: pytest.Pytester) -> None:
    # The checks as they are, with a shorter grace for a thread that is ending (each leaky
    # test waits it out: 2 s each, most of this test's time).
    conftest = (Path(__file__).parent / "conftest.py").read_text()
    conftest, graces = re.subn(r"^GRACE_S = [0-9.]+", "GRACE_S = 0.3", conftest, flags=re.M)
    assert graces == 1
    pytester.makeconftest(conftest)
    pytester.makepyfile(test_leaky=LEAKY)
    result = pytester.runpytest_subprocess("-p", "no:cacheprovider", timeout=120)
    result.assert_outcomes(passed=7, errors=6)  # errors at teardown
    output = result.stdout.str()
    for leak, line in (
        ("QThread still running", "test_leaky.py:9 test_a_qthread"),
        ("QTimer still active", "test_leaky.py:15 test_a_timer"),
        ("QTimer.singleShot not yet fired", "test_leaky.py:20 test_a_single_shot"),
        ("Python thread still running", "test_leaky.py:25 test_a_python_thread"),
        ("QThreadPool still busy", "test_leaky.py:35 test_a_busy_global_pool"),
        ("top-level widget(s) left", "['QWidget']"),
    ):
        assert leak in output and line in output, (leak, output[-3000:])
