"""The dataflow's composition root: its settings, read once, become the flow's source, sink
and bound steps. `python -m bytewax.run dataflow` reaches it through `dataflow:flow`.

Building starts this process's /metrics endpoint (FACESTREAM_DATAFLOW_METRICS_PORT) before
the models load, so a loading process is already visible. A process that cannot build the
flow (bad settings, missing weights, a metrics port in use) exits with the reason instead
of a traceback.
"""

from __future__ import annotations

import logging
import sys
import time
from collections.abc import Callable, Sequence
from functools import partial

from bytewax.dataflow import Dataflow
from lagom import Container
from prometheus_client import REGISTRY

from dataflow.flow import FlowSteps, RequestSource, build_flow
from dataflow.items import ImageJob
from dataflow.metrics import DataflowMetrics, count_open, count_tracking
from dataflow.recognition_steps import recognise_faces
from dataflow.sink import AcknowledgedKafkaSink
from dataflow.steps import (
    analyze_faces,
    crash_on_request,
    crop_located_faces,
    dead_letter_out,
    extract_faces,
    extract_faces_with_quarantine,
    gather_results,
    report_kafka_error,
    result_record_out,
)
from dataflow.tracking_steps import (
    Extracted,
    FrameDetection,
    StreamTracking,
    TrackFaces,
    extract_stream_frame,
    gather_frames,
    track_summary_out,
)
from di.container import build_container
from di.environment import bytewax_worker_threads, load_settings
from di.settings import DataflowProcessSettings, SettingsError
from facestream.analyzer import FaceAnalyzer
from facestream.attempts import AttemptLog
from facestream.faces import Region
from facestream.gallery_store import GalleryStore
from facestream.inference import InferenceExecutor
from facestream.kafka_config import fetch_config, producer_config
from facestream.metrics_endpoint import MetricsEndpointError, start_metrics_endpoint
from facestream.models import MissingWeightsError
from facestream.requests import RequestLimits
from facestream.thread_priority import lower_this_thread


def request_source(settings: DataflowProcessSettings) -> RequestSource:
    """The requests topic, with fetch sizes for the largest image."""
    kafka = settings.kafka
    return RequestSource(
        brokers=[kafka.bootstrap_servers],
        topics=[kafka.topic_requests],
        add_config={
            **fetch_config(settings.kafka_max_message_bytes, kafka.fetch_wait_ms),
            **kafka.security.client_config,
        },
        # Images per poll and partition: enough to fill a model batch, few enough that a
        # backlog of large images does not land in memory at once.
        batch_size=settings.analysis.batch_size,
    )


def result_sink(settings: DataflowProcessSettings) -> AcknowledgedKafkaSink:
    """The sink of results and dead letters: every record acknowledged by Kafka."""
    kafka = settings.kafka
    return AcknowledgedKafkaSink(
        producer_config(kafka.bootstrap_servers, settings.kafka_max_message_bytes, kafka.security)
    )


def flow_steps(
    settings: DataflowProcessSettings, container: Container, metrics: DataflowMetrics
) -> FlowSteps:
    """Every step with the container's singletons and the settings bound, once."""
    return bind_steps(
        settings,
        container[FaceAnalyzer],
        container[RequestLimits],
        container[AttemptLog],
        container[logging.Logger],
        metrics,
        container[GalleryStore | None],  # type: ignore[index]
    )


def bind_steps(
    settings: DataflowProcessSettings,
    analyzer: FaceAnalyzer,
    limits: RequestLimits,
    attempts: AttemptLog,
    logger: logging.Logger,
    metrics: DataflowMetrics,
    galleries: GalleryStore | None = None,
) -> FlowSteps:
    """Every step with these parts and the settings bound. The fail point is bound only
    when FACESTREAM_FAILPOINT_CRASH_ON is set."""
    # One per process: every worker thread's faces meet in its batches.
    executor = InferenceExecutor(
        analyzer.describe, settings.analysis.batch_size, metrics.batch_faces.observe
    )
    crash_prefix = settings.dataflow.failpoint_crash_on

    def extract_in(
        regions: Sequence[Region] | None, locate: bool
    ) -> Callable[[ImageJob], list[Extracted]]:
        """Extraction (faces only located, in `regions` or the whole frame, for the
        tracker: `locate`), counted in the attempt log."""
        extract = partial(
            extract_faces,
            analyzer=analyzer,
            limits=limits,
            logger=logger,
            detection_max_side=settings.analysis.detection_max_side,
            locate=locate,
            regions=regions,
        )
        if crash_prefix:
            extract = partial(crash_on_request, extract=extract, request_prefix=crash_prefix)
        return partial(
            extract_faces_with_quarantine, extract=extract, attempts=attempts, logger=logger
        )

    def detect(job: ImageJob, regions: Sequence[Region] | None) -> list[Extracted]:
        return extract_in(regions, locate=True)(job)

    extract_counted = extract_in(None, locate=False)
    tracking = settings.tracking
    whole_frame_every_ms = round(tracking.tracking_whole_frame_every * 1000)
    crop = partial(crop_located_faces, analyzer=analyzer, limits=limits, logger=logger)
    detection = FrameDetection(detect, whole_frame_every_ms, crop) if whole_frame_every_ms else None
    stream_tracking = StreamTracking(
        policy=tracking.policy,
        gap_timeout=tracking.tracking_gap_timeout,
        max_buffered=tracking.tracking_max_buffered,
        idle_timeout=tracking.tracking_idle_timeout,
    )
    return FlowSteps(
        report_kafka_error=partial(report_kafka_error, logger=logger),
        # Tracking off: a frame is extracted and answered as any image.
        extract_faces=(
            partial(
                extract_stream_frame,
                extract=extract_counted,
                tracker_detects=detection is not None,
            )
            if tracking.enabled
            else extract_counted
        ),
        track_faces=partial(
            TrackFaces,
            tracking=stream_tracking,
            detection=detection,
            on_counts=partial(count_tracking, metrics=metrics),
            on_open=partial(count_open, metrics=metrics),
        ),
        analyze_faces=partial(
            analyze_faces,
            describe=executor.describe,
            batch_size=settings.analysis.batch_size,
            logger=logger,
        ),
        recognise_faces=partial(
            recognise_faces,
            store=galleries,
            logger=logger,
            write_retry=settings.galleries.gallery_write_retry,
        ),
        gather_results=partial(gather_results, synthetic_weights=analyzer.synthetic_weights),
        gather_frames=partial(gather_frames, synthetic_weights=analyzer.synthetic_weights),
        result_record_out=partial(
            result_record_out,
            topic=settings.kafka.topic_results,
            max_bytes=settings.kafka_max_message_bytes,
        ),
        track_summary_out=partial(track_summary_out, topic=settings.kafka.topic_tracks),
        dead_letter_out=partial(dead_letter_out, topic=settings.kafka.topic_dead_letter),
    )


def build_dataflow(settings: DataflowProcessSettings) -> Dataflow:
    """The dataflow of these settings: metrics endpoint first, then the models (timed),
    then the flow."""
    container = build_container(settings)
    logger = container[logging.Logger]
    metrics = DataflowMetrics()
    observability = settings.observability
    endpoint = start_metrics_endpoint(
        observability.metrics_host,
        observability.dataflow_metrics_port,
        REGISTRY,
        "FACESTREAM_DATAFLOW_METRICS_PORT",
    )
    if endpoint is not None:
        logger.info("metrics on %s", endpoint.url)
    loading = time.perf_counter()
    container[FaceAnalyzer]  # built now, so its loading time is measured
    metrics.model_load_seconds.set(time.perf_counter() - loading)
    flow = build_flow(
        flow_steps(settings, container, metrics),
        request_source(settings),
        result_sink(settings),
        metrics,
    )
    logger.info("dataflow built; reading %s", settings.kafka.topic_requests)
    return flow


def dataflow_of_this_process() -> Dataflow:
    """The flow of this process's settings; exits with the reason when it cannot be built.

    With more than one worker thread, once it is built (its detection and inference
    threads started), this thread, and so every Bytewax worker thread it starts, runs
    below them (facestream/thread_priority.py). With one, this thread is the worker: it
    keeps its priority, so that it is not held back by other processes' models on the
    same cores (docs/performance.md, shapes).
    """
    try:
        flow = build_dataflow(load_settings(DataflowProcessSettings))
    except (SettingsError, MissingWeightsError, MetricsEndpointError) as error:
        sys.exit(f"facestream dataflow cannot start: {error}")
    if bytewax_worker_threads(sys.argv) > 1:
        lower_this_thread()
    return flow
