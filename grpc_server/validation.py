"""Checks a SubmitRequest must pass before anything is published: nothing invalid reaches
Kafka. The checks themselves are the core's (`facestream.images`, `facestream.requests`),
shared with the dataflow; this module only maps their errors to gRPC status codes."""

from __future__ import annotations

import grpc

from facestream.images import InvalidImageError, inspect_image
from facestream.kafka_records import image_submitted
from facestream.requests import (
    InvalidRequestError,
    RequestLimits,
    check_request_id,
    check_stream_id,
    new_request_id,
    resolve_options,
)
from facestream.v1 import analyze_service_pb2, records_pb2
from grpc_server.errors import RequestRejectedError

# Too big is a resource limit, not a malformed request (docs/design.md, gRPC surface).
RESOURCE_LIMIT_CODES = frozenset({"image.too_large", "image.too_many_pixels"})


def check_submission(
    request: analyze_service_pb2.SubmitRequest, limits: RequestLimits, principal: str = ""
) -> records_pb2.ImageSubmitted:
    """The record to publish for `request` on behalf of `principal`, with its id (the
    client's or a new one) and the actions and detector it runs with; raise
    RequestRejectedError when any check fails."""
    try:
        request_id = check_request_id(request.request_id) if request.request_id else None
        actions, detector = resolve_options(request.actions, request.detector_backend, limits)
        inspect_image(request.image, limits.max_image_bytes, limits.max_pixels)
    except InvalidRequestError as error:
        raise invalid_argument(error) from None
    except InvalidImageError as error:
        status = (
            grpc.StatusCode.RESOURCE_EXHAUSTED
            if error.code in RESOURCE_LIMIT_CODES
            else grpc.StatusCode.INVALID_ARGUMENT
        )
        raise RequestRejectedError(status, error.code, error.message) from None
    return image_submitted(
        request_id or new_request_id(),
        request.image,
        actions=actions,
        detector_backend=detector,
        principal=principal,
        frame=request.frame if request.HasField("frame") else None,
        identify=request.identify if request.HasField("identify") else None,
    )


def check_not_frame(request: analyze_service_pb2.SubmitRequest) -> None:
    """Refuse a stream's frame outside SubmitStream: a stream's order is kept per call."""
    if request.HasField("frame"):
        raise RequestRejectedError(
            grpc.StatusCode.INVALID_ARGUMENT,
            "frame.needs_stream",
            "frames of a stream are sent with SubmitStream, which keeps them in order",
        )


def refused_frame(
    request: analyze_service_pb2.SubmitRequest, principal: str, rejected: RequestRejectedError
) -> records_pb2.ImageSubmitted:
    """The record that stands for a frame the front refused: no image, the refusal, and the
    frame's place, so that the dataflow answers it and its stream's results have no hole."""
    try:
        request_id = check_request_id(request.request_id)
    except InvalidRequestError:
        request_id = new_request_id()
    stand_in = image_submitted(request_id, b"", principal=principal, frame=request.frame)
    stand_in.refusal.CopyFrom(rejected.as_error())
    return stand_in


def check_watched_stream(stream_id: str) -> str:
    """The stream a WatchStream call asks for, checked (RequestRejectedError if bad)."""
    try:
        return check_stream_id(stream_id)
    except InvalidRequestError as error:
        raise invalid_argument(error) from None


def check_watch_ids(request_ids: list[str]) -> list[str]:
    """The ids a WatchResults call asks for, each checked (RequestRejectedError if bad)."""
    try:
        return [check_request_id(request_id) for request_id in request_ids]
    except InvalidRequestError as error:
        raise invalid_argument(error) from None


def invalid_argument(error: InvalidRequestError) -> RequestRejectedError:
    """A request the core found invalid, refused as INVALID_ARGUMENT with its code."""
    return RequestRejectedError(grpc.StatusCode.INVALID_ARGUMENT, error.code, error.message)
