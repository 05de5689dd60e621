"""Window measurements: event-loop gaps while generating, and start-up times.

Both use the real window, the real controller and the real worker thread, offscreen.
"""

from __future__ import annotations

import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

TICK_MS = 5
WAIT_S = 300


def _percentile(values: list[float], share: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(share * (len(ordered) - 1)))]


def event_loop_gaps(model: str, runs: int) -> dict[str, float]:
    """Gaps between the ticks of a 5 ms timer while the window shows a generation, and the
    median seconds a generation takes there (from submit to its file saved and shown)."""
    os.environ.setdefault("QT_QPA_PLATFORM", "offscreen")
    from PySide6.QtCore import QEventLoop, QTimer
    from PySide6.QtWidgets import QApplication

    from studio.bench.engine_bench import bench_request
    from studio.ui.app import create_window

    app = QApplication.instance() or QApplication([])
    gaps: list[float] = []
    seconds: list[float] = []
    with tempfile.TemporaryDirectory() as tmp:
        os.environ["LATENT_STUDIO_OUTPUT"] = tmp  # the bench's images are thrown away
        window = create_window(Path(tmp), preload=model)
        try:
            _wait_for(window.controller.engineReady, app)
            request = bench_request(model, steps=25)
            for _ in range(runs):
                ticks: list[float] = []
                timer = QTimer()
                timer.setInterval(TICK_MS)
                timer.timeout.connect(lambda t=ticks: t.append(time.perf_counter()))
                loop = QEventLoop()
                window.controller.jobFinished.connect(loop.quit)
                window.controller.jobFailed.connect(loop.quit)
                timer.start()
                started = time.perf_counter()
                window.controller.submit(request)
                QTimer.singleShot(WAIT_S * 1000, loop.quit)
                loop.exec()
                seconds.append(time.perf_counter() - started)
                timer.stop()
                window.controller.jobFinished.disconnect(loop.quit)
                window.controller.jobFailed.disconnect(loop.quit)
                gaps += [(b - a) * 1000 for a, b in zip(ticks, ticks[1:], strict=False)]
        finally:
            window.close()
            window.deleteLater()
            app.processEvents()
    return {
        "p50": statistics.median(gaps),
        "p99": _percentile(gaps, 0.99),
        "max": max(gaps),
        "ticks": len(gaps),
        "seconds_per_image": statistics.median(seconds),
    }


LIVE_PROMPTS = (
    "a small red circle at the top left on a blue background",
    "a large yellow star in the centre on a purple background",
)


def live_latency(model: str, edits: int) -> dict[str, Any]:
    """Live mode: from a prompt edit to its new picture on screen (ms, p50 and p90), with
    the event loop's gaps meanwhile (a 5 ms timer's ticks: p99, max). Each edit waits for
    the picture of the one before, as an artist typing a word at a time would."""
    os.environ.setdefault("QT_QPA_PLATFORM", "offscreen")
    from PySide6.QtCore import QTimer
    from PySide6.QtWidgets import QApplication

    from studio.ui.app import create_window

    app = QApplication.instance() or QApplication([])
    latencies: list[float] = []
    ticks: list[float] = []
    with tempfile.TemporaryDirectory() as tmp:
        os.environ["LATENT_STUDIO_OUTPUT"] = tmp
        window = create_window(Path(tmp), preload=model)
        try:
            _wait_for(window.controller.engineReady, app)
            window.draft.edit({"model": model, "seed": 7})
            window.prompt_panel.set_prompts(LIVE_PROMPTS[0], "")
            window.live_button.setChecked(True)
            _wait_for(window.live.shown, app)  # the first picture loads what it needs
            timer = QTimer()
            timer.setInterval(TICK_MS)
            timer.timeout.connect(lambda: ticks.append(time.perf_counter()))
            timer.start()
            for number in range(edits):
                started = time.perf_counter()
                window.prompt_panel.set_prompts(LIVE_PROMPTS[(number + 1) % 2], "")
                _wait_for(window.live.shown, app)
                latencies.append((time.perf_counter() - started) * 1000)
            timer.stop()
            window.live_button.setChecked(False)
        finally:
            window.close()
            window.deleteLater()
            app.processEvents()
    gaps = [(b - a) * 1000 for a, b in zip(ticks, ticks[1:], strict=False)]
    return {
        "live_latency_ms": {
            "p50": statistics.median(latencies),
            "p90": _percentile(latencies, 0.9),
            "edits": len(latencies),
        },
        "live_event_loop_gap_ms": {"p99": _percentile(gaps, 0.99), "max": max(gaps)},
    }


def _wait_for(signal: Any, app: Any) -> None:
    from PySide6.QtCore import QEventLoop, QTimer

    loop = QEventLoop()
    signal.connect(loop.quit)
    QTimer.singleShot(WAIT_S * 1000, loop.quit)
    loop.exec()
    signal.disconnect(loop.quit)


def startup_times(model: str, runs: int) -> dict[str, float]:
    """Process start to the window shown, and to the first finished image (medians)."""
    window_s, image_s = [], []
    for _ in range(runs):
        started = time.time()
        env = {**os.environ, "QT_QPA_PLATFORM": "offscreen", "STUDIO_BENCH_T0": str(started)}
        done = subprocess.run(
            [sys.executable, "-m", "studio.bench.ui_bench", model],
            capture_output=True,
            text=True,
            timeout=WAIT_S,
            env=env,
            check=True,
        )
        figures = json.loads(done.stdout.strip().splitlines()[-1])
        window_s.append(figures["window"] - started)
        image_s.append(figures["image"] - started)
    return {
        "startup_window_s": statistics.median(window_s),
        "startup_first_image_s": statistics.median(image_s),
    }


def exit_times(model: str, runs: int) -> dict[str, float]:
    """From the window closing (as Ctrl+Q closes it) to the process gone: idle, and during a
    generation (medians of `runs` processes started as `studio` starts)."""
    figures: dict[str, list[float]] = {"exit_idle_s": [], "exit_busy_s": []}
    for busy in (False, True):
        for _ in range(runs):
            with tempfile.TemporaryDirectory() as tmp:  # the studio's folders, for its run
                env = {
                    **os.environ,
                    "QT_QPA_PLATFORM": "offscreen",
                    "STUDIO_BENCH_EXIT": str(busy),
                    "LATENT_STUDIO_OUTPUT": tmp,
                    "LATENT_STUDIO_CONFIG": tmp,
                }
                child = subprocess.Popen(
                    [sys.executable, "-m", "studio.bench.ui_bench", model],
                    stdout=subprocess.PIPE,
                    stderr=subprocess.PIPE,
                    text=True,
                    env=env,
                )
                out, err = child.communicate(timeout=WAIT_S)
                gone = time.time()
            if child.returncode != 0:
                raise RuntimeError(f"the exit bench's studio failed: {err.strip()[-300:]}")
            closing = json.loads(out.strip().splitlines()[-1])["closing"]
            figures["exit_busy_s" if busy else "exit_idle_s"].append(gone - closing)
    return {key: statistics.median(values) for key, values in figures.items()}


def _exit_child(model: str, busy: bool) -> None:
    """Launch as `studio` does, let the model load (and a long job start), then close the
    window and say when; the parent times the rest, to the process's end. The parent made
    the studio's folders: this process ends at once, without tidying up."""
    from PySide6.QtCore import QTimer

    from studio.bench.engine_bench import bench_request
    from studio.ui import app as studio_app

    def close_soon(window: Any) -> None:
        def close() -> None:
            print(json.dumps({"closing": time.time()}), flush=True)
            window.close()

        def ready(_summary: str) -> None:
            if busy:  # closed as soon as the first step of a long job is shown
                window.controller.progress.connect(lambda *_: QTimer.singleShot(0, close))
                window.controller.submit(bench_request(model, steps=500))
            else:
                QTimer.singleShot(200, close)

        window.controller.engineReady.connect(ready)

    studio_app.WINDOW_HOOK = close_soon
    settings = Path(os.environ["LATENT_STUDIO_CONFIG"]) / "studio.ini"
    sys.exit(studio_app.main(["--settings", str(settings)], end_process=True))


def _startup_child(model: str) -> None:
    """Launch as `studio` does, then print when the window was shown and the image done."""
    from PySide6.QtCore import QTimer
    from PySide6.QtWidgets import QApplication

    from studio.ui.app import create_window

    marks: dict[str, float] = {}
    with tempfile.TemporaryDirectory() as tmp:
        os.environ["LATENT_STUDIO_OUTPUT"] = tmp
        app = QApplication.instance() or QApplication([sys.argv[0]])
        window = create_window(Path(tmp), preload=model)
        # The first turn of the event loop comes after the window's first paint.
        QTimer.singleShot(0, lambda: marks.setdefault("window", time.time()))

        def generate() -> None:
            from studio.bench.engine_bench import bench_request

            window.controller.submit(bench_request(model, steps=25))

        def finished(*_: Any) -> None:
            marks["image"] = time.time()
            window.close()
            app.quit()

        window.controller.engineReady.connect(generate)
        window.controller.jobFinished.connect(finished)
        window.controller.jobFailed.connect(lambda *_: app.quit())
        app.exec()
    print(json.dumps(marks))


if __name__ == "__main__":
    if "STUDIO_BENCH_EXIT" in os.environ:
        _exit_child(sys.argv[1], os.environ["STUDIO_BENCH_EXIT"] == "True")
    else:
        _startup_child(sys.argv[1])
