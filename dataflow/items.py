"""What flows between the dataflow's steps (`dataflow.steps`, `dataflow.tracking_steps`),
in the order they pass it on:

    Kafka record -> ImageJob (or DeadLetter) -> FaceJob per face (carrying its ImageProgress)
    -> AnalyzedFace -> Gathering (per image, until its last face) -> OutgoingRecord

and for the frames of a tracked stream:

    ImageJob -> FrameFaces (all faces of one frame) -> TrackerState (per stream, in order)
    -> FramePlan (which faces to analyse, which carry) + FaceJob per face to analyse
    -> AnalyzedFace -> FrameGathering (per stream) -> AnalysisResult + TrackSummary

Plain frozen dataclasses, except the states the stateful steps keep (Gathering,
TrackerState, FrameGathering). They are pickled: what crosses workers, and the states in
the recovery snapshots.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from facestream.faces import Face
from facestream.kafka_records import stream_key
from facestream.sequence_order import SequenceOrder
from facestream.tracking import Box, FaceDecision, StreamTracks, Track
from facestream.v1 import records_pb2


@dataclass(frozen=True)
class ImageJob:
    """An image to analyse, as read from the requests topic."""

    request_id: str
    source: str  # where the record was read (topic/partition/offset); one result per source
    image: bytes
    actions: tuple[str, ...]
    detector_backend: str
    submitted_at: float | None  # seconds since the epoch, as the front stamped it
    received_at: float
    record: bytes  # the record as read, for the dead-letter topic if it is quarantined
    principal: str = ""  # who submitted it; its result goes to it alone
    frame: records_pb2.StreamFrame | None = None  # its place in a stream, copied to its result
    # (code, message): the gRPC front refused this frame; it is answered without an image.
    refusal: tuple[str, str] | None = None
    identify: records_pb2.Identify | None = None  # match each face against this gallery
    enrolment: records_pb2.Enrolment | None = None  # write its one face into a gallery

    @property
    def attempt_key(self) -> str:
        """Names this record (request and position) in the attempt log."""
        return f"{self.request_id}@{self.source}"


@dataclass(frozen=True)
class DeadLetter:
    """A record that is not a usable submission, kept with the reason."""

    key: bytes | None
    value: bytes | None
    code: str  # machine-readable: record.unparseable, request.poison
    reason: str
    source: str


@dataclass(frozen=True)
class ImageProgress:
    """What every face of one image carries: who it belongs to and the time spent so far."""

    request_id: str
    principal: str
    source: str  # the image's record (topic/partition/offset)
    face_count: int
    started_at: float  # submitted_at, or received_at when the submitter gave no time
    queued: float
    decode: float
    detect: float
    frame: records_pb2.StreamFrame | None = None
    # The frame's stream state in gather_frames (`principal/stream#session`) when it is
    # tracked; empty: the image is gathered alone (gather_results).
    stream_gathering: str = ""
    identify: records_pb2.Identify | None = None
    enrolment: records_pb2.Enrolment | None = None
    image_sha256: bytes = b""  # an enrolment's image, named in the gallery store
    # The embedding goes in the result (asked for); else it was computed only to identify
    # or enrol the face, and is dropped once that is done.
    keep_embedding: bool = True


@dataclass(frozen=True)
class FaceJob:
    """One face waiting for the attribute models."""

    image: ImageProgress
    index: int
    face: Face
    actions: tuple[str, ...]


@dataclass(frozen=True)
class AnalyzedFace:
    """One face after the models: its record, or the error that stopped it."""

    image: ImageProgress
    index: int
    record: records_pb2.Face | None
    error: tuple[str, str] | None
    analyze_seconds: float
    enrolled: records_pb2.EnrolledFace | None = None  # an enrolment's face, once written


@dataclass
class Gathering:
    """The faces of one image gathered so far (a gather_results state)."""

    faces: dict[int, AnalyzedFace] = field(default_factory=dict)


@dataclass(frozen=True)
class OutgoingRecord:
    """A record for the Kafka sink."""

    topic: str
    key: bytes | None
    value: bytes | None
    headers: list[tuple[str, bytes]] = field(default_factory=list)


@dataclass(frozen=True)
class FrameFaces:
    """One frame of a tracked stream after detection: its faces, in the detector's order,
    or its finished result (no face, invalid, refused, poison). A frame whose detection
    waits for the tracker (it looks where the stream's tracks are) holds its `job` instead,
    no faces and no result yet."""

    principal: str
    frame: records_pb2.StreamFrame
    faces: tuple[FaceJob, ...]
    finished: records_pb2.AnalysisResult | None
    job: ImageJob | None = None

    @property
    def stream(self) -> str:
        """`principal/stream_id`: the tracker's key."""
        return stream_key(self.principal, self.frame.stream_id)

    @property
    def sequence(self) -> int:
        return self.frame.sequence


@dataclass(frozen=True)
class PlannedFace:
    """A face of a planned frame: the tracker's decision, and its own box and confidence
    (a carried face has no FaceJob to bring them)."""

    decision: FaceDecision
    box: Box
    confidence: float


@dataclass(frozen=True)
class FramePlan:
    """What the tracker decided for one frame, in its stream's order (`order` 0, 1, ...),
    for gather_frames: which faces were sent to the models, which carry their track's
    attributes, and the tracks that ended with it. A closing plan (`frame` None) only
    ends tracks: the stream went idle."""

    gathering: str  # gather_frames' key: principal/stream_id#session
    order: int
    frame: records_pb2.StreamFrame | None
    faces: tuple[PlannedFace, ...]
    progress: ImageProgress | None  # None for a finished frame or a closing plan
    finished: records_pb2.AnalysisResult | None
    ended: tuple[Track, ...]
    ended_by: str  # missing, last_frame or idle
    principal: str
    stream_id: str

    @property
    def analysed(self) -> set[int]:
        """The face indexes the models run on: their AnalyzedFace completes the plan."""
        return {face.decision.index for face in self.faces if face.decision.analyse}


@dataclass
class TrackerState:
    """What track_faces keeps per stream: its frames in order, its open tracks, how many
    plans it made. `session` (the first sequence it saw) names its gather_frames state."""

    @property
    def gathering(self) -> str:
        """gather_frames' key for this state's frames: `principal/stream_id#session`."""
        return f"{stream_key(self.principal, self.stream_id)}#{self.session}"

    principal: str
    stream_id: str
    order: SequenceOrder[FrameFaces]
    tracks: StreamTracks
    session: int
    plans: int = 0
    closed: bool = False  # the stream's last frame was followed: later frames are late
    # The stream position (ms) of its last frame searched whole, when the tracker detects.
    whole_frame_ms: int | None = None
    last_seen: float = 0.0  # wall clock of its latest frame, for the idle close


@dataclass
class AttributeTally:
    """The sums of a track's analyses, for the means of its summary."""

    analyses: int = 0
    ages: int = 0
    age_sum: float = 0.0
    score_sums: dict[str, dict[str, float]] = field(default_factory=dict)  # action: label: sum
    subjects: dict[str, int] = field(default_factory=dict)  # verified best matches, counted
    best_distance: dict[str, float] = field(default_factory=dict)  # per subject


@dataclass
class FrameGathering:
    """What gather_frames keeps per stream session: the plans not yet answered, the faces
    the models answered, and each open track's latest analysis and tally."""

    next_order: int = 0
    plans: dict[int, FramePlan] = field(default_factory=dict)
    faces: dict[int, dict[int, AnalyzedFace]] = field(default_factory=dict)  # sequence: index
    latest: dict[str, AnalyzedFace] = field(default_factory=dict)  # track id: its analysis
    tallies: dict[str, AttributeTally] = field(default_factory=dict)
    done_through: int = -1  # sequence of the latest frame answered
