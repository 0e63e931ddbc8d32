"""`make bench`: facestream against the ceiling and against DeepFace's own gRPC server, side
by side in one run, on the same images, weights and load generator.

The run is made of sections (SECTIONS, in order; `--only` chooses some), each saved into
bench/results/latest.json as soon as it is measured; one that fails is reported with its
error and the rest still run (bench/sections.py). They measure:

- headline: DeepFace's gRPC server (deepface 0.0.103) on 127.0.0.1, its Analyze RPC, as 1
  process and as 2 processes (one per core) with client-side round robin, against
  facestream's Analyze end to end (gRPC -> Kafka -> Bytewax -> results -> reply), `-w 1`,
  exact mode (detection at full size, as the peer does) and fast mode, all running at once
  and measured in turn, A B A B, so that drift hits all of them; every image's face count
  checked against the peer's; latency p50/p99 at half the strongest peer's saturated load;
  each side's CPU seconds per run (the load generator's included); peak memory of each
  process, the dataflows' first start (converting and quantizing) apart from steady state;
- crops: the photos' face crops with detector `skip` on every side;
- video: the demo's composed video sampled at 5 fps, the strongest peer called once per
  frame against facestream fed by `stream_video` (tracking on and off, fast), then a live
  5 fps camera; video_stages: seconds per frame in detection and analysis, in process;
- shapes: facestream's shapes (exact): `-w 1`, `-w 2`, 2 processes x `-w 1`, `-w 4`, peak
  RSS, and the exact ceiling (the dataflow's steps in one process) in the same rotation;
- stages, ceiling, engines, embedding, pipeline_parts, overlap: in-process measures, each in
  a child process of its own; ingest: `python -m bench.submit_throughput`; di: an operator's
  cost to reach its singletons.

Usage: python -m bench.suite [--repeat N] [--rounds N] [--concurrency C]
       [--only SECTION[,SECTION...]] [--out DIR]
"""

from __future__ import annotations

import argparse
import itertools
import json
import logging
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import timeit
from collections.abc import Callable, Iterator, Sequence
from contextlib import ExitStack, contextmanager
from functools import partial
from pathlib import Path
from typing import Any, Protocol

import cv2
import numpy as np

from apps.broker import free_port
from apps.launch import cluster_args
from apps.local_system import LocalSystem, wait_first_result, wait_serving, warmup_image
from apps.mjpeg_camera import mjpeg_stream
from apps.processes import ChildProcess, WorkerProcess, memory_mb, wait_until
from bench.load import LoadRun, median_run, offer, saturate
from bench.machine import cpu_flags, describe_machine, peak_gflops
from bench.peer_server import peer_analyze, peer_stub
from bench.pipeline_parts import extract_and_analyze, in_process_steps, median_seconds, submissions
from bench.sections import Inputs, Run, Section, SectionSkippedError, prepare_weights, say
from bench.stages import stage_seconds
from bench.tables import table
from bench.targets import unmet
from bench.video import (
    VIDEO_FPS,
    analysed_share,
    carried_agreement,
    live_side,
    sampled_frames,
    stream_pass,
    video_side,
)
from bench.workload import MODES, bench_images, mode_settings
from di import Settings, build_container, child_environment, load_settings
from di.container import calibration_of
from facestream.analyzer import deepface_model, shared_trunk_role
from facestream.calibration import decode_photo
from facestream.client import AnalyzeClient
from facestream.engines import ModelSource, cpu_supports_bf16, make_engine, resolve_precision
from facestream.faces import face_crops
from facestream.models import (
    ACTION_MODELS,
    ACTIONS,
    ATTRIBUTE_ACTIONS,
    WeightState,
    check_weights,
)
from facestream.shared_trunk import VGG_ATTRIBUTES, SharedTrunk
from facestream.v1 import records_pb2

ROOT = Path(__file__).resolve().parent.parent
RESULTS = ROOT / "bench" / "results"
LOUD_CHILDREN = {"TF_CPP_MIN_LOG_LEVEL": "3", "FACESTREAM_LOG_LEVEL": "WARNING"}
SHAPE_LABELS = {"w1": "-w 1", "w2": "-w 2", "p2": "2 processes x -w 1", "w4": "-w 4"}
# VGG-16's convolutional trunk at 224x224: 15.5 G multiply-adds per face.
VGG_TRUNK_GFLOP = 31.0


def ceiling(settings: Settings, images: Sequence[bytes], repeat: int) -> dict[str, Any]:
    """Faces/s of decode + extraction + batched analysis in this process, as the dataflow's
    own steps do it, with no Kafka or gRPC around them."""
    analyzer, logger, limits = in_process_steps(settings)
    jobs = submissions(images)
    side = settings.analysis.detection_max_side
    batch = settings.analysis.batch_size
    extract_and_analyze(jobs, analyzer, limits, logger, batch, side)  # warm-up
    rates: list[float] = []
    for _ in range(repeat):
        started = time.perf_counter()
        faces = extract_and_analyze(jobs, analyzer, limits, logger, batch, side)
        rates.append(faces / (time.perf_counter() - started))
    return {
        "faces_per_s": statistics.median(rates),
        "faces_per_run": faces,
        "runs": repeat,
        "synthetic_weights": analyzer.synthetic_weights,
    }


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
    env = child_environment(DEEPFACE_HOME=str(home), **LOUD_CHILDREN)
    with ExitStack() as stack:
        servers = []
        for index in range(count):
            port = free_port()
            server = ChildProcess(
                f"peer-{index}",
                [sys.executable, "-m", "bench.peer_server", str(port), str(workers)],
                env,
                cwd=ROOT,
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
    system = LocalSystem(own, home, dataflows, {**LOUD_CHILDREN, **MODES[mode], **(env or {})})
    with system.running(), AnalyzeClient(system.address) as client:
        wait_serving(system, client)
        wait_first_result(system, client, f"bench-{time.time_ns()}")

        def service(image: bytes, detector_backend: str = "") -> int:
            return len(client.analyze(image, detector_backend=detector_backend, timeout=900).faces)

        service(warmup_image())  # every worker's models are warm after the first batch
        yield system, service


def first_start(settings: Settings, home: Path, mode: str) -> dict[str, Any]:
    """A `mode` system started on an empty engine cache, as on a new machine: the dataflow
    converts (and in int8, quantizes) its models before it answers. Its peak memory and the
    seconds to its first answer; the conversions are then kept in the configured cache, so
    that the systems measured after it start as they do every other time."""
    cache = settings.analysis.engine_cache_dir
    with tempfile.TemporaryDirectory(prefix="facestream-bench-cache-") as empty:
        started = time.monotonic()
        env = {"FACESTREAM_ENGINE_CACHE_DIR": empty}
        with facestream_system(settings, home, [["-w", "1"]], mode, env) as (system, _):
            seconds = time.monotonic() - started
            rss = _dataflow_rss(system)
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
# Seconds of a live 5 fps camera (the composed video in a loop) held in fast mode.
LIVE_SECONDS = 30.0

# The peer the video row takes when the headline did not run: 2 processes was the stronger
# in every full run on 2 cores (docs/performance.md).
ALONE_PEER = "peer_2_processes"


def strongest_peer(saturated: dict[str, dict[str, Any]]) -> str:
    """The name of the peer with the most faces/s among saturated runs."""
    peers = [name for name in saturated if name.startswith("peer")]
    return max(peers, key=lambda name: saturated[name]["faces_per_s"])


def _processes(peers: Peers, exact: System, fast: System) -> dict[str, list[int]]:
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


def measure_headline(inputs: Inputs, systems: RunningSystems) -> dict[str, Any]:
    """Peers (1 and 2 processes) and facestream (exact, fast), all running, measured in
    turn, with each side's share of the cores in each run; then latency at half the
    strongest peer's load, interleaved too."""
    peers, exact, fast = systems.started()
    images, args = inputs.images, inputs.args
    result: dict[str, Any] = {}
    (exact_system, exact_service), (fast_system, fast_service) = exact, fast
    services: dict[str, Callable[[bytes], int]] = {
        **peer_services(peers),
        "facestream_exact": exact_service,
        "facestream_fast": fast_service,
    }
    say("bench: face counts, image by image")
    counts = {name: face_counts(service, images) for name, service in services.items()}
    result["face_counts"] = counts
    pids = _processes(peers, exact, fast)
    shares: dict[str, list[dict[str, float]]] = {name: [] for name in services}
    runs = interleaved(
        {
            name: with_cpu_shares(
                partial(saturate, service, images, args.rounds, args.concurrency),
                pids,
                shares[name],
            )
            for name, service in services.items()
        },
        args.repeat,
    )
    result["saturated"] = {name: median_run(done) for name, done in runs.items()}
    result["cpu_share"] = {
        name: {group: statistics.median(s[group] for s in taken) for group in pids}
        for name, taken in shares.items()
    }
    strongest = strongest_peer(result["saturated"])
    result["strongest_peer"] = strongest
    faces_per_image = sum(counts[strongest]) / len(images)
    rate = result["saturated"][strongest]["faces_per_s"] / 2 / faces_per_image
    calls = max(args.half_load_calls, len(images))
    say(f"bench: latency at {rate:.2f} images/s ({strongest} and facestream exact)")
    latency = interleaved(
        {
            strongest: partial(offer, services[strongest], images, rate, calls),
            "facestream_exact": partial(offer, exact_service, images, rate, calls),
        },
        2,
    )
    result["half_load"] = {name: pooled_latency(done, rate) for name, done in latency.items()}
    result["half_load_p99_ratio_ci95"] = p99_ratio_interval(
        [t for run in latency["facestream_exact"] for t in run.latencies],
        [t for run in latency[strongest] for t in run.latencies],
    )
    result["half_load_offered_faces_per_s"] = rate * faces_per_image
    result["peak_rss_mb"] = {
        "peer": max(memory_mb(server.pid, "VmHWM") for _, server in peers),
        "facestream_exact": _dataflow_rss(exact_system),
        "facestream_fast": _dataflow_rss(fast_system),
    }
    result["first_start"] = systems.first_start
    return result


def bench_crops(images: Sequence[bytes], detector: str) -> list[bytes]:
    """The faces exact mode extracts from the images with `detector`, aligned and cropped,
    as PNGs."""
    return [crop for image in images for crop in face_crops(decode_photo(image), detector)]


def measure_crops(inputs: Inputs, systems: RunningSystems) -> dict[str, Any]:
    """Face crops sent with detector `skip` to every side (no detection on either): peers
    (1 and 2 processes) and facestream (exact, fast), measured in turn."""
    peers, exact, fast = systems.started()
    args = inputs.args
    crops = bench_crops(inputs.images, inputs.settings.models.detector_backend)
    services: dict[str, Callable[[bytes], int]] = {
        **peer_services(peers, "skip"),
        "facestream_exact": partial(exact[1], detector_backend="skip"),
        "facestream_fast": partial(fast[1], detector_backend="skip"),
    }
    say(f"bench: {len(crops)} face crops, detector skip")
    counts = {name: face_counts(service, crops) for name, service in services.items()}
    if not all(count == [1] * len(crops) for count in counts.values()):
        raise RuntimeError(f"a face crop did not give one face on every side: {counts}")
    runs = interleaved(
        {
            name: partial(saturate, service, crops, args.rounds, args.concurrency)
            for name, service in services.items()
        },
        args.repeat,
    )
    saturated = {name: median_run(done) for name, done in runs.items()}
    strongest = strongest_peer(saturated)
    return {"crops": len(crops), "saturated": saturated, "strongest_peer": strongest}


def measure_video(inputs: Inputs, systems: RunningSystems) -> dict[str, Any]:
    """The composed video, sampled once: the strongest peer of the headline (or ALONE_PEER
    without it) called once per sampled frame (--concurrency calls in flight, as in the
    headline) and each facestream system (exact with and without tracking, fast with
    tracking) fed by `stream_video` (--concurrency frames unanswered), `--repeat` passes
    each, in turn; the carried attributes against the untracked pass; then a live 5 fps
    camera in fast mode."""
    peers_running, exact, fast = systems.started()
    args = inputs.args
    headline = inputs.report.get("headline")
    strongest = headline["strongest_peer"] if headline else ALONE_PEER
    peers = peer_services(peers_running)
    systems_by_name = {
        "facestream_exact": exact[0],
        "facestream_exact_untracked": systems.untracked(),
        "facestream_fast": fast[0],
    }
    results: dict[str, list[records_pb2.AnalysisResult]] = {name: [] for name in systems_by_name}
    with (
        tempfile.TemporaryDirectory(prefix="facestream-bench-video-") as workdir,
        ExitStack() as clients,
    ):
        video, frames = sampled_frames(Path(workdir))
        client = {
            name: clients.enter_context(AnalyzeClient(system.address))
            for name, system in systems_by_name.items()
        }
        say(f"bench: video, {len(frames)} frames sampled ({strongest} and facestream)")

        def facestream_pass(name: str) -> LoadRun:
            first = results[name] if not results[name] else None  # the first pass is kept
            return systems_by_name[name].supervise(
                partial(stream_pass, client[name], str(video.path), args.concurrency, first),
                3600,
                "a video pass",
            )

        runs = interleaved(
            {
                strongest: partial(saturate, peers[strongest], frames, 1, args.concurrency),
                **{name: partial(facestream_pass, name) for name in systems_by_name},
            },
            args.repeat,
        )
        pictures = [cv2.imdecode(np.frombuffer(f, np.uint8), cv2.IMREAD_COLOR) for f in frames]
        say(f"bench: a live {VIDEO_FPS:g} fps camera for {LIVE_SECONDS:.0f} s, fast mode")
        with mjpeg_stream(pictures, fps=VIDEO_FPS) as url:
            live = systems_by_name["facestream_fast"].supervise(
                partial(
                    stream_pass,
                    client["facestream_fast"],
                    url,
                    args.concurrency,
                    seconds=LIVE_SECONDS,
                ),
                3600,
                "a live pass",
            )
    return {
        "source": {
            "frames": video.frame_count,
            "fps": video.fps,
            "seconds": video.frame_count / video.fps,
            "size": list(video.size),
        },
        "sampling_fps": VIDEO_FPS,
        "sampled_frames": len(frames),
        "strongest_peer": strongest,
        "peer_chosen_by": "headline" if headline else "default (no headline in this run)",
        "passes": {name: video_side(done) for name, done in runs.items()},
        "analysed_share": {
            name: analysed_share(results[name])
            for name in systems_by_name
            if "untracked" not in name
        },
        "carried_agreement": carried_agreement(
            results["facestream_exact"], results["facestream_exact_untracked"]
        ),
        "live_fast": live_side([live]),
    }


def measure_video_stages(inputs: Inputs) -> dict[str, Any]:
    """Seconds per sampled frame in detection and analysis, in process, both sides; the
    tracked analysis scaled by the share the video section's exact pass analysed."""
    video = inputs.report.get("video")
    if not video:
        raise SectionSkippedError("it scales by the video section's analysed share: run video too")
    with tempfile.TemporaryDirectory(prefix="facestream-bench-stages-") as workdir:
        _video, frames = sampled_frames(Path(workdir))
        analysed = video["analysed_share"]["facestream_exact"]
        return stage_seconds(frames, mode_settings("exact"), analysed)


def _dataflow_rss(system: LocalSystem) -> list[float]:
    return [memory_mb(c.pid, "VmHWM") for c in system.children if c.name.startswith("dataflow")]


def measure_shapes(inputs: Inputs) -> dict[str, Any]:
    """Dataflow shapes, exact mode: faces/s and peak RSS, and the exact ceiling in the same
    rotation. Only one system fits in memory at a time, so each round starts each shape in
    turn for one saturated run, then measures the ceiling in a process of its own (w1 w2 p2
    w4 ceiling w1 ...): the machine's drift over the minutes hits every shape and the
    ceiling alike, so that their ratio is one of figures taken side by side."""
    settings, images, args = inputs.settings, inputs.images, inputs.args
    home = settings.models.deepface_home
    # Two processes on one machine: each given its share of the cores (docs/operations.md).
    share = {"FACESTREAM_ENGINE_THREADS": str(max(1, len(os.sched_getaffinity(0)) // 2))}
    layouts = {
        "w1": ([["-w", "1"]], {}),
        "w2": ([["-w", "2"]], {}),
        "p2": (cluster_args(2, 1), share),
        "w4": ([["-w", "4"]], {}),
    }
    runs: dict[str, list[LoadRun]] = {name: [] for name in layouts}
    peak_rss: dict[str, list[float]] = {}
    ceilings: list[float] = []
    for round_ in range(args.repeat):
        for name, (dataflows, env) in layouts.items():
            label = SHAPE_LABELS[name]
            say(f"bench: facestream {label}, run {round_ + 1} of {args.repeat}")
            with facestream_system(settings, home, dataflows, "exact", env) as (system, service):
                face_counts(service, images)  # every batch size seen once: steady state
                runs[name].append(
                    system.supervise(
                        partial(saturate, service, images, args.rounds, args.concurrency),
                        3600,
                        "a saturated run",
                    )
                )
                rss = _dataflow_rss(system)
            peak_rss[name] = [max(a, b) for a, b in zip(peak_rss.get(name, rss), rss, strict=True)]
            say(f"bench: facestream {label} {runs[name][-1].faces_per_s:.2f} faces/s")
        say(f"bench: ceiling, exact mode, run {round_ + 1} of {args.repeat}")
        with WorkerProcess("ceiling") as worker:
            found = worker.call(ceiling, mode_settings("exact"), images, args.rounds)
        ceilings.append(found["faces_per_s"])
        say(f"bench: ceiling {ceilings[-1]:.2f} faces/s")
    return {
        "layouts": {
            name: {
                "label": SHAPE_LABELS[name],
                "dataflows": [" ".join(d) for d in dataflows],
                "env": env,
                "saturated": median_run(runs[name]),
                "peak_rss_mb": peak_rss[name],
            }
            for name, (dataflows, env) in layouts.items()
        },
        # Each run: the steps over every image `rounds` times, as a saturated run passes.
        "ceiling_exact": {"faces_per_s": statistics.median(ceilings), "runs": ceilings},
    }


def measure_stages(inputs: Inputs) -> dict[str, Any]:
    """The photos' seconds per picture in detection and in analysis, in process, each mode
    (the peer beside exact)."""
    return {
        mode: stage_seconds(inputs.images, mode_settings(mode), with_peer=mode == "exact")
        for mode in MODES
    }


def measure_ceiling(inputs: Inputs) -> dict[str, Any]:
    """Each mode's own steps in process, no Kafka or gRPC: the most the pipeline could do."""
    return {mode: ceiling(mode_settings(mode), inputs.images, inputs.args.repeat) for mode in MODES}


def measure_engines(inputs: Inputs) -> dict[str, Any]:
    """The VGG trunk (with the three heads) per engine and precision, batches of
    FACESTREAM_BATCH_SIZE faces in this process: s/face and achieved GFLOP/s against peak."""
    settings, repeat = inputs.settings, inputs.args.repeat
    models = {action: deepface_model(action).model for action in VGG_ATTRIBUTES}
    if SharedTrunk.of(models) is None:
        raise SectionSkippedError("the age, gender and race files do not share their trunk")
    files = tuple(settings.models.weights_dir / ACTION_MODELS[a].weight_file for a in models)

    def source(dense_heads: bool) -> ModelSource:
        # As the analyzer builds it for each engine (heads as matrix products on OpenVINO).
        trunk = SharedTrunk.of(models, dense_heads)
        assert trunk is not None
        return ModelSource(shared_trunk_role(trunk.actions), files, lambda: trunk.model)

    choices = [("tensorflow", "fp32"), ("openvino", "fp32")]
    if cpu_supports_bf16():
        choices.append(("openvino", "bf16"))
    choices.append(("openvino", "int8"))
    calibration = calibration_of(settings.analysis, settings.models, logging.getLogger("bench"))
    batch = np.random.default_rng(0).random((settings.analysis.batch_size, 224, 224, 3), np.float32)
    result = {}
    for name, precision in choices:
        engine = make_engine(
            name, precision, settings.analysis.engine_cache_dir, calibration=calibration
        )
        forward = engine.load(source(engine.dense_heads))
        forward(batch)  # warm-up
        per_face = median_seconds(lambda f=forward: f(batch), repeat) / len(batch)
        achieved = VGG_TRUNK_GFLOP / per_face
        peak = peak_gflops(precision)
        result[f"{name}_{precision}"] = {
            "s_per_face": per_face,
            "gflops": achieved,
            "peak_gflops": peak,
            "share_of_peak": achieved / peak if peak else None,
        }
    return result


def measure_embedding(inputs: Inputs) -> dict[str, Any]:
    """The embedding's cost per face, and the peer's represent + analyze (bench/embedding.py)."""
    from bench.embedding import embedding_cost

    return embedding_cost(inputs.images, MODES["exact"], inputs.args.repeat)


def measure_di(inputs: Inputs) -> dict[str, Any]:
    """Per message: the operator's partial (singletons bound when the flow is built) vs a
    direct call, and what resolving from the container per message would cost instead."""
    container = build_container(inputs.settings)
    logger = container[logging.Logger]

    def step(item: int, logger: logging.Logger) -> int:
        return item

    bound = partial(step, logger=logger)
    number = 200_000
    direct = min(timeit.repeat(lambda: step(1, logger), number=number, repeat=5)) / number
    via_partial = min(timeit.repeat(lambda: bound(1), number=number, repeat=5)) / number
    resolved = min(
        timeit.repeat(lambda: step(1, container[logging.Logger]), number=number // 20, repeat=5)
    ) / (number // 20)
    return {
        "direct_call_us": direct * 1e6,
        "bound_at_build_us": via_partial * 1e6,
        "resolve_per_message_us": resolved * 1e6,
        "extra_per_message_us": max(0.0, via_partial - direct) * 1e6,
    }


def measure_ingest(inputs: Inputs) -> dict[str, Any]:
    """`python -m bench.submit_throughput`, whose own JSON is read back."""
    subprocess.run(
        [sys.executable, "-m", "bench.submit_throughput"],
        cwd=ROOT,
        env=child_environment(**LOUD_CHILDREN),
        check=True,
        stdout=sys.stderr,
    )
    return json.loads((RESULTS / "submit.json").read_text())


def measure_pipeline_parts(inputs: Inputs) -> dict[str, Any]:
    """The dataflow's heavy steps in process (bench/pipeline_parts.py)."""
    from apps.image_sources import SHARED_FACES
    from bench.pipeline_parts import measure_parts

    return measure_parts(inputs.settings, SHARED_FACES, inputs.args.repeat)


def measure_overlap(inputs: Inputs) -> dict[str, Any]:
    """Detection and analysis overlapped against taking turns (bench/overlap.py)."""
    from bench.overlap import measure_overlap as overlap

    return overlap(inputs.args.repeat)


# Every section, in the order a full run measures them. The systems' sections come first:
# the in-process ones run after the systems have stopped, each in a child process.
SECTIONS: tuple[Section, ...] = (
    Section("headline", measure_headline, ATTRIBUTE_ACTIONS, systems=True),
    Section("crops", measure_crops, ATTRIBUTE_ACTIONS, systems=True),
    Section("video", measure_video, ATTRIBUTE_ACTIONS, systems=True),
    Section("video_stages", measure_video_stages, ATTRIBUTE_ACTIONS),
    Section("shapes", measure_shapes, ATTRIBUTE_ACTIONS),
    Section("stages", measure_stages, ATTRIBUTE_ACTIONS),
    Section("ceiling", measure_ceiling, ATTRIBUTE_ACTIONS),
    Section("engines", measure_engines, VGG_ATTRIBUTES),
    Section("embedding", measure_embedding, ACTIONS),
    Section("ingest", measure_ingest),
    Section("di", measure_di),
    Section("pipeline_parts", measure_pipeline_parts, ATTRIBUTE_ACTIONS),
    Section("overlap", measure_overlap, ATTRIBUTE_ACTIONS),
)
SECTION_NAMES = tuple(section.name for section in SECTIONS)


def chosen_sections(only: str | None) -> list[Section]:
    """The sections `--only` names (comma-separated), in the run's order; every one without.
    ValueError naming an unknown one and the sections there are."""
    if not only:
        return list(SECTIONS)
    names = [name.strip() for name in only.split(",") if name.strip()]
    unknown = [name for name in names if name not in SECTION_NAMES]
    if unknown or not names:
        raise ValueError(
            f"unknown section {', '.join(unknown) or repr(only)}; the sections: "
            + ", ".join(SECTION_NAMES)
        )
    return [section for section in SECTIONS if section.name in names]


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="python -m bench.suite", description=__doc__.splitlines()[0]
    )
    parser.add_argument("--repeat", type=int, default=3, help="runs per figure (median)")
    # Three passes per saturated run: with one, the ramp-up and the drain at the ends of a
    # run (a first call alone, the last ones in small batches) weigh more than saturation.
    parser.add_argument("--rounds", type=int, default=3, help="passes over the images per run")
    parser.add_argument("--concurrency", type=int, default=8, help="calls in flight")
    # p99 over fewer calls is the slowest one or two: A B A B runs of this many calls each.
    parser.add_argument(
        "--half-load-calls", type=int, default=50, help="calls per latency run at half load"
    )
    # DeepFace's server gives wrong answers and errors with 2 worker threads (its detector
    # is shared and not thread-safe; docs/design.md), so its best setting is 1 per process.
    parser.add_argument("--peer-workers", type=int, default=1)
    parser.add_argument(
        "--only",
        metavar="SECTION[,SECTION...]",
        help="measure these sections alone (and what they need started): "
        + ", ".join(SECTION_NAMES),
    )
    parser.add_argument(
        "--out", type=Path, default=RESULTS, help="folder of latest.json (bench/results)"
    )
    parser.add_argument(
        "--fail-in",
        metavar="SECTION",
        choices=SECTION_NAMES,
        help="a fail point: make this section raise, to see the run report it and go on",
    )
    args = parser.parse_args(argv)
    try:
        args.sections = chosen_sections(args.only)
    except ValueError as error:
        parser.error(str(error))
    return args


def main(argv: Sequence[str] | None = None) -> int:
    """Run the chosen sections; 1 when one failed or was skipped, else 0."""
    args = parse_args(argv)
    sections: list[Section] = args.sections
    settings = load_settings()
    skipped = prepare_weights(settings.models.weights_dir, sections)
    image_set, images = bench_images()
    report: dict[str, Any] = {
        "machine": describe_machine(),
        "cpu_flags": cpu_flags(),
        "engine": settings.analysis.engine,
        "precision": {
            mode: resolve_precision(settings.analysis.precision, settings.analysis.engine, mode)
            for mode in MODES
        },
        "images": image_set,
        "image_count": len(images),
        "actions": list(settings.models.actions),
        "repeat": args.repeat,
        "rounds": args.rounds,
        "concurrency": args.concurrency,
        "batch_size": settings.analysis.batch_size,
        "chosen": [section.name for section in sections],
    }
    inputs = Inputs(settings, images, args, report)
    run = Run(inputs, args.out, args.fail_in)
    started = time.monotonic()
    systems = RunningSystems(inputs)
    try:
        for index, section in enumerate(sections):
            run.section(section, systems, skipped.get(section.name, ()))
            if not any(later.systems for later in sections[index + 1 :]):
                systems.close()  # nothing else runs beside the in-process sections
    finally:
        systems.close()
    report["synthetic_weights"] = any(
        status.state is WeightState.SYNTHETIC
        for status in check_weights(settings.models.weights_dir, settings.models.actions, ())
    )
    report["seconds"] = time.monotonic() - started
    run.save()
    print(table(report))
    missed = unmet(report["ratios"], report["sections"])
    if missed:
        say(f"bench: {len(missed)} target(s) not met")
    if run.failed:
        say(
            f"bench: section(s) not measured: {', '.join(run.failed)} (their errors are above "
            f"and in {args.out / 'latest.json'})"
        )
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
