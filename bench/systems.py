"""The systems `make bench` measures side by side: DeepFace's own gRPC server as 1 and 2
processes, facestream running exact and fast, started once for the sections that need them
(`RunningSystems`), and how they are driven in turn (`interleaved`, `RoundRobin`) with each
side's share of the cores."""

from __future__ import annotations

import itertools
import os
import shutil
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import ExitStack, contextmanager
from functools import partial
from pathlib import Path
from typing import Any, Protocol

import numpy as np

from apps.broker import free_port
from apps.launch import PROJECT_ROOT, QUIET
from apps.local_system import LocalSystem, wait_first_result, wait_serving, warmup_image
from apps.processes import ChildProcess, memory_mb, wait_until
from bench.load import LoadRun
from bench.peer_server import peer_analyze, peer_stub
from bench.sections import Inputs, SectionSkippedError, say
from bench.workload import MODES
from di import Settings, child_environment
from facestream.client import AnalyzeClient
from facestream.models import (
    ATTRIBUTE_ACTIONS,
)


class RoundRobin:
    """A client-side round robin over peer servers: each call goes to the next stub."""

    def __init__(self, stubs: Sequence[Any], detector_backend: str = "opencv") -> None:
        self._stubs = itertools.cycle(stubs)
        self._lock = threading.Lock()
        self._detector_backend = detector_backend
        self.servers = len(stubs)

    def __call__(self, image: bytes) -> int:
        with self._lock:
            stub = next(self._stubs)
        return peer_analyze(
            stub, image, list(ATTRIBUTE_ACTIONS), detector_backend=self._detector_backend
        )


# Peer servers (their stubs and processes), and a running facestream system with its
# service: one Analyze call (an image, the detector or "" for the deployment's), its faces.
Peers = list[tuple[Any, ChildProcess]]


class Service(Protocol):
    def __call__(self, image: bytes, detector_backend: str = "") -> int: ...


System = tuple[LocalSystem, Service]


@contextmanager
def peer_servers(home: Path, count: int, workers: int, warmup: bytes) -> Iterator[Peers]:
    """`count` DeepFace gRPC server processes on 127.0.0.1, each warmed with `warmup` (an
    image with a face: the peer fails on one without); their stubs and processes."""
    env = child_environment(DEEPFACE_HOME=str(home), **QUIET)
    with ExitStack() as stack:
        servers = []
        for index in range(count):
            port = free_port()
            server = ChildProcess(
                f"peer-{index}",
                [sys.executable, "-m", "bench.peer_server", str(port), str(workers)],
                env,
                cwd=PROJECT_ROOT,
            )
            stack.callback(server.stop)
            servers.append((port, server))
        peers = [(peer_stub(f"127.0.0.1:{port}"), server) for port, server in servers]
        for stub, server in peers:
            warm = partial(RoundRobin([stub]), warmup)
            wait_until(partial(_answered, warm, server), 300, f"{server.name} to answer", 0.5)
        yield peers


def _answered(call: Callable[[], int], server: ChildProcess) -> bool:
    """True once `call` gets an answer from `server`; SystemExit if the server has exited."""
    import grpc

    if not server.running():
        raise RuntimeError(f"{server.name} exited:\n{server.log_tail()}")
    try:
        call()
    except grpc.RpcError:
        return False
    return True


@contextmanager
def facestream_system(
    settings: Settings,
    home: Path,
    dataflows: Sequence[Sequence[str]],
    mode: str,
    env: dict[str, str] | None = None,
) -> Iterator[System]:
    """A facestream system of its own (broker, server, dataflows) in `mode` (and `env`),
    warm; its service: one Analyze call, the number of faces."""
    own = settings.model_copy(
        update={
            "server": settings.server.model_copy(
                update={"grpc_address": f"127.0.0.1:{free_port()}"}
            ),
            "kafka": settings.kafka.model_copy(update={"embedded_broker_port": free_port()}),
        }
    )
    system = LocalSystem(own, home, dataflows, {**QUIET, **MODES[mode], **(env or {})})
    with system.running(), AnalyzeClient(system.address) as client:
        wait_serving(system, client)
        wait_first_result(system, client, f"bench-{time.time_ns()}")

        def service(image: bytes, detector_backend: str = "") -> int:
            return len(client.analyze(image, detector_backend=detector_backend, timeout=900).faces)

        service(warmup_image())  # every worker's models are warm after the first batch
        yield system, service


class DataflowTreePeaks:
    """On a thread of its own, every SAMPLE_S: the resident memory (VmRSS) of each dataflow
    process this one started, together with its child processes (its models convert in
    children); the largest sum seen per dataflow (MB, by pid)."""

    SAMPLE_S = 0.1

    def __init__(self) -> None:
        self.peaks: dict[int, float] = {}
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._sample, name="tree-peaks", daemon=True)
        self._thread.start()

    def _sample(self) -> None:
        import psutil

        while not self._stop.wait(self.SAMPLE_S):
            for process in psutil.Process().children(recursive=True):
                try:
                    if "bytewax.run" not in process.cmdline():
                        continue
                    tree = [process, *process.children(recursive=True)]
                    total = sum(memory_mb(member.pid) for member in tree)
                except (psutil.Error, OSError, ValueError):  # one ended while being read
                    continue
                self.peaks[process.pid] = max(total, self.peaks.get(process.pid, 0.0))

    def stop(self) -> dict[int, float]:
        self._stop.set()
        self._thread.join()
        return self.peaks


def first_start(settings: Settings, home: Path, mode: str) -> dict[str, Any]:
    """A `mode` system started on an empty engine cache, as on a new machine: the dataflow
    converts (and in int8, quantizes) its models, in child processes, before it answers.
    Its peak memory with those children's (the larger of its own peak and the sampled peak
    of its process tree) and the seconds to its first answer; the conversions are then kept
    in the configured cache, so that the systems measured after it start as they do every
    other time."""
    cache = settings.analysis.engine_cache_dir
    with tempfile.TemporaryDirectory(prefix="facestream-bench-cache-") as empty:
        started = time.monotonic()
        env = {"FACESTREAM_ENGINE_CACHE_DIR": empty}
        trees = DataflowTreePeaks()
        with facestream_system(settings, home, [["-w", "1"]], mode, env) as (system, _):
            seconds = time.monotonic() - started
            peaks = trees.stop()
            rss = [
                max(memory_mb(c.pid, "VmHWM"), peaks.get(c.pid, 0.0))
                for c in system.children
                if c.name.startswith("dataflow")
            ]
        cache.mkdir(parents=True, exist_ok=True)
        for entry in Path(empty).iterdir():
            if (
                entry.is_dir()
                and not entry.name.startswith(".")
                and not (cache / entry.name).exists()
            ):
                shutil.copytree(entry, cache / entry.name)
    return {"peak_rss_mb": rss, "seconds_to_first_answer": seconds}


def cpu_seconds(pid: int) -> float:
    """CPU seconds (user + system) process `pid` has used so far; 0 once it has ended."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except (FileNotFoundError, ProcessLookupError):
        return 0.0
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


class RunningSystems:
    """The peers and facestream's exact and fast systems (and exact without tracking, for
    the video), started on first use and shared by the sections that measure them."""

    def __init__(self, inputs: Inputs) -> None:
        self._inputs = inputs
        self._stack = ExitStack()
        self._started: tuple[Peers, System, System] | None = None
        self._untracked: LocalSystem | None = None
        self._failed: str = ""
        self.first_start: dict[str, Any] = {}

    def started(self) -> tuple[Peers, System, System]:
        """The peers, exact and fast, started (each mode's first start measured before)."""
        if self._failed:
            raise SectionSkippedError(f"the systems did not start: {self._failed}")
        if self._started is None:
            settings, args, images = self._inputs.settings, self._inputs.args, self._inputs.images
            home = settings.models.deepface_home
            try:
                for mode in MODES:
                    say(f"bench: {mode} mode's first start, on an empty engine cache")
                    self.first_start[mode] = first_start(settings, home, mode)
                stack = self._stack
                peers = stack.enter_context(peer_servers(home, 2, args.peer_workers, images[0]))
                exact = stack.enter_context(
                    facestream_system(settings, home, [["-w", "1"]], "exact")
                )
                fast = stack.enter_context(facestream_system(settings, home, [["-w", "1"]], "fast"))
            except Exception as error:
                self._failed = f"{type(error).__name__}: {error}"[:2000]
                raise
            self._started = (peers, exact, fast)
        return self._started

    def untracked(self) -> LocalSystem:
        """facestream exact with tracking off (every face of every frame analysed)."""
        if self._untracked is None:
            settings = self._inputs.settings
            system, _ = self._stack.enter_context(
                facestream_system(
                    settings, settings.models.deepface_home, [["-w", "1"]], "exact", UNTRACKED
                )
            )
            self._untracked = system
        return self._untracked

    def close(self) -> None:
        self._stack.close()


def face_counts(service: Callable[[bytes], int], images: Sequence[bytes]) -> list[int]:
    """The number of faces `service` finds in each image."""
    return [service(image) for image in images]


def interleaved(
    services: dict[str, Callable[[], LoadRun]], repeat: int
) -> dict[str, list[LoadRun]]:
    """Each named run `repeat` times, in turn (A B C A B C ...), so that drift of the
    machine over the minutes hits every configuration alike."""
    runs: dict[str, list[LoadRun]] = {name: [] for name in services}
    for round_ in range(repeat):
        for name, run in services.items():
            say(f"bench: {name}, run {round_ + 1} of {repeat}")
            runs[name].append(run())
            say(f"bench: {name} {runs[name][-1].faces_per_s:.2f} faces/s")
    return runs


def pooled_latency(runs: Sequence[LoadRun], rate: float) -> dict[str, Any]:
    """p50/p99 over every call of these open-loop runs together."""
    latencies = [latency for run in runs for latency in run.latencies]
    return {
        "images_per_s": rate,
        "calls": len(latencies),
        "p50_s": float(np.percentile(latencies, 50)),
        "p99_s": float(np.percentile(latencies, 99)),
    }


def p99_ratio_interval(ours: Sequence[float], theirs: Sequence[float]) -> list[float]:
    """A 95% bootstrap interval of p99(ours) / p99(theirs): how far the ratio of two p99s of
    ~50 calls each (each near its slowest call) moves from resampling alone."""
    rng = np.random.default_rng(0)
    a, b = np.asarray(ours), np.asarray(theirs)
    ratios = [
        np.percentile(rng.choice(a, a.size), 99) / np.percentile(rng.choice(b, b.size), 99)
        for _ in range(2000)
    ]
    return [float(v) for v in np.percentile(ratios, [2.5, 97.5])]


def peer_services(peers: Peers, detector_backend: str = "opencv") -> dict[str, RoundRobin]:
    """The two peers measured: the first server alone, and every server in round robin."""
    return {
        "peer_1_process": RoundRobin([stub for stub, _ in peers[:1]], detector_backend),
        "peer_2_processes": RoundRobin([stub for stub, _ in peers], detector_backend),
    }


# facestream without tracking, for the video row: every face of every frame analysed.
UNTRACKED = {"FACESTREAM_TRACKING_REANALYSE_AFTER": "0"}


def strongest_peer(saturated: dict[str, dict[str, Any]]) -> str:
    """The name of the peer with the most faces/s among saturated runs."""
    peers = [name for name in saturated if name.startswith("peer")]
    return max(peers, key=lambda name: saturated[name]["faces_per_s"])


def processes_of(peers: Peers, exact: System, fast: System) -> dict[str, list[int]]:
    """The pids of each side of the headline, and of this process (the load generator)."""
    return {
        "load_generator": [os.getpid()],
        "peers": [server.pid for _, server in peers],
        "facestream_exact": [child.pid for child in exact[0].children],
        "facestream_fast": [child.pid for child in fast[0].children],
    }


def with_cpu_shares(
    run: Callable[[], LoadRun], pids: dict[str, list[int]], shares: list[dict[str, float]]
) -> Callable[[], LoadRun]:
    """`run`, noting into `shares` how much of the machine's cores each group of `pids`
    used during it (1.0: every core all the time)."""

    def measured() -> LoadRun:
        before = {name: sum(cpu_seconds(p) for p in group) for name, group in pids.items()}
        started = time.monotonic()
        done = run()
        wall = (time.monotonic() - started) * len(os.sched_getaffinity(0))
        shares.append(
            {
                name: (sum(cpu_seconds(p) for p in group) - before[name]) / wall
                for name, group in pids.items()
            }
        )
        return done

    return measured


def dataflow_rss(system: LocalSystem) -> list[float]:
    """Each dataflow process's peak resident memory (VmHWM), MB."""
    return [memory_mb(c.pid, "VmHWM") for c in system.children if c.name.startswith("dataflow")]
