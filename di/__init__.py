"""Composition roots: settings read once from the environment (`di.environment`), the
lagom container, and one root per process that builds its parts (`di.server_root`,
`di.dataflow_root`)."""

from di.container import build_container
from di.environment import child_environment, load_settings
from di.settings import Settings, SettingsError

__all__ = ["Settings", "SettingsError", "build_container", "child_environment", "load_settings"]
