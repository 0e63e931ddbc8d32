"""`make bench`: facestream against the ceiling and against DeepFace's own gRPC server, side
by side in one run, on the same images, weights and load generator.

- peers: DeepFace's gRPC server (deepface 0.0.103) on 127.0.0.1, its Analyze RPC, as 1
  process and as 2 processes (one per core, the way a user would scale it) with client-side
  round robin; the strongest of the two is the headline's peer;
- facestream: Analyze end to end (gRPC -> Kafka -> Bytewax -> results -> reply), `-w 1`, in
  exact mode (detection at full size, FACESTREAM_DETECTION_MAX_SIDE=0, as the peer does) and
  in fast mode; every image's face count is checked against the peer's first;
- the peers and the two facestream systems run at once and are measured in turn, A B A B,
  so that drift hits all of them;
- latency: p50/p99 over >= 50 calls of the strongest peer and of facestream exact at half
  the strongest peer's saturated faces/s (open loop), interleaved too;
- video (bench/video.py): the demo's composed video sampled at 5 fps, the strongest peer
  called once per sampled frame against facestream exact fed by `stream_video`, on the
  same running peers and system, interleaved too: sampled frames/s and faces/s;
- other facestream shapes (exact): `-w 2`, 2 processes x `-w 1`, `-w 4`, with peak RSS;
- ceilings: each mode's own steps in process, no Kafka or gRPC;
- engines: the VGG trunk's achieved GFLOP/s per engine and precision, against the CPU's peak;
- embedding (bench/embedding.py): seconds per face of the four attributes with and without
  the embedding, and against the peer's represent + analyze per image, in process;
- ingest: `python -m bench.submit_throughput`; DI: an operator's cost to reach its singletons.

Writes bench/results/latest.json and prints a markdown table with the targets.
Usage: python -m bench.suite [--repeat N] [--rounds N] [--concurrency C] [--only ROW]
(--only video: the video row alone, its peers and system started for it, in minutes;
--only shapes: the dataflow shapes -w 1, -w 2, 2 processes and -w 4 alone;
--only embedding: the embedding's cost alone, in process.)
"""

from __future__ import annotations

import argparse
import itertools
import json
import logging
import os
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
from apps.image_sources import demo_images
from apps.launch import cluster_args
from apps.local_system import LocalSystem, wait_first_result, wait_serving, warmup_image
from apps.processes import ChildProcess, memory_mb, wait_until
from bench.camera import mjpeg_stream
from bench.embedding import embedding_cost
from bench.load import LoadRun, median_run, offer, saturate
from bench.machine import cpu_flags, describe_machine, peak_gflops
from bench.peer_server import peer_analyze, peer_stub
from bench.pipeline_parts import (
    extract_and_analyze,
    in_process_steps,
    median_seconds,
    submissions,
)
from bench.stages import stage_seconds
from bench.system_under_test import SHARED_FACES
from bench.video import (
    VIDEO_FPS,
    analysed_share,
    carried_agreement,
    live_side,
    sampled_frames,
    stream_pass,
    video_side,
)
from di import Settings, build_container, child_environment, load_settings
from di.container import calibration_of
from facestream.analyzer import deepface_model, shared_trunk_role
from facestream.calibration import decode_photo
from facestream.client import AnalyzeClient
from facestream.engines import ModelSource, cpu_supports_bf16, make_engine, resolve_precision
from facestream.faces import face_crops
from facestream.models import ACTION_MODELS, ATTRIBUTE_ACTIONS, require_weights
from facestream.shared_trunk import VGG_ATTRIBUTES, SharedTrunk
from facestream.v1 import records_pb2

ROOT = Path(__file__).resolve().parent.parent
RESULTS = ROOT / "bench" / "results"
# The shared photos with faces that DeepFace's default detector finds at full size
# (MANIFEST.md); the 14 Mpx photo is left out: the peer would spend its time detecting it.
SHARED_PHOTOS = (
    "single_woman_astronaut.png",
    "single_woman_blonde.jpg",
    "single_woman_darkhair.jpg",
    "single_man_glasses.jpg",
    "single_man_bald.jpg",
    "single_man_beard.jpg",
    "single_man_greyhair.jpg",
    "single_man_smallface_2048w.jpg",
    "multi_2_couple.jpg",
    "multi_7_selfie.jpg",
    "edge_webp_named_jpg.jpg",
)
LOUD_CHILDREN = {"TF_CPP_MIN_LOG_LEVEL": "3", "FACESTREAM_LOG_LEVEL": "WARNING"}


def bench_images() -> tuple[str, list[bytes]]:
    """The shared photos with faces when they are here, else the public demo set."""
    if all((SHARED_FACES / name).is_file() for name in SHARED_PHOTOS):
        return "shared photos", [(SHARED_FACES / name).read_bytes() for name in SHARED_PHOTOS]
    return "public demo set", [image.data for image in demo_images()]


def say(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


def ceiling(settings: Settings, images: Sequence[bytes], repeat: int) -> dict[str, Any]:
    """Faces/s of decode + extraction + batched analysis in this process, as the dataflow's
    own steps do it, with no Kafka or gRPC around them."""
    analyzer, logger, limits = in_process_steps(settings)
    jobs = submissions(images)
    side = settings.analysis.detection_max_side
    extract_and_analyze(
        jobs, analyzer, limits, logger, settings.analysis.batch_size, side
    )  # warm-up
    rates: list[float] = []
    for _ in range(repeat):
        started = time.perf_counter()
        faces = extract_and_analyze(
            jobs, analyzer, limits, logger, settings.analysis.batch_size, side
        )
        rates.append(faces / (time.perf_counter() - started))
    return {
        "faces_per_s": statistics.median(rates),
        "faces_per_run": faces,
        "runs": repeat,
        "synthetic_weights": analyzer.synthetic_weights,
    }


# Exact mode as the peer works: DeepFace's detection at full size. Fast mode: its defaults
# (no full-image border, bf16 where the CPU has it, large images downscaled for detection).
MODES: dict[str, dict[str, str]] = {
    "exact": {"FACESTREAM_MODE": "exact", "FACESTREAM_DETECTION_MAX_SIDE": "0"},
    "fast": {"FACESTREAM_MODE": "fast"},
}
SHAPE_LABELS = {"w1": "-w 1", "w2": "-w 2", "p2": "2 processes x -w 1", "w4": "-w 4"}
# VGG-16's convolutional trunk at 224x224: 15.5 G multiply-adds per face.
VGG_TRUNK_GFLOP = 31.0


def mode_settings(mode: str) -> Settings:
    """This process's settings with MODES[mode], as a child started with them reads them."""
    return Settings.from_env(child_environment(**MODES[mode]))


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
        raise SystemExit(f"{server.name} exited:\n{server.log_tail()}")
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

# The peer the video row takes when it runs alone (--only video), with no headline to find
# the strongest: 2 processes was the stronger in every full run on 2 cores (README).
ALONE_PEER = "peer_2_processes"


def side_by_side(
    settings: Settings,
    home: Path,
    images: Sequence[bytes],
    args: argparse.Namespace,
    report: dict[str, Any],
) -> None:
    """Start the peers and facestream exact and fast once; measure the headline (unless
    --only video), then the video row on the same running peers and systems (and exact
    without tracking, started for it), each saved into `report` as soon as it is done."""
    with ExitStack() as stack:
        peers = stack.enter_context(peer_servers(home, 2, args.peer_workers, images[0]))
        exact = stack.enter_context(facestream_system(settings, home, [["-w", "1"]], "exact"))
        fast = stack.enter_context(facestream_system(settings, home, [["-w", "1"]], "fast"))
        strongest, chosen_by = ALONE_PEER, "default (--only video)"
        if args.only != "video":
            report["headline"] = headline(peers, exact, fast, images, args)
            save(report)
            strongest, chosen_by = report["headline"]["strongest_peer"], "headline"
            crops = bench_crops(images, settings.models.detector_backend)
            report["crops"] = crops_row(peers, exact, fast, crops, args)
            save(report)
        untracked, _ = stack.enter_context(
            facestream_system(settings, home, [["-w", "1"]], "exact", UNTRACKED)
        )
        systems = {
            "facestream_exact": exact[0],
            "facestream_exact_untracked": untracked,
            "facestream_fast": fast[0],
        }
        report["video"] = video_row(peer_services(peers), strongest, systems, args)
        report["video"]["peer_chosen_by"] = chosen_by
        save(report)


def headline(
    peers: Peers, exact: System, fast: System, images: Sequence[bytes], args: argparse.Namespace
) -> dict[str, Any]:
    """Peers (1 and 2 processes) and facestream (exact, fast), all running, measured in
    turn; then latency at half the strongest peer's load, interleaved too."""
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
    runs = interleaved(
        {
            name: partial(saturate, service, images, args.rounds, args.concurrency)
            for name, service in services.items()
        },
        args.repeat,
    )
    result["saturated"] = {name: median_run(done) for name, done in runs.items()}
    strongest = strongest_peer(result["saturated"])
    result["strongest_peer"] = strongest
    faces_per_image = sum(counts[strongest]) / len(images)
    rate = result["saturated"][strongest]["faces_per_s"] / 2 / faces_per_image
    # Two runs each, A B A B, of at least 25 calls: p99 over >= 50 calls per system.
    calls = max(25, len(images))
    say(f"bench: latency at {rate:.2f} images/s ({strongest} and facestream exact)")
    latency = interleaved(
        {
            strongest: partial(offer, services[strongest], images, rate, calls),
            "facestream_exact": partial(offer, exact_service, images, rate, calls),
        },
        2,
    )
    result["half_load"] = {name: pooled_latency(done, rate) for name, done in latency.items()}
    result["half_load_offered_faces_per_s"] = rate * faces_per_image
    result["peak_rss_mb"] = {
        "peer": max(memory_mb(server.pid, "VmHWM") for _, server in peers),
        "facestream_exact": _dataflow_rss(exact_system),
        "facestream_fast": _dataflow_rss(fast_system),
    }
    return result


def strongest_peer(saturated: dict[str, dict[str, Any]]) -> str:
    """The name of the peer with the most faces/s among saturated runs."""
    peers = [name for name in saturated if name.startswith("peer")]
    return max(peers, key=lambda name: saturated[name]["faces_per_s"])


def bench_crops(images: Sequence[bytes], detector: str) -> list[bytes]:
    """The faces exact mode extracts from the images with `detector`, aligned and cropped,
    as PNGs."""
    return [crop for image in images for crop in face_crops(decode_photo(image), detector)]


def crops_row(
    peers: Peers,
    exact: System,
    fast: System,
    crops: Sequence[bytes],
    args: argparse.Namespace,
) -> dict[str, Any]:
    """Face crops sent with detector `skip` to every side (no detection on either): peers
    (1 and 2 processes) and facestream (exact, fast), measured in turn."""
    services: dict[str, Callable[[bytes], int]] = {
        **peer_services(peers, "skip"),
        "facestream_exact": partial(exact[1], detector_backend="skip"),
        "facestream_fast": partial(fast[1], detector_backend="skip"),
    }
    say(f"bench: {len(crops)} face crops, detector skip")
    counts = {name: face_counts(service, crops) for name, service in services.items()}
    assert all(count == [1] * len(crops) for count in counts.values()), counts
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


def video_row(
    peers: dict[str, RoundRobin],
    strongest: str,
    systems: dict[str, LocalSystem],
    args: argparse.Namespace,
) -> dict[str, Any]:
    """The composed video, sampled once: the `strongest` peer called once per sampled
    frame (--concurrency calls in flight, as in the headline) and each facestream system
    (exact with and without tracking, fast with tracking) fed by `stream_video`
    (--concurrency frames unanswered), `--repeat` passes each, in turn; the carried
    attributes against the untracked pass; then a live 5 fps camera in fast mode."""
    results: dict[str, list[records_pb2.AnalysisResult]] = {name: [] for name in systems}
    with (
        tempfile.TemporaryDirectory(prefix="facestream-bench-video-") as workdir,
        ExitStack() as clients,
    ):
        video, frames = sampled_frames(Path(workdir))
        client = {
            name: clients.enter_context(AnalyzeClient(system.address))
            for name, system in systems.items()
        }
        say(f"bench: video, {len(frames)} frames sampled ({strongest} and facestream)")

        def facestream_pass(name: str) -> LoadRun:
            first = results[name] if not results[name] else None  # the first pass is kept
            return systems[name].supervise(
                partial(stream_pass, client[name], str(video.path), args.concurrency, first),
                3600,
                "a video pass",
            )

        runs = interleaved(
            {
                strongest: partial(saturate, peers[strongest], frames, 1, args.concurrency),
                **{name: partial(facestream_pass, name) for name in systems},
            },
            args.repeat,
        )
        pictures = [cv2.imdecode(np.frombuffer(f, np.uint8), cv2.IMREAD_COLOR) for f in frames]
        say(f"bench: a live {VIDEO_FPS:g} fps camera for {LIVE_SECONDS:.0f} s, fast mode")
        with mjpeg_stream(pictures, fps=VIDEO_FPS) as url:
            live = systems["facestream_fast"].supervise(
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
        "passes": {name: video_side(done) for name, done in runs.items()},
        "analysed_share": {
            name: analysed_share(results[name]) for name in systems if "untracked" not in name
        },
        "carried_agreement": carried_agreement(
            results["facestream_exact"], results["facestream_exact_untracked"]
        ),
        "live_fast": live_side([live]),
    }


def _dataflow_rss(system: LocalSystem) -> list[float]:
    return [memory_mb(c.pid, "VmHWM") for c in system.children if c.name.startswith("dataflow")]


def shapes(
    settings: Settings, home: Path, images: Sequence[bytes], args: argparse.Namespace
) -> dict[str, Any]:
    """Dataflow shapes, exact mode: faces/s and peak RSS. Only one system fits in memory
    at a time, so each round starts each shape in turn for one saturated run (w1 w2 p2 w4
    w1 w2 ...): the machine's drift over the minutes hits every shape alike."""
    # Two processes on one machine: each given its share of the cores (README, Operations).
    share = {"FACESTREAM_ENGINE_THREADS": str(max(1, len(os.sched_getaffinity(0)) // 2))}
    layouts = {
        "w1": ([["-w", "1"]], {}),
        "w2": ([["-w", "2"]], {}),
        "p2": (cluster_args(2, 1), share),
        "w4": ([["-w", "4"]], {}),
    }
    runs: dict[str, list[LoadRun]] = {name: [] for name in layouts}
    peak_rss: dict[str, list[float]] = {}
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
    return {
        name: {
            "label": SHAPE_LABELS[name],
            "dataflows": [" ".join(d) for d in dataflows],
            "env": env,
            "saturated": median_run(runs[name]),
            "peak_rss_mb": peak_rss[name],
        }
        for name, (dataflows, env) in layouts.items()
    }


def engines_gflops(settings: Settings, repeat: int) -> dict[str, Any]:
    """The VGG trunk (with the three heads) per engine and precision, batches of
    FACESTREAM_BATCH_SIZE faces in this process: s/face and achieved GFLOP/s against peak."""
    models = {action: deepface_model(action).model for action in VGG_ATTRIBUTES}
    if SharedTrunk.of(models) is None:
        return {}
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


def di_cost(settings: Settings, per_face_s: float) -> dict[str, Any]:
    """Per message: the operator's partial (singletons bound when the flow is built) vs a
    direct call, and what resolving from the container per message would cost instead."""
    container = build_container(settings)
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
    extra = max(0.0, via_partial - direct)
    return {
        "direct_call_us": direct * 1e6,
        "bound_at_build_us": via_partial * 1e6,
        "resolve_per_message_us": resolved * 1e6,
        "extra_per_message_us": extra * 1e6,
        "share_of_per_face_time": extra / per_face_s,
        "resolve_share_of_per_face_time": max(0.0, resolved - direct) / per_face_s,
    }


def ingest() -> dict[str, Any]:
    """`python -m bench.submit_throughput`, whose own JSON is read back."""
    subprocess.run(
        [sys.executable, "-m", "bench.submit_throughput"],
        cwd=ROOT,
        env=child_environment(**LOUD_CHILDREN),
        check=True,
        stdout=sys.stderr,
    )
    return json.loads((RESULTS / "submit.json").read_text())


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeat", type=int, default=3, help="runs per figure (median)")
    # Three passes per saturated run: with one, the ramp-up and the drain at the ends of a
    # run (a first call alone, the last ones in small batches) weigh more than saturation.
    parser.add_argument("--rounds", type=int, default=3, help="passes over the images per run")
    parser.add_argument("--concurrency", type=int, default=8, help="calls in flight")
    # DeepFace's server gives wrong answers and errors with 2 worker threads (its detector
    # is shared and not thread-safe; docs/design.md), so its best setting is 1 per process.
    parser.add_argument("--peer-workers", type=int, default=1)
    parser.add_argument(
        "--only",
        choices=["video", "shapes", "embedding"],
        help="measure this row alone (what it needs started): the video row, the "
        "dataflow shapes (-w 1, -w 2, 2 processes, -w 4), or the embedding's cost",
    )
    args = parser.parse_args()

    settings = load_settings()
    home = settings.models.deepface_home
    image_set, images = bench_images()
    precision = {
        mode: resolve_precision(settings.analysis.precision, settings.analysis.engine, mode)
        for mode in MODES
    }
    report: dict[str, Any] = {
        "machine": describe_machine(),
        "cpu_flags": cpu_flags(),
        "engine": settings.analysis.engine,
        "precision": precision,
        "images": image_set,
        "image_count": len(images),
        "actions": list(settings.models.actions),
        "repeat": args.repeat,
        "rounds": args.rounds,
        "concurrency": args.concurrency,
        "batch_size": settings.analysis.batch_size,
    }
    started = time.monotonic()
    if args.only == "shapes":
        report["facestream"] = shapes(settings, home, images, args)
        finish_alone(report, started, settings)
        return
    if args.only == "embedding":
        say("bench: embedding, seconds per face with and without it (in process)")
        report["embedding"] = embedding_cost(images, MODES["exact"], args.repeat)
        finish_alone(report, started, settings)
        return
    # Systems first: the in-process measures load models into this process.
    side_by_side(settings, home, images, args, report)
    say("bench: video, seconds per frame in detection and analysis (in process)")
    with tempfile.TemporaryDirectory(prefix="facestream-bench-stages-") as workdir:
        _video, frames = sampled_frames(Path(workdir))
        analysed = report["video"]["analysed_share"]["facestream_exact"]
        report["video"]["stages"] = stage_seconds(frames, mode_settings("exact"), analysed)
    save(report)
    if args.only == "video":
        finish_alone(report, started, settings)
        return
    report["facestream"] = shapes(settings, home, images, args)
    save(report)
    say("bench: photos, seconds per face in detection and in analysis (in process)")
    report["stages"] = {
        mode: stage_seconds(images, mode_settings(mode), with_peer=mode == "exact")
        for mode in MODES
    }
    save(report)
    report["ceiling"] = {}
    for mode in MODES:
        say(f"bench: ceiling, {mode} mode (in process)")
        report["ceiling"][mode] = ceiling(mode_settings(mode), images, args.repeat)
    report["synthetic_weights"] = report["ceiling"]["exact"]["synthetic_weights"]
    say("bench: engines")
    report["engines"] = engines_gflops(settings, args.repeat)
    save(report)
    say("bench: embedding, seconds per face with and without it (in process)")
    report["embedding"] = embedding_cost(images, MODES["exact"], args.repeat)
    save(report)
    say("bench: ingest")
    report["ingest"] = ingest()
    per_face = 1 / report["ceiling"]["exact"]["faces_per_s"]
    report["di"] = di_cost(settings, per_face)
    finish(report, started)


def finish(report: dict[str, Any], started: float) -> None:
    """Time the run, add its ratios, save it and print its table."""
    report["seconds"] = time.monotonic() - started
    report["ratios"] = ratios(report)
    save(report)
    print(table(report))


def finish_alone(report: dict[str, Any], started: float, settings: Settings) -> None:
    """`finish` a run of one row (--only), naming the weights its systems loaded."""
    models = settings.models
    report["synthetic_weights"] = require_weights(
        models.weights_dir, models.actions, models.detector_backend
    )
    finish(report, started)


def save(report: dict[str, Any]) -> None:
    """Write the report so far to bench/results/latest.json (a crash keeps what was done)."""
    RESULTS.mkdir(parents=True, exist_ok=True)
    (RESULTS / "latest.json").write_text(json.dumps(report, indent=2) + "\n")


def ratios(report: dict[str, Any]) -> dict[str, float]:
    """The targets' ratios, all from this run (with --only, its row's alone)."""
    found: dict[str, float] = {}
    if "facestream" in report:
        found |= shape_ratios(report["facestream"])
    if "video" in report:
        found |= video_ratios(report["video"])
    if "embedding" in report:
        found["embedding_extra"] = report["embedding"]["embedding_extra"]
        found["embedding_vs_peer"] = report["embedding"]["vs_peer"]
    if "headline" in report:
        found |= system_ratios(report)
    return found


def shape_ratios(shapes: dict[str, Any]) -> dict[str, float]:
    """Each dataflow shape's faces/s over -w 1's, and -w 4's peak RSS over -w 1's."""
    w1 = shapes["w1"]["saturated"]["faces_per_s"]
    return {
        **{
            f"{name}_vs_w1": shape["saturated"]["faces_per_s"] / w1
            for name, shape in shapes.items()
            if name != "w1"
        },
        "rss_w4_vs_w1": shapes["w4"]["peak_rss_mb"][0] / shapes["w1"]["peak_rss_mb"][0],
    }


def video_ratios(video: dict[str, Any]) -> dict[str, float]:
    """Sampled frames/s on the video: facestream exact (tracking on) and fast over the
    strongest peer's, and exact with tracking over exact without."""
    passes = video["passes"]

    def frames_per_s(name: str) -> float:
        return passes[name]["frames_per_s"]

    peer = frames_per_s(video["strongest_peer"])
    return {
        "video_vs_strongest_peer": frames_per_s("facestream_exact") / peer,
        "video_fast_vs_strongest_peer": frames_per_s("facestream_fast") / peer,
        "video_tracking_vs_untracked": frames_per_s("facestream_exact")
        / frames_per_s("facestream_exact_untracked"),
    }


def system_ratios(report: dict[str, Any]) -> dict[str, float]:
    """The ratios of the full run's figures, video apart."""
    head, fs = report["headline"], report["facestream"]
    saturated = head["saturated"]
    peer = saturated[head["strongest_peer"]]["faces_per_s"]
    exact = max(
        saturated["facestream_exact"]["faces_per_s"],
        *(shape["saturated"]["faces_per_s"] for shape in fs.values()),
    )
    fast = saturated["facestream_fast"]["faces_per_s"]
    counts = head["face_counts"]
    crops = report["crops"]["saturated"]
    crops_peer = crops[report["crops"]["strongest_peer"]]["faces_per_s"]
    return {
        "crops_vs_strongest_peer": crops["facestream_exact"]["faces_per_s"] / crops_peer,
        "crops_fast_vs_strongest_peer": crops["facestream_fast"]["faces_per_s"] / crops_peer,
        "best_vs_strongest_peer": exact / peer,
        "fast_vs_strongest_peer": fast / peer,
        "best_vs_peer_1_process": exact / saturated["peer_1_process"]["faces_per_s"],
        "best_vs_ceiling": exact / report["ceiling"]["exact"]["faces_per_s"],
        "fast_vs_fast_ceiling": fast / report["ceiling"]["fast"]["faces_per_s"],
        "half_load_p99_vs_peer": head["half_load"]["facestream_exact"]["p99_s"]
        / head["half_load"][head["strongest_peer"]]["p99_s"],
        "same_face_counts_as_peer": float(
            counts["facestream_exact"] == counts[head["strongest_peer"]]
        ),
        "fast_same_face_counts": sum(
            a == b
            for a, b in zip(counts["facestream_fast"], counts["facestream_exact"], strict=True)
        )
        / len(counts["facestream_exact"]),
        "submit_vs_raw": report["ingest"]["submit_vs_raw"],
        "di_share": report["di"]["share_of_per_face_time"],
    }


def weights_label(report: dict[str, Any]) -> str:
    """Which weights the run's models had."""
    return "synthetic (same architecture and cost)" if report["synthetic_weights"] else "real"


def met(ok: bool) -> str:
    """A target's verdict in the table."""
    return "met" if ok else "NOT met"


def video_rows(report: dict[str, Any]) -> list[str]:
    """The video row's lines of the measures table: each side, stages, agreement, the live
    camera, then the targets."""
    video, r = report["video"], report["ratios"]
    passes, strongest, source = video["passes"], video["strongest_peer"], video["source"]
    width, height = source["size"]
    agreement, live = video["carried_agreement"], video["live_fast"]

    def side(entry: dict[str, Any]) -> str:
        return (
            f"{entry['frames_per_s']:.2f} sampled frames/s, {entry['faces_per_s']:.2f} faces/s "
            f"({entry['faces_per_pass']:.0f} faces in {entry['seconds_per_pass']:.1f} s)"
        )

    shares = video["analysed_share"]
    lines = [
        f"| video: {video['sampled_frames']} frames sampled at {video['sampling_fps']:g} fps "
        f"from a {source['seconds']:.0f} s {width}x{height} composed video; peer "
        f"({strongest.replace('_', ' ')}) called once per frame | {side(passes[strongest])} |",
        f"| same video: facestream -w 1 exact, tracking on ({100 * shares['facestream_exact']:.0f}%"
        f" of faces analysed) | {side(passes['facestream_exact'])} |",
        f"| same video: facestream -w 1 exact, tracking off | "
        f"{side(passes['facestream_exact_untracked'])} |",
        f"| same video: facestream -w 1 fast, tracking on ({100 * shares['facestream_fast']:.0f}%"
        f" of faces analysed) | {side(passes['facestream_fast'])} |",
    ]
    if "stages" in video:
        stages = video["stages"]
        lines += [
            f"| video, s per frame in detection / analysis (in process): {name} | "
            f"{stages[name]['detect_s']:.3f} / {stages[name]['analyze_s']:.3f} s |"
            for name in ("peer", "facestream_untracked", "facestream_tracked")
        ]
    lines += [
        f"| carried attributes vs the same faces analysed frame by frame "
        f"({agreement['carried_faces_compared']} faces) | dominant labels equal on "
        f"{100 * agreement['dominant_labels_equal']:.1f}%, max probability difference "
        f"{agreement['max_probability_difference']:.1f} points, max age difference "
        f"{agreement['max_age_difference']:.1f} years |",
        f"| live {video['sampling_fps']:g} fps camera, fast mode, {live['frames']} frames: "
        f"capture to result p50 / p99 | {live['p50_s']:.2f} / {live['p99_s']:.2f} s |",
        f"| video, exact, tracking on: >= 4x the strongest peer | "
        f"{r['video_vs_strongest_peer']:.2f}x | {met(r['video_vs_strongest_peer'] >= 4)} |",
        f"| video, exact: tracking on >= 2x tracking off | "
        f"{r['video_tracking_vs_untracked']:.2f}x | {met(r['video_tracking_vs_untracked'] >= 2)} |",
        f"| video, fast, tracking on: >= 8x the strongest peer | "
        f"{r['video_fast_vs_strongest_peer']:.2f}x | "
        f"{met(r['video_fast_vs_strongest_peer'] >= 8)} |",
        f"| carried dominant labels equal on >= 95% of carried faces | "
        f"{100 * agreement['dominant_labels_equal']:.1f}% | "
        f"{met(agreement['dominant_labels_equal'] >= 0.95)} |",
        f"| live 5 fps, fast mode, capture to result p99 < 1 s | {live['p99_s']:.2f} s | "
        f"{met(live['p99_s'] < 1)} |",
    ]
    return lines


def rate(entry: dict[str, Any]) -> str:
    """A saturated run's faces/s and latency."""
    return (
        f"{entry['faces_per_s']:.2f} faces/s (p50 {entry['p50_s']:.1f} s, "
        f"p99 {entry['p99_s']:.1f} s)"
    )


def stage_rows(report: dict[str, Any]) -> list[str]:
    """The photos' seconds per face in detection and in analysis, on each side."""
    stages = report["stages"]

    def per_face(entry: dict[str, float], frames: dict[str, float]) -> str:
        scale = frames["count"] / frames["faces"]
        return f"{entry['detect_s'] * scale:.3f} / {entry['analyze_s'] * scale:.3f} s"

    exact = stages["exact"]
    return [
        f"| photos, s per face in detection / analysis (in process): peer (DeepFace's "
        f"extract_faces; analyze minus it) | {per_face(exact['peer'], exact['frames'])} |",
        *(
            f"| same, facestream {mode} ({report['precision'][mode]}) | "
            f"{per_face(stages[mode]['facestream_untracked'], stages[mode]['frames'])} |"
            for mode in stages
        ),
    ]


def crop_rows(report: dict[str, Any]) -> list[str]:
    """The face crops' lines of the measures table."""
    crops = report["crops"]
    labels = {
        "peer_1_process": "peer, 1 process",
        "peer_2_processes": "peer, 2 processes",
        "facestream_exact": "facestream -w 1, exact",
        "facestream_fast": "facestream -w 1, fast",
    }
    return [
        f"| face crops ({crops['crops']} faces of the photos, PNG, detector skip): {label} | "
        f"{rate(crops['saturated'][name])} |"
        for name, label in labels.items()
    ]


def shape_rows(report: dict[str, Any]) -> list[str]:
    """The dataflow shapes' lines of the measures table."""
    return [
        f"| facestream {shape['label']}, exact (shapes interleaved, each started for its run)"
        + "".join(f", {key}={value}" for key, value in shape.get("env", {}).items())
        + f" | {rate(shape['saturated'])} |"
        for shape in report["facestream"].values()
    ]


def shape_targets(report: dict[str, Any]) -> list[str]:
    """The dataflow shapes' lines of the targets table."""
    r = report["ratios"]
    return [
        *(
            f"| {SHAPE_LABELS[name]} >= 0.95x -w 1 | {r[f'{name}_vs_w1']:.2f}x | "
            f"{met(r[f'{name}_vs_w1'] >= 0.95)} |"
            for name in ("w2", "p2", "w4")
        ),
        f"| -w 4 RSS <= 1.2x -w 1 RSS | {r['rss_w4_vs_w1']:.2f}x | "
        f"{met(r['rss_w4_vs_w1'] <= 1.2)} |",
    ]


def embedding_rows(report: dict[str, Any]) -> list[str]:
    """The embedding's cost: seconds per face, in process (bench/embedding.py)."""
    e = report["embedding"]
    s = e["s_per_face"]
    return [
        f"| analysis per face, {e['engine']}, batches of {report['batch_size']} ({e['faces']} "
        f"faces): four attributes / with the embedding (trunk shared by {e['shared']}) | "
        f"{s['attributes']:.3f} / {s['with_embedding']:.3f} s |",
        f"| detection + attributes + embedding per face: peer's represent + analyze per image / "
        f"facestream | {s['peer']:.3f} / {s['ours']:.3f} s |",
        f"| detection + analysis per face, facestream: four attributes / with the embedding | "
        f"{s['ours_attributes']:.3f} / {s['ours']:.3f} s "
        f"({100 * e['embedding_extra_end_to_end']:+.1f}%) |",
        *embedding_agreement(report),
    ]


def embedding_agreement(report: dict[str, Any]) -> list[str]:
    """How close the embedding stays to fp32's in the faster precisions."""
    return [
        f"| embedding, OpenVINO {precision} vs fp32: cosine similarity, lowest / median | "
        f"{a['min']:.5f} / {a['median']:.5f} |"
        for precision, a in report["embedding"]["agreement"].items()
    ]


def embedding_targets(report: dict[str, Any]) -> list[str]:
    """The embedding's targets: its cost on the shared trunk, and the peer's two calls."""
    r = report["ratios"]
    return [
        f"| embedding: <= 5% more per face than the four attributes alone | "
        f"{100 * r['embedding_extra']:+.1f}% | {met(r['embedding_extra'] <= 0.05)} |",
        f"| embedding + attributes vs the peer's represent + analyze (no target) | "
        f"{r['embedding_vs_peer']:.2f}x | |",
    ]


def alone_rows(report: dict[str, Any]) -> list[str]:
    """The table of a run of one row (--only): the machine, the row's measures, its targets."""
    measures, targets = [], []
    if "facestream" in report:
        measures, targets = shape_rows(report), shape_targets(report)
    if "video" in report:
        measures = video_rows(report)
    actions = "all four actions"
    if "embedding" in report:
        measures, targets = embedding_rows(report), embedding_targets(report)
        actions = "the four attributes with and without the embedding"
    return [
        f"Machine: {report['machine']}; engine: {report['engine']} "
        f"({report['precision']['exact']} exact); weights: {weights_label(report)}; "
        f"{actions}; medians of {report['repeat']} runs, "
        f"{report['concurrency']} calls or frames in flight.",
        "",
        "| measure | value |",
        "|---|---|",
        *measures,
        *(["", "| target | ratio in this run | |", "|---|---|---|", *targets] if targets else []),
        "",
        f"({report['seconds'] / 60:.0f} min; bench/results/latest.json has every figure.)",
    ]


def table(report: dict[str, Any]) -> str:
    """The run as a markdown table: figures, then each target with its ratio (with --only,
    the machine and that row's)."""
    if "headline" not in report:
        return "\n".join(alone_rows(report))
    head, fs, r = report["headline"], report["facestream"], report["ratios"]
    saturated, half = head["saturated"], head["half_load"]
    strongest = head["strongest_peer"]

    ingest_report, di = report["ingest"], report["di"]
    precision = report["precision"]
    lines = [
        f"Machine: {report['machine']}; engine: {report['engine']} ({precision['exact']} exact, "
        f"{precision['fast']} fast); weights: {weights_label(report)}; images: "
        f"{report['image_count']} {report['images']} "
        f"({sum(head['face_counts'][strongest])} faces), all four actions; "
        f"medians of {report['repeat']} interleaved runs of {report['rounds']} passes, "
        f"{report['concurrency']} calls in flight.",
        "",
        "| measure | value |",
        "|---|---|",
        f"| ceiling, exact mode: in-process extraction + batched analysis | "
        f"{report['ceiling']['exact']['faces_per_s']:.2f} faces/s |",
        f"| ceiling, fast mode | {report['ceiling']['fast']['faces_per_s']:.2f} faces/s |",
        f"| peer: DeepFace gRPC server, 1 process | {rate(saturated['peer_1_process'])} |",
        f"| peer: DeepFace gRPC server, 2 processes, round robin | "
        f"{rate(saturated['peer_2_processes'])} |",
        f"| facestream -w 1, exact mode | {rate(saturated['facestream_exact'])} |",
        f"| facestream -w 1, fast mode | {rate(saturated['facestream_fast'])} |",
        *shape_rows(report),
        f"| latency at {head['half_load_offered_faces_per_s']:.2f} faces/s (half the strongest "
        f"peer's), {half[strongest]['calls']} calls: peer p50 / p99 | "
        f"{half[strongest]['p50_s']:.2f} / {half[strongest]['p99_s']:.2f} s |",
        f"| same load: facestream -w 1 exact p50 / p99 | "
        f"{half['facestream_exact']['p50_s']:.2f} / {half['facestream_exact']['p99_s']:.2f} s |",
        *stage_rows(report),
        *crop_rows(report),
        *video_rows(report),
        *embedding_rows(report),
        *(
            f"| VGG trunk + heads, {name.replace('_', ' ')}, batch {report['batch_size']} | "
            f"{e['s_per_face']:.3f} s/face, {e['gflops']:.0f} GFLOP/s"
            + (
                f" ({100 * e['share_of_peak']:.0f}% of ~{e['peak_gflops']:.0f})"
                if e["peak_gflops"]
                else ""
            )
            + " |"
            for name, e in report["engines"].items()
        ),
        f"| Submit, {ingest_report['image_bytes'] // 1024} KB images | "
        f"{ingest_report['submit_req_per_s']:.0f} req/s (p50 {ingest_report['submit_p50_ms']:.1f}"
        f" ms, p99 {ingest_report['submit_p99_ms']:.1f} ms) |",
        f"| SubmitStream (bulk), {ingest_report['streams']} streams | "
        f"{ingest_report['submit_stream_req_per_s']:.0f} req/s |",
        f"| raw confluent-kafka producer, same records | "
        f"{ingest_report['raw_producer_records_per_s']:.0f} records/s |",
        f"| DI: operator's bound singletons vs direct call, per message | "
        f"+{di['extra_per_message_us']:.3f} us (container lookup per message would be "
        f"{di['resolve_per_message_us']:.1f} us) |",
        f"| peak RSS per dataflow process: -w 1 / -w 4 | {fs['w1']['peak_rss_mb'][0]:.0f} / "
        f"{fs['w4']['peak_rss_mb'][0]:.0f} MB |",
        f"| peak RSS: peer process | {head['peak_rss_mb']['peer']:.0f} MB |",
        "",
        "| target | ratio in this run | |",
        "|---|---|---|",
        f"| face crops, exact: >= 3.5x the strongest peer | {r['crops_vs_strongest_peer']:.2f}x "
        f"| {met(r['crops_vs_strongest_peer'] >= 3.5)} |",
        f"| face crops, fast: >= 7x the strongest peer | "
        f"{r['crops_fast_vs_strongest_peer']:.2f}x | "
        f"{met(r['crops_fast_vs_strongest_peer'] >= 7)} |",
        f"| photos, exact: best facestream vs the strongest peer "
        f"({strongest.replace('_', ' ')}; no target: DeepFace's detection bounds it, README) | "
        f"{r['best_vs_strongest_peer']:.2f}x | |",
        f"| photos, exact: best facestream >= 0.9x its ceiling | {r['best_vs_ceiling']:.2f}x | "
        f"{met(r['best_vs_ceiling'] >= 0.9)} |",
        f"| exact: same face count as the peer on every image | "
        f"{'yes' if r['same_face_counts_as_peer'] else 'no'} | "
        f"{met(r['same_face_counts_as_peer'] == 1.0)} |",
        f"| photos, fast: facestream >= 5x the strongest peer | "
        f"{r['fast_vs_strongest_peer']:.2f}x | "
        f"{met(r['fast_vs_strongest_peer'] >= 5)} |",
        f"| fast: face count equal to exact on >= 95% of images | "
        f"{100 * r['fast_same_face_counts']:.0f}% | {met(r['fast_same_face_counts'] >= 0.95)} |",
        f"| p99 at half the strongest peer's load <= 0.5x its p99 | "
        f"{r['half_load_p99_vs_peer']:.2f}x | {met(r['half_load_p99_vs_peer'] <= 0.5)} |",
        f"| Submit >= 1000 req/s | {ingest_report['submit_req_per_s']:.0f} req/s | "
        f"{met(ingest_report['submit_req_per_s'] >= 1000)} |",
        f"| Submit >= 0.6x raw producer | {r['submit_vs_raw']:.2f}x | "
        f"{met(r['submit_vs_raw'] >= 0.6)} |",
        f"| DI < 1% of per-face time | {100 * r['di_share']:.5f}% | {met(r['di_share'] < 0.01)} |",
        *embedding_targets(report),
        *shape_targets(report),
        "",
        "Fast mode's agreement with exact mode (boxes, probabilities, labels) is measured on "
        "every test photo by tests/test_engines.py; README, Performance.",
        f"({report['seconds'] / 60:.0f} min; bench/results/latest.json has every figure.)",
    ]
    return "\n".join(lines)


if __name__ == "__main__":
    main()
