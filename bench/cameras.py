"""The cameras row of `make bench`: how many live 5 fps cameras one facestream system holds.

Each step starts N cameras, each its own process serving the demo's composed video in a
loop as HTTP MJPEG (640x480, `python -m apps.mjpeg_camera`), and N clients, each its own
process streaming one camera to the system as `facestream video URL` does
(`python -m bench.camera_client`), for STEP_SECONDS, into one system (CAMERA_DATAFLOW);
N = 1, 2, 3, 4, 6, 8, ... until a step is not held. A camera is held when its
capture-to-result p99 is under HELD_P99_S and at most HELD_DROPPED of its frames were
dropped (the client drops the oldest waiting frame when the system falls behind); a step
is held when each of its cameras is.

Each step also gives every process's share of the cores, and the dataflow's seconds per
frame in its stages (from its own metrics: decode, detect, analyze), so that the highest
held step says where a frame's time goes.

The tracker's detection (the whole frame every FACESTREAM_TRACKING_WHOLE_FRAME_EVERY of
stream time, else around the tracks) is checked in each mode against a system that
searches every frame whole, on two videos: the demo's, and a hold-out-style one made of
four of its scenes in a 2x2 grid at half size (faces of 38 to 52 pixels, four times the
faces coming into view): the share of the whole-frame faces it found, and of those the
share whose dominant labels are equal.
"""

from __future__ import annotations

import json
import os
import re
import signal
import sys
import tempfile
import time
import urllib.request
from collections.abc import Iterator, Sequence
from contextlib import ExitStack
from functools import partial
from pathlib import Path
from typing import Any

import cv2
import numpy as np

from apps.demo_video import compose_demo_video, demo_frames
from apps.launch import PROJECT_ROOT
from apps.local_system import LocalSystem
from apps.processes import ChildProcess, memory_mb, wait_until
from apps.video_source import open_video_writer
from bench.load import saturate
from bench.measures import ALONE_PEER
from bench.sections import Inputs, say
from bench.systems import (
    cpu_seconds,
    facestream_system,
    first_start,
    peer_servers,
    peer_services,
)
from bench.video import (
    VIDEO_FPS,
    VIDEO_SECONDS,
    detection_agreement,
    sampled_frames,
    stream_pass,
)
from di import Settings, child_environment
from facestream.client import AnalyzeClient
from facestream.v1 import records_pb2

STEP_SECONDS = 60.0
HELD_P99_S = 1.0
HELD_DROPPED = 0.01
# A step's clients answer what they sent after STEP_SECONDS; past this, the step failed.
STEP_TIMEOUT = STEP_SECONDS + 180.0
STAGES = ("decode", "detect", "analyze")
# Fast mode first: the figure video users size by.
CAMERA_MODES = ("fast", "exact")
# The system's shape: one dataflow process of one worker thread. On 2 cores `-w 2` (two
# threads' Kafka, decoding and tracking beside the other's detection and models, which take
# turns) did no better: fast mode's 4 cameras at p99 1.19 s, within `-w 1`'s 1.07-2.83 s
# over runs; exact mode's 2 answered 8.9 frames/s with 15% dropped (`-w 1`: 10.0, none).
CAMERA_DATAFLOW = [["-w", "1"]]
_STAGE_SUM = re.compile(
    r'^facestream_dataflow_stage_duration_seconds_sum\{stage="(\w+)"\} (\S+)$', re.MULTILINE
)


def camera_counts() -> Iterator[int]:
    """The cameras of each step: 1, 2, 3, 4, 6, 8, 10, 12, ..."""
    yield from (1, 2, 3, 4)
    count = 6
    while True:
        yield count
        count += 2


def camera_figures(report: dict[str, Any]) -> dict[str, Any]:
    """One camera's figures from its client's report (bench.camera_client): frames answered
    per second, dropped share, p50/p99 capture to result, and whether it was held."""
    latencies = report["latencies"]
    captured = report["sent"] + report["dropped"]
    dropped = report["dropped"] / captured if captured else 1.0
    p50 = float(np.percentile(latencies, 50)) if latencies else float("inf")
    p99 = float(np.percentile(latencies, 99)) if latencies else float("inf")
    lost = report["answered"] != report["sent"] or report["failed"] or report["broken"]
    return {
        "frames_answered_per_s": report["answered"] / report["seconds"],
        "sent": report["sent"],
        "answered": report["answered"],
        "dropped_share": dropped,
        "p50_s": p50,
        "p99_s": p99,
        "held": bool(p99 < HELD_P99_S and dropped <= HELD_DROPPED and not lost),
    }


def held_count(steps: Sequence[dict[str, Any]]) -> int:
    """The most cameras held: the last step before the first one not held (0 if none)."""
    held = 0
    for step in steps:
        if not step["held"]:
            break
        held = step["cameras"]
    return held


def stage_sums(metrics_url: str) -> dict[str, float]:
    """The dataflow's seconds so far in each stage, from its metrics."""
    with urllib.request.urlopen(metrics_url, timeout=10) as answer:
        text = answer.read().decode()
    return {stage: float(value) for stage, value in _STAGE_SUM.findall(text)}


def system_pids(system: LocalSystem) -> dict[str, list[int]]:
    """The system's processes by part: dataflow(s), gRPC server, broker."""
    pids: dict[str, list[int]] = {"dataflow": [], "grpc_server": [], "broker": []}
    for child in system.children:
        part = "dataflow" if child.name.startswith("dataflow") else "grpc_server"
        pids[part].append(child.pid)
    if system.broker is not None and system.broker.pid is not None:
        pids["broker"].append(system.broker.pid)
    return pids


# The composed video each camera serves in a loop, seconds.
CAMERA_LOOP_S = 10.0


def camera_step(system: LocalSystem, cameras: int, seconds: float = STEP_SECONDS) -> dict[str, Any]:
    """Measure one step: `cameras` cameras and their clients against `system`."""
    env = child_environment()
    python = [sys.executable, "-m"]
    with ExitStack() as stack:
        servers = []
        for index in range(cameras):
            # Cameras are not in step: each begins the loop at its own place, as independent
            # feeds do (in step, every camera's people would come and go at once).
            start = index * CAMERA_LOOP_S / cameras
            loop = ["--fps", str(VIDEO_FPS), "--seconds", str(CAMERA_LOOP_S)]
            camera = ChildProcess(
                f"camera-{index}",
                [*python, "apps.mjpeg_camera", *loop, "--start", f"{start:.1f}"],
                env,
                PROJECT_ROOT,
                separate_errors=True,
            )
            stack.callback(camera.stop)
            servers.append(camera)
        urls = [camera.wait_for_output(r"^(http://\S+)$", 60).group(1) for camera in servers]
        pids = system_pids(system)
        pids["cameras"] = [camera.pid for camera in servers]
        metrics = system.metrics_urls["dataflow"]
        cpu_before = {pid: cpu_seconds(pid) for group in pids.values() for pid in group}
        stages_before = stage_sums(metrics)
        begun = time.monotonic()
        clients = []
        for index, url in enumerate(urls):
            client = ChildProcess(
                f"camera-client-{index}",
                [*python, "bench.camera_client", system.address, url, str(seconds)],
                env,
                PROJECT_ROOT,
                separate_errors=True,
            )
            stack.callback(client.stop, signal.SIGKILL)
            clients.append(client)
        wait_until(
            lambda: all(client.output().strip() or not client.running() for client in clients),
            STEP_TIMEOUT,
            f"{cameras} camera client(s) to finish",
        )
        wall = time.monotonic() - begun
        cpu_after = {pid: cpu_seconds(pid) for group in pids.values() for pid in group}
        stages_after = stage_sums(metrics)
        reports = []
        for client in clients:
            lines = client.output().strip().splitlines()
            if not lines:
                raise RuntimeError(f"{client.name} gave no report:\n{client.errors()[-3000:]}")
            reports.append(json.loads(lines[-1]))
    figures = [camera_figures(report) for report in reports]
    cores = len(os.sched_getaffinity(0))
    used = {
        group: sum(cpu_after[pid] - cpu_before[pid] for pid in group_pids)
        for group, group_pids in pids.items()
    }
    used["clients"] = sum(report["cpu_s"] for report in reports)  # each reports its own CPU
    answered = sum(f["answered"] for f in figures)
    return {
        "cameras": cameras,
        "held": all(f["held"] for f in figures),
        "per_camera": figures,
        "frames_answered_per_s": sum(f["frames_answered_per_s"] for f in figures),
        "p99_s": max(f["p99_s"] for f in figures),
        "dropped_share": max(f["dropped_share"] for f in figures),
        "cpu_share": {group: cpu_s / (wall * cores) for group, cpu_s in used.items()},
        "cpu_s_per_frame": {
            group: cpu_s / answered if answered else None for group, cpu_s in used.items()
        },
        "dataflow_stage_s_per_frame": {
            stage: (stages_after.get(stage, 0.0) - stages_before.get(stage, 0.0)) / answered
            if answered
            else None
            for stage in STAGES
        },
    }


# No machine of ours holds this many; the steps stop here even if it did.
MAX_CAMERAS = 32
# A system that searches every frame whole: the reference of the tracker's detection.
WHOLE_FRAMES = {"FACESTREAM_TRACKING_WHOLE_FRAME_EVERY": "0"}
# The grid video's scenes start this far apart in the demo's scene (of GRID_SCENE frames).
GRID_OFFSET = 16
GRID_SCENE = 100


def grid_frames(count: int, size: tuple[int, int] = (640, 480)) -> list[np.ndarray]:
    """`count` frames of four of the demo's scenes in a 2x2 grid, each at half size and
    GRID_OFFSET frames further into the scene than the one before."""
    width, height = size
    scene = [frame for frame, _boxes in demo_frames(GRID_SCENE, size)]
    half = (width // 2, height // 2)
    frames = []
    for index in range(count):
        tiles = [
            cv2.resize(scene[min(index + k * GRID_OFFSET, GRID_SCENE - 1)], half) for k in range(4)
        ]
        frames.append(np.vstack([np.hstack(tiles[:2]), np.hstack(tiles[2:])]))
    return frames


def lever_videos(workdir: Path) -> dict[str, Path]:
    """The demo video and the hold-out-style grid video, written into `workdir`."""
    demo = compose_demo_video(workdir / "demo.mp4", VIDEO_SECONDS, VIDEO_FPS).path
    grid = workdir / "grid.mp4"
    writer = open_video_writer(grid, VIDEO_FPS, (640, 480))
    try:
        for frame in grid_frames(round(VIDEO_SECONDS * VIDEO_FPS)):
            writer.write(frame)
    finally:
        writer.release()
    return {"demo": demo, "grid": grid}


def video_results(
    system: LocalSystem, videos: dict[str, Path]
) -> dict[str, list[records_pb2.AnalysisResult]]:
    """Each video streamed through `system` once; its frames' results."""
    results: dict[str, list[records_pb2.AnalysisResult]] = {}
    with AnalyzeClient(system.address) as client:
        for name, path in videos.items():
            results[name] = []
            system.supervise(
                partial(stream_pass, client, str(path), 8, results[name]), 600, "a video pass"
            )
    return results


def mode_steps(settings: Settings, mode: str, videos: dict[str, Path]) -> dict[str, Any]:
    """One system in `mode` (CAMERA_DATAFLOW, tracking on): the videos streamed, then steps of more
    cameras until one is not held, and its dataflow's memory after them (it started from
    the engine cache); then a system searching every frame whole streams the videos, to
    compare the faces found and their labels."""
    home = settings.models.deepface_home
    steps: list[dict[str, Any]] = []
    with facestream_system(settings, home, CAMERA_DATAFLOW, mode) as (system, _service):
        tracker_detects = video_results(system, videos)
        for cameras in camera_counts():
            if cameras > MAX_CAMERAS:
                break
            say(f"bench: cameras, {mode} mode, {cameras} camera(s) for {STEP_SECONDS:.0f} s")
            step = system.supervise(
                partial(camera_step, system, cameras), STEP_TIMEOUT + 120, "a cameras step"
            )
            steps.append(step)
            say(
                f"bench: {cameras} camera(s): {'held' if step['held'] else 'NOT held'}, "
                f"{step['frames_answered_per_s']:.1f} frames/s, p99 {step['p99_s']:.2f} s, "
                f"dropped {100 * step['dropped_share']:.1f}%"
            )
            if not step["held"]:
                break
        dataflow = next(c for c in system.children if c.name.startswith("dataflow"))
        memory = {
            "steady_rss_mb": memory_mb(dataflow.pid),
            "steady_peak_rss_mb": memory_mb(dataflow.pid, "VmHWM"),
        }
    with facestream_system(settings, home, CAMERA_DATAFLOW, mode, WHOLE_FRAMES) as (system, _):
        whole = video_results(system, videos)
    held = held_count(steps)
    at_held = next((step for step in steps if step["cameras"] == held), None)
    return {
        "held": held,
        "steps": steps,
        "at_held": at_held,
        **memory,
        "tracker_detection": {
            name: detection_agreement(whole[name], tracker_detects[name]) for name in videos
        },
    }


def peer_frames_per_s(inputs: Inputs) -> dict[str, Any]:
    """The strongest peer's sampled frames/s on the composed video: the video row's when it
    ran, else one pass of ALONE_PEER measured here."""
    video = inputs.report.get("video")
    if video:
        strongest = video["strongest_peer"]
        return {
            "peer": strongest,
            "frames_per_s": video["passes"][strongest]["frames_per_s"],
            "from": "the video row",
        }
    settings, args = inputs.settings, inputs.args
    with tempfile.TemporaryDirectory(prefix="facestream-bench-cameras-") as workdir:
        _video, frames = sampled_frames(Path(workdir))
        say(f"bench: cameras, {ALONE_PEER} on {len(frames)} sampled frames")
        with peer_servers(
            settings.models.deepface_home, 2, args.peer_workers, inputs.images[0]
        ) as peers:
            run = saturate(peer_services(peers)[ALONE_PEER], frames, 1, args.concurrency)
    return {"peer": ALONE_PEER, "frames_per_s": run.images / run.seconds, "from": "measured here"}


def measure_cameras(inputs: Inputs) -> dict[str, Any]:
    """Cameras held by fast and exact mode (tracking on), each mode's first start on an
    empty engine cache (its memory converting and quantizing), and the peer's figure."""
    settings = inputs.settings
    home = settings.models.deepface_home
    modes: dict[str, Any] = {}
    with tempfile.TemporaryDirectory(prefix="facestream-bench-cameras-") as workdir:
        videos = lever_videos(Path(workdir))
        for mode in CAMERA_MODES:
            say(f"bench: cameras, {mode} mode's first start, on an empty engine cache")
            started = first_start(settings, home, mode)
            modes[mode] = {
                "first_start_peak_rss_mb": max(started["peak_rss_mb"]),
                "first_start_s": started["seconds_to_first_answer"],
                **mode_steps(settings, mode, videos),
            }
    peer = peer_frames_per_s(inputs)
    return {
        "fps": VIDEO_FPS,
        "step_seconds": STEP_SECONDS,
        "held_when": {"p99_below_s": HELD_P99_S, "dropped_at_most": HELD_DROPPED},
        "machine_cores": len(os.sched_getaffinity(0)),
        "modes": modes,
        "peer": {**peer, "cameras": peer["frames_per_s"] / VIDEO_FPS},
    }
