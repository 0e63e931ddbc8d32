"""The one place facestream reads its environment: a process's settings, and the
environment a child process of facestream's is started with."""

from __future__ import annotations

import os
from typing import TypeVar

from di.settings import ProcessSettings, Settings

P = TypeVar("P", bound=ProcessSettings)


def load_settings(kind: type[P] = Settings) -> P:  # type: ignore[assignment]
    """This process's settings of `kind` (the sections it uses), from its environment."""
    return kind.from_env(os.environ)


def child_environment(**overrides: str) -> dict[str, str]:
    """This process's environment with `overrides`, for a child process of facestream's
    (which reads its own settings from it)."""
    return {**os.environ, **overrides}


def without_telemetry() -> None:
    """Tell the libraries that would send usage data that they must not: NNCF (int8's
    quantization) sends it unless it runs "in CI", and reads that when first imported."""
    os.environ.setdefault("NNCF_CI", "1")
