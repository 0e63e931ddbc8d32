"""The command line's JSON lines: every documented field, numbers as numbers."""

from __future__ import annotations

import json

from apps.result_table import frame_json, message_json, result_json
from facestream.v1 import records_pb2


def tracked_result() -> records_pb2.AnalysisResult:
    """A stream's first frame: one face analysed on it, one track that ended on it."""
    frame = records_pb2.StreamFrame(stream_id="cam", sequence=0, frame_index=0, position_ms=0)
    face = records_pb2.Face(age=31.5, track_id="t1", attributes_from=0, carried=False)
    ended = records_pb2.TrackSummary(
        track_id="t0",
        first=records_pb2.FramePoint(sequence=0),
        last=records_pb2.FramePoint(sequence=2**40, frame_index=7, position_ms=1_400),
        frames_seen=3,
    )
    return records_pb2.AnalysisResult(
        request_id="r0", frame=frame, faces=[face], ended_tracks=[ended]
    )


def test_64_bit_integers_are_numbers_and_zero_fields_are_written():
    result = tracked_result()
    line = json.loads(frame_json(result.frame, result))
    assert line["sequence"] == 0 and line["position_ms"] == 0 and line["last"] is False
    (face,) = line["faces"]
    assert face["attributesFrom"] == 0 and face["carried"] is False and face["trackId"] == "t1"
    (track,) = line["ended_tracks"]
    assert track["first"] == {"sequence": 0, "frameIndex": 0, "positionMs": 0}
    assert track["last"] == {"sequence": 2**40, "frameIndex": 7, "positionMs": 1_400}
    assert track["framesSeen"] == 3 and track["endedBy"] == ""


def test_an_images_line_has_the_same_mapping():
    result = tracked_result()
    line = json.loads(result_json("a.jpg", result))
    assert line["image"] == "a.jpg" and line["frame"]["sequence"] == 0
    assert line["faces"][0]["attributesFrom"] == 0
    assert line["endedTracks"][0]["last"]["sequence"] == 2**40


def test_repeated_and_nested_messages_are_converted_at_every_depth():
    found = message_json(tracked_result())
    assert isinstance(found["endedTracks"][0]["last"]["positionMs"], int)
    assert isinstance(found["frame"]["frameIndex"], int)
