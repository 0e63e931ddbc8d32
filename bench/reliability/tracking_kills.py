"""Tracking kills: the dataflow dies mid-stream while it follows a video's faces.

Breaks: sends the composed video (apps/demo_video.py: two people, one leaving and coming
back) as the frames of a stream, once to a dataflow left alone and once to one that is
SIGKILLed mid-stream and restarted from its recovery snapshots (`-w 2`, tracking on). The
killed stream's second half is sent only after the kill, so the kill always lands while the
stream is open, however fast the dataflow answers.
Checks: every frame of both streams has a result, and each frame's faces have the same
track ids, the same carried/analysed decisions and the same source frames in both runs,
in every copy of a frame's result (at-least-once may repeat some after the kill).
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from pathlib import Path

import cv2

from apps.demo_video import demo_frames
from bench.reliability import scenario as kit
from bench.system_under_test import SystemUnderTest
from facestream.kafka_records import image_submitted, submission_key
from facestream.v1 import records_pb2

KILLS = 1  # mid-stream, once half of the frames sent before it are answered

# A frame's faces as tracking sees them: left to right, (track, carried, source frame).
FaceTracks = tuple[tuple[str, bool, int], ...]


def run(home: Path, size: kit.Size) -> kit.Scenario:
    """Stream the composed video twice, killing the dataflow during the second."""
    scenario = kit.Scenario("tracking across a dataflow SIGKILL, -w 2 with recovery")
    frames = video_frames(size.tracked_frames)
    with kit.running_system(home) as system:
        recovery = kit.init_recovery(system.workdir / "recovery", 2)
        started = time.monotonic()
        system.start_dataflow(workers=2, recovery=recovery)
        send_stream(system, "calm", frames)
        calm = system.results(frame_ids("calm", len(frames)), size.patience)
        killed_ids = frame_ids("killed", len(frames))

        def send(part: Sequence[int]) -> set[str]:
            send_stream(system, "killed", frames, part)
            return {f"killed-{n}" for n in part}

        exit_codes = kit.kill_between_parts(
            system, range(len(frames)), KILLS, send, size.patience, workers=2, recovery=recovery
        )
        killed = system.results(killed_ids, size.patience)
        calm_tracks = {rid.split("-")[-1]: face_tracks(calm[rid][0]) for rid in calm}
        differing = [
            rid
            for rid in killed_ids & killed.keys()
            for result in killed[rid]
            if face_tracks(result) != calm_tracks.get(rid.split("-")[-1])
        ]
        tracks = sorted({t for faces in calm_tracks.values() for t, _c, _s in faces})
        scenario.figures = {
            "frames": len(frames),
            "sent_before_kill": kit.part_size(len(frames), KILLS),
            "answered_in_all": len(killed_ids & killed.keys()),
            "duplicates": kit.count_results(killed, killed_ids)["duplicates"],
            "tracks": tracks,
            "carried_faces": sum(c for faces in calm_tracks.values() for _t, c, _s in faces),
            "results_with_other_tracks": len(differing),
            "exit_codes": exit_codes,
            "seconds": round(time.monotonic() - started, 1),
        }
    scenario.targets = [
        kit.at_least("dataflow kills mid-stream", len(exit_codes), 1),
        kit.at_most("frames without a result", len(frames) - len(killed_ids & killed.keys()), 0),
        kit.at_most("results whose tracks differ from the run without a kill", len(differing), 0),
        kit.at_least("tracks in the video (two people, one coming back)", len(tracks), 3),
    ]
    return scenario


def video_frames(count: int) -> list[bytes]:
    """The composed video's frames, 640x480, as JPEG."""
    encoded = []
    for picture, _boxes in demo_frames(count, (640, 480)):
        ok, data = cv2.imencode(".jpg", picture)
        assert ok
        encoded.append(data.tobytes())
    return encoded


def frame_ids(stream: str, count: int) -> set[str]:
    return {f"{stream}-{n}" for n in range(count)}


def send_stream(
    system: SystemUnderTest, stream: str, frames: Sequence[bytes], part: Sequence[int] | None = None
) -> None:
    """Publish one stream's frames (200 ms apart; only the indices in `part`, if given),
    keyed by stream, in order. The last of `frames` is marked as the stream's last."""
    records = []
    for n in range(len(frames)) if part is None else part:
        frame = records_pb2.StreamFrame(
            stream_id=stream, sequence=n, frame_index=n, position_ms=200 * n,
            last=n == len(frames) - 1,
        )  # fmt: skip
        submission = image_submitted(f"{stream}-{n}", frames[n], frame=frame)
        records.append((submission_key(submission), submission.SerializeToString()))
    system.produce(system.settings.kafka.topic_requests, records)


def face_tracks(result: records_pb2.AnalysisResult) -> FaceTracks:
    """What tracking decided for a frame's faces, left to right."""
    faces = sorted(result.faces, key=lambda face: (face.region.x, face.region.y))
    return tuple((face.track_id, face.carried, face.attributes_from) for face in faces)
