"""The gallery on a folder of an artist's size: 10,000 images (the same 64×64 PNG written
10,000 times, with modification times one second apart) in a gallery panel of 640×800,
offscreen, in a process of its own (so its memory is its own).

- gallery_first_thumbnails_s: from creating the panel to every cell of the first screen
  painted with its thumbnail.
- gallery_listing_s: from creating the panel to the whole folder in the model.
- gallery_listing_max_stall_ms: the longest gap between ticks of a 1 ms timer meanwhile.
- gallery_scroll_max_stall_ms: the longest gap between ticks of a 1 ms timer while the
  view scrolls from top to bottom, a third of a screen every 16 ms (two rows a frame, 12
  seconds for the 10,000), every thumbnail made as it comes into view
  (gallery_thumbnails_made counts them; a fling of a screen or more a frame would make
  none until it stops).
- gallery_memory_growth_mb: resident memory after the scroll (every thumbnail of the last
  screen shown) over resident memory before the panel was made.

    python -m studio.bench.gallery [--images N]   prints one JSON object
"""

from __future__ import annotations

import argparse
import gc
import io
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

IMAGES = 10_000
PANEL_SIZE = (640, 800)
TICK_MS = 1
STEP_MS = 16
WAIT_S = 120


def make_folder(folder: Path, count: int) -> None:
    """`count` copies of one 64×64 PNG, the last written the newest (fast: bytes only)."""
    from PIL import Image, ImageDraw

    image = Image.new("RGB", (64, 64), (40, 60, 160))
    ImageDraw.Draw(image).ellipse((16, 16, 48, 48), (220, 60, 60))
    buffer = io.BytesIO()
    image.save(buffer, "PNG")
    data = buffer.getvalue()
    folder.mkdir(parents=True, exist_ok=True)
    start = time.time() - count
    for number in range(count):
        path = folder / f"image-{number:06d}.png"
        path.write_bytes(data)
        os.utime(path, (start + number, start + number))


def resident_mb() -> float:
    """This process's resident memory now."""
    try:
        with open("/proc/self/statm") as statm:
            pages = int(statm.read().split()[1])
        return pages * os.sysconf("SC_PAGE_SIZE") / 2**20
    except (OSError, ValueError, IndexError, AttributeError):
        import psutil  # not Linux

        return psutil.Process().memory_info().rss / 2**20


def measure(count: int | None = None) -> dict[str, Any]:
    """The gallery's figures for a folder of `count` images (IMAGES when None), measured in
    a process of its own."""
    count = IMAGES if count is None else count
    done = subprocess.run(
        [sys.executable, "-m", "studio.bench.gallery", "--images", str(count)],
        capture_output=True,
        text=True,
        timeout=WAIT_S * 3,
        env={**os.environ, "QT_QPA_PLATFORM": os.environ.get("QT_QPA_PLATFORM", "offscreen")},
        check=False,
    )
    if done.returncode != 0:
        raise RuntimeError(f"the gallery bench failed: {done.stderr.strip()[-500:]}")
    return json.loads(done.stdout.strip().splitlines()[-1])


def run_here(count: int = IMAGES) -> dict[str, Any]:
    """The measurement itself, in this process (which it gives a QApplication)."""
    os.environ.setdefault("QT_QPA_PLATFORM", "offscreen")
    from PySide6.QtWidgets import QApplication

    from studio.ui.theme import apply_theme

    app = QApplication.instance() or QApplication([sys.argv[0]])
    apply_theme(app, "dark")
    from studio.ui.gallery import GalleryPanel  # noqa: F401 - imported before the freeze

    gc.freeze()  # as the studio does once its window is up (studio/ui/app.py)
    with tempfile.TemporaryDirectory(prefix="studio-gallery-bench-") as tmp:
        folder = Path(tmp) / "outputs"
        make_folder(folder, count)
        return _measure_panel(app, folder, Path(tmp) / "thumbnails")


def _measure_panel(app: Any, folder: Path, cache: Path) -> dict[str, Any]:
    from PySide6.QtCore import QEventLoop, Qt, QTimer

    from studio.ui.gallery import GalleryPanel

    ticks: list[float] = []
    ticker = QTimer()
    ticker.setTimerType(Qt.TimerType.PreciseTimer)
    ticker.setInterval(TICK_MS)
    ticker.timeout.connect(lambda: ticks.append(time.perf_counter()))

    def wait_until(condition: Any, seconds: float = WAIT_S) -> None:
        loop = QEventLoop()
        check = QTimer()
        check.setInterval(1)
        check.timeout.connect(lambda: condition() and loop.quit())
        check.start()
        QTimer.singleShot(round(seconds * 1000), loop.quit)
        if not condition():
            loop.exec()
        check.stop()

    def max_gap_ms() -> float:
        gaps = [(b - a) * 1000 for a, b in zip(ticks, ticks[1:], strict=False)]
        return max(gaps, default=0.0)

    gc.collect()
    app.processEvents()
    before_mb = resident_mb()
    ticker.start()
    started = time.perf_counter()
    panel = GalleryPanel(folder, thumbnail_cache=cache)
    try:
        panel.resize(*PANEL_SIZE)
        panel.show()
        model, view = panel.model, panel.view

        def first_screen_shown() -> bool:
            rows = panel.visible_rows()
            if rows is None:
                return False
            keys = [model.key_at(row) for row in range(rows[0], rows[1] + 1)]
            return all(key in model.cache for key in keys)

        wait_until(first_screen_shown)
        view.viewport().repaint()  # painted, not only ready
        first_s = time.perf_counter() - started
        wait_until(lambda: not model.is_listing())
        listing_s = time.perf_counter() - started
        listing_stall = max_gap_ms()

        bar = view.verticalScrollBar()
        ticks.clear()
        stepper = QTimer()
        stepper.setInterval(STEP_MS)
        stepper.timeout.connect(lambda: bar.setValue(bar.value() + bar.pageStep() // 3))
        made = [0]
        model.loader.loaded.connect(lambda *_: made.__setitem__(0, made[0] + 1))
        stepper.start()
        wait_until(lambda: bar.value() >= bar.maximum())
        stepper.stop()
        wait_until(first_screen_shown)  # the last screen's thumbnails are in
        view.viewport().repaint()
        scroll_stall = max_gap_ms()
        scrolled_rows = model.rowCount()
        ticker.stop()
        gc.collect()
        app.processEvents()
        growth_mb = resident_mb() - before_mb
        cached = len(model.cache)
    finally:
        ticker.stop()
        panel.shutdown()
        panel.close()
        panel.deleteLater()
        app.processEvents()
    return {
        "gallery_images": scrolled_rows,
        "gallery_first_thumbnails_s": first_s,
        "gallery_listing_s": listing_s,
        "gallery_listing_max_stall_ms": listing_stall,
        "gallery_scroll_max_stall_ms": scroll_stall,
        "gallery_memory_growth_mb": growth_mb,
        "gallery_thumbnails_made": made[0],
        "gallery_thumbnails_in_memory": cached,
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--images", type=int, default=IMAGES)
    args = parser.parse_args(argv)
    print(json.dumps(run_here(args.images)))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
