"""The gRPC server's composition root: its settings, read once, become ready parts
(credentials, admission, the embedded broker's budget, publisher, results listener,
servicer) for `AnalyzeServer`.
`python -m grpc_server` and `facestream serve` start here."""

from __future__ import annotations

import asyncio
import logging
import sys

import grpc
from lagom import Container, Singleton

from di.container import build_container
from di.environment import load_settings
from di.settings import (
    EMBEDDED_BROKER_WARN_AT,
    AuthSettings,
    LimitsSettings,
    ServerProcessSettings,
    ServerSettings,
    SettingsError,
    TlsSettings,
)
from facestream.gallery_store import GalleryStore
from facestream.metrics_endpoint import MetricsEndpointError
from facestream.requests import RequestLimits
from grpc_server.admission import Admission, Shares
from grpc_server.broker_budget import BrokerBudget
from grpc_server.gallery_service import GalleryServicer
from grpc_server.metrics import ServerMetrics
from grpc_server.pipeline import Pipeline
from grpc_server.principals import Authenticator, CredentialsError
from grpc_server.publisher import RequestPublisher
from grpc_server.results import ResultsListener
from grpc_server.server import AnalyzeServer, Endpoint, KafkaTopics, ServerParts, serve
from grpc_server.service import AnalyzeServicer


def server_container(settings: ServerProcessSettings) -> Container:
    """The process container plus the server's Kafka clients and credentials, as
    singletons."""
    kafka, record_bytes = settings.kafka, settings.kafka_max_message_bytes
    container = build_container(settings)
    container[RequestPublisher] = Singleton(
        lambda c: RequestPublisher(
            kafka.bootstrap_servers,
            kafka.topic_requests,
            record_bytes,
            c[LimitsSettings].max_in_flight,
            c[ServerSettings].ack_timeout,
            c[logging.Logger],
            kafka.security,
        )
    )
    container[Authenticator] = Singleton(
        lambda c: Authenticator(
            c[AuthSettings].auth_file, c[AuthSettings].token_values, c[logging.Logger]
        )
    )
    container[ResultsListener] = Singleton(
        lambda c: ResultsListener(
            kafka.bootstrap_servers,
            kafka.topic_results,
            record_bytes,
            c[logging.Logger],
            kafka.security,
            kafka.fetch_wait_ms,
        )
    )
    if kafka.uses_embedded_broker:
        container[BrokerBudget] = Singleton(
            lambda c: BrokerBudget(
                kafka.embedded_broker_budget,
                EMBEDDED_BROKER_WARN_AT,
                c[ResultsListener],
                c[logging.Logger],
            )
        )
    container[ServerMetrics] = Singleton(
        lambda c: ServerMetrics(
            c[RequestPublisher], c[ResultsListener], broker_budget_of(c, settings)
        )
    )
    return container


def broker_budget_of(container: Container, settings: ServerProcessSettings) -> BrokerBudget | None:
    """The embedded broker's budget; None with a real Kafka (it has retention)."""
    return container[BrokerBudget] if settings.kafka.uses_embedded_broker else None


def server_credentials(tls: TlsSettings) -> grpc.ServerCredentials | None:
    """TLS credentials from FACESTREAM_TLS_CERT/KEY, or None for plaintext. With
    FACESTREAM_TLS_CLIENT_CA every client must present a certificate that CA issued."""
    if tls.certificate is None:
        return None
    chain, key = tls.certificate
    client_ca = tls.tls_client_ca
    return grpc.ssl_server_credentials(
        [(key.read_bytes(), chain.read_bytes())],
        root_certificates=client_ca.read_bytes() if client_ca else None,
        require_client_auth=client_ca is not None,
    )


def principal_shares(
    limits: LimitsSettings, authentication: bool, logger: logging.Logger
) -> Shares:
    """What one principal may hold. With authentication off every caller is the one
    anonymous principal, so its share is the whole server (publishes keep their cap). A
    share larger than the server's whole is cut to it, with a warning: it could only let one
    principal take everything."""
    if not authentication:
        return Shares(
            limits.max_held_image_bytes,
            limits.max_watchers,
            limits.max_concurrent_rpcs,
            limits.max_in_flight_per_principal,
        )
    shares = {}
    for share, total in (
        ("max_held_image_bytes_per_principal", "max_held_image_bytes"),
        ("max_watchers_per_principal", "max_watchers"),
        ("max_calls_per_principal", "max_concurrent_rpcs"),
        ("max_in_flight_per_principal", "max_in_flight"),
    ):
        asked, whole = getattr(limits, share), getattr(limits, total)
        if asked > whole:
            logger.warning(
                "FACESTREAM_%s=%d is more than the server's FACESTREAM_%s=%d: one principal "
                "gets at most %d",
                share.upper(), asked, total.upper(), whole, whole,
            )  # fmt: skip
        shares[share] = min(asked, whole)
    return Shares(
        shares["max_held_image_bytes_per_principal"],
        shares["max_watchers_per_principal"],
        shares["max_calls_per_principal"],
        shares["max_in_flight_per_principal"],
    )


def auth_description(auth: AuthSettings, tls: TlsSettings) -> str:
    """How callers are authenticated, for the start-up line (no secret in it)."""
    ways = ["principals from " + str(auth.auth_file)] if auth.auth_file else []
    ways += ["FACESTREAM_AUTH_TOKENS"] if auth.auth_tokens else []
    if not ways:
        return "no auth"
    ways += ["client certificates required"] if tls.tls_client_ca else []
    return "auth: " + ", ".join(ways)


def build_server(settings: ServerProcessSettings) -> AnalyzeServer:
    """The server of these settings, its parts built from the container. Call it on the
    event loop the server will run on."""
    container = server_container(settings)
    authenticator = container[Authenticator]
    limits = settings.limits
    pipeline = Pipeline(
        container[RequestPublisher],
        container[ResultsListener],
        Admission(
            limits.max_held_image_bytes,
            limits.max_watchers,
            principal_shares(limits, authenticator.enabled, container[logging.Logger]),
        ),
        authenticator,
        container[logging.Logger],
        settings.server.ack_timeout,
        settings.server.result_timeout,
        broker_budget_of(container, settings),
    )
    servicer = AnalyzeServicer(
        container[RequestLimits],
        pipeline,
        container[logging.Logger],
        settings.server.stream_gap_timeout,
    )
    parts = ServerParts(
        servicer=servicer,
        gallery_servicer=GalleryServicer(
            container[RequestLimits],
            pipeline,
            container[GalleryStore | None],  # type: ignore[index]
        ),
        authenticator=authenticator,
        publisher=container[RequestPublisher],
        listener=container[ResultsListener],
        metrics=container[ServerMetrics],
        kafka=KafkaTopics(
            settings.kafka.bootstrap_servers, settings.topics, settings.kafka.security
        ),
        logger=container[logging.Logger],
        auth_description=auth_description(settings.auth, settings.tls),
    )
    endpoint = Endpoint(
        address=settings.server.grpc_address,
        credentials=server_credentials(settings.tls),
        client_certificates=settings.tls.tls_client_ca is not None,
        max_message_bytes=settings.kafka_max_message_bytes,
        max_concurrent_rpcs=limits.max_concurrent_rpcs,
        metrics_host=settings.observability.metrics_host,
        metrics_port=settings.observability.metrics_port,
    )
    return AnalyzeServer(endpoint, parts)


async def serve_settings(settings: ServerProcessSettings) -> int:
    """Build the server of `settings` and run it until SIGTERM or SIGINT; the exit code."""
    return await serve(build_server(settings))


def run_server(settings: ServerProcessSettings) -> int:
    """Serve until SIGTERM or SIGINT; the exit code (2, with the reason on stderr, when the
    server cannot start: unusable credentials, a metrics port in use)."""
    try:
        return asyncio.run(serve_settings(settings))
    except (CredentialsError, MetricsEndpointError) as error:
        print(f"error: the gRPC server cannot start: {error}", file=sys.stderr)
        return 2


def main() -> int:
    """`python -m grpc_server`: this process's settings, then run_server."""
    try:
        settings = load_settings(ServerProcessSettings)
    except SettingsError as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    return run_server(settings)
