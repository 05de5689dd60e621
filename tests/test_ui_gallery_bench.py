"""`studio bench --parts gallery` measures the gallery on a generated folder and reports
its three figures against their targets (a small folder here; the bench's own is 10,000)."""

from __future__ import annotations

import math

import pytest

from studio.bench import gallery
from studio.bench.runner import PARTS, format_table, run_bench

FIGURES = (
    "gallery_first_thumbnails_s",
    "gallery_scroll_max_stall_ms",
    "gallery_memory_growth_mb",
    "gallery_listing_s",
    "gallery_listing_max_stall_ms",
)


def test_the_gallery_part_reports_its_figures(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(gallery, "IMAGES", 400)
    assert "gallery" in PARTS
    results = run_bench(quick=True, model="studio-tiny", parts=("gallery",))
    assert results["gallery_images"] == 400  # every image listed and scrolled through
    for key in FIGURES:
        assert isinstance(results[key], float) and math.isfinite(results[key]), key
    assert 0 < results["gallery_first_thumbnails_s"] < results["gallery_listing_s"] + 5
    assert results["gallery_scroll_max_stall_ms"] > 0  # the ticks were counted
    assert results["gallery_thumbnails_in_memory"] > 0
    table = format_table(results)
    assert "first thumbnails on screen" in table and "≤ 0.5" in table
    assert "engine_overhead_ratio" not in results and "peak_rss_mb" not in results  # alone


def test_the_bench_folder_is_made_of_distinct_files_newest_last(tmp_path) -> None:  # noqa: ANN001
    gallery.make_folder(tmp_path, 5)
    files = sorted(tmp_path.iterdir())
    assert len(files) == 5 and len({f.read_bytes() for f in files}) == 1
    times = [f.stat().st_mtime for f in files]
    assert times == sorted(times) and len(set(times)) == 5
