"""The composition root: one lagom container per process, built from validated settings.

Operators and servers resolve their singletons when they are built, never per message:
a lagom lookup costs ~100 us, more than some of the work it would serve.
"""

from __future__ import annotations

import logging
import os

from lagom import Container, Singleton

from di.logs import make_logger
from di.settings import Settings
from facestream.analyzer import FaceAnalyzer
from facestream.attempts import AttemptLog
from facestream.engines import Engine, make_engine, resolve_precision
from facestream.models import SYNTHETIC_WARNING, usable_detectors
from facestream.requests import RequestLimits


def request_limits(settings: Settings) -> RequestLimits:
    """What requests may be and ask for (the gRPC front and the dataflow check the same),
    with the detectors whose files are installed."""
    return RequestLimits(
        max_image_bytes=settings.max_image_bytes,
        max_pixels=settings.max_pixels,
        enabled_actions=settings.actions,
        default_detector=settings.detector_backend,
        available_detectors=usable_detectors(settings.weights_dir),
    )


def make_engine_of(settings: Settings, logger: logging.Logger) -> Engine:
    """The engine the settings bind (FACESTREAM_ENGINE, FACESTREAM_PRECISION, FACESTREAM_MODE);
    EngineError when it cannot run on this CPU."""
    precision = resolve_precision(settings.precision, settings.engine, settings.mode)
    logger.info("%s mode: %s engine in %s", settings.mode, settings.engine, precision)
    return make_engine(settings.engine, precision, settings.engine_cache_dir)


def make_analyzer(settings: Settings, engine: Engine, logger: logging.Logger) -> FaceAnalyzer:
    """Build and warm the DeepFace models the settings ask for (seconds, GBs of memory)."""
    logger.info("building DeepFace models for %s", ", ".join(settings.actions))
    analyzer = FaceAnalyzer(
        settings.actions,
        settings.detector_backend,
        settings.weights_dir,
        engine,
        bordered_detection=settings.mode == "exact",
    )
    if analyzer.shared_actions:
        logger.info(
            "%s share one VGG-Face trunk: it runs once per face",
            ", ".join(analyzer.shared_actions),
        )
    if analyzer.synthetic_weights:
        logger.warning("%s (in %s)", SYNTHETIC_WARNING, settings.weights_dir)
    return analyzer


def build_container(settings: Settings) -> Container:
    """A container that gives settings, the logger, the engine and the face analyzer as
    singletons.

    Singletons are built on first resolve; lagom's Singleton holds a lock meanwhile, so two
    threads asking at once get one instance and the models are built once.
    """
    container = Container()
    container[Settings] = settings
    container[RequestLimits] = Singleton(lambda c: request_limits(c[Settings]))
    container[logging.Logger] = Singleton(
        lambda: make_logger(settings.log_level, settings.log_format)
    )
    container[Engine] = Singleton(lambda c: make_engine_of(c[Settings], c[logging.Logger]))
    container[FaceAnalyzer] = Singleton(
        lambda c: make_analyzer(c[Settings], c[Engine], c[logging.Logger])
    )
    container[AttemptLog] = Singleton(
        lambda c: AttemptLog(c[Settings].attempts_dir, c[Settings].max_attempts)
    )
    return container


def load_settings() -> Settings:
    """Read this process's settings from its environment (the only place facestream does)."""
    return Settings.from_env(os.environ)


def child_environment(**overrides: str) -> dict[str, str]:
    """This process's environment with `overrides`, for a child process of facestream's
    (which reads its own settings from it)."""
    return {**os.environ, **overrides}
