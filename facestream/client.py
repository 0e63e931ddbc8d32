"""A small Python client for AnalyzeService (blocking, one channel).

Results are `facestream.v1` protobuf messages; `embedding_of(face)` gives a face's
embedding as a numpy array, `cosine_similarity(a, b)` compares two.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Sequence
from pathlib import Path

import grpc
from grpc_health.v1 import health_pb2, health_pb2_grpc

from facestream.embeddings import cosine_similarity, embedding_of
from facestream.v1 import analyze_service_pb2, analyze_service_pb2_grpc, records_pb2

__all__ = ["AnalyzeClient", "cosine_similarity", "embedding_of", "request"]

MAX_MESSAGE_BYTES = 64 * 1024 * 1024


class AnalyzeClient:
    """Calls AnalyzeService at `address`; `token` is sent as a bearer token, `ca_cert`
    (a PEM file) switches to TLS and is the certificate authority trusted, and
    `client_certificate` (certificate chain, key: PEM files) is presented to a server
    that requires one (mTLS)."""

    def __init__(
        self,
        address: str,
        token: str = "",
        ca_cert: Path | None = None,
        server_name: str | None = None,
        client_certificate: tuple[Path, Path] | None = None,
    ) -> None:
        options = [
            ("grpc.max_send_message_length", MAX_MESSAGE_BYTES),
            ("grpc.max_receive_message_length", MAX_MESSAGE_BYTES),
        ]
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
        self._health = health_pb2_grpc.HealthStub(self._channel)

    def submit(
        self,
        image: bytes,
        actions: Sequence[str] = (),
        detector_backend: str = "",
        request_id: str = "",
        timeout: float = 30,
    ) -> str:
        """Publish one image; return its request id once Kafka acknowledged it."""
        reply = self._stub.Submit(
            request(image, actions, detector_backend, request_id),
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
    ) -> records_pb2.AnalysisResult:
        """Publish one image and wait (up to `timeout`) for its result."""
        return self._stub.Analyze(
            request(image, actions, detector_backend, request_id),
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
) -> analyze_service_pb2.SubmitRequest:
    """A SubmitRequest (a stream's frame when `frame` is given, for SubmitStream); empty
    options mean the server's defaults."""
    return analyze_service_pb2.SubmitRequest(
        image=image,
        actions=list(actions),
        detector_backend=detector_backend,
        request_id=request_id,
        frame=frame,
    )
