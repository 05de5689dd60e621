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

from studio.engine.paths import config_dir
from studio.engine.saving import write_atomically
from studio.engine.settings import SPEEDUPS

FILE_NAME = "speedups-measured.json"
DEVICE_KINDS = ("cuda", "mps", "cpu")  # the order Automatic picks a device in
NO_CHANGE = 0.02  # a time ratio within 2% of 1 is within the bench's noise


@dataclasses.dataclass(frozen=True)
class SpeedupFigure:
    """One speed-up's figure: its seconds per image over those of the row above it (the
    same speed-ups less this one), or why there is none."""

    time_ratio: float | None = None
    first_image_s: float | None = None  # where compilation is paid: the first image's seconds
    error: str | None = None  # the row failed in the bench
    skipped: str | None = None  # the row cannot run on this device

    def short(self) -> str:
        """A few words for beside the checkbox."""
        if self.error:
            return "failed in studio bench"
        if self.skipped:
            return self.skipped.rstrip(".")
        if self.time_ratio is None:
            return ""
        change = self.time_ratio - 1
        sign = "−" if change < 0 else "+"
        text = (
            "no measurable change" if abs(change) <= NO_CHANGE else f"{sign}{abs(change):.0%} time"
        )
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
        if self.first_image_s is not None:
            text += f"; the first image at a new size took {_seconds(self.first_image_s)}"
        return text + "."


@dataclasses.dataclass(frozen=True)
class Measurement:
    device: str  # a DEVICE_KINDS entry
    where: str  # the device as the user knows it: "CPU", "NVIDIA H100 80GB HBM3"
    workload: str  # "studio-tiny, 64×64, 25 steps"
    date: str  # ISO date of the run
    figures: dict[str, SpeedupFigure]  # by SPEEDUPS field

    def caption(self) -> str:
        return (
            f"Measured by studio bench on this machine's {self.where} ({self.workload}, "
            f"{self.date}): time per image with each speed-up, against the same without it."
        )


def from_ladder(
    rows: Mapping[str, Mapping[str, Any]], device: str, where: str, workload: str
) -> Measurement:
    """The figures of a speed-up ladder's rows (bench/ladder.py): each speed-up row against
    the row above it, which has the same speed-ups less this one."""
    figures: dict[str, SpeedupFigure] = {}
    above = "engine"
    for speedup in SPEEDUPS:
        row, previous = rows.get(speedup.field, {}), rows.get(above, {})
        above = speedup.field
        if "error" in row or "skipped" in row:
            figures[speedup.field] = SpeedupFigure(
                error=row.get("error"), skipped=row.get("skipped")
            )
        elif row.get("s_per_image") and previous.get("s_per_image"):
            figures[speedup.field] = SpeedupFigure(
                time_ratio=row["s_per_image"] / previous["s_per_image"],
                first_image_s=row["first_run_s"] if speedup.compiles else None,
            )
    today = datetime.date.today().isoformat()
    return Measurement(_kind(device), where, workload, today, figures)


def record(measurement: Measurement, path: Path | None = None) -> Path | None:
    """Keep this run's figures for its kind of device, replacing the last run's; None if it
    measured nothing to keep."""
    if not measurement.figures:
        return None
    path = path or config_dir() / FILE_NAME
    kept = load(path)
    earlier = kept.get(measurement.device)
    if earlier and (earlier.where, earlier.workload) == (measurement.where, measurement.workload):
        # the same bench again (a run cut short, finished with --rows): keep what it lacks
        figures = {**earlier.figures, **measurement.figures}
        measurement = dataclasses.replace(measurement, figures=figures)
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
    except (OSError, ValueError):
        return {}
    if not isinstance(data, dict):
        return {}
    measurements = {}
    for device, entry in data.items():
        try:
            measurements[device] = _measurement(device, entry)
        except (TypeError, ValueError, KeyError, AttributeError):
            continue  # one damaged entry costs only itself
    return measurements


def for_device(measurements: Mapping[str, Measurement], device: str | None) -> Measurement | None:
    """The measurement for a device setting ("cuda:1", "cpu"…); for Automatic (None), the one
    of the device Automatic would most likely pick among those measured."""
    if device is not None:
        return measurements.get(_kind(device))
    return next((measurements[k] for k in DEVICE_KINDS if k in measurements), None)


def _measurement(device: str, entry: dict[str, Any]) -> Measurement:
    if device not in DEVICE_KINDS:
        raise ValueError(device)
    fields = {s.field for s in SPEEDUPS}
    figures = {
        name: SpeedupFigure(
            time_ratio=_number(figure.get("time_ratio")),
            first_image_s=_number(figure.get("first_image_s")),
            error=_text(figure.get("error")),
            skipped=_text(figure.get("skipped")),
        )
        for name, figure in entry["figures"].items()
        if name in fields
    }
    return Measurement(
        device, str(entry["where"]), str(entry["workload"]), str(entry["date"]), figures
    )


def _number(value: Any) -> float | None:
    if value is None:
        return None
    number = float(value)
    if not number > 0 or number == float("inf"):
        raise ValueError(value)
    return number


def _text(value: Any) -> str | None:
    return None if value is None else str(value)


def _kind(device: str) -> str:
    return device.partition(":")[0]


def _seconds(seconds: float) -> str:
    return f"{seconds:.0f} s" if seconds >= 10 else f"{seconds:.1f} s"
