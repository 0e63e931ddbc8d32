"""The Bytewax dataflow: `python -m bytewax.run dataflow` finds `flow` here.

`flow` is built on first access, from this process's settings and container, so that
importing `dataflow.steps` (tests, tools) builds nothing. Building it starts this
process's /metrics endpoint (FACESTREAM_DATAFLOW_METRICS_PORT) before the models load, so
a loading process is already visible. A process that cannot build it (bad settings,
missing weights, a metrics port in use) exits with the reason instead of a traceback.
"""

from __future__ import annotations

import logging
import sys
import time
from typing import Any

from bytewax.dataflow import Dataflow
from prometheus_client import REGISTRY

_flow: Dataflow | None = None


def _build() -> Dataflow:
    from dataflow.flow import build_flow
    from dataflow.metrics import DataflowMetrics
    from di import Settings, SettingsError, build_container, load_settings
    from facestream.analyzer import FaceAnalyzer
    from facestream.attempts import AttemptLog
    from facestream.metrics_endpoint import MetricsEndpointError, start_metrics_endpoint
    from facestream.models import MissingWeightsError
    from facestream.requests import RequestLimits

    try:
        container = build_container(load_settings())
        settings = container[Settings]
        logger = container[logging.Logger]
        metrics = DataflowMetrics()
        endpoint = start_metrics_endpoint(
            settings.metrics_host,
            settings.dataflow_metrics_port,
            REGISTRY,
            "FACESTREAM_DATAFLOW_METRICS_PORT",
        )
        if endpoint is not None:
            logger.info("metrics on %s", endpoint.url)
        loading = time.perf_counter()
        analyzer = container[FaceAnalyzer]
        metrics.model_load_seconds.set(time.perf_counter() - loading)
        flow = build_flow(
            settings, container[RequestLimits], analyzer, container[AttemptLog], logger, metrics
        )
    except (SettingsError, MissingWeightsError, MetricsEndpointError) as error:
        sys.exit(f"facestream dataflow cannot start: {error}")
    logger.info("dataflow built; reading %s", settings.topic_requests)
    return flow


def __getattr__(name: str) -> Any:
    global _flow
    if name != "flow":
        raise AttributeError(f"module 'dataflow' has no attribute {name!r}")
    if _flow is None:
        _flow = _build()
    return _flow
