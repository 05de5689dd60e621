"""The speed-up figures studio bench keeps for the Settings dialog."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from studio.core import speedup_figures
from studio.core.speedup_figures import from_ladder, load, record

# a CPU ladder as bench/ladder.py reports it: each row keeps the speed-ups above it
CPU_ROWS = {
    "bare_diffusers": {"s_per_image": 0.99, "first_run_s": 1.0},
    "engine": {"s_per_image": 1.00, "first_run_s": 1.1},
    "channels_last": {"s_per_image": 0.96, "first_run_s": 1.2},
    "fuse_qkv": {"s_per_image": 0.97, "first_run_s": 1.1},
    "compile_unet": {"s_per_image": 0.679, "first_run_s": 38.0},
    "cuda_graphs": {"skipped": "CUDA graphs need a CUDA GPU."},
}
SD15 = "SD 1.5 architecture, 512×512, 20 steps"


def test_each_speed_up_is_held_against_the_row_above_it() -> None:
    measured = from_ladder(CPU_ROWS, "cpu", "CPU", "studio-tiny, 64×64, 25 steps")
    figures = measured.figures()
    assert figures["channels_last"].short() == "4% less time"
    assert figures["fuse_qkv"].short() == "no measurable change"  # 0.97 / 0.96, in the noise
    # compiling: 0.679 / 0.97 = 0.70 of the time, and the first image says what it cost
    assert figures["compile_unet"].short() == "30% less time, first image 38 s"
    assert "0.70×" in figures["compile_unet"].detail()
    assert figures["channels_last"].first_image_s is None  # nothing compiles there
    assert figures["cuda_graphs"].short() == "CUDA graphs need a CUDA GPU"
    assert "CPU" in measured.caption() and "studio-tiny, 64×64" in measured.caption()


def test_a_slower_or_failed_speed_up_says_so() -> None:
    rows = {
        "engine": {"s_per_image": 1.0},
        "channels_last": {"s_per_image": 1.12, "first_run_s": 1.0},
        "fuse_qkv": {"error": "RuntimeError: no fused kernel"},
        "compile_unet": {"s_per_image": 0.8, "first_run_s": 40.0},
    }
    figures = from_ladder(rows, "cuda:0", "NVIDIA H100", SD15).figures()
    assert figures["channels_last"].short() == "12% more time"
    assert figures["fuse_qkv"].short() == "failed in studio bench"
    assert "no fused kernel" in figures["fuse_qkv"].detail()
    assert "compile_unet" not in figures  # the row above failed: no figure, not a wrong one


def test_figures_survive_a_restart_one_entry_per_kind_of_device(tmp_path: Path) -> None:
    path = tmp_path / "figures.json"
    cpu = from_ladder(CPU_ROWS, "cpu", "CPU", "studio-tiny, 64×64, 25 steps")
    gpu_rows = {"engine": {"s_per_image": 0.40}, "channels_last": {"s_per_image": 0.36}}
    gpu = from_ladder(gpu_rows, "cuda:0", "NVIDIA H100", SD15)
    record(cpu, path)
    record(gpu, path)
    kept = load(path)
    assert kept == {"cpu": cpu, "cuda": gpu}
    # Automatic shows the GPU's, as it would pick the GPU; a chosen device shows its own
    assert speedup_figures.for_device(kept, None) == gpu
    assert speedup_figures.for_device(kept, "cuda:1") == gpu
    assert speedup_figures.for_device(kept, "cpu") == cpu
    assert speedup_figures.for_device(kept, "mps") is None


def test_a_run_cut_short_and_finished_with_rows_gives_every_figure(tmp_path: Path) -> None:
    path = tmp_path / "figures.json"
    first = {
        "bare_diffusers": {"s_per_image": 0.39},
        "engine": {"s_per_image": 0.40},
        "channels_last": {"s_per_image": 0.36},
        "fuse_qkv": {"s_per_image": 0.30},
    }
    record(from_ladder(first, "cuda", "NVIDIA H100", SD15), path)
    path.write_text(path.read_text().replace(load(path)["cuda"].date, "2026-01-02"))
    # the GPU bench reports before its first row: nothing new, the entry stays as it was
    assert record(from_ladder({}, "cuda", "NVIDIA H100", SD15), path) is None
    assert load(path)["cuda"].date == "2026-01-02"
    # `--rows compile_unet,cuda_graphs` finishes it: its first row is held against the
    # earlier run's row above it
    rest = {
        "compile_unet": {"s_per_image": 0.20, "first_run_s": 50.0},
        "cuda_graphs": {"s_per_image": 0.15, "first_run_s": 55.0},
    }
    record(from_ladder(rest, "cuda", "NVIDIA H100", SD15), path)
    figures = load(path)["cuda"].figures()
    assert set(figures) == {"channels_last", "fuse_qkv", "compile_unet", "cuda_graphs"}
    assert figures["compile_unet"].time_ratio == pytest.approx(0.20 / 0.30)
    # another size is another measurement: it replaces, rather than mixes with, the last
    record(from_ladder(first, "cuda", "NVIDIA H100", "SD 1.5 architecture, 64×64"), path)
    assert set(load(path)["cuda"].figures()) == {"channels_last", "fuse_qkv"}


@pytest.mark.parametrize(
    "damage",
    [
        "{not json",
        "[" * 100_000,  # nested past the parser's recursion limit
        json.dumps({"cpu": {"where": "CPU"}, "tpu": {}, "cuda": [1]}),
        '{"cpu": {"where": "CPU", "workload": "x", "date": "d", "rows": '
        '{"engine": {"s_per_image": 1' + "0" * 400 + "}}}}",  # too large for a float
        '{"cpu": {"where": "CPU", "workload": "x", "date": "d", "rows": '
        '{"engine": {"s_per_image": 1e300}, "channels_last": {"s_per_image": NaN}}}}',
    ],
)
def test_a_damaged_file_shows_no_figures_and_is_written_anew(tmp_path: Path, damage: str) -> None:
    path = tmp_path / "figures.json"
    path.write_text(damage)
    assert load(path) == {}
    cpu = from_ladder(CPU_ROWS, "cpu", "CPU", "studio-tiny")
    record(cpu, path)
    assert load(path) == {"cpu": cpu}


def test_a_run_without_a_figure_to_show_keeps_nothing(tmp_path: Path) -> None:
    path = tmp_path / "figures.json"
    only_engine = {"engine": {"s_per_image": 1.0}}
    assert record(from_ladder(only_engine, "cpu", "CPU", "x"), path) is None
    skipped_only = {"cuda_graphs": {"skipped": "CUDA graphs need a CUDA GPU."}}
    assert record(from_ladder(skipped_only, "cpu", "CPU", "x"), path) is None
    assert not path.exists()


def test_a_figure_inside_its_own_noise_is_no_measurable_change(tmp_path: Path) -> None:
    """A noisy run (the runs of a row 30% apart) cannot show a 20% gain; a quiet one can,
    and each says how many runs it rests on and how far they stray."""
    noisy = {
        "engine": {"s_per_image": 1.0, "s_per_image_runs": [0.8, 1.0, 1.3]},
        "channels_last": {"s_per_image": 0.8, "s_per_image_runs": [0.7, 0.8, 1.1]},
    }
    quiet = {
        "engine": {"s_per_image": 1.0, "s_per_image_runs": [0.99, 1.0, 1.01] * 3},
        "channels_last": {"s_per_image": 0.8, "s_per_image_runs": [0.79, 0.8, 0.81] * 3},
    }
    noisy_figure = from_ladder(noisy, "cpu", "CPU", "w").figures()["channels_last"]
    assert noisy_figure.short() == "no measurable change (±35%, 3 runs)"
    assert "medians of 3 runs each" in noisy_figure.detail()
    quiet_figure = from_ladder(quiet, "cpu", "CPU", "w").figures()["channels_last"]
    assert quiet_figure.short() == "20% less time (±2%, 9 runs)"
    # kept and read back with its runs
    path = tmp_path / speedup_figures.FILE_NAME
    record(from_ladder(quiet, "cpu", "CPU", "w"), path)
    assert load(path)["cpu"].figures()["channels_last"].short() == quiet_figure.short()
