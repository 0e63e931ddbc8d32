"""What flows between the dataflow's steps (`dataflow.steps`), in the order they pass it on:

    Kafka record -> ImageJob (or DeadLetter) -> FaceJob per face (carrying its ImageProgress)
    -> AnalyzedFace -> Gathering (per image, until its last face) -> OutgoingRecord

Plain frozen dataclasses, except Gathering, the state gather_results keeps per image.
They are pickled: FaceJob and AnalyzedFace cross workers, Gathering goes into the recovery
snapshots.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from facestream.faces import Face
from facestream.v1 import records_pb2


@dataclass(frozen=True)
class ImageJob:
    """An image to analyse, as read from the requests topic."""

    request_id: str
    submission: str  # where the record came from; one result per submission
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

    @property
    def attempt_key(self) -> str:
        """Names this record (request and position) in the attempt log."""
        return f"{self.request_id}@{self.submission}"


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
    submission: str
    face_count: int
    started_at: float  # submitted_at, or received_at when the submitter gave no time
    queued: float
    decode: float
    detect: float
    frame: records_pb2.StreamFrame | None = None


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
