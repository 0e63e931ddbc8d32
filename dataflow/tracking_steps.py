"""The steps that follow faces across the frames of a stream (docs/video.md):

    extract_faces -> frame_faces -> track_faces (per stream, in sequence order)
        -> FramePlan ---------------------------------------+
        -> FaceJob per face to analyse -> analyze_faces ----+-> gather_frames
                                                                 -> AnalysisResult per frame
                                                                 -> TrackSummary per track

With FACESTREAM_TRACKING_WHOLE_FRAME_EVERY above 0, a frame's faces are found by
track_faces itself, in its turn: the whole frame when that much stream time passed since
the last whole-frame search (or no track is open), else only around the open tracks'
expected boxes, each searched at the scale of its face (`search_regions`). In fast mode a
whole frame is searched by the detector only around the faces MTCNN's small networks propose
(`facestream.face_proposals`), unless FACESTREAM_TRACKING_WHOLE_FRAME_SEARCH=detector.

track_faces and gather_frames are keyed by stream. track_faces puts a stream's frames in
sequence order (waiting a bounded time for a missing one), follows their faces with
`facestream.tracking` and decides, face by face, whether the models run or the face carries
its track's last attributes. gather_frames answers the frames in the tracker's order: a
carried face takes the attributes of its track's latest analysis, which an earlier frame
brought. A frame whose turn passed (it came after the tracker gave up on it, or twice) is
answered untracked, like an image. Plain functions; `TrackFaces` adapts them to Bytewax's
stateful operator (its timers: the missing frame's wait, the idle close).
"""

from __future__ import annotations

import copy
import time
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, replace
from datetime import UTC, datetime

from bytewax.operators import StatefulLogic

from dataflow.items import (
    AnalyzedFace,
    AttributeTally,
    DeadLetter,
    FaceJob,
    FrameFaces,
    FrameGathering,
    FramePlan,
    ImageJob,
    OutgoingRecord,
    PlannedFace,
    TrackerState,
)
from dataflow.steps import worker_name
from facestream.faces import Region, region_around
from facestream.kafka_records import Status, result_record, timestamp_now
from facestream.sequence_order import Offered, SequenceOrder
from facestream.tracking import (
    FramePoint,
    StreamTracks,
    Track,
    TrackingPolicy,
    close,
    expected_box,
    follow,
)
from facestream.v1 import records_pb2

Result = records_pb2.AnalysisResult
Tracked = FaceJob | FramePlan | Result | DeadLetter
Extracted = FaceJob | Result | DeadLetter
ACTIONS_WITH_SCORES = ("gender", "emotion", "race")
# A region searched around a track's expected box: the box grown by this share of its size
# on every side (room for a face that moved or turned more than its speed said; at half
# its size the cascade missed 3% of the small faces of the bench's grid video, at three
# quarters 1%) ...
REGION_MARGIN = 0.75
# ... and scaled so that the face is about this many pixels wide: OpenCV's cascade finds a
# face from 24 pixels, and the region's cost grows with the square of its size (at 48 a
# region costs ~4 ms of a core, a whole 640x480 frame ~100 ms).
REGION_FACE_PX = 48


@dataclass(frozen=True)
class StreamTracking:
    """The tracker's settings (`FACESTREAM_TRACKING_*`)."""

    policy: TrackingPolicy
    gap_timeout: float  # seconds of wall clock a missing frame is waited for
    max_buffered: int  # frames held per stream while one is missing
    idle_timeout: float  # seconds of wall clock without a frame before a stream closes


@dataclass(frozen=True)
class FrameDetection:
    """How track_faces finds the faces of a frame that reaches it undetected: `detect(job,
    regions)` (regions None: the whole frame), the whole frame every `whole_frame_every_ms`
    of stream time. Faces found in regions are only located; `crop(job, faces)` aligns and
    crops the ones the tracker analyses."""

    detect: Callable[[ImageJob, Sequence[Region] | None], list[Extracted]]
    whole_frame_every_ms: int
    crop: Callable[[ImageJob, Sequence[FaceJob]], list[FaceJob]]


@dataclass
class TrackingCounts:
    """What one call of the tracker did, for the metrics."""

    analysed: int = 0
    carried: int = 0
    untracked: int = 0
    late: int = 0
    skipped: int = 0


def tracker_key(frame: FrameFaces) -> str:
    """track_faces' key: the stream, `principal/stream_id`."""
    return frame.stream


def frame_faces(
    frame: records_pb2.StreamFrame,
    principal: str,
    extracted: Sequence[FaceJob | Result | DeadLetter],
) -> list[FrameFaces | DeadLetter]:
    """One frame's extraction as one item for the tracker: its faces, or its finished
    result; a quarantined frame's dead letter goes on beside it."""
    faces = tuple(item for item in extracted if isinstance(item, FaceJob))
    finished = next((item for item in extracted if isinstance(item, Result)), None)
    letters = [item for item in extracted if isinstance(item, DeadLetter)]
    return [FrameFaces(principal, frame, faces, finished), *letters]


def extract_stream_frame(
    job: ImageJob, extract: Callable[[ImageJob], list[Extracted]], tracker_detects: bool = False
) -> list[Extracted] | list[FrameFaces | DeadLetter]:
    """`extract(job)`; a frame (tracking on) comes out as one FrameFaces for the tracker,
    undetected when the tracker detects (`tracker_detects`)."""
    if job.frame is not None and tracker_detects:
        return [FrameFaces(job.principal, job.frame, (), None, job)]
    extracted = extract(job)
    if job.frame is None:
        return extracted
    return frame_faces(job.frame, job.principal, extracted)


def search_regions(
    tracks: StreamTracks, position_ms: int, whole_frame_ms: int | None, every_ms: int
) -> list[Region] | None:
    """Where to look for the faces of the frame at `position_ms`: None for the whole frame
    (no open track, the first frame, or `every_ms` of stream time since the last whole
    frame), else one region per open track around its expected box (REGION_MARGIN), at the
    scale that makes its face REGION_FACE_PX wide (never enlarged). A function of the
    stream alone: a replay searches the same places."""
    if not tracks.tracks or whole_frame_ms is None:
        return None
    if not 0 <= position_ms - whole_frame_ms < every_ms:
        return None
    return [
        region_around(expected_box(track), REGION_MARGIN, REGION_FACE_PX)
        for track in tracks.tracks.values()
    ]


def detect_frame(
    state: TrackerState, frame: FrameFaces, detection: FrameDetection
) -> list[FrameFaces | DeadLetter]:
    """Find the faces of an undetected frame, in its turn, where `search_regions` says."""
    assert frame.job is not None
    position = frame.frame.position_ms
    regions = search_regions(
        state.tracks, position, state.whole_frame_ms, detection.whole_frame_every_ms
    )
    if regions is None:
        state.whole_frame_ms = position
    return frame_faces(frame.frame, frame.principal, detection.detect(frame.job, regions))


def new_tracker(first: FrameFaces, max_buffered: int) -> TrackerState:
    """A stream's tracker state, starting at the first frame it sees."""
    return TrackerState(
        principal=first.principal,
        stream_id=first.frame.stream_id,
        order=SequenceOrder(first.sequence, max_buffered),
        tracks=StreamTracks(),
        session=first.sequence,
    )


def take_frame(
    state: TrackerState,
    frame: FrameFaces,
    policy: TrackingPolicy,
    counts: TrackingCounts,
    detection: FrameDetection | None = None,
) -> list[Tracked]:
    """Take a frame of the stream: hold it until its turn and follow every frame whose
    turn came; a frame whose turn passed is answered untracked. A full buffer gives up on
    the missing frame."""
    if state.closed:
        return untracked(frame, counts, detection)
    out: list[Tracked] = []
    while (offered := state.order.offer(frame.sequence, frame)) is Offered.FULL:
        counts.skipped += state.order.skip_gap()
        out += follow_ready(state, policy, counts, detection)  # room again
    if offered is not Offered.HELD:  # late or repeated: answered, never dropped
        return out + untracked(frame, counts, detection)
    return out + follow_ready(state, policy, counts, detection)


def follow_ready(
    state: TrackerState,
    policy: TrackingPolicy,
    counts: TrackingCounts,
    detection: FrameDetection | None = None,
) -> list[Tracked]:
    """Follow the frames whose turn came, in order."""
    out: list[Tracked] = []
    for frame in state.order.pop_ready():
        out += plan_frame(state, frame, policy, counts, detection)
    return out


def skip_missing(
    state: TrackerState,
    now: float,
    gap_timeout: float,
    policy: TrackingPolicy,
    counts: TrackingCounts,
    detection: FrameDetection | None = None,
) -> list[Tracked]:
    """Give up on a missing frame once it was waited for `gap_timeout` seconds, and follow
    the frames held after it."""
    order = state.order
    if not order.waiting_on_gap or now - order.note_gap(now) < gap_timeout:
        return []
    counts.skipped += order.skip_gap()
    return follow_ready(state, policy, counts, detection)


def plan_frame(
    state: TrackerState,
    frame: FrameFaces,
    policy: TrackingPolicy,
    counts: TrackingCounts,
    detection: FrameDetection | None = None,
) -> list[Tracked]:
    """Follow one frame, in its turn: its plan, and a FaceJob per face the models run on
    (the frame's faces found first, when it came undetected)."""
    letters: list[Tracked] = []
    undetected = frame.job
    if undetected is not None:
        assert detection is not None, "an undetected frame needs the tracker's detection"
        found, *letters = detect_frame(state, frame, detection)
        assert isinstance(found, FrameFaces)
        frame = found
    point = FramePoint(frame.frame.sequence, frame.frame.frame_index, frame.frame.position_ms)
    boxes = [(job.face.x, job.face.y, job.face.w, job.face.h) for job in frame.faces]
    decisions, ended = follow(state.tracks, point, boxes, frame.frame.last, policy)
    state.closed = frame.frame.last
    progress = None
    if frame.faces:
        progress = replace(frame.faces[0].image, stream_gathering=state.gathering)
    plan = FramePlan(
        gathering=state.gathering,
        order=state.plans,
        frame=frame.frame,
        faces=tuple(
            PlannedFace(decision, box, job.face.confidence)
            for decision, box, job in zip(decisions, boxes, frame.faces, strict=True)
        ),
        progress=progress,
        finished=frame.finished,
        ended=tuple(ended),
        ended_by="last_frame" if frame.frame.last else "missing",
        principal=state.principal,
        stream_id=state.stream_id,
    )
    state.plans += 1
    jobs = [
        replace(job, image=progress)
        for job, decision in zip(frame.faces, decisions, strict=True)
        if decision.analyse and progress is not None
    ]
    if undetected is not None and detection is not None and jobs:
        jobs = detection.crop(undetected, jobs)
    counts.analysed += sum(1 for d in decisions if d.analyse and d.track_id)
    counts.untracked += sum(1 for d in decisions if not d.track_id)
    counts.carried += sum(1 for d in decisions if not d.analyse)
    return [plan, *jobs, *letters]


def follow_held(
    state: TrackerState,
    policy: TrackingPolicy,
    counts: TrackingCounts,
    detection: FrameDetection | None = None,
) -> list[Tracked]:
    """Follow every frame held, giving up on the missing ones before them."""
    out: list[Tracked] = []
    while state.order.buffer:
        counts.skipped += state.order.skip_gap()
        out += follow_ready(state, policy, counts, detection)
    return out


def close_stream(
    state: TrackerState,
    policy: TrackingPolicy,
    counts: TrackingCounts,
    detection: FrameDetection | None = None,
) -> list[Tracked]:
    """The stream went idle: follow what is held (giving up on what is missing), then end
    its open tracks in a closing plan."""
    out = follow_held(state, policy, counts, detection)
    ended = close(state.tracks)
    if ended:
        out.append(
            FramePlan(
                gathering=state.gathering,
                order=state.plans,
                frame=None,
                faces=(),
                progress=None,
                finished=None,
                ended=tuple(ended),
                ended_by="idle",
                principal=state.principal,
                stream_id=state.stream_id,
            )
        )
        state.plans += 1
    return out


def untracked(
    frame: FrameFaces, counts: TrackingCounts, detection: FrameDetection | None = None
) -> list[Tracked]:
    """A frame whose turn passed, answered as an image: every face analysed, untracked
    (found in the whole frame, when it came undetected)."""
    counts.late += 1
    if frame.job is not None:
        assert detection is not None, "an undetected frame needs the tracker's detection"
        extracted = detection.detect(frame.job, None)
        counts.untracked += sum(isinstance(item, FaceJob) for item in extracted)
        return list(extracted)
    if frame.finished is not None:
        return [frame.finished]
    counts.untracked += len(frame.faces)
    return list(frame.faces)


class TrackFaces(StatefulLogic[FrameFaces, Tracked, TrackerState]):
    """track_faces for one stream, as Bytewax's stateful operator runs it: the functions
    above, with the wall clock for the two timers (a missing frame's wait, the idle
    close). `on_counts` hears what each call did (metrics); `on_open(+1/-1, tracks)`
    hears a stream state opening or closing and its open tracks changing."""

    def __init__(
        self,
        state: TrackerState | None,
        tracking: StreamTracking,
        on_counts: Callable[[TrackingCounts], None] = lambda _counts: None,
        on_open: Callable[[int, int], None] = lambda _streams, _tracks: None,
        clock: Callable[[], float] = time.time,
        detection: FrameDetection | None = None,
    ) -> None:
        self.state = state
        self.tracking = tracking
        self.detection = detection
        self.on_counts = on_counts
        self.on_open = on_open
        self.clock = clock
        if state is not None:  # resumed from a snapshot
            on_open(1, len(state.tracks.tracks))

    def on_item(self, value: FrameFaces) -> tuple[Iterable[Tracked], bool]:
        if self.state is None:
            self.state = new_tracker(value, self.tracking.max_buffered)
            self.on_open(1, 0)
        self.state.last_seen = self.clock()
        return self._counted(
            lambda state, counts: take_frame(state, value, self.policy, counts, self.detection)
        )

    def on_notify(self) -> tuple[Iterable[Tracked], bool]:
        if self.state is None:
            return [], StatefulLogic.DISCARD
        now = self.clock()
        if now - self.state.last_seen >= self.tracking.idle_timeout:
            out, _ = self._counted(
                lambda state, counts: close_stream(state, self.policy, counts, self.detection)
            )
            self.on_open(-1, 0)
            self.state = None
            return out, StatefulLogic.DISCARD
        return self._counted(
            lambda state, counts: skip_missing(
                state, now, self.tracking.gap_timeout, self.policy, counts, self.detection
            )
        )

    def on_eof(self) -> tuple[Iterable[Tracked], bool]:
        """The input ended (a bounded run): follow what is held, tracks stay open."""
        if self.state is None:
            return [], StatefulLogic.DISCARD

        return self._counted(
            lambda state, counts: follow_held(state, self.policy, counts, self.detection)
        )

    def notify_at(self) -> datetime | None:
        if self.state is None:
            return None
        deadline = self.state.last_seen + self.tracking.idle_timeout
        if self.state.order.gap_since is not None:
            deadline = min(deadline, self.state.order.gap_since + self.tracking.gap_timeout)
        elif self.state.order.waiting_on_gap:
            deadline = min(deadline, self.clock() + self.tracking.gap_timeout)
        return datetime.fromtimestamp(deadline, UTC)

    def snapshot(self) -> TrackerState:
        return copy.deepcopy(self.state)  # type: ignore[return-value]

    @property
    def policy(self) -> TrackingPolicy:
        return self.tracking.policy

    def _counted(
        self, step: Callable[[TrackerState, TrackingCounts], list[Tracked]]
    ) -> tuple[Iterable[Tracked], bool]:
        assert self.state is not None
        counts = TrackingCounts()
        tracks_before = len(self.state.tracks.tracks)
        out = step(self.state, counts)
        if self.state.order.waiting_on_gap:
            self.state.order.note_gap(self.clock())
        self.on_counts(counts)
        self.on_open(0, len(self.state.tracks.tracks) - tracks_before)
        return out, StatefulLogic.RETAIN


def frame_gathering_key(item: FramePlan | AnalyzedFace) -> str:
    """gather_frames' key: the stream session a plan or a tracked face belongs to."""
    if isinstance(item, FramePlan):
        return item.gathering
    return item.image.stream_gathering


def is_tracked_face(face: AnalyzedFace) -> bool:
    """An analysed face of a tracked frame (True), or of an image gathered alone."""
    return bool(face.image.stream_gathering)


def gather_frames(
    state: FrameGathering | None, item: FramePlan | AnalyzedFace, synthetic_weights: bool
) -> tuple[FrameGathering | None, list[Result | records_pb2.TrackSummary]]:
    """Collect a stream session's plans and analysed faces; answer each plan, in the
    tracker's order, once the faces the models ran on are back: its AnalysisResult, then a
    TrackSummary per track it ended. The state is dropped once the session's last plan
    (its last frame, or its idle close) is answered."""
    state = state or FrameGathering()
    if isinstance(item, FramePlan):
        if item.order >= state.next_order:
            state.plans[item.order] = item
    elif item.image.frame is not None and item.image.frame.sequence > state.done_through:
        state.faces.setdefault(item.image.frame.sequence, {})[item.index] = item
    out: list[Result | records_pb2.TrackSummary] = []
    ended_session = False
    while (plan := state.plans.get(state.next_order)) is not None and _complete(state, plan):
        del state.plans[state.next_order]
        state.next_order += 1
        out += answer_plan(state, plan, synthetic_weights)
        ended_session = plan.frame is None or plan.frame.last
    if ended_session and not state.plans:
        return None, out
    return state, out


def _complete(state: FrameGathering, plan: FramePlan) -> bool:
    if plan.frame is None or plan.finished is not None:
        return True
    return plan.analysed <= state.faces.get(plan.frame.sequence, {}).keys()


def answer_plan(
    state: FrameGathering, plan: FramePlan, synthetic_weights: bool
) -> list[Result | records_pb2.TrackSummary]:
    """A complete plan's result (faces analysed or carried, each with its track) and the
    summaries of the tracks it ended, which the result carries too."""
    summaries = []
    result = None
    if plan.frame is not None:
        state.done_through = plan.frame.sequence
        analysed = state.faces.pop(plan.frame.sequence, {})
        result = plan.finished or frame_result(state, plan, analysed, synthetic_weights)
    for track in plan.ended:
        tally = state.tallies.pop(track.track_id, AttributeTally())
        state.latest.pop(track.track_id, None)
        summaries.append(track_summary(plan, track, tally, synthetic_weights=synthetic_weights))
    if result is None:
        return list(summaries)
    result = copy.deepcopy(result)
    result.ended_tracks.extend(summaries)
    return [result, *summaries]


def frame_result(
    state: FrameGathering,
    plan: FramePlan,
    analysed: dict[int, AnalyzedFace],
    synthetic_weights: bool,
) -> Result:
    """The AnalysisResult of a planned frame with faces: each face analysed (its own
    attributes) or carried (its track's latest analysis); FAILED with the first error
    when an analysis it needs failed."""
    assert plan.progress is not None and plan.frame is not None
    faces, errors = [], []
    for planned in plan.faces:
        decision = planned.decision
        source = (
            analysed[decision.index] if decision.analyse else state.latest.get(decision.track_id)
        )
        if source is None or source.error is not None or source.record is None:
            errors.append(source.error if source is not None and source.error else _no_analysis())
            continue
        record = copy.deepcopy(source.record)
        record.region.CopyFrom(
            records_pb2.Region(
                x=planned.box[0], y=planned.box[1], w=planned.box[2], h=planned.box[3]
            )
        )
        record.confidence = planned.confidence
        if decision.track_id:
            record.track_id = decision.track_id
            record.carried = not decision.analyse
            record.attributes_from = source.image.frame.sequence if source.image.frame else 0
        faces.append(record)
        if decision.analyse and decision.track_id:
            state.latest[decision.track_id] = source
            add_to_tally(
                state.tallies.setdefault(decision.track_id, AttributeTally()), source.record
            )
    progress = plan.progress
    timings = records_pb2.StageTimings(
        queued=progress.queued,
        decode=progress.decode,
        detect=progress.detect,
        analyze=max((face.analyze_seconds for face in analysed.values()), default=0.0),
        total=time.time() - progress.started_at,
    )
    return result_record(
        progress.request_id,
        Status.ANALYSIS_STATUS_FAILED if errors else Status.ANALYSIS_STATUS_OK,
        faces=[] if errors else faces,
        error=errors[0] if errors else None,
        timings=timings,
        worker=worker_name(),
        synthetic_weights=synthetic_weights,
        principal=progress.principal,
        frame=plan.frame,
    )


def _no_analysis() -> tuple[str, str]:
    return ("analyze.failed", "face analysis failed: the track's analysis is missing")


def add_to_tally(tally: AttributeTally, face: records_pb2.Face) -> None:
    """Add one analysis of a track to its sums."""
    tally.analyses += 1
    if face.HasField("age"):
        tally.ages += 1
        tally.age_sum += face.age
    for action in ACTIONS_WITH_SCORES:
        distribution = getattr(face, action)
        sums = tally.score_sums.setdefault(action, {})
        for label, score in distribution.scores.items():
            sums[label] = sums.get(label, 0.0) + score
    matches = face.identity.matches
    if matches and matches[0].verified:
        best = matches[0]
        tally.subjects[best.subject] = tally.subjects.get(best.subject, 0) + 1
        known = tally.best_distance.get(best.subject, best.distance)
        tally.best_distance[best.subject] = min(known, best.distance)


def track_summary(
    plan: FramePlan, track: Track, tally: AttributeTally, *, synthetic_weights: bool
) -> records_pb2.TrackSummary:
    """The TrackSummary of an ended track: where it was, how often it was seen and
    analysed, the means of its analyses, and, when its faces were identified, the subject
    they matched most."""
    summary = records_pb2.TrackSummary(
        principal=plan.principal,
        stream_id=plan.stream_id,
        track_id=track.track_id,
        first=_frame_point(track.first),
        last=_frame_point(track.last),
        frames_seen=track.seen,
        frames_analysed=track.analysed,
        largest_region=records_pb2.Region(
            x=track.largest[0], y=track.largest[1], w=track.largest[2], h=track.largest[3]
        ),
        ended_by=plan.ended_by,
        synthetic_weights=synthetic_weights,
        completed_at=timestamp_now(),
    )
    if tally.ages:
        summary.age = tally.age_sum / tally.ages
    for action, sums in tally.score_sums.items():
        if not sums:
            continue
        distribution = getattr(summary, action)
        distribution.scores.update({label: total / tally.analyses for label, total in sums.items()})
        distribution.dominant = max(sorted(sums), key=lambda label: sums[label])
    if tally.subjects:
        # The subject matched most often; of equals, the nearest.
        summary.subject = min(
            tally.subjects, key=lambda s: (-tally.subjects[s], tally.best_distance[s], s)
        )
        summary.subject_distance = tally.best_distance[summary.subject]
    return summary


def _frame_point(point: FramePoint) -> records_pb2.FramePoint:
    return records_pb2.FramePoint(
        sequence=point.sequence, frame_index=point.frame_index, position_ms=point.position_ms
    )


def track_summary_key(summary: records_pb2.TrackSummary) -> bytes:
    """The tracks-topic key of a summary: `principal/stream_id/track_id`."""
    parts = [summary.principal] if summary.principal else []
    return "/".join([*parts, summary.stream_id, summary.track_id]).encode()


def track_summary_out(summary: records_pb2.TrackSummary, topic: str) -> OutgoingRecord:
    """The tracks-topic record of one TrackSummary."""
    return OutgoingRecord(
        topic=topic, key=track_summary_key(summary), value=summary.SerializeToString()
    )
