"""The dataflow's steps: small plain functions, in the order the pipeline runs them.

    parse_request -> extract_faces_with_quarantine (extract_faces) -> analyze_faces (batched)
    -> gather_results -> result_record_out / dead_letter_out

Each takes what it needs as arguments (bound once when the flow is built), so each can be
tested alone. A bad record or image ends in its own result or dead letter, never in an
exception that would stop the worker. What they pass on is in `dataflow.items`.
"""

from __future__ import annotations

import logging
import os
import signal
import socket
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import replace
from typing import TypeVar

import numpy as np
from bytewax.connectors.kafka import KafkaError, KafkaSourceMessage

from dataflow.items import (
    AnalyzedFace,
    DeadLetter,
    FaceJob,
    Gathering,
    ImageJob,
    ImageProgress,
    OutgoingRecord,
)
from facestream.analyzer import FaceAnalyzer
from facestream.attempts import AttemptLog
from facestream.faces import Face, Region, model_input
from facestream.gallery_store import image_digest
from facestream.images import InvalidImageError, decode_image
from facestream.inference import Describe
from facestream.kafka_records import (
    NotASubmissionError,
    Status,
    face_record,
    parse_submission,
    result_key,
    result_record,
)
from facestream.models import EMBEDDING
from facestream.requests import InvalidRequestError, RequestLimits, resolve_options
from facestream.v1 import records_pb2

Extracted = TypeVar("Extracted")

_HOST_PID = f"{socket.gethostname()}:{os.getpid()}"


def worker_name() -> str:
    """Which dataflow worker runs this step: host:pid/thread."""
    return f"{_HOST_PID}/{threading.current_thread().name}"


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
        source=source,
        image=submission.image,
        actions=tuple(submission.actions),
        detector_backend=submission.detector_backend,
        submitted_at=submitted_at,
        received_at=time.time(),
        record=message.value,
        principal=submission.principal,
        frame=submission.frame if submission.HasField("frame") else None,
        refusal=(
            (submission.refusal.code, submission.refusal.message)
            if submission.HasField("refusal")
            else None
        ),
        identify=submission.identify if submission.HasField("identify") else None,
        enrolment=submission.enrolment if submission.HasField("enrolment") else None,
    )


def report_kafka_error(step_id: str, error: KafkaError, logger: logging.Logger) -> None:
    """Log a consumer error from the Kafka input, so it is seen rather than dropped."""
    logger.error("%s: Kafka consumer error: %s", step_id, error.err)


def extract_faces_with_quarantine(
    job: ImageJob,
    extract: Callable[[ImageJob], list[FaceJob] | list[records_pb2.AnalysisResult]],
    attempts: AttemptLog,
    logger: logging.Logger,
) -> list[FaceJob] | list[records_pb2.AnalysisResult | DeadLetter]:
    """`extract(job)`, counted in the attempt log; a record that crashed the process on
    `attempts.max_attempts` earlier attempts is skipped: FAILED (request.poison) and moved
    to the dead-letter topic, so the stream goes on."""
    earlier = attempts.begin(job.attempt_key)
    if attempts.is_poison(earlier):
        return quarantine(job, earlier, attempts.max_attempts, logger)
    extracted = extract(job)
    # Reached only when extract returned: a crash leaves the attempt counted.
    attempts.finish(job.attempt_key)
    return extracted


def quarantine(
    job: ImageJob, earlier: int, max_attempts: int, logger: logging.Logger
) -> list[records_pb2.AnalysisResult | DeadLetter]:
    """A poison record's way out: its FAILED (request.poison) result, and the record as
    read for the dead-letter topic, both saying it crashed the dataflow `earlier` times."""
    reason = (
        f"the record crashed the dataflow on {earlier} attempts "
        f"(FACESTREAM_MAX_ATTEMPTS={max_attempts}); it was skipped"
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
        frame=job.frame,
    )
    letter = DeadLetter(
        key=job.request_id.encode(),
        value=job.record,
        code="request.poison",
        reason=f"request.poison: {reason}",
        source=job.source,
    )
    return [result, letter]


def crash_on_request(
    job: ImageJob, *, extract: Callable[[ImageJob], Extracted], request_prefix: str
) -> Extracted:
    """A fail point for tests (FACESTREAM_FAILPOINT_CRASH_ON): the process crashes with
    SIGSEGV, as a native decoder would, on requests whose id starts with `request_prefix`
    (empty: never); any other job is `extract(job)`.

    Bind it as the `extract` of extract_faces_with_quarantine, so that the crash happens
    inside a counted attempt and a record that always crashes gets quarantined.
    """
    if request_prefix and job.request_id.startswith(request_prefix):
        os.kill(os.getpid(), signal.SIGSEGV)
    return extract(job)


def extract_faces(
    job: ImageJob,
    analyzer: FaceAnalyzer,
    limits: RequestLimits,
    logger: logging.Logger,
    *,
    detection_max_side: int,
    locate: bool = False,
    regions: Sequence[Region] | None = None,
) -> list[FaceJob] | list[records_pb2.AnalysisResult]:
    """Decode the image and find its faces (images larger than `detection_max_side` are
    searched at that size, 0: never scaled): one FaceJob per face, or, when the image is
    invalid, has no face or detection fails, its finished AnalysisResult. With `locate`
    (the tracker's search) faces are only located, in `regions` (the tracker's expected
    faces) or, when None, in the whole frame as fast mode searches it: `crop_located_faces`
    crops the ones the tracker analyses. A frame the gRPC front refused is
    answered with the front's refusal."""
    if job.refusal is not None:
        return finished_image(
            job,
            refusal_status(job.refusal[0]),
            job.refusal,
            synthetic_weights=analyzer.synthetic_weights,
        )
    begin = time.time()
    try:
        asked, detector = resolve_options(job.actions, job.detector_backend, limits)
        actions = recognition_actions(job, asked, limits)
        image = decode_image(job.image, limits.max_image_bytes, limits.max_pixels)
    except Exception as error:  # whatever a decoder raises fails this image only
        status, problem = decode_failure(job, error, logger)
        return finished_image(job, status, problem, synthetic_weights=analyzer.synthetic_weights)
    decoded = time.time()
    try:
        faces = (
            analyzer.locate_faces(image, detector, regions, detection_max_side)
            if locate
            else analyzer.find_faces(image, detector, detection_max_side)
        )
    except Exception as error:  # a detector failure fails this image, not the worker
        problem = detect_failure(job, error, logger)
        return finished_image(
            job,
            Status.ANALYSIS_STATUS_FAILED,
            problem,
            synthetic_weights=analyzer.synthetic_weights,
            decode=decoded - begin,
        )
    detected = time.time()
    if job.enrolment is not None and len(faces) != 1:
        return finished_image(
            job,
            Status.ANALYSIS_STATUS_FAILED,
            (
                "enroll.face_count",
                f"an enrolment image must hold exactly one face; this one has {len(faces)}",
            ),
            synthetic_weights=analyzer.synthetic_weights,
            decode=decoded - begin,
            detect=detected - decoded,
        )
    if not faces:
        return finished_image(
            job,
            Status.ANALYSIS_STATUS_NO_FACE,
            None,
            synthetic_weights=analyzer.synthetic_weights,
            decode=decoded - begin,
            detect=detected - decoded,
        )
    keep_embedding = EMBEDDING in asked and job.enrolment is None
    return faces_to_analyze(
        job, faces, actions, keep_embedding, decode=decoded - begin, detect=detected - decoded
    )


def crop_located_faces(
    job: ImageJob,
    faces: Sequence[FaceJob],
    analyzer: FaceAnalyzer,
    limits: RequestLimits,
    logger: logging.Logger,
) -> list[FaceJob]:
    """The faces of `job` that `extract_faces` only located, aligned and cropped now that
    the tracker chose them for the models (the image decoded again; the faces it carries
    are never cropped). Should cropping fail, the faces keep their empty crops and
    `analyze_faces` fails them alone."""
    if all(face.face.located is None for face in faces):
        return list(faces)
    try:
        _asked, detector = resolve_options(job.actions, job.detector_backend, limits)
        image = decode_image(job.image, limits.max_image_bytes, limits.max_pixels)
        cropped = analyzer.crop_faces(image, detector, [face.face for face in faces])
    except Exception:  # a failed crop fails these faces, not the worker
        logger.exception(
            "cropping the faces of request %s failed", job.request_id, extra={"stage": "detect"}
        )
        return list(faces)
    return [replace(face, face=crop) for face, crop in zip(faces, cropped, strict=True)]


def recognition_actions(
    job: ImageJob, actions: tuple[str, ...], limits: RequestLimits
) -> tuple[str, ...]:
    """The actions an image runs with once recognition is counted in: identifying or
    enrolling needs the embedding (dropped from the result unless asked for), and an
    enrolment needs nothing else. InvalidRequestError when this deployment has no
    embedding model."""
    if job.identify is None and job.enrolment is None:
        return actions
    if EMBEDDING not in limits.enabled_actions:
        raise InvalidRequestError(
            "request.action_disabled",
            "identification and enrolment need the embedding model: add embedding to "
            "FACESTREAM_ACTIONS",
        )
    if job.enrolment is not None:
        return (EMBEDDING,)
    return actions if EMBEDDING in actions else (*actions, EMBEDDING)


def refusal_status(code: str) -> int:
    """The status of a refused frame: INVALID_IMAGE for its image's errors (`image.*`),
    FAILED for the request's, as decode_failure gives them."""
    if code.startswith("image."):
        return Status.ANALYSIS_STATUS_INVALID_IMAGE
    return Status.ANALYSIS_STATUS_FAILED


def image_started_at(job: ImageJob) -> float:
    """When the image's total time starts: when it was submitted, or when it was read if
    the submitter gave no time."""
    return job.submitted_at or job.received_at


def queued_seconds(job: ImageJob) -> float:
    """How long the image waited in the requests topic (never negative: the front's clock
    may run ahead of this worker's)."""
    return max(0.0, job.received_at - image_started_at(job))


def decode_failure(
    job: ImageJob, error: Exception, logger: logging.Logger
) -> tuple[int, tuple[str, str]]:
    """The status and error (code, message) of an image that its checks or its decoder
    refused. Call it while handling `error`: an unexpected exception is logged with its
    traceback, and the submitter is told only its type, never its raw text."""
    if isinstance(error, InvalidRequestError):
        return Status.ANALYSIS_STATUS_FAILED, (error.code, error.message)
    if isinstance(error, InvalidImageError):
        return Status.ANALYSIS_STATUS_INVALID_IMAGE, (error.code, error.message)
    logger.exception(
        "decoding failed for request %s",
        job.request_id,
        extra={"request_id": job.request_id, "stage": "decode"},
    )
    message = f"The image could not be decoded: {type(error).__name__}."
    return Status.ANALYSIS_STATUS_INVALID_IMAGE, ("image.undecodable", message)


def detect_failure(job: ImageJob, error: Exception, logger: logging.Logger) -> tuple[str, str]:
    """The error (code, message) of an image whose face detection raised. Call it while
    handling `error`: it is logged with its traceback."""
    logger.exception(
        "face detection failed for request %s",
        job.request_id,
        extra={"request_id": job.request_id, "stage": "detect"},
    )
    return ("detect.failed", f"face detection failed: {type(error).__name__}: {error}")


def finished_image(
    job: ImageJob,
    status: int,
    error: tuple[str, str] | None,
    *,
    synthetic_weights: bool,
    **stages: float,
) -> list[records_pb2.AnalysisResult]:
    """The result of an image that ends before the models (invalid, no face, detection
    failed), with the time of the stages it went through (`decode`, `detect`)."""
    timings = records_pb2.StageTimings(
        queued=queued_seconds(job), total=time.time() - image_started_at(job), **stages
    )
    return [
        result_record(
            job.request_id,
            status,
            error=error,
            timings=timings,
            worker=worker_name(),
            synthetic_weights=synthetic_weights,
            principal=job.principal,
            frame=job.frame,
        )
    ]


def faces_to_analyze(
    job: ImageJob,
    faces: Sequence[Face],
    actions: tuple[str, ...],
    keep_embedding: bool = True,
    *,
    decode: float,
    detect: float,
) -> list[FaceJob]:
    """One FaceJob per face found, in the detector's order; each carries the image's
    progress so far, for its result once all its faces are analysed (and whether its
    embedding stays in the result, or was computed only for recognition)."""
    progress = ImageProgress(
        request_id=job.request_id,
        principal=job.principal,
        source=job.source,
        face_count=len(faces),
        started_at=image_started_at(job),
        queued=queued_seconds(job),
        decode=decode,
        detect=detect,
        frame=job.frame,
        identify=job.identify,
        enrolment=job.enrolment,
        image_sha256=image_digest(job.image) if job.enrolment is not None else b"",
        keep_embedding=keep_embedding,
    )
    return [
        FaceJob(image=progress, index=index, face=face, actions=actions)
        for index, face in enumerate(faces)
    ]


NOT_CROPPED_PROBLEM = ("detect.failed", "face detection failed: the face could not be cropped")


def analyze_faces(
    faces: Sequence[FaceJob], describe: Describe, batch_size: int, logger: logging.Logger
) -> list[AnalyzedFace]:
    """Run the attribute models over the faces, handing `describe` (the process's
    InferenceExecutor, which may merge them with other workers' faces) up to `batch_size`
    faces at a time.

    Faces that ask for the same actions share a batch. When a batch fails, its faces carry
    the error and the others go on; a face without a crop (see `crop_located_faces`) fails
    alone.
    """
    by_actions: dict[tuple[str, ...], list[FaceJob]] = {}
    analyzed = []
    for job in faces:
        if job.face.crop.size == 0:
            analyzed.append(AnalyzedFace(job.image, job.index, None, NOT_CROPPED_PROBLEM, 0.0))
        else:
            by_actions.setdefault(job.actions, []).append(job)
    for actions, jobs in by_actions.items():
        for start in range(0, len(jobs), batch_size):
            chunk = jobs[start : start + batch_size]
            begin = time.time()
            try:
                inputs = np.stack([model_input(job.face.crop) for job in chunk])
                described = describe(inputs, actions)
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
    return f"{face.image.request_id}@{face.image.source}"


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
        frame=progress.frame,
    )
    enrolled = [f.enrolled for f in faces if f.enrolled is not None]
    if enrolled and not errors:
        result.enrolled.CopyFrom(enrolled[0])
    return None, [result]


# Room in a Kafka record for what is not the value: its key, headers and framing.
RECORD_OVERHEAD_BYTES = 1024


def result_record_out(
    result: records_pb2.AnalysisResult, topic: str, max_bytes: int
) -> OutgoingRecord:
    """The results-topic record of one AnalysisResult, keyed by principal and request id.

    A result over the topic's record limit `max_bytes` (hundreds of faces with their
    embeddings, 16 KiB each) would be refused by the broker on every retry, stopping the
    stream: it goes out FAILED (`result.too_large`) instead, saying why.
    """
    key, value = result_key(result), result.SerializeToString()
    if len(key) + len(value) + RECORD_OVERHEAD_BYTES > max_bytes:
        failed = result_record(
            result.request_id,
            Status.ANALYSIS_STATUS_FAILED,
            error=(
                "result.too_large",
                f"the result of {len(result.faces)} faces is {len(value)} bytes, over the "
                f"results topic's record limit of {max_bytes} bytes: ask without 'embedding' "
                "(16 KiB per face), or raise FACESTREAM_MAX_IMAGE_BYTES",
            ),
            timings=result.timings,
            worker=result.worker,
            synthetic_weights=result.synthetic_weights,
            principal=result.principal,
            frame=result.frame if result.HasField("frame") else None,
        )
        value = failed.SerializeToString()
    return OutgoingRecord(topic=topic, key=key, value=value)


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
