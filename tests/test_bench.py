"""`studio bench` runs end to end and reports every figure, so it never rots.

Times are not asserted: the bench reports them; only their presence and sanity are checked.
"""

from __future__ import annotations

import json
import math
import os
import subprocess
import sys
from pathlib import Path

import pytest

from studio.bench.runner import all_finite, format_table
from studio.core import speedup_figures
from studio.core.catalog import ModelError, resolve

REQUIRED = [
    "engine_overhead_ratio",
    "window_over_engine_ratio",
    "preview_cost_share",
    "event_loop_gap_ms",
    "live_latency_ms",
    "live_event_loop_gap_ms",
    "startup_window_s",
    "startup_first_image_s",
    "exit_idle_s",
    "exit_busy_s",
    "mode_switch_ms",
    "mode_switch_weight_loads",
    "peak_rss_mb",
    "speedup_s_per_image_ratio",
    "speedup_first_run_s",
]


PROCESS = ("startup_window_s", "startup_first_image_s", "exit_idle_s", "exit_busy_s")


def _have_embedded() -> bool:
    try:
        resolve("studio-tiny")
        return True
    except ModelError:
        return False


def _bench(*args: str, timeout: int, config: Path) -> dict:
    env = {
        **os.environ,
        "QT_QPA_PLATFORM": "offscreen",
        "HF_HUB_OFFLINE": "1",
        "LATENT_STUDIO_CONFIG": str(config),  # where it keeps the speed-up figures
    }
    done = subprocess.run(
        [sys.executable, "-m", "studio.cli", *args, "--json"],
        capture_output=True,
        text=True,
        timeout=timeout,
        env=env,
    )
    assert done.returncode == 0, done.stderr[-2000:]
    return json.loads(done.stdout)


# Quick benches of the parts the tests look at, for the module: each run of the command
# starts Python, torch and the studio again (seconds each), so the parts share three runs;
# three, not one, so that none comes near a minute on a busy machine (two took 51 s and
# 48 s of set-up on this 2-core host).
QUICK_PARTS = {
    "engine": "engine,window",
    "ladder": "memory,speedups,families",
    "process": "process",
}
ENGINE = [  # the figures of the "engine" run, and of the "ladder" run
    k for k in REQUIRED if k not in PROCESS and k != "peak_rss_mb" and not k.startswith("speedup")
]
LADDER = ["peak_rss_mb", "speedup_s_per_image_ratio", "speedup_first_run_s"]


def _quick_run(name: str, factory: pytest.TempPathFactory) -> tuple[dict, Path]:
    """One quick bench of `QUICK_PARTS[name]`, and the settings folder it wrote in."""
    if not _have_embedded():
        pytest.skip("the embedded model is not built yet")
    config = factory.mktemp(f"quick-bench-{name}")
    # without the compiled row: compiling takes most of a minute on this CPU, and the
    # compiled UNet is held to its pictures in tests/engine/test_speedups.py; two families
    # (one UNet, one packed transformer): the full run does all
    args = ("bench", "--quick", "--no-compile", "--parts", QUICK_PARTS[name])
    return _bench(*args, "--families", "flux,sd1", timeout=600, config=config), config


@pytest.fixture(scope="module")
def quick_bench(tmp_path_factory: pytest.TempPathFactory) -> tuple[dict, Path]:
    return _quick_run("engine", tmp_path_factory)


@pytest.fixture(scope="module")
def ladder_bench(tmp_path_factory: pytest.TempPathFactory) -> tuple[dict, Path]:
    return _quick_run("ladder", tmp_path_factory)


@pytest.fixture(scope="module")
def process_bench(tmp_path_factory: pytest.TempPathFactory) -> tuple[dict, Path]:
    return _quick_run("process", tmp_path_factory)


def test_quick_bench_reports_every_figure_of_the_engine_and_the_window(
    quick_bench: tuple[dict, Path],
) -> None:
    results, _config = quick_bench
    assert all_finite(results, ENGINE) == []
    assert set(results["event_loop_gap_ms"]) >= {"p50", "p99", "max"}
    live = results["live_latency_ms"]  # a brush stroke or prompt edit to the new picture
    assert live["edits"] == 5 and 0 < live["p50"] <= live["p90"]
    assert "linear" in results["preview_cost_share"]
    assert results["mode_switch_weight_loads"] == 0
    assert results["engine_overhead_ratio"] > 0.5  # a sane ratio, not a target
    assert results["window_over_engine_ratio"] > 0.5


def test_quick_bench_reports_memory_and_the_speed_up_ladder(
    ladder_bench: tuple[dict, Path],
) -> None:
    results, config = ladder_bench
    assert all_finite(results, LADDER) == []
    assert set(ENGINE) | set(LADDER) | set(PROCESS) == set(REQUIRED)  # every figure, once
    # the speed-up ladder on the embedded model: every row this CPU can run, none failed
    assert set(results["speedup_s_per_image_ratio"]) == {"channels_last", "fuse_qkv"}
    assert results["speedup_errors"] == {}
    # kept for Settings → Performance: what each speed-up bought on this CPU
    figures = speedup_figures.load(config / speedup_figures.FILE_NAME)["cpu"].figures()
    assert all(figures[row].time_ratio for row in ("channels_last", "fuse_qkv"))
    assert figures["fuse_qkv"].first_image_s is None  # only compiled rows pay a first image
    assert "compile_unet" not in results["speedup_first_run_s"]


def test_quick_bench_times_starting_and_quitting_the_studio(
    process_bench: tuple[dict, Path],
) -> None:
    results, _config = process_bench
    assert all_finite(results, list(PROCESS)) == []
    assert 0 < results["exit_idle_s"] < 30 and 0 < results["exit_busy_s"] < 30
    assert results["startup_window_s"] < results["startup_first_image_s"]


def test_gpu_bench_runs_on_a_cpu_at_a_small_size(tmp_path) -> None:  # noqa: ANN001
    saved = tmp_path / "bench" / "gpu.json"
    results = _bench(
        "--device",
        "cpu",
        "bench",
        "--gpu",
        "--model",
        "sd15-narrow",  # SD 1.5 itself takes minutes a row on a CPU; its size is tested apart
        "--size",
        "64",
        "--steps",
        "2",
        "--repeats",
        "1",
        "--no-compile",  # compiling takes minutes on this CPU
        "--out",
        str(saved),
        timeout=900,
        config=tmp_path,
    )
    gpu = results["gpu"]
    rows = ("bare_diffusers", "engine", "channels_last", "fuse_qkv")
    keys = [
        f"{row}.{figure}"
        for row in rows
        for figure in ("it_per_s", "s_per_image", "first_run_s", "utilisation")
    ]
    assert all_finite(gpu, [*keys, "matmul_peak_tflops_bf16"]) == []
    assert "compile_unet" not in gpu and "cuda_graphs" not in gpu
    assert gpu["engine"]["attention"] == "AttnProcessor2_0"  # SDPA
    assert gpu["fuse_qkv"]["attention"] == "FusedAttnProcessor2_0"
    assert gpu["unet_flops_per_step"] > 1e6  # counted on the UNet's real calls
    assert json.loads(saved.read_text()) == results  # the file a cut-short run would leave
    kept = speedup_figures.load(tmp_path / speedup_figures.FILE_NAME)["cpu"]
    assert kept.workload == "SD 1.5 layout, narrowed, 64×64, 2 steps"
    assert set(kept.figures()) == {"channels_last", "fuse_qkv"}  # the rows it measured


def test_gpu_bench_rows_are_checked_before_anything_runs() -> None:
    done = subprocess.run(
        [sys.executable, "-m", "studio.cli", "bench", "--gpu", "--rows", "engine,turbo"],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode == 2
    assert "no row called turbo" in done.stderr and "Traceback" not in done.stderr


@pytest.mark.parametrize(
    ("args", "words"),
    [
        (["--rows", "engine"], "add --gpu"),
        (["--gpu", "--rows", "compile_unet", "--no-compile"], "leaves none of the rows"),
        (["--gpu", "--out", "."], "is a folder"),
    ],
)
def test_bench_options_that_cannot_work_get_one_sentence_before_anything_runs(
    args: list[str], words: str
) -> None:
    done = subprocess.run(
        [sys.executable, "-m", "studio.cli", "bench", *args],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode == 2
    assert words in done.stderr and "Traceback" not in done.stderr
    assert len(done.stderr.strip().splitlines()) == 1


def test_families_part_reports_a_row_per_family_with_sane_figures(
    ladder_bench: tuple[dict, Path],
) -> None:
    """The engine over bare diffusers and the preview's share of a step, on the tiny
    pipelines of two families (one UNet, one packed transformer); the full run does all."""
    results, _config = ladder_bench
    names = ("sd1", "flux")  # the bench's order, whatever the order asked
    assert list(results["families"]["figures"]) == list(names)
    keys = [
        f"family_{n}_{figure}"
        for n in names
        for figure in ("engine_over_bare", "preview_share", "preview_share_in_run")
    ]
    assert all_finite(results, keys) == []
    for name in names:
        assert 0.5 < results[f"family_{name}_engine_over_bare"] < 3  # sane, not a target
        assert 0 < results[f"family_{name}_preview_share"] < 0.5
    # the table prints one row per family, in that order
    table = format_table(results).splitlines()
    assert [line.split()[0] for line in table if line.split()[:1] in (["sd1"], ["flux"])] == [
        "sd1",
        "flux",
    ]


def test_the_family_ratios_interval_holds_the_true_median_nineteen_times_in_twenty() -> None:
    """The interval beside each engine/bare median: drawn 51 at a time from a skewed
    distribution (as one run's time over the next is, other processes slowing either), it
    holds the distribution's median about 95% of the time, and is no wider than it needs."""
    import random
    import statistics

    from studio.bench.family_bench import median_interval

    draws = random.Random(7)
    true_median = 1.03 + math.log(2) * 0.05  # of 1.03 + an exponential with mean 0.05
    held, widths = 0, []
    for _ in range(2000):
        values = [1.03 + draws.expovariate(20) for _ in range(51)]
        median, low, high = median_interval(values)
        assert low <= median <= high and median == statistics.median(values)
        held += low <= true_median <= high
        widths.append(high - low)
    assert 0.93 <= held / 2000 <= 0.985
    assert statistics.median(widths) < 0.04
