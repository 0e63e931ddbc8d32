"""Checks of recognition's requests before anything is published or stored, the records an
enrolment or a verification publishes, and the gRPC status of each gallery error code.
The names' rules are the store's own (facestream/gallery_store.py)."""

from __future__ import annotations

import math
from collections.abc import Sequence

import grpc

from facestream.embeddings import cosine_similarity, embedding_of
from facestream.gallery_store import (
    GalleryStoreError,
    check_gallery_name,
    check_subject_name,
)
from facestream.models import EMBEDDING
from facestream.requests import InvalidRequestError, RequestLimits, check_request_id
from facestream.v1 import analyze_service_pb2, records_pb2
from grpc_server.errors import RequestRejectedError
from grpc_server.principals import GALLERY_READ, Principal
from grpc_server.validation import check_submission, invalid_argument

MAX_ENROL_IMAGES = 16
MAX_TOP_K = 100
# An enrolment's images are published as `<request id>:<index>`, within a request id's
# 128 characters.
MAX_ENROL_ID = 120

GALLERY_STATUS = {
    "gallery.bad_name": grpc.StatusCode.INVALID_ARGUMENT,
    "subject.bad_name": grpc.StatusCode.INVALID_ARGUMENT,
    "gallery.unknown": grpc.StatusCode.NOT_FOUND,
    "subject.unknown": grpc.StatusCode.NOT_FOUND,
    "face.unknown": grpc.StatusCode.NOT_FOUND,
    "gallery.empty": grpc.StatusCode.FAILED_PRECONDITION,
    "gallery.unavailable": grpc.StatusCode.UNAVAILABLE,
    "gallery.failed": grpc.StatusCode.INTERNAL,
    "enroll.face_count": grpc.StatusCode.INVALID_ARGUMENT,
    "enroll.forgotten": grpc.StatusCode.FAILED_PRECONDITION,
    "verify.no_face": grpc.StatusCode.INVALID_ARGUMENT,
}


def refused(code: str, message: str, request_id: str = "") -> RequestRejectedError:
    """A gallery error as the call's refusal, with the status its code comes with (an
    image's own codes, `image.*`, are INVALID_ARGUMENT; a pipeline failure INTERNAL)."""
    status = GALLERY_STATUS.get(
        code,
        grpc.StatusCode.INVALID_ARGUMENT if code.startswith("image.") else grpc.StatusCode.INTERNAL,
    )
    return RequestRejectedError(status, code, message, request_id)


def store_refusal(error: GalleryStoreError) -> RequestRejectedError:
    return refused(error.code, error.message)


def check_names(gallery: str, subject: str | None = None) -> None:
    """The names' rules; RequestRejectedError (INVALID_ARGUMENT) when one breaks them."""
    try:
        check_gallery_name(gallery)
        if subject is not None:
            check_subject_name(subject)
    except GalleryStoreError as error:
        raise store_refusal(error) from None


def check_identify(
    request: analyze_service_pb2.SubmitRequest, principal: Principal, limits: RequestLimits
) -> None:
    """A request's identify option: the principal may read galleries, the deployment has
    the embedding model, the gallery's name is well formed, top_k and threshold are in
    range."""
    if not request.HasField("identify"):
        return
    check_recognition_enabled(limits)
    if not principal.allows(GALLERY_READ):
        raise RequestRejectedError(
            grpc.StatusCode.PERMISSION_DENIED,
            "auth.permission_denied",
            f"principal {principal.name!r} lacks the scope {GALLERY_READ!r} identify needs",
        )
    ask = request.identify
    check_names(ask.gallery)
    if ask.top_k > MAX_TOP_K:
        raise RequestRejectedError(
            grpc.StatusCode.INVALID_ARGUMENT,
            "identify.bad_options",
            f"identify.top_k is 0-{MAX_TOP_K} (0: 1), got {ask.top_k}",
        )
    check_threshold(ask.threshold if ask.HasField("threshold") else None)


def check_threshold(threshold: float | None) -> None:
    if threshold is not None and not (math.isfinite(threshold) and 0 < threshold <= 2):
        raise RequestRejectedError(
            grpc.StatusCode.INVALID_ARGUMENT,
            "identify.bad_options",
            f"a threshold is a cosine distance above 0 and at most 2, got {threshold}",
        )


def check_recognition_enabled(limits: RequestLimits) -> None:
    """Recognition needs the embedding model in this deployment."""
    if EMBEDDING not in limits.enabled_actions:
        raise RequestRejectedError(
            grpc.StatusCode.FAILED_PRECONDITION,
            "request.action_disabled",
            "recognition needs the embedding model: add embedding to FACESTREAM_ACTIONS",
        )


def enrolment_records(
    request: analyze_service_pb2.EnrollRequest,
    limits: RequestLimits,
    principal: str,
    request_id: str,
) -> list[records_pb2.ImageSubmitted]:
    """One record per image of an Enroll call (`<request id>:<index>`), each checked as a
    SubmitRequest would be; RequestRejectedError on the first that fails."""
    check_names(request.gallery, request.subject)
    check_recognition_enabled(limits)
    if not 1 <= len(request.images) <= MAX_ENROL_IMAGES:
        raise RequestRejectedError(
            grpc.StatusCode.INVALID_ARGUMENT,
            "enroll.bad_request",
            f"an enrolment has 1-{MAX_ENROL_IMAGES} images, got {len(request.images)}",
        )
    records = []
    for index, image in enumerate(request.images):
        record = check_submission(
            analyze_service_pb2.SubmitRequest(
                image=image,
                actions=[EMBEDDING],
                detector_backend=request.detector_backend,
                request_id=f"{request_id}:{index}",
            ),
            limits,
            principal,
        )
        record.enrolment.CopyFrom(
            records_pb2.Enrolment(
                gallery=request.gallery,
                subject=request.subject,
                enrolment_id=request_id,
                image_index=index,
            )
        )
        records.append(record)
    return records


def enrol_request_id(request_id: str) -> str:
    """An Enroll call's id, checked: a request id of at most 120 characters."""
    try:
        check_request_id(request_id)
    except InvalidRequestError as error:
        raise invalid_argument(error) from None
    if len(request_id) > MAX_ENROL_ID:
        raise RequestRejectedError(
            grpc.StatusCode.INVALID_ARGUMENT,
            "request.bad_id",
            f"an enrolment's request id is at most {MAX_ENROL_ID} characters",
        )
    return request_id


def enrolled_images(
    results: Sequence[records_pb2.AnalysisResult],
) -> list[analyze_service_pb2.EnrolledImage]:
    """Each image's outcome, in the request's order (results are `<id>:<index>`)."""
    images = []
    for result in sorted(results, key=lambda r: int(r.request_id.rsplit(":", 1)[1])):
        index = int(result.request_id.rsplit(":", 1)[1])
        image = analyze_service_pb2.EnrolledImage(index=index)
        if result.HasField("enrolled"):
            image.face_id = result.enrolled.face_id
            image.already = result.enrolled.already
        else:
            image.error.CopyFrom(
                result.error
                if result.HasField("error")
                else records_pb2.Error(code="enroll.face_count", message="no face in the image")
            )
        if result.faces:
            image.region.CopyFrom(result.faces[0].region)
        images.append(image)
    return images


def verification_record(
    image: bytes, detector: str, limits: RequestLimits, principal: str, request_id: str
) -> records_pb2.ImageSubmitted:
    """The record of one image a Verify call compares: its faces' embeddings only."""
    check_recognition_enabled(limits)
    return check_submission(
        analyze_service_pb2.SubmitRequest(
            image=image, actions=[EMBEDDING], detector_backend=detector, request_id=request_id
        ),
        limits,
        principal,
    )


def faces_of(result: records_pb2.AnalysisResult, which: str) -> list[records_pb2.Face]:
    """A verified image's faces with their embeddings; RequestRejectedError when it has
    none (`verify.no_face`) or failed (its own code)."""
    if result.status == records_pb2.AnalysisStatus.ANALYSIS_STATUS_OK and result.faces:
        return list(result.faces)
    if result.HasField("error"):
        raise refused(result.error.code, f"{which}: {result.error.message}")
    raise refused("verify.no_face", f"{which} has no face")


def closest_pair(
    first: Sequence[records_pb2.Face], second: Sequence[records_pb2.Face]
) -> tuple[records_pb2.Face, records_pb2.Face, float]:
    """The two faces, one of each image, with the smallest cosine distance, and that
    distance (DeepFace.verify compares every face of one image with every face of the
    other and keeps the closest pair)."""
    pairs = [
        (a, b, 1.0 - cosine_similarity(embedding_of(a), embedding_of(b)))  # type: ignore[arg-type]
        for a in first
        for b in second
    ]
    return min(pairs, key=lambda pair: pair[2])
