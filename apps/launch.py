"""The launch kit: facestream's own processes started as children of this one, the Kafka
they talk to, and reading what they write there. The local system (`facestream demo`), the
benchmarks' and the reliability scenarios' system under test and the tests all start the
dataflow and the gRPC server here, so the command of each is written once:

- `DataflowProcess`: one process of the Bytewax dataflow, `python -m bytewax.run dataflow
  ARGS`; `cluster_args` gives the ARGS of each process of a local cluster;
- `ServerProcess`: the gRPC server, `python -m grpc_server`;
- `kafka_with_topics`: the configured Kafka, or else an embedded broker, with facestream's
  topics on it;
- `TopicReader`: every record of a topic, from its beginning.

Both processes are `ChildProcess`es (apps/processes.py): tied to this process, their output
in a log file, stopped by their pid.
"""

from __future__ import annotations

import signal
import sys
import time
import uuid
from collections.abc import Callable, Iterator, Mapping
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass, field, replace
from pathlib import Path

from confluent_kafka import Consumer, Message, TopicPartition

from apps.broker import EmbeddedBroker, free_port
from apps.processes import ChildProcess
from di import Settings
from facestream.kafka_admin import ensure_topics, wait_for_kafka
from facestream.kafka_config import consumer_config

# Where the benchmarks and tests run their children: `python -m` puts the working folder
# first on the path, so the children import this checkout's packages.
PROJECT_ROOT = Path(__file__).resolve().parent.parent
# Quiet children: their logs go to files, read only when something fails.
QUIET = {"TF_CPP_MIN_LOG_LEVEL": "3", "FACESTREAM_LOG_LEVEL": "WARNING"}
# Many servers and dataflows run at once in tests and benchmarks: none serves metrics
# unless asked to.
NO_METRICS = {"FACESTREAM_METRICS_PORT": "0", "FACESTREAM_DATAFLOW_METRICS_PORT": "0"}


def cluster_args(processes: int, workers: int) -> list[list[str]]:
    """`bytewax.run` arguments of a local cluster of `processes` x `workers`."""
    addresses = ";".join(f"127.0.0.1:{free_port()}" for _ in range(processes))
    return [["-w", str(workers), "-i", str(index), "-a", addresses] for index in range(processes)]


class DataflowProcess(ChildProcess):
    """`python -m bytewax.run dataflow ARGS` as a child, in `cwd` (the project root unless
    told otherwise), with `env` (this process's when None). Used as a context manager, it is
    stopped on exit with SIGINT: how Bytewax is asked to stop."""

    def __init__(
        self,
        env: Mapping[str, str] | None,
        *args: str,
        name: str = "dataflow",
        cwd: Path | None = PROJECT_ROOT,
    ) -> None:
        super().__init__(name, [sys.executable, "-m", "bytewax.run", "dataflow", *args], env, cwd)

    def wait_built(self, timeout: float = 600) -> None:
        """Return once the flow is built (its models loaded): a first call's deadline then
        measures the call, not the loading."""
        self.wait_for_output(r"dataflow built; reading", timeout)

    def kill(self) -> None:
        """SIGKILL: no cleanup, like a crash."""
        self.process.kill()
        self.process.wait(30)

    def __enter__(self) -> DataflowProcess:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.stop(signal.SIGINT)


class ServerProcess(ChildProcess):
    """`python -m grpc_server` as a child, in `cwd` (the project root unless told
    otherwise); its address and everything else come from `env` (this process's when None)."""

    def __init__(
        self,
        env: Mapping[str, str] | None,
        *,
        name: str = "grpc-server",
        cwd: Path | None = PROJECT_ROOT,
    ) -> None:
        super().__init__(name, [sys.executable, "-m", "grpc_server"], env, cwd)


@dataclass(frozen=True)
class Kafka:
    """The Kafka facestream's processes talk to."""

    bootstrap: str
    broker: EmbeddedBroker | None  # the broker started for them; None: a configured Kafka
    created_topics: tuple[str, ...] = ()  # facestream's topics that were not there before


@contextmanager
def kafka_with_topics(
    settings: Settings, broker_port: int, announce: Callable[[Kafka], None]
) -> Iterator[Kafka]:
    """The Kafka FACESTREAM_KAFKA_BOOTSTRAP names, once it answers, or else an embedded
    broker on 127.0.0.1:`broker_port`, started here and stopped on the way out; with
    facestream's topics on it. `announce` is told which as soon as it is known: before
    waiting for a configured Kafka (the user then knows what is waited for), once the
    embedded broker runs. BrokerError when neither can be had."""
    with ExitStack() as stack:
        if settings.kafka.uses_embedded_broker:
            broker = stack.enter_context(EmbeddedBroker(broker_port))
            kafka = Kafka(broker.bootstrap, broker)
            announce(kafka)
        else:
            kafka = Kafka(settings.kafka.bootstrap_servers, broker=None)
            announce(kafka)
            wait_for_kafka(kafka.bootstrap, timeout=30, security=settings.kafka.security)
        created = ensure_topics(kafka.bootstrap, settings.topics, security=settings.kafka.security)
        yield replace(kafka, created_topics=tuple(created))


@dataclass
class TopicReader:
    """Reads a topic from its beginning, keeping every record; `read_until` reads on until a
    condition over all records read holds (the embedded broker's end offsets are not
    reliable, so records are counted by reading them)."""

    bootstrap: str
    topic: str
    partitions: int
    messages: list[Message] = field(default_factory=list)

    def __post_init__(self) -> None:
        self._consumer = Consumer(
            consumer_config(self.bootstrap, 64 * 1024 * 1024, f"reader-{uuid.uuid4()}")
        )
        self._consumer.assign([TopicPartition(self.topic, p, 0) for p in range(self.partitions)])

    def read_until(
        self,
        done: Callable[[list[Message]], bool],
        timeout: float,
        alive: Callable[[], None] = lambda: None,
    ) -> bool:
        """Read until `done(messages)`; False after `timeout` s. `alive` may raise to stop."""
        deadline = time.monotonic() + timeout
        while not done(self.messages):
            if time.monotonic() > deadline:
                return False
            alive()
            for message in self._consumer.consume(500, 0.2):
                if message.error() is None:
                    self.messages.append(message)
        return True

    def close(self) -> None:
        self._consumer.close()
