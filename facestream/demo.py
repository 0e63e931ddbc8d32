"""`facestream demo`: the whole system on one machine, in one command.

It starts the embedded broker (unless FACESTREAM_KAFKA_BOOTSTRAP names a Kafka), the
dataflow (`python -m bytewax.run dataflow -w 2`) and the gRPC server as child processes,
waits until they answer, sends the images through the gRPC client, prints a table and a
summary, writes a report folder, and stops every child on the way out, Ctrl-C included.

Like `facestream.cli`, this is an entry point: it composes the core, the settings and the
gRPC client, so it may import `di` and `grpc_server`.
"""

from __future__ import annotations

import signal
import subprocess
import sys
import threading
import time
import uuid
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass
from pathlib import Path
from types import FrameType
from typing import TypeVar

import cv2
import grpc
import numpy as np
from grpc_health.v1 import health_pb2

from di import Settings, child_environment
from facestream.broker import EmbeddedBroker, ensure_topics, free_port, port_is_free, wait_for_kafka
from facestream.image_sources import IMAGE_SUFFIXES, NamedImage, demo_images, folder_images
from facestream.models import (
    SYNTHETIC_WARNING,
    WeightsDownloadError,
    WeightState,
    check_weights,
    ensure_synthetic_weights,
    synthetic_deepface_home,
    weights_dir_of,
)
from facestream.processes import ChildProcess
from facestream.report import ReportEntry, summarize, write_report
from grpc_server.client import AnalyzeClient
from grpc_server.commands import analyze_images, describe_rpc_error
from grpc_server.result_table import error_row, format_table, result_rows

DEMO_WORKERS = 2
HEALTH_TIMEOUT = 120.0
# The first result waits for the dataflow to build and warm four models (about a minute
# on 2 cores); a cold machine is slower.
FIRST_RESULT_TIMEOUT = 900.0
T = TypeVar("T")


class DemoError(RuntimeError):
    """The demo cannot go on; the message says why and what to do."""


@dataclass(frozen=True)
class DemoOptions:
    """What `facestream demo` was asked for."""

    images: Path | None  # None: the public demo set
    report: Path
    download: bool  # may DeepFace download missing weights?
    timeout: float  # seconds per image
    concurrency: int


def say(message: str) -> None:
    print(message, flush=True)


def choose_weights(
    settings: Settings,
    allow_download: bool,
    download: Callable[[Path], object] | None = None,
) -> tuple[Path, bool]:
    """The DEEPFACE_HOME the dataflow should use, and whether its weights are synthetic.

    Weights already in DEEPFACE_HOME are used as they are. Missing ones are downloaded
    (DeepFace's own sources) when allowed; when that is not allowed or fails, synthetic
    weights are used from the user's cache (made there if needed), never mixed into
    DEEPFACE_HOME.
    """
    download = download or (lambda _folder: download_in_child(settings))
    actions = check_weights(settings.weights_dir, settings.actions, ())
    missing = [s for s in actions if not s.usable]
    if not missing:
        synthetic = any(s.state is WeightState.SYNTHETIC for s in actions)
        say(f"weights: {'SYNTHETIC' if synthetic else 'real'} ones in {settings.weights_dir}")
        return settings.deepface_home, synthetic
    names = ", ".join(s.path.name for s in missing)
    say(f"weights: real DeepFace weights are missing in {settings.weights_dir}: {names}")
    if allow_download:
        say("weights: downloading them with DeepFace (about 1.6 GB) ...")
        try:
            download(settings.weights_dir)
            say("weights: downloaded; using the real ones")
            return settings.deepface_home, False
        except WeightsDownloadError as error:
            say(f"weights: the download failed ({str(error).splitlines()[0][:200]})")
    else:
        say("weights: downloading is off (--no-download)")
    home = synthetic_deepface_home()
    folder = weights_dir_of(home)
    say(f"weights: SYNTHETIC weights in {folder} (made on first use: ~1.6 GB, a minute)")
    ensure_synthetic_weights(folder, settings.actions)
    say(f"weights: using SYNTHETIC weights from {folder}: {SYNTHETIC_WARNING}.")
    say(
        "weights: for real attributes, put DeepFace's weight files in "
        f"{settings.weights_dir} (see the README, 'Model weights')."
    )
    return home, True


def download_in_child(settings: Settings) -> None:
    """`facestream models download` in a child process, so that TensorFlow's and DeepFace's
    start-up chatter stays out of the demo's output; WeightsDownloadError when it fails."""
    command = [sys.executable, "-m", "facestream.cli", "models", "download"]
    env = child_environment(DEEPFACE_HOME=str(settings.deepface_home), TF_CPP_MIN_LOG_LEVEL="3")
    done = subprocess.run(command, env=env, capture_output=True, text=True, check=False)
    if done.returncode != 0:
        lines = (done.stderr.strip() or done.stdout.strip() or "no output").splitlines()
        raise WeightsDownloadError(lines[-1].removeprefix("error: download failed: "))


def warmup_image() -> bytes:
    """A small grey picture without a face: its result proves the pipeline answers."""
    ok, encoded = cv2.imencode(".png", np.full((64, 64, 3), 128, np.uint8))
    assert ok
    return encoded.tobytes()


def _loopback_address(configured: str) -> str:
    host, _, port = configured.rpartition(":")
    if host in ("127.0.0.1", "localhost") and port_is_free("127.0.0.1", int(port)):
        return f"127.0.0.1:{port}"
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
        dataflows: Sequence[Sequence[str]] = (("-w", str(DEMO_WORKERS)),),
        env: Mapping[str, str] | None = None,
    ) -> None:
        self.settings = settings
        self.deepface_home = deepface_home
        self.dataflows = dataflows
        self.env = dict(env or {})
        self.children: list[ChildProcess] = []
        self.address = _loopback_address(settings.grpc_address)
        self.bootstrap = settings.bootstrap_servers
        self.metrics_ports: dict[str, int] = {}  # child name -> its metrics port

    @contextmanager
    def running(self) -> Iterator[LocalSystem]:
        """Start everything; stop every child (server, dataflow, broker) on the way out."""
        with ExitStack() as stack:
            self.bootstrap = self._kafka(stack)
            ensure_topics(
                self.bootstrap, self.settings.topics, security=self.settings.kafka_security
            )
            env = child_environment(
                **self.env,
                FACESTREAM_KAFKA_BOOTSTRAP=self.bootstrap,
                FACESTREAM_GRPC_ADDRESS=self.address,
                DEEPFACE_HOME=str(self.deepface_home),
            )
            stack.callback(self._stop_children)
            for index, args in enumerate(self.dataflows):
                name = "dataflow" if len(self.dataflows) == 1 else f"dataflow-{index}"
                port = self._metrics_port(name, "FACESTREAM_DATAFLOW_METRICS_PORT")
                self._start(
                    name,
                    [sys.executable, "-m", "bytewax.run", "dataflow", *args],
                    {**env, "FACESTREAM_DATAFLOW_METRICS_PORT": str(port)},
                )
            port = self._metrics_port("grpc-server", "FACESTREAM_METRICS_PORT")
            self._start(
                "grpc-server",
                [sys.executable, "-m", "grpc_server"],
                {**env, "FACESTREAM_METRICS_PORT": str(port)},
            )
            yield self

    def _metrics_port(self, child: str, variable: str) -> int:
        """The metrics port of one child: as configured when that port is free, another
        free one otherwise (every child needs its own); 0 stays 0 (no endpoint)."""
        settings = self.settings
        configured = {
            "FACESTREAM_METRICS_PORT": settings.metrics_port,
            "FACESTREAM_DATAFLOW_METRICS_PORT": settings.dataflow_metrics_port,
        }[variable]
        configured = int(self.env.get(variable, configured))
        if configured == 0:
            return 0
        port = configured
        if port in self.metrics_ports.values() or not port_is_free(settings.metrics_host, port):
            port = free_port()
        self.metrics_ports[child] = port
        return port

    @property
    def metrics_urls(self) -> dict[str, str]:
        """Each child's /metrics endpoint."""
        host = self.settings.metrics_host
        return {
            child: f"http://{host}:{port}/metrics" for child, port in self.metrics_ports.items()
        }

    def _kafka(self, stack: ExitStack) -> str:
        settings = self.settings
        if not settings.uses_embedded_broker:
            say(f"kafka: using {settings.bootstrap_servers} (FACESTREAM_KAFKA_BOOTSTRAP)")
            wait_for_kafka(settings.bootstrap_servers, timeout=30, security=settings.kafka_security)
            return settings.bootstrap_servers
        port = settings.embedded_broker_port
        if not port_is_free("127.0.0.1", port):
            port = free_port()
        broker = EmbeddedBroker(port)
        stack.callback(self._stop_broker, broker)
        broker.start()
        say(f"broker: embedded, on {broker.bootstrap} (pid {broker.pid}, in memory)")
        return broker.bootstrap

    def _start(self, name: str, argv: list[str], env: dict[str, str]) -> None:
        child = ChildProcess(name, argv, env)
        self.children.append(child)
        shown = " ".join(["python", *argv[1:]])
        say(f"{name}: {shown} (pid {child.pid})")

    def _stop_children(self) -> None:
        # The server first, so no new request arrives; then the dataflow (SIGINT is how
        # Bytewax is asked to stop), each by its pid, killed if it does not end in time.
        for child in reversed(self.children):
            dataflow = child.name.startswith("dataflow")
            code = child.stop(signal.SIGINT if dataflow else signal.SIGTERM)
            say(f"{child.name}: stopped (pid {child.pid}, exit code {code})")

    @staticmethod
    def _stop_broker(broker: EmbeddedBroker) -> None:
        code = broker.stop()
        say(f"broker: stopped (pid {broker.pid}, exit code {code})")

    def check(self) -> None:
        """Raise DemoError with its log when a child has exited."""
        for child in self.children:
            if not child.running():
                raise DemoError(
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
                raise DemoError(f"timed out after {timeout:.0f} s waiting for {what}")
        if failure:
            raise failure[0]
        return outcome[0]


def wait_serving(system: LocalSystem, client: AnalyzeClient) -> None:
    """Return once the server is SERVING; DemoError if a child dies or it takes too long."""
    deadline = time.monotonic() + HEALTH_TIMEOUT
    while True:
        system.check()
        try:
            if client.health(timeout=1) == health_pb2.HealthCheckResponse.SERVING:
                return
        except grpc.RpcError:  # not listening yet
            pass
        if time.monotonic() > deadline:
            raise DemoError(f"the gRPC server was not SERVING within {HEALTH_TIMEOUT:.0f} s")
        time.sleep(0.2)


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
        raise DemoError(f"the warm-up request failed: {describe_rpc_error(error)}") from error
    say(f"dataflow: ready ({time.monotonic() - started:.0f} s to load the models and answer)")


def _load_images(options: DemoOptions) -> list[NamedImage]:
    if options.images is None:
        say("images: the public demo set (scikit-image photos, public domain / CC0) + a group")
        try:
            return demo_images()
        except FileNotFoundError as error:
            raise DemoError(str(error)) from None
    if not options.images.exists():
        raise DemoError(f"{options.images}: no such file or folder")
    images = folder_images(options.images)
    if not images:
        raise DemoError(f"{options.images}: no image files ({', '.join(sorted(IMAGE_SUFFIXES))})")
    say(f"images: {len(images)} from {options.images}")
    return images


def _loader(image: NamedImage) -> Callable[[], NamedImage]:
    return lambda: image


def run(settings: Settings, options: DemoOptions) -> int:
    """The demo; its exit code (0 when every image got a result)."""
    say("facestream demo: broker -> dataflow -> gRPC server, all on this machine")
    images = _load_images(options)
    home, synthetic = choose_weights(settings, options.download)
    run_id = f"demo-{uuid.uuid4().hex[:8]}"
    with (
        LocalSystem(settings, home).running() as system,
        AnalyzeClient(system.address) as client,
    ):
        wait_serving(system, client)
        say(f"grpc-server: SERVING on {system.address}")
        for child, url in system.metrics_urls.items():
            say(f"{child}: metrics on {url}")
        wait_first_result(system, client, run_id)
        ids = [f"{run_id}-{index}" for index in range(len(images))]
        started = time.monotonic()
        loaders = [_loader(image) for image in images]
        analyses = system.supervise(
            lambda: analyze_images(client, loaders, options.timeout, options.concurrency, ids),
            options.timeout * len(images) + 30,
            "the results",
        )
        seconds = time.monotonic() - started
    entries = [
        ReportEntry(image.name, image.data, a.result, a.error, a.seconds)
        for image, a in zip(images, analyses, strict=True)
    ]
    summary = summarize(entries, seconds)
    _print_results(entries, synthetic or summary.synthetic_weights)
    say("")
    say("Summary")
    for line in summary.lines():
        say(f"  {line}")
    index = write_report(options.report, entries, summary)
    say(f"report: {index.resolve()}")
    return 0 if summary.answered == summary.images else 1


def _print_results(entries: list[ReportEntry], synthetic: bool) -> None:
    rows: list[tuple[str, ...]] = []
    for entry in entries:
        if entry.result is None:
            rows.append(error_row(entry.name, entry.error))
        else:
            rows.extend(result_rows(entry.name, entry.result))
    say("")
    say(f"Results ({SYNTHETIC_WARNING})" if synthetic else "Results")
    say(format_table(rows))


def _interrupt(signum: int, _frame: FrameType | None) -> None:
    raise KeyboardInterrupt(signal.Signals(signum).name)


def main(settings: Settings, options: DemoOptions) -> int:
    """Run the demo; Ctrl-C or SIGTERM stops it (and its children) with exit code 130."""
    # Set for SIGINT too: a shell that starts the demo in the background makes it ignore
    # SIGINT, and the demo must stop its children whoever asks.
    signal.signal(signal.SIGINT, _interrupt)
    signal.signal(signal.SIGTERM, _interrupt)
    try:
        return run(settings, options)
    except KeyboardInterrupt:
        say("interrupted: every child process was stopped")
        return 130
    except DemoError as error:
        print(f"error: {error}", file=sys.stderr)
        return 1
