"""The tracker's logic (facestream/tracking.py): matching faces to tracks by box overlap,
tracks ending, deterministic ids, and re-analysis in stream time."""

from __future__ import annotations

import pickle

import pytest

from apps.demo_video import demo_frames
from facestream.tracking import (
    Box,
    FramePoint,
    StreamTracks,
    TrackingPolicy,
    box_overlap,
    close,
    follow,
    match_faces,
)

POLICY = TrackingPolicy(
    min_overlap=0.3, max_missed=2, reanalyse_after_ms=2000, max_resize=0.25, max_move=0.25
)


def run(frames: list[list[Box]], policy: TrackingPolicy = POLICY, state=None):
    """Follow `frames` (200 ms apart, the last one last); each frame's track ids, whether
    each face was analysed, and the ids of the tracks ended, frame by frame."""
    state = state or StreamTracks()
    return [
        follow_frame(state, sequence, boxes, sequence == len(frames) - 1, policy)
        for sequence, boxes in enumerate(frames)
    ]


def follow_frame(state, sequence, boxes, last, policy=POLICY):
    """One frame, 200 ms after the one before: its track ids, which faces are analysed,
    and the tracks it ended."""
    decisions, ended = follow(state, at(sequence), boxes, last, policy)
    return (
        [d.track_id for d in decisions],
        [d.analyse for d in decisions],
        [t.track_id for t in ended],
    )


def at(sequence: int, position_ms: int | None = None) -> FramePoint:
    """Frame `sequence`, every frame of the source sampled 200 ms apart unless told."""
    position = 200 * sequence if position_ms is None else position_ms
    return FramePoint(sequence, sequence, position)


def test_box_overlap():
    assert box_overlap((0, 0, 10, 10), (0, 0, 10, 10)) == 1.0
    assert box_overlap((0, 0, 10, 10), (20, 20, 10, 10)) == 0.0
    assert box_overlap((0, 0, 10, 10), (5, 0, 10, 10)) == pytest.approx(50 / 150)
    assert box_overlap((0, 0, 0, 0), (0, 0, 0, 0)) == 0.0


def test_faces_keep_their_tracks_as_they_move_and_new_faces_open_new_ones():
    frames = [
        [(10, 10, 50, 50), (200, 10, 50, 50)],
        [(205, 12, 50, 50), (14, 10, 50, 50)],  # the detector's order changed
        [(18, 10, 50, 50), (210, 14, 50, 50), (400, 300, 60, 60)],
    ]
    ids = [frame[0] for frame in run(frames)]
    assert ids == [["t1", "t2"], ["t2", "t1"], ["t1", "t2", "t3"]]


def test_a_track_ends_after_max_missed_frames_and_a_return_after_that_is_a_new_track():
    face, away = [(10, 10, 50, 50)], []
    back_in_time = run([face, away, away, face, face])  # missed 2: still t1
    assert [frame[0] for frame in back_in_time] == [["t1"], [], [], ["t1"], ["t1"]]
    too_late = run([face, away, away, away, face, face])  # missed 3 > 2: ended
    assert [frame[2] for frame in too_late][3] == ["t1"]
    assert [frame[0] for frame in too_late][4:] == [["t2"], ["t2"]]


def test_the_last_frame_ends_every_track():
    out = run([[(10, 10, 50, 50), (200, 10, 50, 50)], [(10, 10, 50, 50)]])
    assert sorted(out[-1][2]) == ["t1", "t2"]


def test_ties_go_to_the_lower_face_index_then_the_older_track():
    state = StreamTracks()
    follow(state, at(0), [(10, 10, 50, 50)], False, POLICY)
    assert match_faces(state.tracks, [(10, 10, 50, 50), (10, 10, 50, 50)], 0.3) == {0: "t1"}


def test_the_same_frames_give_the_same_ids_also_after_a_replay_from_a_snapshot():
    frames = [[(10 + 4 * n, 10, 50, 50), (300 - 5 * n, 40, 60, 60)] for n in range(12)]
    frames[6] = frames[6][:1]
    whole = run(frames)
    assert whole == run(frames)
    state = StreamTracks()
    for sequence, boxes in enumerate(frames[:5]):
        follow(state, at(sequence), boxes, False, POLICY)
    snapshot = pickle.dumps(state)  # what Bytewax keeps
    resumed = pickle.loads(snapshot)
    replay = [
        follow_frame(resumed, sequence, boxes, sequence == len(frames) - 1)
        for sequence, boxes in enumerate(frames[5:], start=5)
    ]
    assert replay == whole[5:]


def test_a_face_is_analysed_again_after_stream_time_or_a_change_and_carried_otherwise():
    state = StreamTracks()
    steps = [
        (0, (100, 100, 80, 80)),  # opens: analysed
        (200, (104, 100, 80, 80)),  # small move: carried from frame 0
        (400, (104, 100, 110, 110)),  # 37% larger: analysed
        (600, (106, 101, 110, 110)),  # carried from frame 2
        (2400, (106, 101, 110, 110)),  # 2000 ms of stream time since frame 2: analysed
        (2600, (140, 101, 110, 110)),  # moved 31% of its size: analysed
    ]
    decisions = [
        follow(state, at(sequence, position), [box], False, POLICY)[0][0]
        for sequence, (position, box) in enumerate(steps)
    ]
    assert [d.analyse for d in decisions] == [True, False, True, False, True, True]
    assert [d.carried_from for d in decisions] == [None, 0, None, 2, None, None]
    assert {d.track_id for d in decisions} == {"t1"}


def test_faces_beyond_the_track_cap_are_analysed_untracked():
    policy = TrackingPolicy(max_tracks=2)
    boxes = [(100 * n, 0, 50, 50) for n in range(4)]
    decisions, _ended = follow(StreamTracks(), at(0), boxes, False, policy)
    assert [(d.track_id, d.analyse) for d in decisions] == [
        ("t1", True),
        ("t2", True),
        ("", True),
        ("", True),
    ]


def test_the_composed_videos_faces_are_two_tracks_and_the_one_that_returns_a_third():
    boxes = [frame_boxes for _frame, frame_boxes in demo_frames(50, (640, 480))]
    out = run([list(frame) for frame in boxes], TrackingPolicy(max_missed=5))
    ids = [frame_ids for frame_ids, _analysed, _ended in out]
    gone = next(n for n, frame_ids in enumerate(ids) if len(frame_ids) == 1)
    back = next(n for n in range(gone, len(ids)) if len(ids[n]) == 2)
    assert all(frame_ids == ["t1", "t2"] for frame_ids in ids[:gone])  # left sprite first
    assert all(frame_ids == ["t1"] for frame_ids in ids[gone:back])
    assert all(frame_ids == ["t1", "t3"] for frame_ids in ids[back:])
    ended = {track: n for n, (_ids, _analysed, ended) in enumerate(out) for track in ended}
    assert ended["t2"] == gone + 5 < back  # missing for more than max_missed frames
    assert ended["t1"] == ended["t3"] == len(out) - 1
    analysed = sum(flag for _ids, flags, _ended in out for flag in flags)
    faces = sum(len(flags) for _ids, flags, _ended in out)
    assert analysed < faces / 3  # most faces carry their track's attributes


def test_an_ended_track_says_where_it_was_first_and_last_and_how_often():
    state = StreamTracks()
    for sequence, box in enumerate([(10, 10, 50, 50), (12, 10, 70, 70), (14, 10, 60, 60)]):
        follow(state, at(sequence), [box], False, POLICY)
    _decisions, ended = follow(state, at(3), [], True, POLICY)
    (track,) = ended
    assert (track.first, track.last) == (at(0), at(2))
    assert (track.seen, track.analysed, track.largest) == (3, 2, (12, 10, 70, 70))


def test_closing_a_stream_ends_its_open_tracks_oldest_first():
    state = StreamTracks()
    follow(state, at(0), [(300, 0, 50, 50), (0, 0, 50, 50)], False, POLICY)
    assert [track.track_id for track in close(state)] == ["t1", "t2"]
    assert not state.tracks and state.opened == 2  # ids go on: a later face is t3
