"""What each speed-up bought when `studio bench` last measured it on this machine.

The bench records its speed-up ladder here, one entry per kind of device, and the Settings
dialog shows it beside each speed-up: the user sees figures of their own machine and
model size, not ours. Torch-free, since the UI thread reads it.
"""

from __future__ import annotations

import dataclasses
import datetime
import json
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from studio.core.paths import config_dir
from studio.core.saving import write_atomically
from studio.core.settings import SPEEDUPS

FILE_NAME = "speedups-measured.json"
DEVICE_KINDS = ("cuda", "mps", "cpu")  # the order Automatic picks a device in
NO_CHANGE = 0.02  # a time ratio within 2% of 1 is within the bench's noise
# the ladder's rows kept: the engine without speed-ups, then one row per speed-up, each
# with the speed-ups above it (bench/ladder.py)
KEPT_ROWS = ("engine", *(speedup.field for speedup in SPEEDUPS))


@dataclasses.dataclass(frozen=True)
class LadderRow:
    """One row of the bench's speed-up ladder, as measured, or why it was not."""

    s_per_image: float | None = None  # the median of the runs
    first_run_s: float | None = None
    error: str | None = None  # the row failed in the bench
    skipped: str | None = None  # the row cannot run on this device
    runs: tuple[float, ...] = ()  # seconds per image of each repetition

    @property
    def noise(self) -> float:
        """How far the runs stray from their median, as a share of it (half their range)."""
        if len(self.runs) < 2 or not self.s_per_image:
            return 0.0
        return (max(self.runs) - min(self.runs)) / 2 / self.s_per_image


@dataclasses.dataclass(frozen=True)
class SpeedupFigure:
    """One speed-up's figure: its seconds per image over those of the row above it (the
    same speed-ups less this one), or why there is none."""

    time_ratio: float | None = None
    first_image_s: float | None = None  # where compilation is paid: the first image's seconds
    error: str | None = None
    skipped: str | None = None
    noise: float = 0.0  # how much of the ratio the runs' own spread could account for
    repeats: int = 0  # runs of each of the two rows (0: not recorded, an older file)

    @property
    def measurable(self) -> bool:
        """Whether the change is larger than what the runs' spread alone could make."""
        return self.time_ratio is not None and abs(self.time_ratio - 1) > max(NO_CHANGE, self.noise)

    def short(self) -> str:
        """A few words for beside the checkbox, with what they rest on."""
        if self.error:
            return "failed in studio bench"
        if self.skipped:
            return self.skipped.rstrip(".")
        if self.time_ratio is None:
            return ""
        change = self.time_ratio - 1
        if self.measurable:
            text = f"{abs(change):.0%} {'less' if change < 0 else 'more'} time"
        else:
            text = "no measurable change"
        if self.repeats:
            text += f" (±{self.noise:.0%}, {self.repeats} runs)"
        if self.first_image_s is not None:
            text += f", first image {_seconds(self.first_image_s)}"
        return text

    def detail(self) -> str:
        """A sentence for the tooltip."""
        if self.error:
            return f"It failed when studio bench measured it: {self.error}"
        if self.skipped:
            return f"studio bench did not measure it: {self.skipped}"
        if self.time_ratio is None:
            return ""
        text = (
            f"Each image took {self.time_ratio:.2f}× the time it took with only the speed-ups "
            "above it"
        )
        if self.repeats:
            text += (
                f" (medians of {self.repeats} runs each; the runs' spread alone could account "
                f"for ±{self.noise:.0%})"
            )
        if self.first_image_s is not None:
            text += f"; the first image at a new size took {_seconds(self.first_image_s)}"
        return text + "."


@dataclasses.dataclass(frozen=True)
class Measurement:
    device: str  # a DEVICE_KINDS entry
    where: str  # the device as the user knows it: "CPU", "NVIDIA H100 80GB HBM3"
    workload: str  # "studio-tiny, 64×64, 25 steps"
    date: str  # ISO date of the latest run it holds
    rows: dict[str, LadderRow]  # by KEPT_ROWS name

    def figures(self) -> dict[str, SpeedupFigure]:
        """Each speed-up against the row above it, where both were measured."""
        figures: dict[str, SpeedupFigure] = {}
        for above, speedup in zip(KEPT_ROWS, SPEEDUPS, strict=False):
            row, previous = self.rows.get(speedup.field), self.rows.get(above)
            if row is None:
                continue
            if row.error or row.skipped:
                figures[speedup.field] = SpeedupFigure(error=row.error, skipped=row.skipped)
            elif row.s_per_image and previous is not None and previous.s_per_image:
                figures[speedup.field] = SpeedupFigure(
                    time_ratio=row.s_per_image / previous.s_per_image,
                    first_image_s=row.first_run_s if speedup.compiles else None,
                    # the ratio of two noisy medians: their spreads add up
                    noise=(row.noise**2 + previous.noise**2) ** 0.5,
                    repeats=min(len(row.runs), len(previous.runs)),
                )
        return figures

    def caption(self) -> str:
        return (
            f"Measured by studio bench on this machine's {self.where} ({self.workload}, "
            f"{self.date}): time per image with each speed-up, against the same without it."
        )


def from_ladder(
    rows: Mapping[str, Mapping[str, Any]], device: str, where: str, workload: str
) -> Measurement:
    """A measurement of the ladder's rows (bench/ladder.py) as the bench reports them."""
    kept = {
        name: LadderRow(
            s_per_image=row.get("s_per_image"),
            first_run_s=row.get("first_run_s"),
            error=row.get("error"),
            skipped=row.get("skipped"),
            runs=tuple(row.get("s_per_image_runs", ())),
        )
        for name, row in rows.items()
        if name in KEPT_ROWS
    }
    today = datetime.date.today().isoformat()
    return Measurement(device.partition(":")[0], where, workload, today, kept)


def record(measurement: Measurement, path: Path | None = None) -> Path | None:
    """Keep this run's rows for its kind of device, in place of the last run's; None if no
    speed-up has a figure to show. The same bench again (a run cut short, finished with
    `--rows`) adds its rows to the last run's."""
    if not measurement.rows:
        return None  # nothing new: the last run's entry stays as it was, date included
    path = path or config_dir() / FILE_NAME
    kept = load(path)
    earlier = kept.get(measurement.device)
    if earlier and (earlier.where, earlier.workload) == (measurement.where, measurement.workload):
        rows = {**earlier.rows, **measurement.rows}
        measurement = dataclasses.replace(measurement, rows=rows)
    if not any(f.time_ratio is not None for f in measurement.figures().values()):
        return None
    kept[measurement.device] = measurement
    data = {device: dataclasses.asdict(m) for device, m in kept.items()}
    text = json.dumps(data, indent=2, ensure_ascii=False).encode()
    path.parent.mkdir(parents=True, exist_ok=True)
    write_atomically(path, lambda handle: handle.write(text))
    return path


def load(path: Path | None = None) -> dict[str, Measurement]:
    """The recorded measurements by kind of device; a missing or damaged file is none."""
    path = path or config_dir() / FILE_NAME
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except Exception:  # noqa: BLE001 - unreadable, not JSON, nested too deep: nothing kept
        return {}
    if not isinstance(data, dict):
        return {}
    measurements = {}
    for device, entry in data.items():
        try:
            measurements[device] = _measurement(device, entry)
        except Exception:  # noqa: BLE001 - one damaged entry costs only itself
            continue
    return measurements


def for_device(measurements: Mapping[str, Measurement], device: str | None) -> Measurement | None:
    """The measurement for a device setting ("cuda:1", "cpu"…); for Automatic (None), the one
    of the device Automatic would most likely pick among those measured."""
    if device is not None:
        return measurements.get(device.partition(":")[0])
    return next((measurements[k] for k in DEVICE_KINDS if k in measurements), None)


def _measurement(device: str, entry: dict[str, Any]) -> Measurement:
    if device not in DEVICE_KINDS:
        raise ValueError(device)
    rows = {
        name: LadderRow(
            s_per_image=_seconds_or_none(row.get("s_per_image")),
            first_run_s=_seconds_or_none(row.get("first_run_s")),
            error=_text(row.get("error")),
            skipped=_text(row.get("skipped")),
            runs=tuple(_seconds_or_none(run) for run in row.get("runs", ())[:1000]),
        )
        for name, row in entry["rows"].items()
        if name in KEPT_ROWS
    }
    return Measurement(
        device, str(entry["where"]), str(entry["workload"]), str(entry["date"]), rows
    )


def _seconds_or_none(value: Any) -> float | None:
    if value is None:
        return None
    number = float(value)
    if not 0 < number < 1e6:  # no image takes days: a damaged file (NaN falls out here too)
        raise ValueError(value)
    return number


def _text(value: Any) -> str | None:
    return None if value is None else str(value)


def _seconds(seconds: float) -> str:
    return f"{seconds:.0f} s" if seconds >= 10 else f"{seconds:.1f} s"
