"""The facestream pipeline, built from the steps in `dataflow.steps`:

requests -> parse_request -+-> extract_faces -+-> spread -> analyze_faces (batched)
                           |  (quarantine)    |     -> gather_results --+-> results
                           |                  +-> invalid / no face ----+
                           |                  +-> poison: FAILED -------+
                           |                        and the record -------> dead letters
                           +-> unparseable ---------------------------------> dead letters
"""

from __future__ import annotations

import logging
from functools import partial

import bytewax.operators as op
from bytewax.connectors.kafka import operators as kop
from bytewax.dataflow import Dataflow

from dataflow.metrics import DataflowMetrics, count_dead_letter, count_face, count_result
from dataflow.sink import AcknowledgedKafkaSink
from dataflow.steps import (
    DeadLetter,
    FaceJob,
    ImageJob,
    Limits,
    analyze_faces,
    dead_letter_out,
    extract_faces,
    extract_faces_with_quarantine,
    gather_key,
    gather_results,
    parse_request,
    report_kafka_error,
    result_record_out,
)
from di.settings import Settings
from facestream.analyzer import FaceAnalyzer
from facestream.attempts import AttemptLog
from facestream.kafka_config import fetch_config, producer_config
from facestream.models import usable_detectors


def step_limits(settings: Settings) -> Limits:
    """What the image steps need to know of the settings (and of the installed detectors)."""
    return Limits(
        max_image_bytes=settings.max_image_bytes,
        max_pixels=settings.max_pixels,
        detection_max_side=settings.detection_max_side,
        default_detector=settings.detector_backend,
        available_detectors=usable_detectors(settings.weights_dir),
    )


def build_flow(
    settings: Settings,
    analyzer: FaceAnalyzer,
    attempts: AttemptLog,
    logger: logging.Logger,
    metrics: DataflowMetrics,
) -> Dataflow:
    """The dataflow for these settings; every step gets its singletons here, once."""
    limits = step_limits(settings)
    flow = Dataflow("facestream")
    requests = kop.input(
        "read_requests",
        flow,
        brokers=[settings.bootstrap_servers],
        topics=[settings.topic_requests],
        add_config={
            **fetch_config(settings.kafka_max_message_bytes),
            **settings.kafka_security.client_config,
        },
        # Images per poll and partition: enough to fill a model batch, few enough that a
        # backlog of large images does not land in memory at once.
        batch_size=settings.batch_size,
    )
    op.inspect("report_kafka_errors", requests.errs, partial(report_kafka_error, logger=logger))

    parsed = op.map("parse_request", requests.oks, parse_request)
    jobs = op.branch("split_dead_letters", parsed, lambda item: isinstance(item, ImageJob))
    extracted = op.flat_map(
        "extract_faces",
        jobs.trues,
        partial(
            extract_faces_with_quarantine,
            extract=partial(extract_faces, analyzer=analyzer, limits=limits, logger=logger),
            attempts=attempts,
            logger=logger,
            crash_request_prefix=settings.failpoint_crash_on,
        ),
    )
    faces = op.branch("split_finished_images", extracted, lambda item: isinstance(item, FaceJob))
    finished = op.branch(
        "split_quarantined", faces.falses, lambda item: not isinstance(item, DeadLetter)
    )
    # Detection runs where the record was read; the models run wherever a worker is free.
    spread = op.redistribute("spread_faces", faces.trues)
    analyzed = op.flat_map_batch(
        "analyze_faces",
        spread,
        partial(
            analyze_faces,
            analyzer=analyzer,
            batch_size=settings.batch_size,
            logger=logger,
            on_batch=metrics.batch_faces.observe,
        ),
    )
    op.inspect("count_faces", analyzed, partial(count_face, metrics=metrics))
    gathered = op.stateful_flat_map(
        "gather_results",
        op.key_on("key_by_image", analyzed, gather_key),
        partial(gather_results, synthetic_weights=analyzer.synthetic_weights),
    )
    results = op.merge("all_results", op.key_rm("unkey_results", gathered), finished.trues)
    op.inspect("count_results", results, partial(count_result, metrics=metrics))
    dead_letters = op.merge("all_dead_letters", jobs.falses, finished.falses)
    op.inspect("count_dead_letters", dead_letters, partial(count_dead_letter, metrics=metrics))

    records = op.merge(
        "all_records",
        op.map(
            "result_record_out", results, partial(result_record_out, topic=settings.topic_results)
        ),
        op.map(
            "dead_letter_out",
            dead_letters,
            partial(dead_letter_out, topic=settings.topic_dead_letter),
        ),
    )
    op.output(
        "write_kafka",
        records,
        AcknowledgedKafkaSink(
            producer_config(
                settings.bootstrap_servers,
                settings.kafka_max_message_bytes,
                settings.kafka_security,
            )
        ),
    )
    return flow
