"""The local system: the embedded broker (or a configured Kafka), the dataflow and the
gRPC server as child processes of this one, on loopback ports, ready when they answer, and
stopped by their pids on the way out. `facestream demo` and the benchmarks start the whole
of facestream this way; each piece is started by the launch kit (apps/launch.py)."""

from __future__ import annotations

import signal
import threading
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import ExitStack, contextmanager
from pathlib import Path
from types import FrameType
from typing import TypeVar

import cv2
import grpc
import numpy as np
from grpc_health.v1 import health_pb2

from apps.broker import EmbeddedBroker, free_port, port_or_free
from apps.client_commands import client_for, describe_rpc_error
from apps.gallery_database import EmbeddedPostgres
from apps.launch import DataflowProcess, Kafka, ServerProcess, kafka_with_topics
from apps.processes import ChildProcess, WaitTimeoutError, wait_until
from di import Settings, child_environment
from facestream.client import AnalyzeClient
from facestream.gallery_store import GalleryStoreError

DATAFLOW_WORKERS = 2
HEALTH_TIMEOUT = 120.0
# The first result waits for the dataflow to build and warm four models (about a minute
# on 2 cores); a cold machine is slower.
FIRST_RESULT_TIMEOUT = 900.0
T = TypeVar("T")


class LocalSystemError(RuntimeError):
    """A child of the local system died or did not become ready; the message says which,
    with its log."""


def stop_on_signals() -> None:
    """Turn SIGINT and SIGTERM into KeyboardInterrupt in this process, so that whoever asks
    (Ctrl-C, a supervisor), the `with` blocks stop the children. SIGINT too: a shell that
    starts this process in the background makes it ignore SIGINT."""

    def interrupt(signum: int, _frame: FrameType | None) -> None:
        raise KeyboardInterrupt(signal.Signals(signum).name)

    signal.signal(signal.SIGINT, interrupt)
    signal.signal(signal.SIGTERM, interrupt)


def say(message: str) -> None:
    print(message, flush=True)


def warmup_image() -> bytes:
    """A small grey picture without a face: its result proves the pipeline answers."""
    ok, encoded = cv2.imencode(".png", np.full((64, 64, 3), 128, np.uint8))
    assert ok
    return encoded.tobytes()


def _loopback_address(configured: str) -> str:
    host, _, port = configured.rpartition(":")
    if host in ("127.0.0.1", "localhost"):
        return f"127.0.0.1:{port_or_free('127.0.0.1', int(port))}"
    return f"127.0.0.1:{free_port()}"


class LocalSystem:
    """The broker, the dataflow and the gRPC server as children of this process.

    `dataflows` holds the `bytewax.run` arguments of each dataflow process (one process by
    default, none for the gRPC front alone); `env` is given to every child on top of this
    process's environment. `bootstrap` is Kafka's address once it runs. Each child serves
    its metrics on a port of its own (`metrics_urls`), the configured one when it is free.
    """

    def __init__(
        self,
        settings: Settings,
        deepface_home: Path,
        dataflows: Sequence[Sequence[str]] = (("-w", str(DATAFLOW_WORKERS)),),
        env: Mapping[str, str] | None = None,
    ) -> None:
        self.settings = settings
        self.deepface_home = deepface_home
        self.dataflows = dataflows
        self.env = dict(env or {})
        self.children: list[ChildProcess] = []
        self.address = _loopback_address(settings.server.grpc_address)
        self.bootstrap = settings.kafka.bootstrap_servers
        self.metrics_ports: dict[str, int] = {}  # child name -> its metrics port
        self.broker: EmbeddedBroker | None = None  # once started, when no Kafka is named
        # Once started, when no FACESTREAM_GALLERY_DSN is named.
        self.gallery_database: EmbeddedPostgres | None = None

    @contextmanager
    def running(self) -> Iterator[LocalSystem]:
        """Start everything; stop every child (server, dataflow, broker) on the way out."""
        with ExitStack() as stack:
            # The configured broker port when it is free: a broker already there (another
            # demo's) does not stop this one.
            broker_port = port_or_free("127.0.0.1", self.settings.kafka.embedded_broker_port)
            kafka = stack.enter_context(
                kafka_with_topics(self.settings, broker_port, self._announce_kafka)
            )
            if kafka.broker is not None:
                # Stopped here to report its exit code; kafka_with_topics finds it stopped.
                stack.callback(self._stop_broker, kafka.broker)
            self.broker = kafka.broker
            self.bootstrap = kafka.bootstrap
            # The children are told the embedded broker's port, not its address: the server
            # then knows it writes to the embedded broker, and keeps its budget.
            kafka_env = (
                {
                    "FACESTREAM_KAFKA_BOOTSTRAP": "",
                    "FACESTREAM_EMBEDDED_BROKER_PORT": str(broker_port),
                }
                if kafka.broker is not None
                else {"FACESTREAM_KAFKA_BOOTSTRAP": self.bootstrap}
            )
            env = child_environment(
                **self.env,
                **kafka_env,
                **self._galleries(stack),
                FACESTREAM_GRPC_ADDRESS=self.address,
                DEEPFACE_HOME=str(self.deepface_home),
            )
            stack.callback(self._stop_children)
            # The children run in the user's folder (cwd=None), not the project's: relative
            # paths in the user's settings (TLS files, weights) mean what they meant there.
            for index, args in enumerate(self.dataflows):
                name = "dataflow" if len(self.dataflows) == 1 else f"dataflow-{index}"
                port = self._metrics_port(name, "FACESTREAM_DATAFLOW_METRICS_PORT")
                dataflow_env = {**env, "FACESTREAM_DATAFLOW_METRICS_PORT": str(port)}
                self._started(DataflowProcess(dataflow_env, *args, name=name, cwd=None))
            port = self._metrics_port("grpc-server", "FACESTREAM_METRICS_PORT")
            server_env = {**env, "FACESTREAM_METRICS_PORT": str(port)}
            self._started(ServerProcess(server_env, cwd=None))
            yield self

    def _galleries(self, stack: ExitStack) -> dict[str, str]:
        """The gallery store the children use: FACESTREAM_GALLERY_DSN's, or the embedded
        PostgreSQL started here (stopped on the way out). Without either (its wheel not
        installed, or it fails to start), the system runs without recognition, and says so."""
        galleries = self.settings.galleries
        if galleries.dsn:
            say("galleries: the PostgreSQL of FACESTREAM_GALLERY_DSN")
            return {}
        database = EmbeddedPostgres(galleries.gallery_dir)
        try:
            database.start()
        except GalleryStoreError as error:
            say(f"galleries: none, recognition is off ({error.message})")
            return {}
        stack.callback(self._stop_gallery_database, database)
        self.gallery_database = database
        say(f"galleries: embedded PostgreSQL in {database.folder} (pid {database.pid})")
        return {"FACESTREAM_GALLERY_DSN": database.dsn}

    @staticmethod
    def _stop_gallery_database(database: EmbeddedPostgres) -> None:
        code = database.stop()
        say(f"galleries: stopped (pid {database.pid}, exit code {code})")

    def _metrics_port(self, child: str, variable: str) -> int:
        """The metrics port of one child: as configured when that port is free, another
        free one otherwise (every child needs its own); 0 stays 0 (no endpoint)."""
        settings = self.settings
        configured = {
            "FACESTREAM_METRICS_PORT": settings.observability.metrics_port,
            "FACESTREAM_DATAFLOW_METRICS_PORT": settings.observability.dataflow_metrics_port,
        }[variable]
        configured = int(self.env.get(variable, configured))
        if configured == 0:
            return 0
        if configured in self.metrics_ports.values():
            port = free_port()
        else:
            port = port_or_free(settings.observability.metrics_host, configured)
        self.metrics_ports[child] = port
        return port

    @property
    def metrics_urls(self) -> dict[str, str]:
        """Each child's /metrics endpoint."""
        host = self.settings.observability.metrics_host
        return {
            child: f"http://{host}:{port}/metrics" for child, port in self.metrics_ports.items()
        }

    @staticmethod
    def _announce_kafka(kafka: Kafka) -> None:
        if kafka.broker is None:
            say(f"kafka: using {kafka.bootstrap} (FACESTREAM_KAFKA_BOOTSTRAP)")
        else:
            broker = kafka.broker
            say(f"broker: embedded, on {broker.bootstrap} (pid {broker.pid}, in memory)")

    def _started(self, child: ChildProcess) -> None:
        self.children.append(child)
        shown = " ".join(["python", *child.argv[1:]])  # not this venv's long path
        say(f"{child.name}: {shown} (pid {child.pid})")

    def _stop_children(self) -> None:
        # The server first, so no new request arrives; then the dataflow (SIGINT is how
        # Bytewax is asked to stop), each by its pid, killed if it does not end in time.
        for child in reversed(self.children):
            dataflow = isinstance(child, DataflowProcess)
            code = child.stop(signal.SIGINT if dataflow else signal.SIGTERM)
            say(f"{child.name}: stopped (pid {child.pid}, exit code {code})")

    @staticmethod
    def _stop_broker(broker: EmbeddedBroker) -> None:
        code = broker.stop()
        say(f"broker: stopped (pid {broker.pid}, exit code {code})")

    def check(self) -> None:
        """Raise LocalSystemError with its log when a child has exited."""
        broker = self.broker
        if broker is not None and not broker.running():
            raise LocalSystemError(
                f"the embedded broker (pid {broker.pid}) exited with code {broker.exit_code}: "
                "the records it held in memory are lost with it, requests not yet answered "
                "among them (a real Kafka, FACESTREAM_KAFKA_BOOTSTRAP, keeps them on disk). "
                f"Its last lines:\n{broker.log_tail()}"
            )
        for child in self.children:
            if not child.running():
                raise LocalSystemError(
                    f"the {child.name} (pid {child.pid}) exited with code "
                    f"{child.process.returncode}. Its last lines:\n{child.log_tail()}"
                )

    def supervise(self, work: Callable[[], T], timeout: float, what: str) -> T:
        """Run `work` in a thread and wait for it, checking the children meanwhile."""
        outcome: list[T] = []
        failure: list[BaseException] = []

        def run() -> None:
            try:
                outcome.append(work())
            except BaseException as error:  # handed to the waiting thread below
                failure.append(error)

        thread = threading.Thread(target=run, name=what, daemon=True)
        thread.start()
        deadline = time.monotonic() + timeout
        while thread.is_alive():
            thread.join(0.2)
            self.check()
            if time.monotonic() > deadline:
                raise LocalSystemError(f"timed out after {timeout:.0f} s waiting for {what}")
        if failure:
            raise failure[0]
        return outcome[0]


def wait_serving(system: LocalSystem, client: AnalyzeClient) -> None:
    """Return once the server is SERVING; LocalSystemError if a child dies or it takes
    too long."""

    def serving() -> bool:
        system.check()
        try:
            return client.health(timeout=1) == health_pb2.HealthCheckResponse.SERVING
        except grpc.RpcError:  # not listening yet
            return False

    try:
        wait_until(serving, HEALTH_TIMEOUT, "the gRPC server to be SERVING", poll=0.2)
    except WaitTimeoutError as error:
        raise LocalSystemError(str(error)) from None


def wait_first_result(system: LocalSystem, client: AnalyzeClient, run_id: str) -> None:
    """Return once the dataflow has answered a warm-up image (its models are loaded)."""

    def warm_up() -> object:
        return client.analyze(
            warmup_image(), request_id=f"{run_id}-warmup", timeout=FIRST_RESULT_TIMEOUT
        )

    started = time.monotonic()
    try:
        system.supervise(warm_up, FIRST_RESULT_TIMEOUT + 5, "the dataflow's first result")
    except grpc.RpcError as error:
        raise LocalSystemError(
            f"the warm-up request failed: {describe_rpc_error(error)}"
        ) from error
    say(f"dataflow: ready ({time.monotonic() - started:.0f} s to load the models and answer)")


def check_client_credentials(settings: Settings) -> None:
    """LocalSystemError, before anything starts, when the server will want credentials that
    this process's own client (the warm-up, the demo) does not have."""
    if (settings.auth.auth_file or settings.auth.auth_tokens) and not (
        settings.client.client_token.get_secret_value()
    ):
        raise LocalSystemError(
            "authentication is on (FACESTREAM_AUTH_FILE or FACESTREAM_AUTH_TOKENS), so the "
            "warm-up call needs a token: set FACESTREAM_CLIENT_TOKEN to one whose principal "
            "has the scopes analyze:submit and results:read"
        )
    if settings.tls.certificate is not None and settings.tls.tls_ca is None:
        raise LocalSystemError(
            "TLS is on (FACESTREAM_TLS_CERT), so the warm-up call must trust the server: set "
            "FACESTREAM_TLS_CA to the CA that signed its certificate (valid for 127.0.0.1)"
        )


@contextmanager
def ready_system(
    settings: Settings, deepface_home: Path, run_id: str, env: Mapping[str, str] | None = None
) -> Iterator[tuple[LocalSystem, AnalyzeClient]]:
    """The local system started (`env` given to its children), SERVING and warm (its
    address and metrics endpoints said), and a client of it with the configured client
    credentials (FACESTREAM_CLIENT_TOKEN, FACESTREAM_TLS_CA); everything stopped on the way
    out."""
    check_client_credentials(settings)
    with (
        LocalSystem(settings, deepface_home, env=env).running() as system,
        client_for(settings, system.address) as client,
    ):
        wait_serving(system, client)
        say(f"grpc-server: SERVING on {system.address}")
        for child, url in system.metrics_urls.items():
            say(f"{child}: metrics on {url}")
        wait_first_result(system, client, run_id)
        yield system, client
