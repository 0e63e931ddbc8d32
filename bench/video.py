"""The video row of `make bench`: the demo's composed video sampled at 5 fps, facestream's
stream (`stream_video`, exact mode) against DeepFace's peer called once per sampled frame.

This module composes and samples the video and runs one facestream pass; bench/suite.py
starts the systems and interleaves the passes with the peer's, as for the headline.
"""

from __future__ import annotations

import statistics
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from apps.demo_video import ComposedVideo, compose_demo_video
from apps.video import FrameResult, stream_video
from apps.video_source import open_video_source
from bench.load import LoadRun
from facestream.client import AnalyzeClient
from facestream.v1 import records_pb2

# A 10 s video sampled at 5 fps: one pass is 50 frames, so that a few interleaved passes of
# each side add minutes, not tens of minutes, to `make bench`.
VIDEO_SECONDS = 10.0
VIDEO_FPS = 5.0
# What a frame's result may say when the pass went right (a frame may hold no face).
ANSWERED = (records_pb2.ANALYSIS_STATUS_OK, records_pb2.ANALYSIS_STATUS_NO_FACE)


def sampled_frames(workdir: Path) -> tuple[ComposedVideo, list[bytes]]:
    """The demo video composed into `workdir`, and its frames sampled at VIDEO_FPS as JPEG:
    the bytes the peer is sent, the same ones `stream_video` sends facestream."""
    video = compose_demo_video(workdir / "bench.mp4", VIDEO_SECONDS, VIDEO_FPS)
    with open_video_source(str(video.path), VIDEO_FPS) as source:
        return video, [frame.jpeg for frame in source.frames()]


def stream_pass(client: AnalyzeClient, path: Path, window: int) -> LoadRun:
    """One pass over the video at `path` with `stream_video` under a fresh stream id, at
    most `window` frames unanswered: the frames, the faces in their results and the seconds
    from the call (the first frame goes as soon as it is sampled) to the last result.

    Fails when a frame got no analysis: a pass with holes would not compare with the
    peer's. `latencies` is empty: the stream does not say when each frame was sent.
    """
    faces = 0
    last = 0.0
    failures: list[str] = []

    def on_result(done: FrameResult) -> None:
        nonlocal faces, last
        last = time.perf_counter()
        if done.result is None or done.result.status not in ANSWERED:
            why = done.error or (done.result.error.message if done.result else "no result")
            failures.append(f"frame {done.frame.sequence}: {why}")
        else:
            faces += len(done.result.faces)

    with open_video_source(str(path), VIDEO_FPS) as source:
        started = time.perf_counter()
        summary = stream_video(
            client, source, f"bench-video-{time.time_ns()}", on_result, window=window, timeout=900
        )
    lost = summary.refused or summary.dropped or summary.answered != summary.sent
    if summary.broken or lost or failures:
        raise RuntimeError(f"a video pass went wrong: {summary.line()}; errors: {failures[:3]}")
    return LoadRun(summary.sent, faces, last - started, [])


def video_side(runs: Sequence[LoadRun]) -> dict[str, Any]:
    """Medians over one side's passes: sampled frames/s, faces/s, faces seen per pass and
    seconds per pass."""
    return {
        "frames_per_s": statistics.median(run.images / run.seconds for run in runs),
        "faces_per_s": statistics.median(run.faces_per_s for run in runs),
        "faces_per_pass": statistics.median(run.faces for run in runs),
        "seconds_per_pass": statistics.median(run.seconds for run in runs),
        "frames_per_pass": runs[0].images,
        "runs": len(runs),
    }
