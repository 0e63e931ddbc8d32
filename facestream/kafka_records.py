"""Conversion between the Kafka records (protobuf `facestream.v1`) and domain objects."""

from __future__ import annotations

import time
from collections.abc import Sequence

from google.protobuf.message import DecodeError
from google.protobuf.timestamp_pb2 import Timestamp

from facestream.analyzer import FaceAttributes
from facestream.embeddings import embedding_bytes
from facestream.faces import Face
from facestream.requests import InvalidRequestError, check_request_id
from facestream.v1 import records_pb2

Status = records_pb2.AnalysisStatus


class NotASubmissionError(ValueError):
    """A record on the requests topic that is not a usable ImageSubmitted."""


def parse_submission(value: bytes | None) -> records_pb2.ImageSubmitted:
    """Parse a requests-topic record; raise NotASubmissionError saying why it is unusable."""
    if value is None:
        raise NotASubmissionError("the record has no value")
    try:
        submission = records_pb2.ImageSubmitted.FromString(value)
    except DecodeError as error:
        raise NotASubmissionError(f"not an ImageSubmitted protobuf: {error}") from None
    if not submission.request_id:
        raise NotASubmissionError("not an ImageSubmitted record: it has no request_id")
    try:
        check_request_id(submission.request_id)
    except InvalidRequestError as error:
        raise NotASubmissionError(error.message) from None
    return submission


def image_submitted(
    request_id: str,
    image: bytes,
    *,
    actions: Sequence[str] = (),
    detector_backend: str = "",
    principal: str = "",
    frame: records_pb2.StreamFrame | None = None,
    identify: records_pb2.Identify | None = None,
    enrolment: records_pb2.Enrolment | None = None,
) -> records_pb2.ImageSubmitted:
    """The requests-topic record for one image (a stream's frame when `frame` is given;
    its faces identified or enrolled when `identify` or `enrolment` is), stamped with the
    current time."""
    return records_pb2.ImageSubmitted(
        request_id=request_id,
        image=image,
        actions=list(actions),
        detector_backend=detector_backend,
        submitted_at=timestamp_now(),
        principal=principal,
        frame=frame,
        identify=identify,
        enrolment=enrolment,
    )


def submission_key(submission: records_pb2.ImageSubmitted) -> bytes:
    """The requests-topic key of `submission`: a frame's is its stream's
    (`principal/stream_id`), so that a stream stays on one partition, in order; an image's
    is its request id."""
    if submission.HasField("frame"):
        return stream_key(submission.principal, submission.frame.stream_id).encode()
    return submission.request_id.encode()


def stream_key(principal: str, stream_id: str) -> str:
    """A stream's name across principals: `principal/stream_id`, or the stream id alone
    when authentication is off (no principal)."""
    return f"{principal}/{stream_id}" if principal else stream_id


def timestamp_now() -> Timestamp:
    stamp = Timestamp()
    stamp.FromNanoseconds(time.time_ns())
    return stamp


def face_record(face: Face, attributes: FaceAttributes) -> records_pb2.Face:
    """The protobuf Face for one detected face and what the models said about it."""
    record = records_pb2.Face(
        region=records_pb2.Region(x=face.x, y=face.y, w=face.w, h=face.h),
        confidence=face.confidence,
    )
    if attributes.age is not None:
        record.age = attributes.age
    for action, scores in attributes.scores.items():
        distribution = getattr(record, action)
        distribution.scores.update(scores)
        distribution.dominant = attributes.dominant[action]
    if attributes.embedding is not None:
        record.embedding = embedding_bytes(attributes.embedding)
    return record


def result_record(
    request_id: str,
    status: int,
    *,
    faces: Sequence[records_pb2.Face] = (),
    error: tuple[str, str] | None = None,
    timings: records_pb2.StageTimings | None = None,
    worker: str = "",
    synthetic_weights: bool = False,
    principal: str = "",
    frame: records_pb2.StreamFrame | None = None,
) -> records_pb2.AnalysisResult:
    """An AnalysisResult stamped with the current time; `error` is (code, message), `frame`
    the stream fields of a frame, copied from its submission."""
    result = records_pb2.AnalysisResult(
        request_id=request_id,
        principal=principal,
        frame=frame,
        status=status,
        faces=faces,
        timings=timings,
        worker=worker,
        completed_at=timestamp_now(),
        synthetic_weights=synthetic_weights,
    )
    if error is not None:
        result.error.code, result.error.message = error
    return result


def result_key(result: records_pb2.AnalysisResult) -> bytes:
    """The results-topic key of `result`: `principal/request_id`, or the request id alone
    when authentication is off (no principal). Request ids are unique per principal, so a
    compacted results topic keeps one record per request of each principal."""
    key = f"{result.principal}/{result.request_id}" if result.principal else result.request_id
    return key.encode()


def status_name(result: records_pb2.AnalysisResult) -> str:
    """OK, NO_FACE, INVALID_IMAGE or FAILED: the status as people and metrics name it."""
    return Status.Name(result.status).removeprefix("ANALYSIS_STATUS_")
