"""The whole system, started piece by piece so a scenario can break it: an embedded broker
(optionally behind a proxy whose link can be cut), `bytewax.run` dataflow processes, and
`python -m grpc_server` processes, all children of this process on 127.0.0.1, started by
the launch kit (apps/launch.py).

Every child is stopped by its pid when the `ExitStack` given to `SystemUnderTest` closes,
whatever happened; each wait is bounded and fails with the children's last log lines.
"""

from __future__ import annotations

import signal
import subprocess
import threading
import time
from collections.abc import Callable, Iterable, Sequence
from contextlib import ExitStack
from dataclasses import dataclass
from pathlib import Path

import grpc
from confluent_kafka import Message, Producer
from grpc_health.v1 import health_pb2

from apps.broker import EmbeddedBroker, free_port
from apps.launch import (
    NO_METRICS,
    QUIET,
    DataflowProcess,
    ServerProcess,
    TopicReader,
    cluster_args,
)
from apps.processes import memory_mb, wait_until
from bench.loopback_proxy import LoopbackProxy
from di import Settings, child_environment
from facestream.client import AnalyzeClient
from facestream.kafka_admin import ensure_topics
from facestream.kafka_config import producer_config
from facestream.v1 import records_pb2

SERVING = health_pb2.HealthCheckResponse.SERVING


class ScenarioError(RuntimeError):
    """A scenario could not run (a child died, a wait timed out); the message says which."""


@dataclass
class Server:
    """One `python -m grpc_server` child and a client connected to it."""

    process: ServerProcess
    address: str
    client: AnalyzeClient

    def health(self) -> int | None:
        try:
            return self.client.health(timeout=1)
        except grpc.RpcError:
            return None


class SystemUnderTest:
    """Broker, topics, dataflow and servers of one scenario; see the module docstring."""

    def __init__(
        self,
        stack: ExitStack,
        deepface_home: Path,
        workdir: Path,
        env: dict[str, str] | None = None,
        partitions: int = 2,
        behind_proxy: bool = False,
    ) -> None:
        self._stack = stack
        self.workdir = workdir
        broker_port = free_port()
        advertised = broker_port
        self.proxy: LoopbackProxy | None = None
        if behind_proxy:
            advertised = free_port()
            self.proxy = LoopbackProxy(advertised, broker_port)
            stack.callback(self.proxy.close)
        self.broker = EmbeddedBroker(broker_port, advertised_port=advertised)
        stack.callback(self.broker.stop)
        self.broker.start()
        self.bootstrap = f"127.0.0.1:{advertised}"
        self.partitions = partitions
        self.env = child_environment(
            **QUIET,
            **NO_METRICS,
            **(env or {}),
            FACESTREAM_KAFKA_BOOTSTRAP=self.bootstrap,
            FACESTREAM_PARTITIONS=str(partitions),
            FACESTREAM_ATTEMPTS_DIR=str(workdir / "attempts"),
            DEEPFACE_HOME=str(deepface_home),
        )
        self.settings = Settings.from_env(self.env)
        ensure_topics(self.bootstrap, self.settings.topics)
        self.dataflows: list[DataflowProcess] = []
        self.servers: list[Server] = []
        self._readers: dict[str, TopicReader] = {}
        self._results: dict[str, list[records_pb2.AnalysisResult]] = {}
        self._results_parsed = 0
        stack.callback(self.stop_all)

    # dataflow

    def start_dataflow(
        self, processes: int = 1, workers: int = 1, recovery: Path | None = None
    ) -> list[DataflowProcess]:
        """`bytewax.run dataflow` as `processes` processes of `workers` threads each."""
        recovery_args = ["-r", str(recovery), "-s", "1", "-b", "0"] if recovery else []
        shapes = cluster_args(processes, workers) if processes > 1 else [["-w", str(workers)]]
        for index, args in enumerate(shapes):
            self.dataflows.append(
                DataflowProcess(self.env, *args, *recovery_args, name=f"dataflow-{index}")
            )
        return self.dataflows

    def kill_dataflow(self, index: int = 0, others_timeout: float = 30) -> list[int]:
        """SIGKILL one dataflow process; the others of its cluster exit with it (or are
        killed after `others_timeout`). Returns every process's exit code."""
        self.dataflows[index].process.kill()
        for child in self.dataflows:
            try:
                child.process.wait(others_timeout)
            except subprocess.TimeoutExpired:
                child.process.kill()
        codes = [child.stop(signal.SIGKILL, 10) for child in self.dataflows]
        self.dataflows = []
        return codes

    def check_dataflow(self) -> None:
        """ScenarioError with its log if a dataflow process has exited."""
        for child in self.dataflows:
            if not child.running():
                raise ScenarioError(
                    f"{child.name} exited with code {child.process.returncode}:\n{child.log_tail()}"
                )

    # servers

    def start_server(self, env: dict[str, str] | None = None, timeout: float = 60) -> Server:
        """A gRPC server on a free loopback port; returns once it is SERVING."""
        address = f"127.0.0.1:{free_port()}"
        process = ServerProcess(
            {**self.env, **(env or {}), "FACESTREAM_GRPC_ADDRESS": address},
            name=f"grpc-server-{len(self.servers)}",
        )
        # The scenarios count the server's own answers, and retry on their own terms.
        server = Server(process, address, AnalyzeClient(address, retries=False))
        self.servers.append(server)

        def serving() -> bool:
            if not process.running():
                raise ScenarioError(f"{process.name} exited:\n{process.log_tail()}")
            return server.health() == SERVING

        wait_until(serving, timeout, f"{process.name} to be SERVING")
        return server

    # topics

    def reader(self, topic: str) -> TopicReader:
        """The scenario's reader of `topic` (one per topic, reading on where it left off)."""
        if topic not in self._readers:
            self._readers[topic] = TopicReader(self.bootstrap, topic, self.partitions)
        return self._readers[topic]

    def read_results(
        self,
        until: Callable[[dict[str, list[records_pb2.AnalysisResult]]], bool],
        timeout: float,
    ) -> dict[str, list[records_pb2.AnalysisResult]]:
        """Every result read so far, by request id, once `until(results)` holds or `timeout`
        passed (the caller counts what is missing). Fails if a dataflow process exits."""
        reader = self.reader(self.settings.kafka.topic_results)

        def done(messages: list[Message]) -> bool:
            for message in messages[self._results_parsed :]:
                result = records_pb2.AnalysisResult.FromString(message.value())
                self._results.setdefault(result.request_id, []).append(result)
            self._results_parsed = len(messages)
            return until(self._results)

        reader.read_until(done, timeout, self.check_dataflow)
        return self._results

    def results(
        self, request_ids: Iterable[str], timeout: float
    ) -> dict[str, list[records_pb2.AnalysisResult]]:
        """`read_results` until each of `request_ids` has a result."""
        wanted = set(request_ids)
        return self.read_results(lambda results: wanted <= results.keys(), timeout)

    def produce(self, topic: str, records: Sequence[tuple[bytes | None, bytes | None]]) -> None:
        """Write records straight to a topic, each acknowledged by the broker."""
        producer = Producer(producer_config(self.bootstrap, 64 * 1024 * 1024))
        failures: list[str] = []
        for key, value in records:
            producer.produce(
                topic,
                key=key,
                value=value,
                on_delivery=lambda error, _m: failures.append(str(error)) if error else None,
            )
            producer.poll(0)
        if producer.flush(60) or failures:
            raise ScenarioError(f"records not acknowledged: {failures[:3]}")

    # processes

    def pids(self) -> dict[str, int]:
        """Every running child by name (broker, servers, dataflow processes)."""
        pids = {"broker": self.broker.pid} if self.broker.pid else {}
        pids |= {s.process.name: s.process.pid for s in self.servers if s.process.running()}
        pids |= {c.name: c.pid for c in self.dataflows if c.running()}
        return pids

    def stop_all(self) -> None:
        for reader in self._readers.values():
            reader.close()
        for server in self.servers:
            server.client.close()
            server.process.stop(signal.SIGTERM, 15)
        for child in self.dataflows:
            child.stop(signal.SIGINT, 20)


class MemorySampler:
    """Samples the resident memory (MB) of processes in a thread, every `interval` s."""

    def __init__(self, pids: dict[str, int], interval: float = 0.5) -> None:
        self.pids = pids
        self.interval = interval
        self.samples: dict[str, list[tuple[float, float]]] = {name: [] for name in pids}
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._sample, daemon=True)

    def __enter__(self) -> MemorySampler:
        self._thread.start()
        return self

    def __exit__(self, *exc_info: object) -> None:
        self._stop.set()
        self._thread.join(10)

    def _sample(self) -> None:
        started = time.monotonic()
        while not self._stop.wait(self.interval):
            for name, pid in self.pids.items():
                try:
                    self.samples[name].append((time.monotonic() - started, memory_mb(pid)))
                except (FileNotFoundError, ProcessLookupError, ValueError):
                    continue
