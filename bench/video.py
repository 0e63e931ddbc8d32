"""The video row of `make bench`: the demo's composed video sampled at 5 fps, facestream's
stream (`VideoStream`; exact mode with and without tracking, fast mode with tracking)
against DeepFace's peer called once per sampled frame; the agreement of carried attributes
with the same faces analysed frame by frame; a live 5 fps camera in fast mode, capture to
result.

This module composes and samples the video and runs one facestream pass; bench/measures.py
starts the systems and interleaves the passes with the peer's, as for the headline.
"""

from __future__ import annotations

import statistics
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from apps.demo_video import ComposedVideo, compose_demo_video
from apps.live_view import LiveView
from apps.video import FrameResult, VideoStream, capture_to_result
from apps.video_source import open_video_source
from bench.load import LoadRun
from facestream.client import AnalyzeClient
from facestream.tracking import box_overlap
from facestream.v1 import records_pb2

# A 10 s video sampled at 5 fps: one pass is 50 frames, so that a few interleaved passes of
# each side add minutes, not tens of minutes, to `make bench`.
VIDEO_SECONDS = 10.0
VIDEO_FPS = 5.0
# What a frame's result may say when the pass went right (a frame may hold no face).
ANSWERED = (records_pb2.ANALYSIS_STATUS_OK, records_pb2.ANALYSIS_STATUS_NO_FACE)
# A carried face and a face of the untracked pass are the same face from this overlap on.
SAME_FACE = 0.5
LABELLED = ("gender", "emotion", "race")


def sampled_frames(workdir: Path) -> tuple[ComposedVideo, list[bytes]]:
    """The demo video composed into `workdir`, and its frames sampled at VIDEO_FPS as JPEG:
    the bytes the peer is sent, the same ones `VideoStream` sends facestream."""
    video = compose_demo_video(workdir / "bench.mp4", VIDEO_SECONDS, VIDEO_FPS)
    with open_video_source(str(video.path), VIDEO_FPS) as source:
        return video, [frame.jpeg for frame in source.frames()]


def stream_pass(
    client: AnalyzeClient,
    source_name: str,
    window: int,
    results: list[records_pb2.AnalysisResult] | None = None,
    seconds: float | None = None,
    view: LiveView | None = None,
) -> LoadRun:
    """One pass over the video at `source_name` (a file, or a live URL read for `seconds`)
    with `VideoStream` under a fresh stream id, at most `window` frames unanswered: the
    frames, the faces in their results and the seconds from the call (the first frame goes
    as soon as it is sampled) to the last result; each frame's result is appended to
    `results`, and offered to `view` (which is told when the stream ended). A live
    source's `latencies` are each frame's capture to its result.

    Fails when a frame got no analysis: a pass with holes would not compare with the
    peer's.
    """
    faces = 0
    last = 0.0
    failures: list[str] = []
    latencies: list[float] = []

    with open_video_source(source_name, VIDEO_FPS, duration=seconds) as source:

        def on_result(done: FrameResult) -> None:
            nonlocal faces, last
            last = time.perf_counter()
            if view is not None:
                view.offer(done)
            if (latency := capture_to_result(source, done)) is not None:
                latencies.append(latency)
            if done.result is None or done.result.status not in ANSWERED:
                why = done.error or (done.result.error.message if done.result else "no result")
                failures.append(f"frame {done.frame.sequence}: {why}")
                return
            faces += len(done.result.faces)
            if results is not None:
                results.append(done.result)

        stream = VideoStream(
            client, source, f"bench-video-{time.time_ns()}", on_result, window=window, timeout=900
        )
        if view is not None:
            view.counts = stream.summary
        started = time.perf_counter()
        summary = stream.run()
        if view is not None:
            view.finish(summary.line())
    lost = summary.refused or summary.answered != summary.sent
    if summary.broken or lost or failures or (summary.dropped and not source.live):
        raise RuntimeError(f"a video pass went wrong: {summary.line()}; errors: {failures[:3]}")
    return LoadRun(summary.sent, faces, last - started, latencies)


def carried_agreement(
    tracked: Sequence[records_pb2.AnalysisResult], analysed: Sequence[records_pb2.AnalysisResult]
) -> dict[str, Any]:
    """How the attributes a tracked pass carried compare with the same faces analysed on
    their own frame (a pass without tracking): dominant labels equal (gender, emotion,
    race, all asked) on what share of carried faces, the largest probability difference
    (percentage points) and the largest age difference."""
    own = {result.frame.sequence: list(result.faces) for result in analysed}
    carried = equal = 0
    max_probability = max_age = 0.0
    for result in tracked:
        for face in result.faces:
            if not face.carried:
                continue
            reference = same_face(face, own.get(result.frame.sequence, []))
            if reference is None:
                continue
            carried += 1
            equal += labels_equal(face, reference)
            for action in LABELLED:
                mine, theirs = getattr(face, action).scores, getattr(reference, action).scores
                for label, score in mine.items():
                    max_probability = max(max_probability, abs(score - theirs.get(label, 0.0)))
            max_age = max(max_age, abs(face.age - reference.age))
    return {
        "carried_faces_compared": carried,
        "dominant_labels_equal": equal / carried if carried else 0.0,
        "max_probability_difference": max_probability,
        "max_age_difference": max_age,
    }


def detection_agreement(
    reference: Sequence[records_pb2.AnalysisResult], other: Sequence[records_pb2.AnalysisResult]
) -> dict[str, Any]:
    """Of the faces in the `reference` pass's results, the share the `other` pass found in
    the same frame (same face: boxes overlapping SAME_FACE), and of those the share whose
    dominant labels (gender, emotion, race) are equal."""
    found = {result.frame.sequence: list(result.faces) for result in other}
    faces = matched = equal = 0
    for result in reference:
        for face in result.faces:
            faces += 1
            twin = same_face(face, found.get(result.frame.sequence, []))
            if twin is not None:
                matched += 1
                equal += labels_equal(face, twin)
    return {
        "faces": faces,
        "found_share": matched / faces if faces else 0.0,
        "labels_equal_share": equal / matched if matched else 0.0,
    }


def same_face(
    face: records_pb2.Face, candidates: Sequence[records_pb2.Face]
) -> records_pb2.Face | None:
    """The candidate whose box overlaps `face`'s most, if at least SAME_FACE."""
    scored = [(box_overlap(_box(face), _box(other)), i) for i, other in enumerate(candidates)]
    overlap, index = max(scored, default=(0.0, -1))
    return candidates[index] if overlap >= SAME_FACE else None


def labels_equal(face: records_pb2.Face, other: records_pb2.Face) -> bool:
    """The dominant labels of LABELLED are equal on both faces."""
    return all(getattr(face, a).dominant == getattr(other, a).dominant for a in LABELLED)


def analysed_share(results: Sequence[records_pb2.AnalysisResult]) -> float:
    """Of the faces in these results, the share the models ran on (the others carried)."""
    faces = [face for result in results for face in result.faces]
    return sum(not face.carried for face in faces) / len(faces) if faces else 0.0


def _box(face: records_pb2.Face) -> tuple[int, int, int, int]:
    return (face.region.x, face.region.y, face.region.w, face.region.h)


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


def live_side(runs: Sequence[LoadRun]) -> dict[str, Any]:
    """A live source's frames: how many were answered, and capture to result, p50/p99."""
    latencies = [latency for run in runs for latency in run.latencies]
    return {
        "frames": len(latencies),
        "frames_per_s": statistics.median(run.images / run.seconds for run in runs),
        "p50_s": float(np.percentile(latencies, 50)),
        "p99_s": float(np.percentile(latencies, 99)),
    }
