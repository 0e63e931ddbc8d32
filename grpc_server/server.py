"""The gRPC server process: AnalyzeService, health, reflection, optional token auth and TLS.

Start-up serves at once with health NOT_SERVING, then connects to Kafka (creating missing
topics) and turns SERVING once the producer reaches Kafka and the results listener reads.
SIGTERM/SIGINT: health NOT_SERVING, stop taking calls, let running calls finish (bounded),
flush the producer, exit. If a Kafka client's thread dies, the same, with exit code 1.
The server gets its parts ready-made from its composition root, `di.server_root`.
"""

from __future__ import annotations

import asyncio
import logging
import signal
from collections.abc import Coroutine
from dataclasses import dataclass
from typing import Any

import grpc
from grpc import aio
from grpc_health.v1 import health_pb2, health_pb2_grpc
from grpc_health.v1.health import aio as health_aio
from grpc_reflection.v1alpha import reflection

from facestream.kafka_admin import ensure_topics
from facestream.kafka_config import KafkaSecurity, TopicSpec
from facestream.metrics_endpoint import MetricsEndpoint, start_metrics_endpoint
from facestream.v1 import analyze_service_pb2_grpc
from grpc_server.auth import AuthInterceptor
from grpc_server.gallery_service import SERVICE as GALLERY_SERVICE
from grpc_server.gallery_service import SERVICE_NAME as GALLERY_SERVICE_NAME
from grpc_server.gallery_service import GalleryServicer
from grpc_server.metrics import CountedServicer, ServerMetrics
from grpc_server.principals import Authenticator
from grpc_server.publisher import RequestPublisher
from grpc_server.results import ResultsListener
from grpc_server.service import SERVICE, SERVICE_NAME, AnalyzeServicer

SHUTDOWN_GRACE_SECONDS = 10.0
# Between attempts to reach Kafka at start-up.
CONNECT_RETRY_SECONDS = 1.0


@dataclass(frozen=True)
class Endpoint:
    """Where and how the server listens."""

    address: str
    credentials: grpc.ServerCredentials | None  # None: plaintext
    client_certificates: bool  # every client must present one (mTLS)
    max_message_bytes: int
    max_concurrent_rpcs: int
    metrics_host: str
    metrics_port: int  # 0: no metrics endpoint, and calls are not counted


@dataclass(frozen=True)
class KafkaTopics:
    """The Kafka the server connects to, and the topics it makes sure exist."""

    bootstrap: str
    topics: list[TopicSpec]
    security: KafkaSecurity


@dataclass(frozen=True)
class ServerParts:
    """What the server serves with, built by its composition root (di.server_root)."""

    servicer: AnalyzeServicer
    gallery_servicer: GalleryServicer
    authenticator: Authenticator
    publisher: RequestPublisher
    listener: ResultsListener
    metrics: ServerMetrics
    kafka: KafkaTopics
    logger: logging.Logger
    auth_description: str  # for the start-up line: how callers are authenticated


class AnalyzeServer:
    """One server: the gRPC endpoint and the Kafka clients behind it."""

    def __init__(self, endpoint: Endpoint, parts: ServerParts) -> None:
        self.endpoint = endpoint
        self._logger = parts.logger
        self._kafka = parts.kafka
        self._auth_description = parts.auth_description
        self.publisher = parts.publisher
        self.listener = parts.listener
        self.authenticator = parts.authenticator
        self._health = health_aio.HealthServicer()
        self._listening = False
        self._stopping = False
        self.failure: str | None = None  # why the server must stop, when a thread died
        self.done = asyncio.Event()  # set when the server should stop (a fatal failure)
        self._tasks: set[asyncio.Task[None]] = set()
        self.metrics = parts.metrics
        self.metrics_endpoint: MetricsEndpoint | None = None
        self._server = aio.server(
            interceptors=[
                AuthInterceptor(
                    self.authenticator,
                    (f"/{SERVICE_NAME}/", f"/{GALLERY_SERVICE_NAME}/"),
                    endpoint.client_certificates,
                    self._logger,
                )
            ]
            if self.authenticator.enabled
            else [],
            options=[
                ("grpc.max_receive_message_length", endpoint.max_message_bytes),
                ("grpc.max_send_message_length", endpoint.max_message_bytes),
            ],
            # Beyond this, gRPC itself answers RESOURCE_EXHAUSTED.
            maximum_concurrent_rpcs=endpoint.max_concurrent_rpcs,
        )
        # Counts nobody can scrape are not kept (docs/performance.md, for what they cost).
        counted = endpoint.metrics_port != 0
        servicer = parts.servicer
        analyze_service_pb2_grpc.add_AnalyzeServiceServicer_to_server(
            CountedServicer(servicer, SERVICE, self.metrics) if counted else servicer,
            self._server,
        )
        galleries = parts.gallery_servicer
        analyze_service_pb2_grpc.add_GalleryServiceServicer_to_server(
            CountedServicer(galleries, GALLERY_SERVICE, self.metrics) if counted else galleries,
            self._server,
        )
        health_pb2_grpc.add_HealthServicer_to_server(self._health, self._server)
        reflection.enable_server_reflection(
            (
                SERVICE_NAME,
                GALLERY_SERVICE_NAME,
                health_pb2.DESCRIPTOR.services_by_name["Health"].full_name,
                reflection.SERVICE_NAME,
            ),
            self._server,
        )

    @property
    def serving(self) -> bool:
        return (
            self._listening
            and self.publisher.reachable
            and not self._stopping
            and self.failure is None
        )

    async def start(self) -> int:
        """Bind and start; return the bound port. Kafka is connected in the background."""
        credentials = self.endpoint.credentials
        address = self.endpoint.address
        port = (
            self._server.add_secure_port(address, credentials)
            if credentials is not None
            else self._server.add_insecure_port(address)
        )
        await self._update_health()
        self.metrics_endpoint = start_metrics_endpoint(
            self.endpoint.metrics_host,
            self.endpoint.metrics_port,
            self.metrics.registry,
            "FACESTREAM_METRICS_PORT",
        )
        await self._server.start()
        loop = asyncio.get_running_loop()
        self.publisher.on_reachability = lambda _reachable: loop.call_soon_threadsafe(
            self._schedule_health_update
        )
        for client in (self.publisher, self.listener):
            client.on_fatal = lambda reason: loop.call_soon_threadsafe(self._fail, reason)
        self.publisher.start()
        self._schedule(self._connect_listener())
        if self.authenticator.file is not None:
            self._schedule(self.authenticator.watch_file())
        self._logger.info(
            "AnalyzeService on %s (%s, %s); Kafka at %s; metrics %s",
            address.rsplit(":", 1)[0] + f":{port}",
            "TLS" if credentials else "plaintext",
            self._auth_description,
            self._kafka.bootstrap,
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
        left = await loop.run_in_executor(None, self.publisher.close, grace)
        if left:
            self._logger.error("%d records were not acknowledged by Kafka at shutdown", left)
        await loop.run_in_executor(None, self.listener.close)
        if self.metrics_endpoint is not None:
            self.metrics_endpoint.stop()
        self._logger.info("AnalyzeService stopped")

    async def _connect_listener(self) -> None:
        loop = asyncio.get_running_loop()
        kafka = self._kafka
        while not self._stopping:
            try:
                await loop.run_in_executor(
                    None, ensure_topics, kafka.bootstrap, kafka.topics, 5.0, kafka.security
                )
                await loop.run_in_executor(None, self.listener.start, loop, 5.0)
            except Exception as error:  # any failure here means "not yet": retry
                self._logger.warning("waiting for Kafka at %s: %s", kafka.bootstrap, error)
                await asyncio.sleep(CONNECT_RETRY_SECONDS)
                continue
            self._listening = True
            await self._update_health()
            return

    def _schedule(self, coroutine: Coroutine[Any, Any, None]) -> None:
        task = asyncio.ensure_future(coroutine)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

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


async def serve(server: AnalyzeServer) -> int:
    """Run `server` until SIGTERM or SIGINT (SIGHUP reloads its credentials); return the
    exit code: 0, or 1 when a Kafka client's thread died."""
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
