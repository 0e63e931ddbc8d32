"""The facestream pipeline, built from the steps in `dataflow.steps` and, for the frames
of tracked streams, `dataflow.tracking_steps`:

requests -> parse_request -+-> extract_faces -+-> analyze_faces (batched) ----------+
                           |  (quarantine)    |                                      |
                           |                  |   +----- faces of images <-----------+
                           |                  |   +-> gather_results ----------+-> results
                           |                  +-> invalid / no face -----------+
                           |                  +-> poison: FAILED --------------+
                           |                  |     and the record ------------------> dead letters
                           |                  +-> frames -> track_faces (per stream, in order)
                           |                         +-> faces to analyse (above)
                           |                         +-> late frames' results ----+-> results
                           |                         +-> plans -+-> gather_frames +-> results
                           |        faces of tracked frames ----+   (per stream)  +-> tracks
                           +-> unparseable ---------------------------------------> dead letters
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass
from functools import partial

import bytewax.operators as op
from bytewax.connectors.kafka import KafkaError
from bytewax.connectors.kafka import operators as kop
from bytewax.dataflow import Dataflow

from dataflow.metrics import (
    DataflowMetrics,
    count_dead_letter,
    count_face,
    count_result,
    count_track,
)
from dataflow.records import (
    AnalyzedFace,
    DeadLetter,
    FaceJob,
    FrameFaces,
    FrameGathering,
    FramePlan,
    Gathering,
    ImageJob,
    OutgoingRecord,
    TrackerState,
)
from dataflow.sink import AcknowledgedKafkaSink
from dataflow.steps import gather_key, parse_request
from dataflow.tracking_steps import (
    TrackFaces,
    frame_gathering_key,
    is_tracked_face,
    stream_key,
)
from facestream.v1 import records_pb2

Result = records_pb2.AnalysisResult
Summary = records_pb2.TrackSummary


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
    # A frame comes out as one FrameFaces when tracking is on.
    extract_faces: Callable[[ImageJob], Sequence[FaceJob | FrameFaces | Result | DeadLetter]]
    track_faces: Callable[[TrackerState | None], TrackFaces]
    analyze_faces: Callable[[Sequence[FaceJob]], list[AnalyzedFace]]
    gather_results: Callable[
        [Gathering | None, AnalyzedFace], tuple[Gathering | None, list[Result]]
    ]
    gather_frames: Callable[
        [FrameGathering | None, FramePlan | AnalyzedFace],
        tuple[FrameGathering | None, list[Result | Summary]],
    ]
    result_record_out: Callable[[Result], OutgoingRecord]
    track_summary_out: Callable[[Summary], OutgoingRecord]
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
    frames_split = op.branch("split_frames", extracted, is_frame)
    frames, extracted_images = frames_split.trues, frames_split.falses
    extracted_split = op.branch("split_finished_images", extracted_images, is_face_job)
    faces, finished_or_quarantined = extracted_split.trues, extracted_split.falses
    finished_split = op.branch("split_quarantined", finished_or_quarantined, is_result)
    finished, quarantined = finished_split.trues, finished_split.falses
    # A stream's frames meet in one place, in order, whichever worker detected their faces.
    by_stream = op.key_on("key_by_stream", frames, stream_key)
    tracked = op.key_rm("unkey_tracked", op.stateful("track_faces", by_stream, steps.track_faces))
    plans_split = op.branch("split_plans", tracked, is_plan)
    plans, tracked_faces_or_late = plans_split.trues, plans_split.falses
    tracked_split = op.branch("split_late_frames", tracked_faces_or_late, is_face_job)
    tracked_faces, late_frames = tracked_split.trues, tracked_split.falses
    # Faces are analysed where they were found: the process's inference executor batches
    # the faces of all its worker threads (spreading them over the workers made a worker
    # busy detecting hold faces back: -w 4 at 0.80x -w 1).
    all_faces = op.merge("all_faces", faces, tracked_faces)
    analyzed = op.flat_map_batch("analyze_faces", all_faces, steps.analyze_faces)
    op.inspect("count_faces", analyzed, partial(count_face, metrics=metrics))
    analyzed_split = op.branch("split_tracked_faces", analyzed, is_tracked_face)
    frame_faces, image_faces = analyzed_split.trues, analyzed_split.falses
    keyed = op.key_on("key_by_image", image_faces, gather_key)
    gathered = op.stateful_flat_map("gather_results", keyed, steps.gather_results)
    unkeyed = op.key_rm("unkey_results", gathered)
    planned = op.merge("plans_and_their_faces", plans, frame_faces)
    by_session = op.key_on("key_by_stream_session", planned, frame_gathering_key)
    answered = op.key_rm(
        "unkey_frames", op.stateful_flat_map("gather_frames", by_session, steps.gather_frames)
    )
    answered_split = op.branch("split_track_summaries", answered, is_result)
    frame_results, summaries = answered_split.trues, answered_split.falses
    results = op.merge("all_results", unkeyed, finished, late_frames, frame_results)
    op.inspect("count_results", results, partial(count_result, metrics=metrics))
    op.inspect("count_tracks", summaries, partial(count_track, metrics=metrics))
    dead_letters = op.merge("all_dead_letters", unparseable, quarantined)
    op.inspect("count_dead_letters", dead_letters, partial(count_dead_letter, metrics=metrics))
    result_records = op.map("result_record_out", results, steps.result_record_out)
    summary_records = op.map("track_summary_out", summaries, steps.track_summary_out)
    dead_letter_records = op.map("dead_letter_out", dead_letters, steps.dead_letter_out)
    records = op.merge("all_records", result_records, summary_records, dead_letter_records)
    op.output("write_kafka", records, sink)
    return flow


def is_image_job(item: ImageJob | DeadLetter) -> bool:
    """parse_request's outputs: an image to analyse (True) or a dead letter."""
    return isinstance(item, ImageJob)


def is_frame(item: object) -> bool:
    """extract_faces's outputs: a tracked stream's frame (True), or what an image gives."""
    return isinstance(item, FrameFaces)


def is_plan(item: object) -> bool:
    """track_faces's outputs: a frame's plan (True), or a face to analyse or a late
    frame's result."""
    return isinstance(item, FramePlan)


def is_face_job(item: object) -> bool:
    """extract_faces's outputs: a face to analyse (True), or a finished result or a
    quarantined record."""
    return isinstance(item, FaceJob)


def is_result(item: object) -> bool:
    """A result (True), or what goes elsewhere: a quarantined record's dead letter, a
    track's summary."""
    return isinstance(item, Result)
