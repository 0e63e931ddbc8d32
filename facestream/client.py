"""A small Python client for AnalyzeService (blocking, one channel).

Results are `facestream.v1` protobuf messages; `embedding_of(face)` gives a face's
embedding as a numpy array, `cosine_similarity(a, b)` compares two. A refused call raises
grpc.RpcError; `error_reason(error)` is facestream's error code in it (`broker.full`,
`image.truncated`, ...) and `error_request_id(error)` the request it concerns.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Iterator, Sequence
from pathlib import Path

import grpc
from google.rpc import error_details_pb2
from grpc_health.v1 import health_pb2, health_pb2_grpc
from grpc_status import rpc_status

from facestream.embeddings import cosine_similarity, embedding_of
from facestream.requests import new_request_id
from facestream.v1 import analyze_service_pb2, analyze_service_pb2_grpc, records_pb2

__all__ = [
    "AnalyzeClient",
    "cosine_similarity",
    "embedding_of",
    "error_reason",
    "error_request_id",
    "identify_in",
    "request",
]

MAX_MESSAGE_BYTES = 64 * 1024 * 1024
# Submit, Analyze and Enroll carry a request id (minted here when the caller gives none),
# and the server takes a repeated id as the same request: so a call refused with UNAVAILABLE (Kafka
# unreachable, or its acknowledgement late) is sent again as it was, by gRPC's own retry
# policy: at most 4 attempts, waiting a random time up to 0.25 s, 0.5 s, then 1 s between
# them, all within the call's deadline.
RETRY_POLICY = {
    "maxAttempts": 4,
    "initialBackoff": "0.25s",
    "maxBackoff": "1s",
    "backoffMultiplier": 2,
    "retryableStatusCodes": ["UNAVAILABLE"],
}
SERVICE_CONFIG = json.dumps(
    {
        "methodConfig": [
            {
                "name": [
                    {"service": "facestream.v1.AnalyzeService", "method": "Submit"},
                    {"service": "facestream.v1.AnalyzeService", "method": "Analyze"},
                    {"service": "facestream.v1.GalleryService", "method": "Enroll"},
                ],
                "retryPolicy": RETRY_POLICY,
            }
        ]
    }
)


class AnalyzeClient:
    """Calls AnalyzeService and GalleryService at `address`; `token` is sent as a bearer
    token, `ca_cert` (a PEM file) switches to TLS and is the certificate authority trusted,
    and `client_certificate` (certificate chain, key: PEM files) is presented to a server
    that requires one (mTLS). `retries=False` turns off RETRY_POLICY."""

    def __init__(
        self,
        address: str,
        token: str = "",
        ca_cert: Path | None = None,
        server_name: str | None = None,
        client_certificate: tuple[Path, Path] | None = None,
        retries: bool = True,
    ) -> None:
        options: list[tuple[str, str | int]] = [
            ("grpc.max_send_message_length", MAX_MESSAGE_BYTES),
            ("grpc.max_receive_message_length", MAX_MESSAGE_BYTES),
        ]
        # Without retries every UNAVAILABLE reaches the caller at once: for a caller that
        # retries on its own terms, or that watches the server's own answers.
        if retries:
            options += [("grpc.enable_retries", 1), ("grpc.service_config", SERVICE_CONFIG)]
        else:
            options.append(("grpc.enable_retries", 0))
        if server_name:
            options.append(("grpc.ssl_target_name_override", server_name))
        if ca_cert is not None:
            chain, key = client_certificate or (None, None)
            credentials = grpc.ssl_channel_credentials(
                root_certificates=ca_cert.read_bytes(),
                private_key=key.read_bytes() if key else None,
                certificate_chain=chain.read_bytes() if chain else None,
            )
            self._channel = grpc.secure_channel(address, credentials, options=options)
        else:
            self._channel = grpc.insecure_channel(address, options=options)
        self._metadata = (("authorization", f"Bearer {token}"),) if token else ()
        self._stub = analyze_service_pb2_grpc.AnalyzeServiceStub(self._channel)
        self._galleries = analyze_service_pb2_grpc.GalleryServiceStub(self._channel)
        self._health = health_pb2_grpc.HealthStub(self._channel)

    def submit(
        self,
        image: bytes,
        actions: Sequence[str] = (),
        detector_backend: str = "",
        request_id: str = "",
        timeout: float = 30,
        identify: records_pb2.Identify | None = None,
    ) -> str:
        """Publish one image as `request_id` (a new id when empty); return the id once
        Kafka acknowledged it. UNAVAILABLE is retried with the same id (RETRY_POLICY).
        With `identify` (`identify_in(gallery)`), its faces are matched in that gallery."""
        reply = self._stub.Submit(
            request(
                image, actions, detector_backend, request_id or new_request_id(), identify=identify
            ),
            timeout=timeout,
            metadata=self._metadata,
        )
        return reply.request_id

    def analyze(
        self,
        image: bytes,
        actions: Sequence[str] = (),
        detector_backend: str = "",
        request_id: str = "",
        timeout: float = 300,
        identify: records_pb2.Identify | None = None,
    ) -> records_pb2.AnalysisResult:
        """Publish one image as `request_id` (a new id when empty) and wait (up to
        `timeout`) for its result. UNAVAILABLE is retried with the same id (RETRY_POLICY).
        With `identify` (`identify_in(gallery)`), each face has its `identity`."""
        return self._stub.Analyze(
            request(
                image, actions, detector_backend, request_id or new_request_id(), identify=identify
            ),
            timeout=timeout,
            metadata=self._metadata,
        )

    def submit_stream(
        self, requests: Iterable[analyze_service_pb2.SubmitRequest], timeout: float | None = None
    ) -> Iterator[analyze_service_pb2.SubmitReply]:
        """Publish many images over one stream; one reply per request, in order."""
        return self._stub.SubmitStream(iter(requests), timeout=timeout, metadata=self._metadata)

    def watch(
        self, request_ids: Sequence[str] = (), timeout: float | None = None
    ) -> Iterator[records_pb2.AnalysisResult]:
        """Results for `request_ids` (ends when each has one), or every result when empty."""
        return self._stub.WatchResults(
            analyze_service_pb2.WatchRequest(request_ids=list(request_ids)),
            timeout=timeout,
            metadata=self._metadata,
        )

    def watch_stream(
        self, stream_id: str, from_sequence: int = 0, timeout: float | None = None
    ) -> Iterator[records_pb2.AnalysisResult]:
        """This caller's results of stream `stream_id`, in sequence order from
        `from_sequence`, each frame once; ends after the stream's last frame."""
        return self._stub.WatchStream(
            analyze_service_pb2.WatchStreamRequest(
                stream_id=stream_id, from_sequence=from_sequence
            ),
            timeout=timeout,
            metadata=self._metadata,
        )

    def enroll(
        self,
        gallery: str,
        subject: str,
        images: Sequence[bytes],
        request_id: str = "",
        detector_backend: str = "",
        timeout: float = 300,
    ) -> analyze_service_pb2.EnrollReply:
        """Enrol `subject`'s face from each image (one face each) into `gallery`, as
        `request_id` (a new id when empty: a retry with the same id enrols nothing twice)."""
        return self._galleries.Enroll(
            analyze_service_pb2.EnrollRequest(
                gallery=gallery,
                subject=subject,
                images=list(images),
                request_id=request_id or new_request_id(),
                detector_backend=detector_backend,
            ),
            timeout=timeout,
            metadata=self._metadata,
        )

    def verify(
        self,
        image: bytes,
        other_image: bytes | None = None,
        subject: tuple[str, str] | None = None,
        threshold: float | None = None,
        timeout: float = 300,
    ) -> analyze_service_pb2.VerifyReply:
        """Whether `image` shows the person of `other_image`, or the enrolled `subject`
        (gallery, subject): the distance of the closest faces and the verdict."""
        verify = analyze_service_pb2.VerifyRequest(image=image, threshold=threshold)
        if other_image is not None:
            verify.other_image = other_image
        if subject is not None:
            verify.subject.CopyFrom(
                analyze_service_pb2.SubjectRef(gallery=subject[0], subject=subject[1])
            )
        return self._galleries.Verify(verify, timeout=timeout, metadata=self._metadata)

    def galleries(self, timeout: float = 30) -> list[analyze_service_pb2.GalleryInfo]:
        """This caller's galleries that hold faces."""
        reply = self._galleries.ListGalleries(
            analyze_service_pb2.ListGalleriesRequest(), timeout=timeout, metadata=self._metadata
        )
        return list(reply.galleries)

    def subjects(self, gallery: str, timeout: float = 30) -> list[analyze_service_pb2.SubjectInfo]:
        """A gallery's subjects that hold faces."""
        reply = self._galleries.ListSubjects(
            analyze_service_pb2.ListSubjectsRequest(gallery=gallery),
            timeout=timeout,
            metadata=self._metadata,
        )
        return list(reply.subjects)

    def forget(self, gallery: str, subject: str = "", face_id: int = 0, timeout: float = 30) -> int:
        """Erase a gallery (no subject), a subject, or one face (by id); the faces erased."""
        reply = self._galleries.Forget(
            analyze_service_pb2.ForgetRequest(gallery=gallery, subject=subject, face_id=face_id),
            timeout=timeout,
            metadata=self._metadata,
        )
        return reply.faces_erased

    def health(self, timeout: float = 5) -> int:
        """The server's health status (a grpc.health.v1 HealthCheckResponse.ServingStatus)."""
        reply = self._health.Check(health_pb2.HealthCheckRequest(service=""), timeout=timeout)
        return reply.status

    def close(self) -> None:
        self._channel.close()

    def __enter__(self) -> AnalyzeClient:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()


def request(
    image: bytes,
    actions: Sequence[str] = (),
    detector_backend: str = "",
    request_id: str = "",
    frame: records_pb2.StreamFrame | None = None,
    identify: records_pb2.Identify | None = None,
) -> analyze_service_pb2.SubmitRequest:
    """A SubmitRequest (a stream's frame when `frame` is given, for SubmitStream; its faces
    identified with `identify`); empty options mean the server's defaults."""
    return analyze_service_pb2.SubmitRequest(
        image=image,
        actions=list(actions),
        detector_backend=detector_backend,
        request_id=request_id,
        frame=frame,
        identify=identify,
    )


def identify_in(
    gallery: str, top_k: int = 1, threshold: float | None = None
) -> records_pb2.Identify:
    """The identify option: each face matched against `gallery`, its `top_k` nearest
    subjects, verified at or under `threshold` (None: DeepFace's 0.68)."""
    return records_pb2.Identify(gallery=gallery, top_k=top_k, threshold=threshold)


def _error_info(error: grpc.RpcError) -> error_details_pb2.ErrorInfo | None:
    """The ErrorInfo of a failed call's google.rpc.Status, None when it carries none (a
    transport failure, a deadline the client set, another server)."""
    if not isinstance(error, grpc.Call):
        return None
    try:
        status = rpc_status.from_call(error)
    except ValueError:  # a status whose code or message disagree with the call's
        return None
    for detail in status.details if status is not None else ():
        info = error_details_pb2.ErrorInfo()
        if detail.Unpack(info):
            return info
    return None


def error_reason(error: grpc.RpcError) -> str:
    """facestream's error code of a refused call (ErrorInfo.reason), or "" when it has none."""
    info = _error_info(error)
    return info.reason if info is not None else ""


def error_request_id(error: grpc.RpcError) -> str:
    """The request a refused call concerns, once the server knew its id, or ""."""
    info = _error_info(error)
    return info.metadata.get("request_id", "") if info is not None else ""
