"""The process's lagom container: its settings sections, and the singletons built from them
(logger, engine, face analyzer, request limits, attempt log).

Each section of the process's settings is registered by its type, so a singleton asks for
the sections it needs; one the process does not have is never asked for. Operators and
servers resolve their singletons when they are built, never per message: a lagom lookup
costs ~100 us, more than some of the work it would serve.
"""

from __future__ import annotations

import logging

from lagom import Container, Singleton

from di.environment import without_telemetry
from di.logs import make_logger
from di.settings import (
    AnalysisSettings,
    DataflowSettings,
    GallerySettings,
    ModelSettings,
    ObservabilitySettings,
    ProcessSettings,
    RequestSettings,
    TrackingSettings,
)
from facestream.analyzer import FaceAnalyzer
from facestream.attempts import AttemptLog
from facestream.calibration import (
    CalibrationSet,
    calibration_folder,
    public_calibration_crops,
    write_calibration_set,
)
from facestream.engines import (
    Engine,
    EngineError,
    float_precision,
    make_engine,
    resolve_precision,
)
from facestream.face_proposals import FaceProposals
from facestream.gallery_store import GalleryStore, connection_pool
from facestream.models import SYNTHETIC_WARNING, usable_detectors
from facestream.requests import RequestLimits


def request_limits(requests: RequestSettings, models: ModelSettings) -> RequestLimits:
    """What requests may be and ask for (the gRPC front and the dataflow check the same),
    with the detectors whose files are installed."""
    return RequestLimits(
        max_image_bytes=requests.max_image_bytes,
        max_pixels=requests.max_pixels,
        enabled_actions=models.actions,
        default_detector=models.detector_backend,
        available_detectors=usable_detectors(models.weights_dir),
    )


def logger_of(observability: ObservabilitySettings) -> logging.Logger:
    """facestream's logger at FACESTREAM_LOG_LEVEL, in FACESTREAM_LOG_FORMAT."""
    return make_logger(observability.log_level, observability.log_format)


def calibration_of(
    analysis: AnalysisSettings, models: ModelSettings, logger: logging.Logger
) -> CalibrationSet:
    """int8's calibration set in the engine cache, built from the public photos (the demo
    extra) at first use; `facestream models calibrate DIR` replaces it. EngineError when
    there is none and the photos are not here."""
    without_telemetry()  # before NNCF is imported: it would send usage data
    calibration = CalibrationSet(calibration_folder(analysis.engine_cache_dir))
    if calibration.exists():
        return calibration
    logger.info("building int8's calibration set from the public photos: %s", calibration.folder)
    try:
        crops = public_calibration_crops(models.detector_backend)
    except FileNotFoundError as error:
        raise EngineError(
            f"FACESTREAM_PRECISION=int8 needs a calibration set of face crops: {error}; or "
            "build one from your own photos with `facestream models calibrate DIR`"
        ) from None
    return write_calibration_set(crops, calibration.folder)


def make_engine_of(
    analysis: AnalysisSettings, models: ModelSettings, logger: logging.Logger
) -> Engine:
    """The engine the settings bind (FACESTREAM_ENGINE, FACESTREAM_PRECISION, FACESTREAM_MODE);
    EngineError when it cannot run on this CPU."""
    precision = resolve_precision(analysis.precision, analysis.engine, analysis.mode)
    if analysis.engine_threads:
        import cv2

        cv2.setNumThreads(analysis.engine_threads)  # detection shares the cores too
    calibration = None
    if precision == "int8":
        try:
            calibration = calibration_of(analysis, models, logger)
        except EngineError as error:
            if analysis.precision != "auto":
                raise
            precision = float_precision(analysis.engine, analysis.mode)
            logger.warning("%s mode in %s, not int8: %s", analysis.mode, precision, error)
    logger.info("%s mode: %s engine in %s", analysis.mode, analysis.engine, precision)
    return make_engine(
        analysis.engine,
        precision,
        analysis.engine_cache_dir,
        analysis.engine_threads,
        calibration,
    )


def make_analyzer(
    models: ModelSettings,
    analysis: AnalysisSettings,
    tracking: TrackingSettings,
    engine: Engine,
    logger: logging.Logger,
) -> FaceAnalyzer:
    """Build and warm the DeepFace models the settings ask for (seconds, GBs of memory)."""
    logger.info("building DeepFace models for %s", ", ".join(models.actions))
    analyzer = FaceAnalyzer(
        models.actions,
        models.detector_backend,
        models.weights_dir,
        engine,
        bordered_detection=analysis.mode == "exact",
        proposals=FaceProposals() if tracking.proposes_faces(analysis.mode) else None,
    )
    if analyzer.shared_actions:
        logger.info(
            "%s share one VGG-Face trunk: it runs once per face",
            ", ".join(analyzer.shared_actions),
        )
    if analyzer.synthetic_weights:
        logger.warning("%s (in %s)", SYNTHETIC_WARNING, models.weights_dir)
    return analyzer


def build_container(settings: ProcessSettings) -> Container:
    """A container of `settings`' sections and the singletons made from them.

    Singletons are built on first resolve; lagom's Singleton holds a lock meanwhile, so two
    threads asking at once get one instance and the models are built once.
    """
    container = Container()
    for section in settings.sections():
        container[type(section)] = section  # type: ignore[index]
    container[RequestLimits] = Singleton(
        lambda c: request_limits(c[RequestSettings], c[ModelSettings])
    )
    container[logging.Logger] = Singleton(lambda c: logger_of(c[ObservabilitySettings]))
    container[Engine] = Singleton(
        lambda c: make_engine_of(c[AnalysisSettings], c[ModelSettings], c[logging.Logger])
    )
    container[FaceAnalyzer] = Singleton(
        lambda c: make_analyzer(
            c[ModelSettings],
            c[AnalysisSettings],
            c[TrackingSettings],
            c[Engine],
            c[logging.Logger],
        )
    )
    container[AttemptLog] = Singleton(
        lambda c: AttemptLog(c[DataflowSettings].attempts_dir, c[DataflowSettings].max_attempts)
    )
    container[GalleryStore | None] = Singleton(lambda c: gallery_store_of(c[GallerySettings]))
    return container


def gallery_store_of(galleries: GallerySettings) -> GalleryStore | None:
    """The gallery store of FACESTREAM_GALLERY_DSN (None without a DSN: recognition then
    answers gallery.unavailable). Its pool connects in the background, and its schema is
    brought up to date by its first call: a store that is down now is not an error until
    a call needs it."""
    if not galleries.dsn:
        return None
    return GalleryStore(
        connection_pool(galleries.dsn, galleries.gallery_pool_size, galleries.gallery_timeout),
        galleries.search,
    )
