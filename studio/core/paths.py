"""Where the studio keeps things: embedded models, outputs, settings."""

from __future__ import annotations

import os
from pathlib import Path

import platformdirs

APP_NAME = "latent-studio"

# resources/ sits beside the studio package in a source checkout and in the installed tree
# (packaging copies it); LATENT_STUDIO_RESOURCES overrides both.
RESOURCES_DIR = Path(
    os.environ.get("LATENT_STUDIO_RESOURCES", Path(__file__).resolve().parents[2] / "resources")
)
EMBEDDED_MODELS_DIR = RESOURCES_DIR / "models"


def output_dir() -> Path:
    """The default folder for generated images (LATENT_STUDIO_OUTPUT overrides it)."""
    override = os.environ.get("LATENT_STUDIO_OUTPUT")
    if override:
        return Path(override)
    return Path(platformdirs.user_pictures_dir()) / "Latent Studio"


def config_dir() -> Path:
    """Settings and the list of added models (LATENT_STUDIO_CONFIG overrides it)."""
    override = os.environ.get("LATENT_STUDIO_CONFIG")
    return Path(override) if override else Path(platformdirs.user_config_dir(APP_NAME))


def cache_dir() -> Path:
    return Path(platformdirs.user_cache_dir(APP_NAME))


def log_file() -> Path:
    """The studio's log: what went wrong in detail, tracebacks included
    (LATENT_STUDIO_LOGS overrides the folder)."""
    override = os.environ.get("LATENT_STUDIO_LOGS")
    folder = Path(override) if override else Path(platformdirs.user_log_dir(APP_NAME))
    return folder / "studio.log"
