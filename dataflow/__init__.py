"""The Bytewax dataflow: `python -m bytewax.run dataflow` finds `flow` here.

`flow` is built on first access, from this process's settings and container, so that
importing `dataflow.steps` (tests, tools) builds nothing. A process that cannot build it
(bad settings, missing weights) exits with the reason instead of a traceback.
"""

from __future__ import annotations

import logging
import sys
from typing import Any

from bytewax.dataflow import Dataflow

_flow: Dataflow | None = None


def _build() -> Dataflow:
    from dataflow.flow import build_flow
    from di import Settings, SettingsError, build_container, load_settings
    from facestream.analyzer import FaceAnalyzer
    from facestream.attempts import AttemptLog
    from facestream.models import MissingWeightsError

    try:
        container = build_container(load_settings())
        logger = container[logging.Logger]
        flow = build_flow(
            container[Settings], container[FaceAnalyzer], container[AttemptLog], logger
        )
    except (SettingsError, MissingWeightsError) as error:
        sys.exit(f"facestream dataflow cannot start: {error}")
    logger.info("dataflow built; reading %s", container[Settings].topic_requests)
    return flow


def __getattr__(name: str) -> Any:
    global _flow
    if name != "flow":
        raise AttributeError(f"module 'dataflow' has no attribute {name!r}")
    if _flow is None:
        _flow = _build()
    return _flow
