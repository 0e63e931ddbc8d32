"""The facestream pipeline, built from the steps in `dataflow.steps`:

requests -> parse_request -+-> extract_faces -+-> spread -> analyze_faces (batched)
                           |  (quarantine)    |     -> gather_results --+-> results
                           |                  +-> invalid / no face ----+
                           |                  +-> poison: FAILED -------+
                           |                        and the record -------> dead letters
                           +-> unparseable ---------------------------------> dead letters
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass
from functools import partial

import bytewax.operators as op
from bytewax.connectors.kafka import KafkaError
from bytewax.connectors.kafka import operators as kop
from bytewax.dataflow import Dataflow

from dataflow.metrics import DataflowMetrics, count_dead_letter, count_face, count_result
from dataflow.records import AnalyzedFace, DeadLetter, FaceJob, Gathering, ImageJob, OutgoingRecord
from dataflow.sink import AcknowledgedKafkaSink
from dataflow.steps import gather_key, parse_request
from facestream.v1 import records_pb2

Result = records_pb2.AnalysisResult


@dataclass(frozen=True)
class RequestSource:
    """The Kafka input's options (`bytewax.connectors.kafka.operators.input`)."""

    brokers: list[str]
    topics: list[str]
    add_config: dict[str, str]
    batch_size: int  # records per poll and partition


@dataclass(frozen=True)
class FlowSteps:
    """The steps of `dataflow.steps` with their singletons and settings bound, by the
    dataflow's composition root (di.dataflow_root)."""

    report_kafka_error: Callable[[str, KafkaError], None]
    extract_faces: Callable[[ImageJob], list[FaceJob] | list[Result | DeadLetter]]
    analyze_faces: Callable[[Sequence[FaceJob]], list[AnalyzedFace]]
    gather_results: Callable[
        [Gathering | None, AnalyzedFace], tuple[Gathering | None, list[Result]]
    ]
    result_record_out: Callable[[Result], OutgoingRecord]
    dead_letter_out: Callable[[DeadLetter], OutgoingRecord]


def build_flow(
    steps: FlowSteps,
    source: RequestSource,
    sink: AcknowledgedKafkaSink,
    metrics: DataflowMetrics,
) -> Dataflow:
    """The dataflow: one operator per line, in the order of the diagram above."""
    flow = Dataflow("facestream")
    read = kop.input("read_requests", flow, **asdict(source))
    op.inspect("report_kafka_errors", read.errs, steps.report_kafka_error)
    parsed = op.map("parse_request", read.oks, parse_request)
    parsed_split = op.branch("split_dead_letters", parsed, is_image_job)
    images, unparseable = parsed_split.trues, parsed_split.falses
    extracted = op.flat_map("extract_faces", images, steps.extract_faces)
    extracted_split = op.branch("split_finished_images", extracted, is_face_job)
    faces, finished_or_quarantined = extracted_split.trues, extracted_split.falses
    finished_split = op.branch("split_quarantined", finished_or_quarantined, is_result)
    finished, quarantined = finished_split.trues, finished_split.falses
    # Detection runs where the record was read; the models run wherever a worker is free.
    spread = op.redistribute("spread_faces", faces)
    analyzed = op.flat_map_batch("analyze_faces", spread, steps.analyze_faces)
    op.inspect("count_faces", analyzed, partial(count_face, metrics=metrics))
    keyed = op.key_on("key_by_image", analyzed, gather_key)
    gathered = op.stateful_flat_map("gather_results", keyed, steps.gather_results)
    unkeyed = op.key_rm("unkey_results", gathered)
    results = op.merge("all_results", unkeyed, finished)
    op.inspect("count_results", results, partial(count_result, metrics=metrics))
    dead_letters = op.merge("all_dead_letters", unparseable, quarantined)
    op.inspect("count_dead_letters", dead_letters, partial(count_dead_letter, metrics=metrics))
    result_records = op.map("result_record_out", results, steps.result_record_out)
    dead_letter_records = op.map("dead_letter_out", dead_letters, steps.dead_letter_out)
    records = op.merge("all_records", result_records, dead_letter_records)
    op.output("write_kafka", records, sink)
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
