"""Running facestream's commands from the tests: the project's paths, the environment a
`facestream` child gets, and running it to completion."""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Mapping
from pathlib import Path

from apps.launch import NO_METRICS
from facestream.models import synthetic_deepface_home

PROJECT_ROOT = Path(__file__).resolve().parent.parent
# Synthetic weights are ~1.6 GB: made once per machine, never inside the repository.
SYNTHETIC_HOME = synthetic_deepface_home()


def cli_env(**overrides: str) -> dict[str, str]:
    """The test process's environment plus FACESTREAM_* overrides, for a `facestream` child
    (with no metrics endpoints unless the overrides give their ports)."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("FACESTREAM_")}
    env.update(NO_METRICS)
    env.update(overrides)
    return env


def facestream_command(*args: str) -> list[str]:
    """argv that runs the `facestream` CLI with this interpreter."""
    return [sys.executable, "-m", "apps.cli", *args]


def run_facestream(
    *args: str, env: Mapping[str, str] | None = None, timeout: float = 120
) -> subprocess.CompletedProcess[str]:
    """Run `facestream ARGS` to completion (bounded by timeout) and capture its output."""
    return subprocess.run(
        facestream_command(*args),
        env=dict(env) if env is not None else cli_env(),
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
    )
