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
from typing import Any

import bytewax.operators as op
from bytewax.connectors.kafka import operators as kop
from bytewax.dataflow import Dataflow

from dataflow.metrics import DataflowMetrics, count_dead_letter, count_face, count_result
from dataflow.sink import AcknowledgedKafkaSink
from dataflow.steps import (
    DeadLetter,
    FaceJob,
    ImageJob,
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
from facestream.requests import RequestLimits


def build_flow(
    settings: Settings,
    limits: RequestLimits,
    analyzer: FaceAnalyzer,
    attempts: AttemptLog,
    logger: logging.Logger,
    metrics: DataflowMetrics,
) -> Dataflow:
    """The dataflow for these settings: one operator per line, in the order of the diagram
    above. Every step gets its singletons bound here, once."""
    report = partial(report_kafka_error, logger=logger)
    extract = partial(
        extract_faces_with_quarantine,
        extract=partial(
            extract_faces,
            analyzer=analyzer,
            limits=limits,
            logger=logger,
            detection_max_side=settings.detection_max_side,
        ),
        attempts=attempts,
        logger=logger,
        crash_request_prefix=settings.failpoint_crash_on,
    )
    analyze = partial(
        analyze_faces,
        analyzer=analyzer,
        batch_size=settings.batch_size,
        logger=logger,
        on_batch=metrics.batch_faces.observe,
    )
    gather = partial(gather_results, synthetic_weights=analyzer.synthetic_weights)
    result_out = partial(result_record_out, topic=settings.topic_results)
    dead_letter_record = partial(dead_letter_out, topic=settings.topic_dead_letter)

    flow = Dataflow("facestream")
    read = kop.input("read_requests", flow, **request_source(settings))
    op.inspect("report_kafka_errors", read.errs, report)
    parsed = op.map("parse_request", read.oks, parse_request)
    parsed_split = op.branch("split_dead_letters", parsed, is_image_job)
    images, unparseable = parsed_split.trues, parsed_split.falses
    extracted = op.flat_map("extract_faces", images, extract)
    extracted_split = op.branch("split_finished_images", extracted, is_face_job)
    faces, finished_or_quarantined = extracted_split.trues, extracted_split.falses
    finished_split = op.branch("split_quarantined", finished_or_quarantined, is_result)
    finished, quarantined = finished_split.trues, finished_split.falses
    # Detection runs where the record was read; the models run wherever a worker is free.
    spread = op.redistribute("spread_faces", faces)
    analyzed = op.flat_map_batch("analyze_faces", spread, analyze)
    op.inspect("count_faces", analyzed, partial(count_face, metrics=metrics))
    keyed = op.key_on("key_by_image", analyzed, gather_key)
    gathered = op.stateful_flat_map("gather_results", keyed, gather)
    unkeyed = op.key_rm("unkey_results", gathered)
    results = op.merge("all_results", unkeyed, finished)
    op.inspect("count_results", results, partial(count_result, metrics=metrics))
    dead_letters = op.merge("all_dead_letters", unparseable, quarantined)
    op.inspect("count_dead_letters", dead_letters, partial(count_dead_letter, metrics=metrics))
    result_records = op.map("result_record_out", results, result_out)
    dead_letter_records = op.map("dead_letter_out", dead_letters, dead_letter_record)
    records = op.merge("all_records", result_records, dead_letter_records)
    op.output("write_kafka", records, result_sink(settings))
    return flow


def is_image_job(item: ImageJob | DeadLetter) -> bool:
    """parse_request's outputs: an image to analyse (True) or a dead letter."""
    return isinstance(item, ImageJob)


def is_face_job(item: object) -> bool:
    """extract_faces's outputs: a face to analyse (True), or a finished result or a
    quarantined record."""
    return isinstance(item, FaceJob)


def is_result(item: object) -> bool:
    """A finished image's result (True), or a quarantined record's dead letter."""
    return not isinstance(item, DeadLetter)


def request_source(settings: Settings) -> dict[str, Any]:
    """The Kafka input's options: the requests topic, fetch sizes for the largest image."""
    return {
        "brokers": [settings.bootstrap_servers],
        "topics": [settings.topic_requests],
        "add_config": {
            **fetch_config(settings.kafka_max_message_bytes),
            **settings.kafka_security.client_config,
        },
        # Images per poll and partition: enough to fill a model batch, few enough that a
        # backlog of large images does not land in memory at once.
        "batch_size": settings.batch_size,
    }


def result_sink(settings: Settings) -> AcknowledgedKafkaSink:
    """The sink of results and dead letters: every record acknowledged by Kafka."""
    return AcknowledgedKafkaSink(
        producer_config(
            settings.bootstrap_servers,
            settings.kafka_max_message_bytes,
            settings.kafka_security,
        )
    )
