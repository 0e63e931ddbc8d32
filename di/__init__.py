"""Composition root: settings read once from the environment, and the lagom container."""

from di.container import build_container, child_environment, load_settings
from di.settings import Settings, SettingsError

__all__ = ["Settings", "SettingsError", "build_container", "child_environment", "load_settings"]
