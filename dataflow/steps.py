"""The dataflow's steps: small plain functions, in the order the pipeline runs them.

    parse_request -> extract_faces_with_quarantine (extract_faces) -> analyze_faces (batched)
    -> gather_results -> result_record_out / dead_letter_out

Each takes what it needs as arguments (bound once when the flow is built), so each can be
tested alone. A bad record or image ends in its own result or dead letter, never in an
exception that would stop the worker.
"""

from __future__ import annotations

import logging
import os
import signal
import socket
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

import numpy as np
from bytewax.connectors.kafka import KafkaError, KafkaSourceMessage

from facestream.analyzer import FaceAnalyzer
from facestream.attempts import AttemptLog
from facestream.faces import Face, model_input
from facestream.images import InvalidImageError, decode_image
from facestream.records import (
    NotASubmissionError,
    Status,
    face_record,
    parse_submission,
    result_key,
    result_record,
)
from facestream.requests import InvalidRequestError, RequestLimits, resolve_options
from facestream.v1 import records_pb2

_HOST_PID = f"{socket.gethostname()}:{os.getpid()}"


def worker_name() -> str:
    """Which dataflow worker runs this step: host:pid/thread."""
    return f"{_HOST_PID}/{threading.current_thread().name}"


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


def parse_request(message: KafkaSourceMessage) -> ImageJob | DeadLetter:
    """Turn a requests-topic record into an ImageJob, or a DeadLetter saying why not."""
    source = f"{message.topic}/{message.partition}/{message.offset}"
    try:
        submission = parse_submission(message.value)
    except NotASubmissionError as error:
        return DeadLetter(
            key=message.key,
            value=message.value,
            code="record.unparseable",
            reason=str(error),
            source=source,
        )
    submitted_at = (
        submission.submitted_at.ToNanoseconds() / 1e9
        if submission.HasField("submitted_at")
        else None
    )
    return ImageJob(
        request_id=submission.request_id,
        submission=source,
        image=submission.image,
        actions=tuple(submission.actions),
        detector_backend=submission.detector_backend,
        submitted_at=submitted_at,
        received_at=time.time(),
        record=message.value,
        principal=submission.principal,
    )


def report_kafka_error(step_id: str, error: KafkaError, logger: logging.Logger) -> None:
    """Log a consumer error from the Kafka input, so it is seen rather than dropped."""
    logger.error("%s: Kafka consumer error: %s", step_id, error.err)


def extract_faces_with_quarantine(
    job: ImageJob,
    extract: Callable[[ImageJob], list[FaceJob] | list[records_pb2.AnalysisResult]],
    attempts: AttemptLog,
    logger: logging.Logger,
    crash_request_prefix: str = "",
) -> list[FaceJob] | list[records_pb2.AnalysisResult | DeadLetter]:
    """`extract(job)`, counted in the attempt log; a record that crashed the process on
    `attempts.max_attempts` earlier attempts is skipped: FAILED (request.poison) and moved
    to the dead-letter topic, so the stream goes on.

    `crash_request_prefix` is a fail point for tests (FACESTREAM_FAILPOINT_CRASH_ON): the
    process crashes, as a native decoder would, on requests whose id starts with it.
    """
    earlier = attempts.begin(job.attempt_key)
    if attempts.is_poison(earlier):
        reason = (
            f"the record crashed the dataflow on {earlier} attempts "
            f"(FACESTREAM_MAX_ATTEMPTS={attempts.max_attempts}); it was skipped"
        )
        logger.error(
            "request %s quarantined: %s",
            job.request_id,
            reason,
            extra={"request_id": job.request_id, "stage": "quarantine"},
        )
        result = result_record(
            job.request_id,
            Status.ANALYSIS_STATUS_FAILED,
            error=("request.poison", f"{reason} and moved to the dead-letter topic"),
            worker=worker_name(),
            principal=job.principal,
        )
        letter = DeadLetter(
            key=job.request_id.encode(),
            value=job.record,
            code="request.poison",
            reason=f"request.poison: {reason}",
            source=job.submission,
        )
        return [result, letter]
    if crash_request_prefix and job.request_id.startswith(crash_request_prefix):
        os.kill(os.getpid(), signal.SIGSEGV)
    extracted = extract(job)
    attempts.finish(job.attempt_key)
    return extracted


def extract_faces(
    job: ImageJob,
    analyzer: FaceAnalyzer,
    limits: RequestLimits,
    logger: logging.Logger,
    *,
    detection_max_side: int,
) -> list[FaceJob] | list[records_pb2.AnalysisResult]:
    """Decode the image and find its faces (images larger than `detection_max_side` are
    searched at that size, 0: never scaled): one FaceJob per face, or, when the image is
    invalid, has no face or detection fails, its finished AnalysisResult."""
    started_at = job.submitted_at or job.received_at
    queued = max(0.0, job.received_at - started_at)
    begin = time.time()

    def finished(status: int, error: tuple[str, str] | None, **stages: float) -> list:
        timings = records_pb2.StageTimings(queued=queued, total=time.time() - started_at, **stages)
        return [
            result_record(
                job.request_id,
                status,
                error=error,
                timings=timings,
                worker=worker_name(),
                synthetic_weights=analyzer.synthetic_weights,
                principal=job.principal,
            )
        ]

    try:
        actions, detector = resolve_options(job.actions, job.detector_backend, limits)
        image = decode_image(job.image, limits.max_image_bytes, limits.max_pixels)
    except InvalidRequestError as error:
        return finished(Status.ANALYSIS_STATUS_FAILED, (error.code, error.message))
    except InvalidImageError as error:
        return finished(Status.ANALYSIS_STATUS_INVALID_IMAGE, (error.code, error.message))
    except Exception as error:  # whatever else a decoder raises fails this image only
        logger.exception(
            "decoding failed for request %s",
            job.request_id,
            extra={"request_id": job.request_id, "stage": "decode"},
        )
        message = f"The image could not be decoded: {type(error).__name__}."
        return finished(Status.ANALYSIS_STATUS_INVALID_IMAGE, ("image.undecodable", message))
    decoded = time.time()
    try:
        faces = analyzer.find_faces(image, detector, detection_max_side)
    except Exception as error:  # a detector failure fails this image, not the worker
        logger.exception(
            "face detection failed for request %s",
            job.request_id,
            extra={"request_id": job.request_id, "stage": "detect"},
        )
        return finished(
            Status.ANALYSIS_STATUS_FAILED,
            ("detect.failed", f"face detection failed: {type(error).__name__}: {error}"),
            decode=decoded - begin,
        )
    detected = time.time()
    if not faces:
        return finished(
            Status.ANALYSIS_STATUS_NO_FACE, None, decode=decoded - begin, detect=detected - decoded
        )
    progress = ImageProgress(
        request_id=job.request_id,
        principal=job.principal,
        submission=job.submission,
        face_count=len(faces),
        started_at=started_at,
        queued=queued,
        decode=decoded - begin,
        detect=detected - decoded,
    )
    return [
        FaceJob(image=progress, index=index, face=face, actions=actions)
        for index, face in enumerate(faces)
    ]


def analyze_faces(
    faces: Sequence[FaceJob],
    analyzer: FaceAnalyzer,
    batch_size: int,
    logger: logging.Logger,
    on_batch: Callable[[int], None] = lambda _faces: None,
) -> list[AnalyzedFace]:
    """Run the attribute models over the faces, `batch_size` faces per model call
    (`on_batch(faces)` is told the size of each call).

    Faces that ask for the same actions share a batch. When a batch fails, its faces carry
    the error and the others go on.
    """
    by_actions: dict[tuple[str, ...], list[FaceJob]] = {}
    for job in faces:
        by_actions.setdefault(job.actions, []).append(job)
    analyzed = []
    for actions, jobs in by_actions.items():
        for start in range(0, len(jobs), batch_size):
            chunk = jobs[start : start + batch_size]
            on_batch(len(chunk))
            begin = time.time()
            try:
                inputs = np.stack([model_input(job.face.crop) for job in chunk])
                described = analyzer.describe(inputs, actions)
            except Exception as error:  # a model failure fails these faces, not the worker
                logger.exception(
                    "analysis failed for a batch of %d faces (requests %s)",
                    len(chunk),
                    ", ".join(sorted({job.image.request_id for job in chunk})),
                    extra={"stage": "analyze"},
                )
                problem = (
                    "analyze.failed",
                    f"face analysis failed: {type(error).__name__}: {error}",
                )
                analyzed += [
                    AnalyzedFace(job.image, job.index, None, problem, time.time() - begin)
                    for job in chunk
                ]
                continue
            seconds = time.time() - begin
            analyzed += [
                AnalyzedFace(job.image, job.index, face_record(job.face, attributes), None, seconds)
                for job, attributes in zip(chunk, described, strict=True)
            ]
    return analyzed


def gather_key(face: AnalyzedFace) -> str:
    """The key that brings the faces of one submitted image together."""
    return f"{face.image.request_id}@{face.image.submission}"


def gather_results(
    state: Gathering | None, face: AnalyzedFace, synthetic_weights: bool
) -> tuple[Gathering | None, list[records_pb2.AnalysisResult]]:
    """Collect the faces of one image; emit its AnalysisResult when the last one arrives.

    A face seen twice (a replay after recovery) counts once. Any failed face makes the
    result FAILED with that face's error.
    """
    state = state or Gathering()
    state.faces[face.index] = face
    if len(state.faces) < face.image.face_count:
        return state, []
    faces = [state.faces[i] for i in sorted(state.faces)]
    progress = face.image
    timings = records_pb2.StageTimings(
        queued=progress.queued,
        decode=progress.decode,
        detect=progress.detect,
        analyze=max(f.analyze_seconds for f in faces),
        total=time.time() - progress.started_at,
    )
    errors = [f.error for f in faces if f.error is not None]
    result = result_record(
        progress.request_id,
        Status.ANALYSIS_STATUS_FAILED if errors else Status.ANALYSIS_STATUS_OK,
        faces=[] if errors else [f.record for f in faces if f.record is not None],
        error=errors[0] if errors else None,
        timings=timings,
        worker=worker_name(),
        synthetic_weights=synthetic_weights,
        principal=progress.principal,
    )
    return None, [result]


def result_record_out(result: records_pb2.AnalysisResult, topic: str) -> OutgoingRecord:
    """The results-topic record of one AnalysisResult, keyed by principal and request id."""
    return OutgoingRecord(topic=topic, key=result_key(result), value=result.SerializeToString())


def dead_letter_out(letter: DeadLetter, topic: str) -> OutgoingRecord:
    """The dead-letter record: the original bytes, with the reason (code and text) and
    origin in headers."""
    return OutgoingRecord(
        topic=topic,
        key=letter.key,
        value=letter.value,
        headers=[
            ("facestream-error-code", letter.code.encode()),
            ("facestream-error", letter.reason.encode()),
            ("facestream-source", letter.source.encode()),
        ],
    )
