"""The one place facestream reads its environment: a process's settings, and the
environment a child process of facestream's is started with."""

from __future__ import annotations

import argparse
import os
from collections.abc import Mapping, Sequence
from pathlib import Path
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


def bytewax_worker_threads(argv: Sequence[str], environ: Mapping[str, str] = os.environ) -> int:
    """The worker threads Bytewax runs in this process: `-w` of `python -m bytewax.run`,
    else BYTEWAX_WORKERS_PER_PROCESS, as Bytewax reads them; 1 when the process was
    started otherwise or they are not a number."""
    if not argv or Path(argv[0]).parts[-2:] != ("bytewax", "run.py"):
        return 1
    parser = argparse.ArgumentParser(add_help=False)
    parser.add_argument("-w", "--workers-per-process")
    given = parser.parse_known_args(argv[1:])[0].workers_per_process
    given = given or environ.get("BYTEWAX_WORKERS_PER_PROCESS", "1")
    return int(given) if given.isdigit() else 1
