"""What each section of `make bench` measures (bench/suite.py lists the sections): one
`measure_*` function per section, on the running systems or in a process of its own."""

from __future__ import annotations

import json
import logging
import os
import statistics
import subprocess
import sys
import tempfile
import time
import timeit
from collections.abc import Callable, Sequence
from contextlib import ExitStack
from functools import partial
from pathlib import Path
from typing import Any

import cv2
import numpy as np

from apps.launch import PROJECT_ROOT, QUIET, cluster_args
from apps.mjpeg_camera import mjpeg_stream
from apps.processes import memory_mb
from bench import RESULTS
from bench.load import LoadRun, median_run, offer, saturate
from bench.machine import peak_gflops
from bench.pipeline_parts import extract_and_analyze, in_process_steps, median_seconds, submissions
from bench.sections import Inputs, SectionSkippedError, say
from bench.stages import stage_seconds
from bench.systems import (
    RunningSystems,
    dataflow_rss,
    face_counts,
    facestream_system,
    interleaved,
    p99_ratio_interval,
    peer_services,
    pooled_latency,
    processes_of,
    strongest_peer,
    with_cpu_shares,
)
from bench.video import (
    VIDEO_FPS,
    analysed_share,
    carried_agreement,
    live_side,
    sampled_frames,
    stream_pass,
    video_side,
)
from bench.workload import MODES, mode_settings
from di import Settings, build_container, child_environment
from di.container import calibration_of
from facestream.analyzer import deepface_model, shared_trunk_role
from facestream.calibration import decode_photo
from facestream.client import AnalyzeClient
from facestream.engines import ModelSource, cpu_supports_bf16, make_engine
from facestream.faces import face_crops
from facestream.models import ACTION_MODELS
from facestream.shared_trunk import VGG_ATTRIBUTES, SharedTrunk
from facestream.v1 import records_pb2
from facestream.worker_process import WorkerProcess

SHAPE_LABELS = {"w1": "-w 1", "w2": "-w 2", "p2": "2 processes x -w 1", "w4": "-w 4"}
# VGG-16's convolutional trunk at 224x224: 15.5 G multiply-adds per face.
VGG_TRUNK_GFLOP = 31.0


# Seconds of a live 5 fps camera (the composed video in a loop) held in fast mode.
LIVE_SECONDS = 30.0

# The peer the video row takes when the headline did not run: 2 processes was the stronger
# in every full run on 2 cores (docs/performance.md).
ALONE_PEER = "peer_2_processes"


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
    pids = processes_of(peers, exact, fast)
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
        "facestream_exact": dataflow_rss(exact_system),
        "facestream_fast": dataflow_rss(fast_system),
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
    tracking) fed by `VideoStream` (--concurrency frames unanswered), `--repeat` passes
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
                rss = dataflow_rss(system)
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


def measure_recognition(inputs: Inputs) -> dict[str, Any]:
    """Identification against 10,000 enrolled faces, its share of a face's analysis, and
    the peers' search and find on the same vectors (bench/recognition.py)."""
    from bench.recognition import recognition_cost

    return recognition_cost(inputs.images, MODES["exact"], inputs.args.repeat)


def measure_recognition_scale(inputs: Inputs) -> dict[str, Any]:
    """Galleries of 10,000 and 100,000 faces through the store's index, against DeepFace's
    exact and approximate search and find (bench/recognition_scale.py)."""
    from bench.recognition_scale import scale_figures

    return scale_figures(inputs.images, MODES["exact"], repeat=inputs.args.repeat)


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
        cwd=PROJECT_ROOT,
        env=child_environment(**QUIET),
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
