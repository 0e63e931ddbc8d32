"""The gRPC server process: AnalyzeService, health, reflection, optional token auth and TLS.

Start-up serves at once with health NOT_SERVING, then connects to Kafka (creating missing
topics) and turns SERVING once the producer reaches Kafka and the results listener reads.
SIGTERM/SIGINT: health NOT_SERVING, stop taking calls, let running calls finish (bounded),
flush the producer, exit. If a Kafka client's thread dies, the same, with exit code 1.
"""

from __future__ import annotations

import asyncio
import logging
import signal
import sys
from collections.abc import Coroutine
from typing import Any

import grpc
from grpc import aio
from grpc_health.v1 import health_pb2, health_pb2_grpc
from grpc_health.v1.health import aio as health_aio
from grpc_reflection.v1alpha import reflection
from lagom import Container, Singleton

from di import Settings, SettingsError, build_container, load_settings
from facestream.kafka_admin import ensure_topics
from facestream.metrics_endpoint import (
    MetricsEndpoint,
    MetricsEndpointError,
    start_metrics_endpoint,
)
from facestream.requests import RequestLimits
from facestream.v1 import analyze_service_pb2, analyze_service_pb2_grpc
from grpc_server.admission import Admission, Shares
from grpc_server.auth import AuthInterceptor
from grpc_server.metrics import CountedServicer, ServerMetrics
from grpc_server.principals import Authenticator, CredentialsError
from grpc_server.publisher import RequestPublisher
from grpc_server.results import ResultsListener
from grpc_server.service import AnalyzeServicer

SERVICE = analyze_service_pb2.DESCRIPTOR.services_by_name["AnalyzeService"]
SERVICE_NAME = SERVICE.full_name
SHUTDOWN_GRACE_SECONDS = 10.0
# Between attempts to reach Kafka at start-up.
CONNECT_RETRY_SECONDS = 1.0


def build_server_container(settings: Settings) -> Container:
    """The process container plus the server's Kafka clients, as singletons."""
    container = build_container(settings)
    container[RequestPublisher] = Singleton(
        lambda c: RequestPublisher(
            c[Settings].bootstrap_servers,
            c[Settings].topic_requests,
            c[Settings].kafka_max_message_bytes,
            c[Settings].max_in_flight,
            c[Settings].ack_timeout,
            c[logging.Logger],
            c[Settings].kafka_security,
        )
    )
    container[Authenticator] = Singleton(
        lambda c: Authenticator(
            c[Settings].auth_file,
            tuple(token.get_secret_value() for token in c[Settings].auth_tokens),
            c[logging.Logger],
        )
    )
    container[ResultsListener] = Singleton(
        lambda c: ResultsListener(
            c[Settings].bootstrap_servers,
            c[Settings].topic_results,
            c[Settings].kafka_max_message_bytes,
            c[logging.Logger],
            c[Settings].kafka_security,
        )
    )
    container[ServerMetrics] = Singleton(
        lambda c: ServerMetrics(c[RequestPublisher], c[ResultsListener])
    )
    return container


def server_credentials(settings: Settings) -> grpc.ServerCredentials | None:
    """TLS credentials from FACESTREAM_TLS_CERT/KEY, or None for plaintext. With
    FACESTREAM_TLS_CLIENT_CA every client must present a certificate that CA issued."""
    if settings.tls_cert is None or settings.tls_key is None:
        return None
    client_ca = settings.tls_client_ca
    return grpc.ssl_server_credentials(
        [(settings.tls_key.read_bytes(), settings.tls_cert.read_bytes())],
        root_certificates=client_ca.read_bytes() if client_ca else None,
        require_client_auth=client_ca is not None,
    )


def principal_shares(settings: Settings, authentication: bool) -> Shares:
    """What one principal may hold. With authentication off every caller is the one
    anonymous principal, so its share is the whole server (publishes keep their cap)."""
    if not authentication:
        return Shares(
            settings.max_held_image_bytes,
            settings.max_watchers,
            settings.max_concurrent_rpcs,
            settings.max_in_flight_per_principal,
        )
    return Shares(
        settings.max_held_image_bytes_per_principal,
        settings.max_watchers_per_principal,
        settings.max_calls_per_principal,
        settings.max_in_flight_per_principal,
    )


class AnalyzeServer:
    """One server: the gRPC endpoint and the Kafka clients behind it."""

    def __init__(self, settings: Settings, container: Container) -> None:
        self.settings = settings
        self._logger = container[logging.Logger]
        self._publisher = container[RequestPublisher]
        self._listener = container[ResultsListener]
        self.authenticator = container[Authenticator]
        self._health = health_aio.HealthServicer()
        self._listening = False
        self._stopping = False
        self.failure: str | None = None  # why the server must stop, when a thread died
        self.done = asyncio.Event()  # set when the server should stop (a fatal failure)
        self._tasks: set[asyncio.Task[None]] = set()
        self.metrics = container[ServerMetrics]
        self.metrics_endpoint: MetricsEndpoint | None = None
        self._server = aio.server(
            interceptors=[
                AuthInterceptor(
                    self.authenticator,
                    f"/{SERVICE_NAME}/",
                    settings.tls_client_ca is not None,
                    self._logger,
                )
            ]
            if self.authenticator.enabled
            else [],
            options=[
                ("grpc.max_receive_message_length", settings.kafka_max_message_bytes),
                ("grpc.max_send_message_length", settings.kafka_max_message_bytes),
            ],
            # Beyond this, gRPC itself answers RESOURCE_EXHAUSTED.
            maximum_concurrent_rpcs=settings.max_concurrent_rpcs,
        )
        servicer = AnalyzeServicer(
            container[RequestLimits],
            self._publisher,
            self._listener,
            Admission(
                settings.max_held_image_bytes,
                settings.max_watchers,
                principal_shares(settings, self.authenticator.enabled),
            ),
            self.authenticator,
            self._logger,
            settings.ack_timeout,
            settings.result_timeout,
        )
        # Counts nobody can scrape are not kept (README, Performance, for what they cost).
        counted = settings.metrics_port != 0
        analyze_service_pb2_grpc.add_AnalyzeServiceServicer_to_server(
            CountedServicer(servicer, SERVICE, self.metrics) if counted else servicer,
            self._server,
        )
        health_pb2_grpc.add_HealthServicer_to_server(self._health, self._server)
        reflection.enable_server_reflection(
            (
                SERVICE_NAME,
                health_pb2.DESCRIPTOR.services_by_name["Health"].full_name,
                reflection.SERVICE_NAME,
            ),
            self._server,
        )

    @property
    def serving(self) -> bool:
        return (
            self._listening
            and self._publisher.reachable
            and not self._stopping
            and self.failure is None
        )

    async def start(self) -> int:
        """Bind and start; return the bound port. Kafka is connected in the background."""
        credentials = server_credentials(self.settings)
        address = self.settings.grpc_address
        port = (
            self._server.add_secure_port(address, credentials)
            if credentials is not None
            else self._server.add_insecure_port(address)
        )
        await self._update_health()
        self.metrics_endpoint = start_metrics_endpoint(
            self.settings.metrics_host,
            self.settings.metrics_port,
            self.metrics.registry,
            "FACESTREAM_METRICS_PORT",
        )
        await self._server.start()
        loop = asyncio.get_running_loop()
        self._publisher.on_reachability = lambda _reachable: loop.call_soon_threadsafe(
            self._schedule_health_update
        )
        for client in (self._publisher, self._listener):
            client.on_fatal = lambda reason: loop.call_soon_threadsafe(self._fail, reason)
        self._publisher.start()
        self._schedule(self._connect_listener())
        if self.authenticator.file is not None:
            self._schedule(self.authenticator.watch_file())
        self._logger.info(
            "AnalyzeService on %s (%s, %s); Kafka at %s; metrics %s",
            address.rsplit(":", 1)[0] + f":{port}",
            "TLS" if credentials else "plaintext",
            self._auth_description(),
            self.settings.bootstrap_servers,
            self.metrics_endpoint.url if self.metrics_endpoint else "off",
        )
        return port

    async def stop(self, grace: float = SHUTDOWN_GRACE_SECONDS) -> None:
        """Refuse new calls, let running ones finish within `grace`, flush the producer."""
        self._stopping = True
        await self._health.enter_graceful_shutdown()
        await self._server.stop(grace)
        for task in self._tasks:
            task.cancel()
        loop = asyncio.get_running_loop()
        left = await loop.run_in_executor(None, self._publisher.close, grace)
        if left:
            self._logger.error("%d records were not acknowledged by Kafka at shutdown", left)
        await loop.run_in_executor(None, self._listener.close)
        if self.metrics_endpoint is not None:
            self.metrics_endpoint.stop()
        self._logger.info("AnalyzeService stopped")

    async def _connect_listener(self) -> None:
        loop = asyncio.get_running_loop()
        settings = self.settings
        while not self._stopping:
            try:
                await loop.run_in_executor(
                    None,
                    ensure_topics,
                    settings.bootstrap_servers,
                    settings.topics,
                    5.0,
                    settings.kafka_security,
                )
                await loop.run_in_executor(None, self._listener.start, loop, 5.0)
            except Exception as error:  # any failure here means "not yet": retry
                self._logger.warning(
                    "waiting for Kafka at %s: %s", settings.bootstrap_servers, error
                )
                await asyncio.sleep(CONNECT_RETRY_SECONDS)
                continue
            self._listening = True
            await self._update_health()
            return

    def _schedule(self, coroutine: Coroutine[Any, Any, None]) -> None:
        task = asyncio.ensure_future(coroutine)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    def _auth_description(self) -> str:
        if not self.authenticator.enabled:
            return "no auth"
        ways = (
            ["principals from " + str(self.settings.auth_file)] if self.settings.auth_file else []
        )
        ways += ["FACESTREAM_AUTH_TOKENS"] if self.settings.auth_tokens else []
        ways += ["client certificates required"] if self.settings.tls_client_ca else []
        return "auth: " + ", ".join(ways)

    def _fail(self, reason: str) -> None:
        """A Kafka client's thread died: NOT_SERVING at once, and the process exits non-zero
        (a supervisor restarts it) instead of accepting calls it cannot serve."""
        if self.failure is None:
            self.failure = reason
            self._logger.error("stopping: %s", reason)
            self._schedule(self._update_health())
            self.done.set()

    def _schedule_health_update(self) -> None:
        if not self._stopping:
            self._schedule(self._update_health())

    async def _update_health(self) -> None:
        status = (
            health_pb2.HealthCheckResponse.SERVING
            if self.serving
            else health_pb2.HealthCheckResponse.NOT_SERVING
        )
        for service in ("", SERVICE_NAME):
            await self._health.set(service, status)


def run_server(settings: Settings) -> int:
    """Serve until SIGTERM or SIGINT; the exit code (2, with the reason on stderr, when the
    server cannot start: unusable credentials, a metrics port in use)."""
    try:
        return asyncio.run(serve(settings))
    except (CredentialsError, MetricsEndpointError) as error:
        print(f"error: the gRPC server cannot start: {error}", file=sys.stderr)
        return 2


def main() -> int:
    """`python -m grpc_server`: this process's settings, then run_server."""
    try:
        settings = load_settings()
    except SettingsError as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    return run_server(settings)


async def serve(settings: Settings) -> int:
    """Run the server until SIGTERM or SIGINT; return the exit code."""
    server = AnalyzeServer(settings, build_server_container(settings))
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(signum, stop.set)
    loop.add_signal_handler(signal.SIGHUP, server.authenticator.reload)
    await server.start()
    stopped, failed = asyncio.ensure_future(stop.wait()), asyncio.ensure_future(server.done.wait())
    await asyncio.wait((stopped, failed), return_when=asyncio.FIRST_COMPLETED)
    stopped.cancel()
    failed.cancel()
    await server.stop()
    return 0 if server.failure is None else 1
