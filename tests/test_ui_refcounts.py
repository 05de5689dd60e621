"""The Qt binding keeps Python's reference counts: thousands of jobs' worth of signals
through the real worker thread and controller leave `True` and `None` as they were.

PySide6 6.12.0 on Python < 3.12 drops a reference to True at every signal emitted and to
None at every Qt call that returns nothing; after a few thousand the count reaches zero
and CPython aborts ("Fatal Python error: bool_dealloc"). pyproject.toml excludes it; this
test fails on any binding with that fault. It runs in a child process, which such a
binding kills.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap

import pytest

CHILD = textwrap.dedent(
    """
    import json, sys, tempfile, time
    from pathlib import Path

    import numpy as np
    from PIL import Image
    from PySide6.QtCore import QCoreApplication, QEventLoop, QTimer

    from studio.core.jobs import GenerationResult, StepProgress
    from studio.core.request import GenerationRequest
    from studio.ui.controller import JobController

    JOBS, STEPS = int(sys.argv[1]), int(sys.argv[2])


    class FastEngine:
        def __init__(self, settings):
            self.settings = settings

        def run(self, request, reporter, cancel=None):
            preview = np.zeros((8, 8, 3), np.uint8)
            for step in range(1, request.steps + 1):
                reporter.step(StepProgress("generate", step, request.steps, 0.01, preview))
                reporter.status("working", None)
            image = Image.new("RGB", (8, 8))
            return GenerationResult([image], request.replace(seed=1), [1])


    app = QCoreApplication([])
    controller = JobController(Path(tempfile.mkdtemp()), engine_factory=FastEngine)
    controller.start_engine()
    request = GenerationRequest(prompt="x", width=8, height=8, steps=STEPS, seed=1)
    done = []
    controller.jobFinished.connect(lambda job, result: done.append(job))
    controller.jobFailed.connect(lambda job, message: print("failed:", message))


    def run_jobs(count):
        target = len(done) + count
        for _ in range(count):
            controller.submit(request)
        deadline = time.monotonic() + 120
        while len(done) < target and time.monotonic() < deadline:
            app.processEvents(QEventLoop.ProcessEventsFlag.AllEvents, 50)


    run_jobs(3)  # warm up: imports, caches, the worker thread
    before = sys.getrefcount(True), sys.getrefcount(None)
    run_jobs(JOBS)
    after = sys.getrefcount(True), sys.getrefcount(None)
    controller.shutdown(2000)
    print(json.dumps({"done": len(done), "before": before, "after": after}))
    """
)


def test_thousands_of_signals_leave_true_and_none_as_they_were(tmp_path) -> None:  # noqa: ANN001
    if sys.version_info >= (3, 12):
        pytest.skip("True and None are immortal from Python 3.12: no count to drop")
    jobs, steps = 120, 25  # the size of session that aborted on PySide6 6.12.0
    env = {**os.environ, "QT_QPA_PLATFORM": "offscreen", "LATENT_STUDIO_CONFIG": str(tmp_path)}
    done = subprocess.run(
        [sys.executable, "-c", CHILD, str(jobs), str(steps)],
        capture_output=True,
        text=True,
        timeout=180,
        env=env,
        check=False,
    )
    assert done.returncode == 0, done.stderr[-2000:]  # a faulty binding aborts here
    figures = json.loads(done.stdout.strip().splitlines()[-1])
    assert figures["done"] == jobs + 3
    emits = jobs * steps * 2  # each step reports a preview and a status line
    for name, before, after in zip(
        ("True", "None"), figures["before"], figures["after"], strict=True
    ):
        # other objects come and go holding True or None; a leak of one per emit is thousands
        assert abs(after - before) < emits // 20, (name, before, after)
