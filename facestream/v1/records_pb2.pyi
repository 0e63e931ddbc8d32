import datetime

from google.protobuf import timestamp_pb2 as _timestamp_pb2
from google.protobuf.internal import containers as _containers
from google.protobuf.internal import enum_type_wrapper as _enum_type_wrapper
from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from collections.abc import Iterable as _Iterable, Mapping as _Mapping
from typing import ClassVar as _ClassVar, Optional as _Optional, Union as _Union

DESCRIPTOR: _descriptor.FileDescriptor

class AnalysisStatus(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    ANALYSIS_STATUS_UNSPECIFIED: _ClassVar[AnalysisStatus]
    ANALYSIS_STATUS_OK: _ClassVar[AnalysisStatus]
    ANALYSIS_STATUS_NO_FACE: _ClassVar[AnalysisStatus]
    ANALYSIS_STATUS_INVALID_IMAGE: _ClassVar[AnalysisStatus]
    ANALYSIS_STATUS_FAILED: _ClassVar[AnalysisStatus]
ANALYSIS_STATUS_UNSPECIFIED: AnalysisStatus
ANALYSIS_STATUS_OK: AnalysisStatus
ANALYSIS_STATUS_NO_FACE: AnalysisStatus
ANALYSIS_STATUS_INVALID_IMAGE: AnalysisStatus
ANALYSIS_STATUS_FAILED: AnalysisStatus

class ImageSubmitted(_message.Message):
    __slots__ = ("request_id", "image", "actions", "detector_backend", "submitted_at", "principal", "frame", "refusal", "identify", "enrolment")
    REQUEST_ID_FIELD_NUMBER: _ClassVar[int]
    IMAGE_FIELD_NUMBER: _ClassVar[int]
    ACTIONS_FIELD_NUMBER: _ClassVar[int]
    DETECTOR_BACKEND_FIELD_NUMBER: _ClassVar[int]
    SUBMITTED_AT_FIELD_NUMBER: _ClassVar[int]
    PRINCIPAL_FIELD_NUMBER: _ClassVar[int]
    FRAME_FIELD_NUMBER: _ClassVar[int]
    REFUSAL_FIELD_NUMBER: _ClassVar[int]
    IDENTIFY_FIELD_NUMBER: _ClassVar[int]
    ENROLMENT_FIELD_NUMBER: _ClassVar[int]
    request_id: str
    image: bytes
    actions: _containers.RepeatedScalarFieldContainer[str]
    detector_backend: str
    submitted_at: _timestamp_pb2.Timestamp
    principal: str
    frame: StreamFrame
    refusal: Error
    identify: Identify
    enrolment: Enrolment
    def __init__(self, request_id: _Optional[str] = ..., image: _Optional[bytes] = ..., actions: _Optional[_Iterable[str]] = ..., detector_backend: _Optional[str] = ..., submitted_at: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., principal: _Optional[str] = ..., frame: _Optional[_Union[StreamFrame, _Mapping]] = ..., refusal: _Optional[_Union[Error, _Mapping]] = ..., identify: _Optional[_Union[Identify, _Mapping]] = ..., enrolment: _Optional[_Union[Enrolment, _Mapping]] = ...) -> None: ...

class Identify(_message.Message):
    __slots__ = ("gallery", "top_k", "threshold")
    GALLERY_FIELD_NUMBER: _ClassVar[int]
    TOP_K_FIELD_NUMBER: _ClassVar[int]
    THRESHOLD_FIELD_NUMBER: _ClassVar[int]
    gallery: str
    top_k: int
    threshold: float
    def __init__(self, gallery: _Optional[str] = ..., top_k: _Optional[int] = ..., threshold: _Optional[float] = ...) -> None: ...

class Enrolment(_message.Message):
    __slots__ = ("gallery", "subject", "enrolment_id", "image_index")
    GALLERY_FIELD_NUMBER: _ClassVar[int]
    SUBJECT_FIELD_NUMBER: _ClassVar[int]
    ENROLMENT_ID_FIELD_NUMBER: _ClassVar[int]
    IMAGE_INDEX_FIELD_NUMBER: _ClassVar[int]
    gallery: str
    subject: str
    enrolment_id: str
    image_index: int
    def __init__(self, gallery: _Optional[str] = ..., subject: _Optional[str] = ..., enrolment_id: _Optional[str] = ..., image_index: _Optional[int] = ...) -> None: ...

class StreamFrame(_message.Message):
    __slots__ = ("stream_id", "sequence", "frame_index", "position_ms", "last")
    STREAM_ID_FIELD_NUMBER: _ClassVar[int]
    SEQUENCE_FIELD_NUMBER: _ClassVar[int]
    FRAME_INDEX_FIELD_NUMBER: _ClassVar[int]
    POSITION_MS_FIELD_NUMBER: _ClassVar[int]
    LAST_FIELD_NUMBER: _ClassVar[int]
    stream_id: str
    sequence: int
    frame_index: int
    position_ms: int
    last: bool
    def __init__(self, stream_id: _Optional[str] = ..., sequence: _Optional[int] = ..., frame_index: _Optional[int] = ..., position_ms: _Optional[int] = ..., last: _Optional[bool] = ...) -> None: ...

class Region(_message.Message):
    __slots__ = ("x", "y", "w", "h")
    X_FIELD_NUMBER: _ClassVar[int]
    Y_FIELD_NUMBER: _ClassVar[int]
    W_FIELD_NUMBER: _ClassVar[int]
    H_FIELD_NUMBER: _ClassVar[int]
    x: int
    y: int
    w: int
    h: int
    def __init__(self, x: _Optional[int] = ..., y: _Optional[int] = ..., w: _Optional[int] = ..., h: _Optional[int] = ...) -> None: ...

class Distribution(_message.Message):
    __slots__ = ("scores", "dominant")
    class ScoresEntry(_message.Message):
        __slots__ = ("key", "value")
        KEY_FIELD_NUMBER: _ClassVar[int]
        VALUE_FIELD_NUMBER: _ClassVar[int]
        key: str
        value: float
        def __init__(self, key: _Optional[str] = ..., value: _Optional[float] = ...) -> None: ...
    SCORES_FIELD_NUMBER: _ClassVar[int]
    DOMINANT_FIELD_NUMBER: _ClassVar[int]
    scores: _containers.ScalarMap[str, float]
    dominant: str
    def __init__(self, scores: _Optional[_Mapping[str, float]] = ..., dominant: _Optional[str] = ...) -> None: ...

class Match(_message.Message):
    __slots__ = ("subject", "distance", "verified", "face_id")
    SUBJECT_FIELD_NUMBER: _ClassVar[int]
    DISTANCE_FIELD_NUMBER: _ClassVar[int]
    VERIFIED_FIELD_NUMBER: _ClassVar[int]
    FACE_ID_FIELD_NUMBER: _ClassVar[int]
    subject: str
    distance: float
    verified: bool
    face_id: int
    def __init__(self, subject: _Optional[str] = ..., distance: _Optional[float] = ..., verified: _Optional[bool] = ..., face_id: _Optional[int] = ...) -> None: ...

class Identity(_message.Message):
    __slots__ = ("gallery", "matches", "threshold", "error")
    GALLERY_FIELD_NUMBER: _ClassVar[int]
    MATCHES_FIELD_NUMBER: _ClassVar[int]
    THRESHOLD_FIELD_NUMBER: _ClassVar[int]
    ERROR_FIELD_NUMBER: _ClassVar[int]
    gallery: str
    matches: _containers.RepeatedCompositeFieldContainer[Match]
    threshold: float
    error: Error
    def __init__(self, gallery: _Optional[str] = ..., matches: _Optional[_Iterable[_Union[Match, _Mapping]]] = ..., threshold: _Optional[float] = ..., error: _Optional[_Union[Error, _Mapping]] = ...) -> None: ...

class Face(_message.Message):
    __slots__ = ("region", "confidence", "age", "gender", "emotion", "race", "track_id", "carried", "attributes_from", "embedding", "identity")
    REGION_FIELD_NUMBER: _ClassVar[int]
    CONFIDENCE_FIELD_NUMBER: _ClassVar[int]
    AGE_FIELD_NUMBER: _ClassVar[int]
    GENDER_FIELD_NUMBER: _ClassVar[int]
    EMOTION_FIELD_NUMBER: _ClassVar[int]
    RACE_FIELD_NUMBER: _ClassVar[int]
    TRACK_ID_FIELD_NUMBER: _ClassVar[int]
    CARRIED_FIELD_NUMBER: _ClassVar[int]
    ATTRIBUTES_FROM_FIELD_NUMBER: _ClassVar[int]
    EMBEDDING_FIELD_NUMBER: _ClassVar[int]
    IDENTITY_FIELD_NUMBER: _ClassVar[int]
    region: Region
    confidence: float
    age: float
    gender: Distribution
    emotion: Distribution
    race: Distribution
    track_id: str
    carried: bool
    attributes_from: int
    embedding: bytes
    identity: Identity
    def __init__(self, region: _Optional[_Union[Region, _Mapping]] = ..., confidence: _Optional[float] = ..., age: _Optional[float] = ..., gender: _Optional[_Union[Distribution, _Mapping]] = ..., emotion: _Optional[_Union[Distribution, _Mapping]] = ..., race: _Optional[_Union[Distribution, _Mapping]] = ..., track_id: _Optional[str] = ..., carried: _Optional[bool] = ..., attributes_from: _Optional[int] = ..., embedding: _Optional[bytes] = ..., identity: _Optional[_Union[Identity, _Mapping]] = ...) -> None: ...

class FramePoint(_message.Message):
    __slots__ = ("sequence", "frame_index", "position_ms")
    SEQUENCE_FIELD_NUMBER: _ClassVar[int]
    FRAME_INDEX_FIELD_NUMBER: _ClassVar[int]
    POSITION_MS_FIELD_NUMBER: _ClassVar[int]
    sequence: int
    frame_index: int
    position_ms: int
    def __init__(self, sequence: _Optional[int] = ..., frame_index: _Optional[int] = ..., position_ms: _Optional[int] = ...) -> None: ...

class TrackSummary(_message.Message):
    __slots__ = ("principal", "stream_id", "track_id", "first", "last", "frames_seen", "frames_analysed", "age", "gender", "emotion", "race", "largest_region", "ended_by", "synthetic_weights", "completed_at", "subject", "subject_distance")
    PRINCIPAL_FIELD_NUMBER: _ClassVar[int]
    STREAM_ID_FIELD_NUMBER: _ClassVar[int]
    TRACK_ID_FIELD_NUMBER: _ClassVar[int]
    FIRST_FIELD_NUMBER: _ClassVar[int]
    LAST_FIELD_NUMBER: _ClassVar[int]
    FRAMES_SEEN_FIELD_NUMBER: _ClassVar[int]
    FRAMES_ANALYSED_FIELD_NUMBER: _ClassVar[int]
    AGE_FIELD_NUMBER: _ClassVar[int]
    GENDER_FIELD_NUMBER: _ClassVar[int]
    EMOTION_FIELD_NUMBER: _ClassVar[int]
    RACE_FIELD_NUMBER: _ClassVar[int]
    LARGEST_REGION_FIELD_NUMBER: _ClassVar[int]
    ENDED_BY_FIELD_NUMBER: _ClassVar[int]
    SYNTHETIC_WEIGHTS_FIELD_NUMBER: _ClassVar[int]
    COMPLETED_AT_FIELD_NUMBER: _ClassVar[int]
    SUBJECT_FIELD_NUMBER: _ClassVar[int]
    SUBJECT_DISTANCE_FIELD_NUMBER: _ClassVar[int]
    principal: str
    stream_id: str
    track_id: str
    first: FramePoint
    last: FramePoint
    frames_seen: int
    frames_analysed: int
    age: float
    gender: Distribution
    emotion: Distribution
    race: Distribution
    largest_region: Region
    ended_by: str
    synthetic_weights: bool
    completed_at: _timestamp_pb2.Timestamp
    subject: str
    subject_distance: float
    def __init__(self, principal: _Optional[str] = ..., stream_id: _Optional[str] = ..., track_id: _Optional[str] = ..., first: _Optional[_Union[FramePoint, _Mapping]] = ..., last: _Optional[_Union[FramePoint, _Mapping]] = ..., frames_seen: _Optional[int] = ..., frames_analysed: _Optional[int] = ..., age: _Optional[float] = ..., gender: _Optional[_Union[Distribution, _Mapping]] = ..., emotion: _Optional[_Union[Distribution, _Mapping]] = ..., race: _Optional[_Union[Distribution, _Mapping]] = ..., largest_region: _Optional[_Union[Region, _Mapping]] = ..., ended_by: _Optional[str] = ..., synthetic_weights: _Optional[bool] = ..., completed_at: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., subject: _Optional[str] = ..., subject_distance: _Optional[float] = ...) -> None: ...

class Error(_message.Message):
    __slots__ = ("code", "message")
    CODE_FIELD_NUMBER: _ClassVar[int]
    MESSAGE_FIELD_NUMBER: _ClassVar[int]
    code: str
    message: str
    def __init__(self, code: _Optional[str] = ..., message: _Optional[str] = ...) -> None: ...

class StageTimings(_message.Message):
    __slots__ = ("queued", "decode", "detect", "analyze", "total")
    QUEUED_FIELD_NUMBER: _ClassVar[int]
    DECODE_FIELD_NUMBER: _ClassVar[int]
    DETECT_FIELD_NUMBER: _ClassVar[int]
    ANALYZE_FIELD_NUMBER: _ClassVar[int]
    TOTAL_FIELD_NUMBER: _ClassVar[int]
    queued: float
    decode: float
    detect: float
    analyze: float
    total: float
    def __init__(self, queued: _Optional[float] = ..., decode: _Optional[float] = ..., detect: _Optional[float] = ..., analyze: _Optional[float] = ..., total: _Optional[float] = ...) -> None: ...

class AnalysisResult(_message.Message):
    __slots__ = ("request_id", "status", "faces", "error", "timings", "worker", "completed_at", "synthetic_weights", "principal", "frame", "ended_tracks", "enrolled")
    REQUEST_ID_FIELD_NUMBER: _ClassVar[int]
    STATUS_FIELD_NUMBER: _ClassVar[int]
    FACES_FIELD_NUMBER: _ClassVar[int]
    ERROR_FIELD_NUMBER: _ClassVar[int]
    TIMINGS_FIELD_NUMBER: _ClassVar[int]
    WORKER_FIELD_NUMBER: _ClassVar[int]
    COMPLETED_AT_FIELD_NUMBER: _ClassVar[int]
    SYNTHETIC_WEIGHTS_FIELD_NUMBER: _ClassVar[int]
    PRINCIPAL_FIELD_NUMBER: _ClassVar[int]
    FRAME_FIELD_NUMBER: _ClassVar[int]
    ENDED_TRACKS_FIELD_NUMBER: _ClassVar[int]
    ENROLLED_FIELD_NUMBER: _ClassVar[int]
    request_id: str
    status: AnalysisStatus
    faces: _containers.RepeatedCompositeFieldContainer[Face]
    error: Error
    timings: StageTimings
    worker: str
    completed_at: _timestamp_pb2.Timestamp
    synthetic_weights: bool
    principal: str
    frame: StreamFrame
    ended_tracks: _containers.RepeatedCompositeFieldContainer[TrackSummary]
    enrolled: EnrolledFace
    def __init__(self, request_id: _Optional[str] = ..., status: _Optional[_Union[AnalysisStatus, str]] = ..., faces: _Optional[_Iterable[_Union[Face, _Mapping]]] = ..., error: _Optional[_Union[Error, _Mapping]] = ..., timings: _Optional[_Union[StageTimings, _Mapping]] = ..., worker: _Optional[str] = ..., completed_at: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., synthetic_weights: _Optional[bool] = ..., principal: _Optional[str] = ..., frame: _Optional[_Union[StreamFrame, _Mapping]] = ..., ended_tracks: _Optional[_Iterable[_Union[TrackSummary, _Mapping]]] = ..., enrolled: _Optional[_Union[EnrolledFace, _Mapping]] = ...) -> None: ...

class EnrolledFace(_message.Message):
    __slots__ = ("face_id", "already")
    FACE_ID_FIELD_NUMBER: _ClassVar[int]
    ALREADY_FIELD_NUMBER: _ClassVar[int]
    face_id: int
    already: bool
    def __init__(self, face_id: _Optional[int] = ..., already: _Optional[bool] = ...) -> None: ...
