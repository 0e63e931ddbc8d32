"""Running the real gRPC server for tests: in this process on its own event loop thread
(so tests can look at its state), or as a `python -m grpc_server` child stopped by pid."""

from __future__ import annotations

import asyncio
import signal
import threading
from collections.abc import Coroutine, Iterator
from concurrent.futures import Future
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import grpc
from confluent_kafka import Consumer, Producer, TopicPartition
from grpc_health.v1 import health_pb2

from apps.launch import DataflowProcess, ServerProcess
from apps.processes import wait_until
from di.server_root import build_server
from di.settings import ServerProcessSettings
from facestream.client import AnalyzeClient
from facestream.kafka_config import consumer_config, producer_config
from facestream.kafka_records import result_key, result_record
from facestream.v1 import records_pb2
from grpc_server.publisher import RequestPublisher
from grpc_server.results import ResultsListener
from grpc_server.server import AnalyzeServer
from tests.commands import SYNTHETIC_HOME
from tests.pipeline import RECORD_LIMIT, Topics

SERVING = health_pb2.HealthCheckResponse.SERVING
NOT_SERVING = health_pb2.HealthCheckResponse.NOT_SERVING


def server_settings(topics: Topics, **overrides: str) -> ServerProcessSettings:
    """Settings of a test server on a free loopback port, using `topics`."""
    return ServerProcessSettings.from_env(
        topics.env(SYNTHETIC_HOME, FACESTREAM_GRPC_ADDRESS="127.0.0.1:0", **overrides)
    )


def health_of(client: AnalyzeClient) -> int | None:
    """The server's health, or None when it does not answer."""
    try:
        return client.health(timeout=2)
    except grpc.RpcError:
        return None


class ServerThread:
    """An AnalyzeServer on 127.0.0.1 (free port) running in a background event loop."""

    def __init__(self, settings: ServerProcessSettings) -> None:
        self.loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self.loop.run_forever, daemon=True)
        self._thread.start()
        self.server: AnalyzeServer = self.run(self._build(settings))
        self.port: int = self.run(self.server.start())
        self.address = f"127.0.0.1:{self.port}"
        self._stopped = False

    @staticmethod
    async def _build(settings: ServerProcessSettings) -> AnalyzeServer:
        # On the server's loop, as `python -m grpc_server` builds it on its own.
        return build_server(settings)

    @property
    def publisher(self) -> RequestPublisher:
        return self.server.publisher

    @property
    def listener(self) -> ResultsListener:
        return self.server.listener

    def run(self, coroutine: Coroutine[Any, Any, Any], timeout: float = 60) -> Any:
        """Run a coroutine on the server's loop and return its result."""
        return self.start(coroutine).result(timeout)

    def start(self, coroutine: Coroutine[Any, Any, Any]) -> Future[Any]:
        """Start a coroutine on the server's loop; its future."""
        return asyncio.run_coroutine_threadsafe(coroutine, self.loop)

    def client(self, **kwargs: Any) -> AnalyzeClient:
        return AnalyzeClient(self.address, **kwargs)

    def wait_serving(self, timeout: float = 30) -> None:
        wait_until(lambda: self.server.serving, timeout, "the server to be SERVING")

    def stop(self, grace: float = 5) -> None:
        if not self._stopped:
            self._stopped = True
            self.run(self.server.stop(grace))
        self.loop.call_soon_threadsafe(self.loop.stop)
        self._thread.join(10)

    def __enter__(self) -> ServerThread:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.stop()


@contextmanager
def ready_pipeline(
    topics: Topics, home: Path, *dataflow_args: str, **settings: str
) -> Iterator[tuple[DataflowProcess, ServerThread]]:
    """The real dataflow (`bytewax.run dataflow ARGS`) and a server on `topics`, both with
    the `settings` given (FACESTREAM_ACTIONS=...), once the server is SERVING and the flow
    is built; both stopped on the way out."""
    with (
        DataflowProcess(topics.env(home, **settings), *dataflow_args) as flow,
        ServerThread(server_settings(topics, **settings)) as server,
    ):
        server.wait_serving()
        flow.wait_built()
        yield flow, server


@contextmanager
def server_process(env: dict[str, str]) -> Iterator[ServerProcess]:
    """`python -m grpc_server` as a child process, stopped by its pid on exit."""
    server = ServerProcess(env)
    try:
        yield server
    finally:
        server.stop(signal.SIGKILL)


@contextmanager
def stand_in_dataflow(topics: Topics, copies: int = 1) -> Iterator[None]:
    """Answers each request on the topic with a NO_FACE result (with its frame's place),
    `copies` times over (the dataflow is at-least-once). A fast stand-in: the real dataflow
    is tested with the server in test_grpc_e2e.py."""
    stop = threading.Event()

    def answer() -> None:
        consumer = Consumer(consumer_config(topics.bootstrap, RECORD_LIMIT, "stand-in"))
        consumer.assign([TopicPartition(topics.requests, p, 0) for p in range(topics.partitions)])
        producer = Producer(producer_config(topics.bootstrap, RECORD_LIMIT))
        try:
            while not stop.is_set():
                message = consumer.poll(0.1)
                if message is None or message.error() is not None:
                    continue
                record = records_pb2.ImageSubmitted.FromString(message.value())
                result = result_record(
                    record.request_id,
                    records_pb2.ANALYSIS_STATUS_NO_FACE,
                    principal=record.principal,  # as the dataflow does
                    frame=record.frame if record.HasField("frame") else None,
                )
                for _ in range(copies):
                    producer.produce(
                        topics.results, key=result_key(result), value=result.SerializeToString()
                    )
                producer.flush(10)
        finally:
            consumer.close()

    thread = threading.Thread(target=answer, daemon=True)
    thread.start()
    try:
        yield
    finally:
        stop.set()
        thread.join(10)
