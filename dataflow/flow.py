"""The facestream pipeline, built from the steps in `dataflow.steps`, for the frames of
tracked streams `dataflow.tracking_steps`, and for identification and enrolment
`dataflow.recognition_steps`, as named parts (Bytewax composite operators, each a function
returning its named streams):

requests -> parse_requests -+-> extract_faces -+-> analyse_faces (batched, -------+
                            |  (quarantine)    |   then recognised)               |
                            |                  |   +----- faces of images <-------+
                            |                  |   +-> gather_images ------+-> results
                            |                  +-> invalid / no face ------+
                            |                  +-> poison: FAILED ---------+
                            |                  |     and the record ------------> dead letters
                            |                  +-> frames -> track_faces (per stream, in order)
                            |                         +-> faces to analyse (above)
                            |                         +-> late frames' results -> results
                            |                         +-> plans -+-> gather_frames -> results
                            |        faces of tracked frames ----+  (per stream)  -> tracks
                            +-> unparseable ------------------------------------> dead letters

`records_out` counts them all and makes them Kafka records.
A new step is one function (in `steps.py`), bound in `FlowSteps` by the composition root,
and one line in its part."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass
from functools import partial

import bytewax.operators as op
from bytewax.connectors.kafka import KafkaError, KafkaSourceMessage
from bytewax.connectors.kafka import operators as kop
from bytewax.dataflow import Dataflow, Stream, operator

from dataflow.items import (
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
from dataflow.metrics import (
    DataflowMetrics,
    count_dead_letter,
    count_face,
    count_result,
    count_track,
)
from dataflow.sink import AcknowledgedKafkaSink
from dataflow.steps import gather_key, parse_request
from dataflow.tracking_steps import (
    TrackFaces,
    frame_gathering_key,
    is_tracked_face,
    tracker_key,
)
from facestream.v1 import records_pb2

Result = records_pb2.AnalysisResult
Summary = records_pb2.TrackSummary
# The steps' shapes, as FlowSteps holds them and the parts take them.
Extract = Callable[[ImageJob], Sequence[FaceJob | FrameFaces | Result | DeadLetter]]
Track = Callable[[TrackerState | None], TrackFaces]
Analyse = Callable[[Sequence[FaceJob]], list[AnalyzedFace]]
Recognise = Callable[[Sequence[AnalyzedFace]], list[AnalyzedFace]]
GatherImage = Callable[[Gathering | None, AnalyzedFace], tuple[Gathering | None, list[Result]]]
GatherFrame = Callable[
    [FrameGathering | None, FramePlan | AnalyzedFace],
    tuple[FrameGathering | None, list[Result | Summary]],
]


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
    extract_faces: Extract
    track_faces: Track
    analyze_faces: Analyse
    recognise_faces: Recognise
    gather_results: GatherImage
    gather_frames: GatherFrame
    result_record_out: Callable[[Result], OutgoingRecord]
    track_summary_out: Callable[[Summary], OutgoingRecord]
    dead_letter_out: Callable[[DeadLetter], OutgoingRecord]


def build_flow(
    steps: FlowSteps,
    source: RequestSource,
    sink: AcknowledgedKafkaSink,
    metrics: DataflowMetrics,
) -> Dataflow:
    """The dataflow: Kafka in, `analyse_requests`, Kafka out."""
    flow = Dataflow("facestream")
    read = kop.input("read_requests", flow, **asdict(source))
    op.inspect("report_kafka_errors", read.errs, steps.report_kafka_error)
    records = analyse_requests("analyse_requests", read.oks, steps, metrics)
    op.output("write_kafka", records, sink)
    return flow


@operator
def analyse_requests(
    step_id: str,
    requests: Stream[KafkaSourceMessage],
    steps: FlowSteps,
    metrics: DataflowMetrics,
) -> Stream[OutgoingRecord]:
    """Requests-topic records in, the records to write out (results, track summaries, dead
    letters): the diagram above, one named part per line."""
    parsed = parse_requests("parse_requests", requests)
    extracted = extract_faces("extract_faces", parsed.images, steps.extract_faces)
    tracked = track_faces("track_faces", extracted.frames, steps.track_faces)
    analysed = analyse_faces(
        "analyse_faces",
        extracted.faces,
        tracked.faces,
        steps.analyze_faces,
        steps.recognise_faces,
        metrics,
    )
    images = gather_images("gather_images", analysed.image_faces, steps.gather_results)
    frames = gather_frames(
        "gather_frames", tracked.plans, analysed.frame_faces, steps.gather_frames
    )
    results = op.merge("all_results", images, extracted.finished, tracked.late, frames.results)
    dead_letters = op.merge(
        "all_dead_letters", parsed.dead_letters, extracted.quarantined, tracked.quarantined
    )
    return records_out("records_out", results, frames.summaries, dead_letters, steps, metrics)


@dataclass(frozen=True)
class Parsed:
    images: Stream[ImageJob]
    dead_letters: Stream[DeadLetter]  # records that are not ours


@operator
def parse_requests(step_id: str, requests: Stream[KafkaSourceMessage]) -> Parsed:
    """Each record as an image to analyse, or a dead letter."""
    split = op.branch("split_dead_letters", op.map("parse", requests, parse_request), is_image_job)
    return Parsed(split.trues, split.falses)


@dataclass(frozen=True)
class Extracted:
    faces: Stream[FaceJob]  # of images: analysed where they were found
    frames: Stream[FrameFaces]  # of tracked streams: to the tracker
    finished: Stream[Result]  # invalid, no face, detection failed, refused, quarantined
    quarantined: Stream[DeadLetter]  # the records that crashed the process too often


@operator
def extract_faces(
    step_id: str,
    images: Stream[ImageJob],
    extract: Extract,
) -> Extracted:
    """Each image decoded and its faces found; what comes out, sorted by where it goes."""
    extracted = op.flat_map("extract", images, extract)
    frames = op.branch("split_frames", extracted, is_frame)
    faces = op.branch("split_finished_images", frames.falses, is_face_job)
    finished = op.branch("split_quarantined", faces.falses, is_result)
    return Extracted(faces.trues, frames.trues, finished.trues, finished.falses)


@dataclass(frozen=True)
class Tracked:
    faces: Stream[FaceJob]  # the faces the tracker has analysed
    plans: Stream[FramePlan]  # each frame's plan: its faces, analysed or carried
    late: Stream[Result]  # frames that came after their place was given up, untracked
    quarantined: Stream[DeadLetter]  # frames the tracker detected that crashed it too often


@operator
def track_faces(step_id: str, frames: Stream[FrameFaces], track: Track) -> Tracked:
    """A stream's frames meet in one place, in order, whichever worker read them (and
    detected their faces, unless the tracker does): each face continues a track (carried)
    or is analysed."""
    by_stream = op.key_on("key_by_stream", frames, tracker_key)
    tracked = op.key_rm("unkey", op.stateful("track", by_stream, track))
    plans = op.branch("split_plans", tracked, is_plan)
    faces = op.branch("split_late_frames", plans.falses, is_face_job)
    late = op.branch("split_quarantined_frames", faces.falses, is_result)
    return Tracked(faces.trues, plans.trues, late.trues, late.falses)


@dataclass(frozen=True)
class Analysed:
    image_faces: Stream[AnalyzedFace]
    frame_faces: Stream[AnalyzedFace]


@operator
def analyse_faces(
    step_id: str,
    faces: Stream[FaceJob],
    tracked_faces: Stream[FaceJob],
    analyse: Analyse,
    recognise: Recognise,
    metrics: DataflowMetrics,
) -> Analysed:
    """Every face through the models in batches, then identified or enrolled when its
    request asks. Faces are analysed where they were found: the process's inference
    executor batches the faces of all its worker threads (spreading them over the workers
    made a worker busy detecting hold faces back)."""
    analysed = op.flat_map_batch("analyse", op.merge("all_faces", faces, tracked_faces), analyse)
    analysed = op.flat_map_batch("recognise", analysed, recognise)
    op.inspect("count_faces", analysed, partial(count_face, metrics=metrics))
    split = op.branch("split_tracked_faces", analysed, is_tracked_face)
    return Analysed(split.falses, split.trues)


@operator
def gather_images(step_id: str, faces: Stream[AnalyzedFace], gather: GatherImage) -> Stream[Result]:
    """The faces of one image gathered into its result."""
    keyed = op.key_on("key_by_image", faces, gather_key)
    return op.key_rm("unkey", op.stateful_flat_map("gather", keyed, gather))


@dataclass(frozen=True)
class Answered:
    results: Stream[Result]  # one per frame, in order
    summaries: Stream[Summary]  # one per track that ended


@operator
def gather_frames(
    step_id: str,
    plans: Stream[FramePlan],
    faces: Stream[AnalyzedFace],
    gather: GatherFrame,
) -> Answered:
    """Each frame's plan and its analysed faces gathered into the frame's result, per
    stream; the tracks that ended, summarised."""
    planned = op.merge("plans_and_their_faces", plans, faces)
    by_session = op.key_on("key_by_stream_session", planned, frame_gathering_key)
    answered = op.key_rm("unkey", op.stateful_flat_map("gather", by_session, gather))
    split = op.branch("split_track_summaries", answered, is_result)
    return Answered(split.trues, split.falses)


@operator
def records_out(
    step_id: str,
    results: Stream[Result],
    summaries: Stream[Summary],
    dead_letters: Stream[DeadLetter],
    steps: FlowSteps,
    metrics: DataflowMetrics,
) -> Stream[OutgoingRecord]:
    """Results, track summaries and dead letters counted and made Kafka records."""
    op.inspect("count_results", results, partial(count_result, metrics=metrics))
    op.inspect("count_tracks", summaries, partial(count_track, metrics=metrics))
    op.inspect("count_dead_letters", dead_letters, partial(count_dead_letter, metrics=metrics))
    return op.merge(
        "all_records",
        op.map("result_records", results, steps.result_record_out),
        op.map("summary_records", summaries, steps.track_summary_out),
        op.map("dead_letter_records", dead_letters, steps.dead_letter_out),
    )


def is_image_job(item: ImageJob | DeadLetter) -> bool:
    """parse_request's outputs: an image to analyse (True) or a dead letter."""
    return isinstance(item, ImageJob)


def is_frame(item: object) -> bool:
    """extract_faces's outputs: a tracked stream's frame (True), or what an image gives."""
    return isinstance(item, FrameFaces)


def is_plan(item: object) -> bool:
    """track_faces's outputs: a frame's plan (True), or a face to analyse, a late frame's
    result or a quarantined frame's dead letter."""
    return isinstance(item, FramePlan)


def is_face_job(item: object) -> bool:
    """extract_faces's outputs: a face to analyse (True), or a finished result or a
    quarantined record."""
    return isinstance(item, FaceJob)


def is_result(item: object) -> bool:
    """A result (True), or what goes elsewhere: a quarantined record's dead letter, a
    track's summary."""
    return isinstance(item, Result)
