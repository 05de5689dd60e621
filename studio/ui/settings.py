"""What the studio remembers between runs, kept in QSettings (an INI file).

Typed accessors keep key names and defaults in one place. Tests give the file a temporary
path so they never touch the user's settings.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from PySide6.QtCore import QByteArray, QSettings

from studio.core.files import is_regular_file
from studio.core.formats import FORMATS, SaveFormat
from studio.core.paths import config_dir, output_dir
from studio.core.settings import (
    DEFAULT_BRANCH_MEMORY_MB,
    MAX_BRANCH_MEMORY_MB,
    PREVIEW_METHODS,
    SPEEDUPS,
    EngineSettings,
)
from studio.core.state import notice, set_aside
from studio.core.text import printable

MAX_HISTORY = 50

AUTO = "auto"  # stored for an engine setting left to the studio (None in EngineSettings)
DEVICES = ("cpu", "cuda", "mps")
DTYPES = ("float16", "bfloat16", "float32")
_TRISTATE_NAMES = {None: AUTO, True: "on", False: "off"}
BACKENDS = ("local", "ray")  # this machine's worker thread, or a Ray cluster's engines
DEFAULT_RAY_ADDRESS = "auto"


MAX_SETTINGS_BYTES = 16 * 1024 * 1024  # window state, prompt history: far below this


class Settings:
    def __init__(self, path: Path | None = None) -> None:
        self.path = path or config_dir() / "studio.ini"
        if _is_broken(self.path):  # kept aside, and the studio starts from its defaults
            set_aside(self.path, "damaged (not a settings file the studio writes)")
        self._qs = QSettings(str(self.path), QSettings.Format.IniFormat)
        if self._qs.status() != QSettings.Status.NoError:
            set_aside(self.path, "unreadable")
            self._qs = QSettings(str(self.path), QSettings.Format.IniFormat)

    def sync(self) -> None:
        self._qs.sync()

    # -- window -----------------------------------------------------------------------------

    def geometry(self) -> QByteArray | None:
        value = self._qs.value("window/geometry")
        return value if isinstance(value, QByteArray) else None

    def window_state(self) -> QByteArray | None:
        value = self._qs.value("window/state")
        return value if isinstance(value, QByteArray) else None

    def save_window(self, geometry: QByteArray, state: QByteArray) -> None:
        self._qs.setValue("window/geometry", geometry)
        self._qs.setValue("window/state", state)

    # -- parameters ---------------------------------------------------------------------------

    def last_request(self) -> dict[str, Any] | None:
        return self._json("parameters/last_request")

    def set_last_request(self, data: dict[str, Any]) -> None:
        self._qs.setValue("parameters/last_request", json.dumps(data))

    def prompt_history(self) -> list[tuple[str, str]]:
        """(prompt, negative prompt) pairs, newest first."""
        data = self._json("parameters/prompt_history")
        if not isinstance(data, list):
            return []
        pairs = [
            (str(item[0]), str(item[1]))
            for item in data
            if isinstance(item, list) and len(item) == 2
        ]
        return pairs[:MAX_HISTORY]

    def set_prompt_history(self, pairs: list[tuple[str, str]]) -> None:
        data = [list(pair) for pair in pairs[:MAX_HISTORY]]
        self._qs.setValue("parameters/prompt_history", json.dumps(data))

    # -- studio -------------------------------------------------------------------------------

    def output_dir(self) -> Path:
        value = self._qs.value("studio/output_dir")
        if not isinstance(value, str) or not value:
            return output_dir()
        if "\x00" in value or len(value) > 4096:
            notice(
                f"The output folder in the settings ('{printable(value)}') is not a path a "
                f"folder can have; images go to {output_dir()}."
            )
            self._qs.remove("studio/output_dir")
            return output_dir()
        return Path(value)

    def set_output_dir(self, folder: Path | None) -> None:
        """None goes back to the default folder (and follows LATENT_STUDIO_OUTPUT)."""
        if folder is None:
            self._qs.remove("studio/output_dir")
        else:
            self._qs.setValue("studio/output_dir", str(folder))

    def preview_method(self) -> str:
        value = self._qs.value("studio/preview_method", "linear")
        return value if value in PREVIEW_METHODS else "linear"

    def preview_every(self) -> int:
        try:
            return max(1, int(self._qs.value("studio/preview_every", 1)))
        except (TypeError, ValueError):
            return 1

    def set_preview(self, method: str, every: int) -> None:
        self._qs.setValue("studio/preview_method", method)
        self._qs.setValue("studio/preview_every", max(1, int(every)))

    def branch_memory_mb(self) -> int:
        try:
            value = int(self._qs.value("studio/branch_memory_mb", DEFAULT_BRANCH_MEMORY_MB))
        except (TypeError, ValueError):
            return DEFAULT_BRANCH_MEMORY_MB
        return min(max(0, value), MAX_BRANCH_MEMORY_MB)

    def engine_settings(self) -> EngineSettings:
        """How the engine runs models: previews (under studio/…) and placement (engine/…)."""
        return EngineSettings(
            device=self._choice("engine/device", DEVICES),
            dtype=self._choice("engine/dtype", DTYPES),
            attention_slicing=self._tristate("engine/attention_slicing"),
            vae_tiling=self._tristate("engine/vae_tiling"),
            cpu_offload=self._tristate("engine/cpu_offload"),
            fp8_weights=self._bool("engine/fp8_weights", False),
            preview_method=self.preview_method(),
            preview_every=self.preview_every(),
            branch_memory_mb=self.branch_memory_mb(),
            **{s.field: self._bool(f"engine/{s.field}", False) for s in SPEEDUPS},
        )

    def set_engine_settings(self, settings: EngineSettings) -> None:
        """Every field; `None` ("automatic") is stored as "auto"."""
        self.set_preview(settings.preview_method, settings.preview_every)
        self._qs.setValue("studio/branch_memory_mb", int(settings.branch_memory_mb))
        self._qs.setValue("engine/device", settings.device or AUTO)
        self._qs.setValue("engine/dtype", settings.dtype or AUTO)
        for key, value in (
            ("engine/attention_slicing", settings.attention_slicing),
            ("engine/vae_tiling", settings.vae_tiling),
            ("engine/cpu_offload", settings.cpu_offload),
        ):
            self._qs.setValue(key, _TRISTATE_NAMES[value])
        self._qs.setValue("engine/fp8_weights", bool(settings.fp8_weights))
        for speedup in SPEEDUPS:
            self._qs.setValue(f"engine/{speedup.field}", bool(getattr(settings, speedup.field)))

    def save_format(self) -> SaveFormat:
        """The format images are saved in (PNG unless the artist chose JPEG or WebP)."""
        kind = self._qs.value("studio/save_format", "png")
        try:
            quality = int(self._qs.value("studio/save_quality", 95))
        except (TypeError, ValueError):
            quality = 95
        if kind not in FORMATS:
            kind = "png"
        return SaveFormat(kind, max(1, min(100, quality)))

    def set_save_format(self, save_as: SaveFormat) -> None:
        self._qs.setValue("studio/save_format", save_as.kind)
        self._qs.setValue("studio/save_quality", save_as.quality)

    def open_folder(self) -> Path | None:
        """Where the Open dialog was last used, if that folder still exists."""
        value = self._qs.value("studio/open_folder")
        if isinstance(value, str) and value:
            folder = Path(value)
            if folder.is_dir():
                return folder
        return None

    def set_open_folder(self, folder: Path) -> None:
        self._qs.setValue("studio/open_folder", str(folder))

    def models_dir(self) -> Path | None:
        """The artist's models folder (AUTOMATIC1111's or ComfyUI's), if set."""
        value = self._qs.value("studio/models_dir")
        return Path(value) if isinstance(value, str) and value else None

    def set_models_dir(self, folder: Path | None) -> None:
        self._qs.setValue("studio/models_dir", str(folder) if folder else "")

    def lora_dir(self) -> Path | None:
        """A LoRA folder of the artist's, searched besides the models folder's."""
        value = self._qs.value("studio/lora_dir")
        return Path(value) if isinstance(value, str) and value else None

    def set_lora_dir(self, folder: Path | None) -> None:
        self._qs.setValue("studio/lora_dir", str(folder) if folder else "")

    def backend(self) -> str:
        """Where jobs run: "local" (this machine, the default) or "ray" (a Ray cluster)."""
        value = self._qs.value("studio/backend", "local")
        return value if value in BACKENDS else "local"

    def ray_address(self) -> str:
        """The Ray cluster's address: ray://host:10001, auto, or local."""
        value = self._qs.value("studio/ray_address", DEFAULT_RAY_ADDRESS)
        if not isinstance(value, str) or not printable(value).strip():
            return DEFAULT_RAY_ADDRESS
        return printable(value).strip()

    def set_backend(self, backend: str, ray_address: str) -> None:
        self._qs.setValue("studio/backend", backend if backend in BACKENDS else "local")
        self._qs.setValue("studio/ray_address", ray_address.strip() or DEFAULT_RAY_ADDRESS)

    def theme(self) -> str:
        value = self._qs.value("studio/theme", "dark")
        return value if value in ("dark", "light") else "dark"

    def set_theme(self, name: str) -> None:
        self._qs.setValue("studio/theme", name)

    # -- helpers ------------------------------------------------------------------------------

    def _json(self, key: str) -> Any:
        value = self._qs.value(key)
        if not isinstance(value, str):
            return None
        try:
            return json.loads(value)
        except (ValueError, RecursionError):
            return None

    def _choice(self, key: str, allowed: tuple[str, ...]) -> str | None:
        """A stored name from `allowed` (a device may carry an index: "cuda:1"), else None."""
        value = self._qs.value(key)
        if not isinstance(value, str):
            return None
        value = value.strip().lower()
        base, _, index = value.partition(":")
        if base in allowed and (not index or (base == "cuda" and index.isdigit())):
            return value
        return None

    def _tristate(self, key: str) -> bool | None:
        value = self._qs.value(key)
        if isinstance(value, bool):
            return value
        if not isinstance(value, str):
            return None
        return {"on": True, "true": True, "off": False, "false": False}.get(value.strip().lower())

    def _bool(self, key: str, default: bool) -> bool:
        value = self._qs.value(key, default)
        if isinstance(value, str):
            return value.lower() in ("true", "1", "yes")
        return bool(value)


def _is_broken(path: Path) -> bool:
    """A settings file the studio cannot have written: binary, not UTF-8, or huge. (Qt's
    INI reader takes anything and makes keys of garbage, so the bytes are looked at.)"""
    if not path.exists():
        return False
    if not is_regular_file(path):
        return True
    try:
        with open(path, "rb") as handle:
            data = handle.read(MAX_SETTINGS_BYTES + 1)
        data.decode("utf-8")
    except (OSError, UnicodeDecodeError):
        return True
    return len(data) > MAX_SETTINGS_BYTES or b"\x00" in data
