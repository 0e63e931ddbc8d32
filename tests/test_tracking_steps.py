"""The dataflow's tracking steps alone (dataflow/tracking_steps.py): frames put in order,
faces planned (analysed or carried), frames answered in the tracker's order with their
tracks, summaries, the timers of the stateful step, and bounded state."""

from __future__ import annotations

import logging
import pickle
import tracemalloc
from dataclasses import replace

import numpy as np
import pytest

from dataflow.items import (
    AnalyzedFace,
    FaceJob,
    FrameFaces,
    FramePlan,
    ImageJob,
    ImageProgress,
)
from dataflow.steps import quarantine
from dataflow.tracking_steps import (
    REGION_FACE_PX,
    REGION_MARGIN,
    FrameDetection,
    StreamTracking,
    TrackFaces,
    TrackingCounts,
    extract_stream_frame,
    frame_faces,
    gather_frames,
    new_tracker,
    search_regions,
    take_frame,
    track_summary_key,
)
from di.settings import TrackingSettings
from facestream.faces import Face, Region
from facestream.kafka_records import Status, result_record
from facestream.tracking import FramePoint, StreamTracks, TrackingPolicy, follow
from facestream.v1 import records_pb2

POLICY = TrackingPolicy(
    min_overlap=0.3, max_missed=2, reanalyse_after_ms=2000, max_resize=0.25, max_move=0.25
)
TRACKING = StreamTracking(POLICY, gap_timeout=5.0, max_buffered=8, idle_timeout=60.0)


def frame(
    sequence: int, boxes: list[tuple[int, int, int, int]], last: bool = False, stream: str = "cam"
) -> FrameFaces:
    """Frame `sequence` of `stream` (200 ms apart) with faces at `boxes`, as extract_faces
    gives it (no face: its NO_FACE result)."""
    stream_frame = records_pb2.StreamFrame(
        stream_id=stream, sequence=sequence, frame_index=sequence, position_ms=200 * sequence,
        last=last,
    )  # fmt: skip
    progress = ImageProgress(
        request_id=f"{stream}-{sequence}", principal="alice", source="t/0/0",
        face_count=len(boxes), started_at=0.0, queued=0.0, decode=0.0, detect=0.0,
        frame=stream_frame,
    )  # fmt: skip
    jobs = [
        FaceJob(progress, index, Face(*box, confidence=0.9, crop=np.zeros((2, 2, 3))), ("age",))
        for index, box in enumerate(boxes)
    ]
    finished = (
        None
        if boxes
        else result_record(
            progress.request_id,
            Status.ANALYSIS_STATUS_NO_FACE,
            principal="alice",
            frame=stream_frame,
        )
    )
    (item,) = frame_faces(stream_frame, "alice", [*jobs, *([finished] if finished else [])])
    return item


def take(state, item, counts=None):
    return take_frame(state, item, POLICY, counts or TrackingCounts())


def analysed(job: FaceJob, age: float, error: tuple[str, str] | None = None) -> AnalyzedFace:
    """What the models give for `job`: an age and a gender, or an error."""
    record = None
    if error is None:
        record = records_pb2.Face(age=age, embedding=np.float32([age]).tobytes())
        record.gender.scores.update({"Woman": age, "Man": 100 - age})
        record.gender.dominant = "Woman" if age > 50 else "Man"
    return AnalyzedFace(job.image, job.index, record, error, 0.1)


def plans_and_jobs(out):
    plans = [item for item in out if isinstance(item, FramePlan)]
    jobs = [item for item in out if isinstance(item, FaceJob)]
    return plans, jobs


FACE_A, FACE_B = (10, 10, 50, 50), (300, 10, 50, 50)


def test_a_frame_comes_out_as_one_item_with_its_faces_or_its_result():
    with_faces, without = frame(0, [FACE_A, FACE_B]), frame(1, [])
    assert with_faces.stream == "alice/cam" and len(with_faces.faces) == 2
    assert with_faces.finished is None
    assert without.faces == () and without.finished.status == Status.ANALYSIS_STATUS_NO_FACE


def test_frames_are_followed_in_sequence_order_and_only_changed_faces_are_analysed():
    state = new_tracker(frame(0, [FACE_A]), TRACKING.max_buffered)
    out = take(state, frame(0, [FACE_A, FACE_B]))
    out += take(state, frame(2, [FACE_A, FACE_B]))  # held: 1 is missing
    assert [p.frame.sequence for p in plans_and_jobs(out)[0]] == [0]
    out += take(state, frame(1, [FACE_A, FACE_B]))
    plans, jobs = plans_and_jobs(out)
    assert [(p.order, p.frame.sequence) for p in plans] == [(0, 0), (1, 1), (2, 2)]
    # Frame 0 opens t1 and t2, analysed; frames 1 and 2 carry them from frame 0.
    assert [(j.image.frame.sequence, j.index) for j in jobs] == [(0, 0), (0, 1)]
    assert all(j.image.stream_gathering == "alice/cam#0" for j in jobs)
    decisions = [[(f.decision.track_id, f.decision.carried_from) for f in p.faces] for p in plans]
    assert decisions == [[("t1", None), ("t2", None)]] + [[("t1", 0), ("t2", 0)]] * 2


def test_a_missing_frame_is_skipped_after_the_gap_timeout_and_answered_untracked_if_it_comes():
    now = [100.0]
    logic = TrackFaces(None, TRACKING, clock=lambda: now[0])
    out = list(logic.on_item(frame(0, [FACE_A]))[0])
    now[0] = 101.0
    out += logic.on_item(frame(2, [FACE_A]))[0]
    assert [p.frame.sequence for p in plans_and_jobs(out)[0]] == [0]
    assert logic.notify_at().timestamp() == pytest.approx(106.0)  # missed at 101, + 5 s
    now[0] = 104.0
    assert logic.on_notify()[0] == []  # not yet
    now[0] = 106.5
    out, retain = logic.on_notify()  # frame 1 given up on
    assert [p.frame.sequence for p in plans_and_jobs(out)[0]] == [2] and retain is False
    assert logic.state.order.skipped == 1
    late, _ = logic.on_item(frame(1, [FACE_A]))  # it came after all: answered as an image
    assert [(type(item).__name__, item.image.stream_gathering) for item in late] == [
        ("FaceJob", "")
    ]


def test_repeated_frames_and_frames_after_the_last_are_answered_untracked():
    state = new_tracker(frame(0, []), TRACKING.max_buffered)
    counts = TrackingCounts()
    take(state, frame(0, [FACE_A]), counts)
    again = take(state, frame(0, [FACE_A]), counts)  # at-least-once: a repeat
    assert [item.image.stream_gathering for item in again] == [""]
    take(state, frame(1, [], last=True), counts)
    after = take(state, frame(2, []), counts)
    assert [item.status for item in after] == [Status.ANALYSIS_STATUS_NO_FACE]
    assert counts.late == 2 and counts.untracked == 1


def test_the_reorder_buffer_is_bounded_a_full_one_gives_up_on_the_missing_frame():
    state = new_tracker(frame(0, []), max_buffered=3)
    counts = TrackingCounts()
    take(state, frame(0, [FACE_A]), counts)
    out = []
    for sequence in range(2, 7):  # 1 never comes
        out += take(state, frame(sequence, [FACE_A]), counts)
    assert len(state.order.buffer) <= 3 and counts.skipped == 1
    assert [p.frame.sequence for p in plans_and_jobs(out)[0]] == [2, 3, 4, 5, 6]


def test_frames_are_answered_in_order_with_tracks_carried_attributes_and_summaries():
    state = new_tracker(frame(0, []), TRACKING.max_buffered)
    frames = [frame(0, [FACE_A, FACE_B]), frame(1, [FACE_A, FACE_B]), frame(2, [FACE_A], last=True)]
    plans, jobs = plans_and_jobs([item for f in frames for item in take(state, f)])
    gathering, out = None, []
    # The analysed faces come back before their plans, in reverse: the answers wait.
    for item in [*(analysed(job, 30 + 40 * job.index) for job in reversed(jobs)), *plans]:
        gathering, emitted = gather_frames(gathering, item, synthetic_weights=True)
        out += emitted
    results = [item for item in out if isinstance(item, records_pb2.AnalysisResult)]
    assert [r.frame.sequence for r in results] == [0, 1, 2]
    assert [[(f.track_id, f.carried, f.attributes_from) for f in r.faces] for r in results] == [
        [("t1", False, 0), ("t2", False, 0)],
        [("t1", True, 0), ("t2", True, 0)],
        [("t1", True, 0)],
    ]
    assert [f.age for r in results for f in r.faces] == [30, 70, 30, 70, 30]
    # A carried face carries its track's embedding too.
    embeddings = [np.frombuffer(f.embedding, np.float32)[0] for r in results for f in r.faces]
    assert embeddings == [30, 70, 30, 70, 30]
    summaries = [item for item in out if isinstance(item, records_pb2.TrackSummary)]
    assert [(s.track_id, s.ended_by, s.frames_seen, s.frames_analysed) for s in summaries] == [
        ("t1", "last_frame", 3, 1),
        ("t2", "last_frame", 2, 1),
    ]
    assert summaries[0].age == 30 and summaries[0].gender.dominant == "Man"
    assert summaries[1].age == 70 and summaries[1].gender.dominant == "Woman"
    assert (summaries[0].first.sequence, summaries[0].last.position_ms) == (0, 400)
    assert list(results[2].ended_tracks) == summaries  # the frame that ended them has them
    assert track_summary_key(summaries[1]) == b"alice/cam/t2"
    assert gathering is None  # the session's last frame is answered: its state is dropped


def test_a_carried_face_whose_analysis_failed_fails_its_frame_with_that_error():
    state = new_tracker(frame(0, []), TRACKING.max_buffered)
    plans, jobs = plans_and_jobs(take(state, frame(0, [FACE_A])) + take(state, frame(1, [FACE_A])))
    gathering, out = None, []
    problem = ("analyze.failed", "face analysis failed: RuntimeError: boom")
    for item in [analysed(jobs[0], 0, error=problem), *plans]:
        gathering, emitted = gather_frames(gathering, item, synthetic_weights=True)
        out += emitted
    assert [(r.status, r.error.code) for r in out] == [
        (Status.ANALYSIS_STATUS_FAILED, "analyze.failed")
    ] * 2


def test_an_idle_stream_is_closed_its_tracks_summarised_and_its_state_dropped():
    now = [0.0]
    logic = TrackFaces(None, TRACKING, clock=lambda: now[0])
    plans, jobs = plans_and_jobs(logic.on_item(frame(0, [FACE_A, FACE_B]))[0])
    assert logic.notify_at().timestamp() == pytest.approx(60.0)
    now[0] = 61.0
    out, discard = logic.on_notify()
    (closing,) = out
    assert discard is True and logic.state is None
    assert closing.frame is None and closing.ended_by == "idle" and closing.order == 1
    gathering = None
    for item in [*plans, closing, *(analysed(job, 40) for job in jobs)]:
        gathering, emitted = gather_frames(gathering, item, synthetic_weights=False)
    # Frame 0's answer, then the closing plan's summaries, once frame 0's faces are back.
    assert [type(item).__name__ for item in emitted] == ["AnalysisResult", *["TrackSummary"] * 2]
    assert [s.track_id for s in emitted[1:]] == ["t1", "t2"]
    assert {s.ended_by for s in emitted[1:]} == {"idle"} and gathering is None


def test_the_state_snapshot_is_a_copy_that_resumes_the_same_tracks():
    logic = TrackFaces(None, TRACKING, clock=lambda: 0.0)
    logic.on_item(frame(0, [FACE_A]))
    snapshot = pickle.dumps(logic.snapshot())  # what Bytewax keeps
    uninterrupted, _ = logic.on_item(frame(1, [FACE_B, FACE_A]))  # not in the snapshot
    replayed, _ = TrackFaces(pickle.loads(snapshot), TRACKING).on_item(frame(1, [FACE_B, FACE_A]))

    def track_ids(out):
        return [[f.decision.track_id for f in plan.faces] for plan in plans_and_jobs(out)[0]]

    assert track_ids(replayed) == track_ids(uninterrupted) == [["t2", "t1"]]


def test_ten_thousand_streams_hold_bounded_state_and_an_idle_close_frees_it():
    now = [0.0]
    opened = [0]

    def on_open(streams: int, _tracks: int) -> None:
        opened[0] += streams

    frames = [frame(0, [FACE_A, FACE_B], stream=f"s{n}") for n in range(10_000)]
    tracemalloc.start()
    try:
        logics = []
        for item in frames:
            logic = TrackFaces(None, TRACKING, on_open=on_open, clock=lambda: now[0])
            logic.on_item(item)
            logics.append(logic)
        held, _peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert held < 40_000_000  # bytes for 10,000 streams with two open tracks each
    sizes = [len(pickle.dumps(logic.snapshot())) for logic in logics[:100]]
    assert max(sizes) < 4096  # bytes per stream, as snapshotted
    assert opened[0] == 10_000
    now[0] = 61.0
    for logic in logics:
        _out, discard = logic.on_notify()
        assert discard
    assert opened[0] == 0 and all(logic.state is None for logic in logics)


def test_the_end_of_a_bounded_input_follows_the_frames_held_and_keeps_the_tracks():
    logic = TrackFaces(None, TRACKING, clock=lambda: 0.0)
    logic.on_item(frame(0, [FACE_A]))
    held, _ = logic.on_item(frame(2, [FACE_A]))  # 1 is missing
    assert plans_and_jobs(held)[0] == []
    out, discard = logic.on_eof()
    assert [p.frame.sequence for p in plans_and_jobs(out)[0]] == [2] and discard is False
    assert logic.state.order.skipped == 1 and list(logic.state.tracks.tracks) == ["t1"]


def test_with_tracking_a_poison_frame_is_one_finished_frame_and_its_dead_letter():
    stream_frame = records_pb2.StreamFrame(stream_id="cam", sequence=4)
    job = ImageJob(
        request_id="cam-4", source="t/0/9", image=b"", actions=(), detector_backend="",
        submitted_at=None, received_at=0.0, record=b"raw", principal="alice",
        frame=stream_frame,
    )  # fmt: skip
    poisoned = quarantine(job, 3, 3, logging.getLogger("test"))  # what the quarantine gives
    out = extract_stream_frame(job, extract=lambda _job: poisoned)
    (item, letter) = out
    assert isinstance(item, FrameFaces) and item.sequence == 4 and item.faces == ()
    assert item.finished.error.code == "request.poison" and letter.code == "request.poison"
    image_job = replace(job, frame=None)  # an image is extracted as ever
    assert extract_stream_frame(image_job, extract=lambda _job: poisoned) == poisoned


def test_tracking_is_off_at_zero_seconds_and_its_settings_make_the_policy():
    off = TrackingSettings.from_env({"FACESTREAM_TRACKING_REANALYSE_AFTER": "0"})
    assert not off.enabled
    on = TrackingSettings.from_env(
        {"FACESTREAM_TRACKING_REANALYSE_AFTER": "1.5", "FACESTREAM_TRACKING_MAX_MOVE": "0.5"}
    )
    assert on.enabled and on.policy.reanalyse_after_ms == 1500 and on.policy.max_move == 0.5
    # Fast mode searches whole frames around proposed faces by default, and only when the
    # tracker searches whole frames at all; exact mode never does.
    assert on.proposes_faces("fast") and not on.proposes_faces("exact")
    assert not off.proposes_faces("fast")
    for variable, value in (
        ("FACESTREAM_TRACKING_WHOLE_FRAME_SEARCH", "detector"),
        ("FACESTREAM_TRACKING_WHOLE_FRAME_EVERY", "0"),
    ):
        assert not TrackingSettings.from_env({variable: value}).proposes_faces("fast")


def test_a_frame_is_searched_whole_without_tracks_and_every_period_else_around_each_track():
    tracks = StreamTracks()
    assert search_regions(tracks, 0, None, 600) is None  # no track open: the whole frame
    big, small = (100, 100, 96, 96), (400, 300, 30, 30)
    follow(tracks, FramePoint(0, 0, 0), [big, small], False, POLICY)
    assert search_regions(tracks, 200, None, 600) is None  # never searched whole yet
    assert search_regions(tracks, 600, 0, 600) is None  # the period is over
    assert search_regions(tracks, 200, 400, 600) is None  # before the last whole frame
    regions = search_regions(tracks, 200, 0, 600)
    margin, small_margin = round(REGION_MARGIN * 96), round(REGION_MARGIN * 30)
    # Each track's box grown on every side, its face scaled to REGION_FACE_PX, a small one
    # never enlarged.
    assert regions == [
        Region(100 - margin, 100 - margin, 96 + 2 * margin, 96 + 2 * margin, REGION_FACE_PX / 96),
        Region(400 - small_margin, 300 - small_margin, *[30 + 2 * small_margin] * 2, 1.0),
    ]
    # A moving face is looked for where its speed takes it.
    follow(tracks, FramePoint(1, 1, 200), [(120, 100, 96, 96), small], False, POLICY)
    assert search_regions(tracks, 400, 0, 600)[0].x == 140 - margin


def job_of(item: FrameFaces) -> ImageJob:
    """The ImageJob a frame came as (its faces' request), for the tracker to detect."""
    return ImageJob(
        request_id=f"cam-{item.sequence}", source="t/0/0", image=b"jpeg", actions=("age",),
        detector_backend="opencv", submitted_at=None, received_at=0.0, record=b"",
        principal="alice", frame=item.frame,
    )  # fmt: skip


def test_the_tracker_detects_an_undetected_frame_in_its_turn_where_its_tracks_are():
    asked: list[tuple[int, list[Region] | None]] = []

    def detect(job: ImageJob, regions):
        asked.append((job.frame.sequence, regions))
        return list(frame(job.frame.sequence, [FACE_A]).faces)

    cropped: list[int] = []
    aligned = np.ones((2, 2, 3))

    def crop(job: ImageJob, faces):
        cropped.append(job.frame.sequence)
        return [replace(face, face=replace(face.face, crop=aligned)) for face in faces]

    detection = FrameDetection(detect, whole_frame_every_ms=600, crop=crop)
    logic = TrackFaces(None, TRACKING, clock=lambda: 0.0, detection=detection)
    undetected = {
        n: extract_stream_frame(job_of(frame(n, [])), extract=None, tracker_detects=True)[0]
        for n in range(5)
    }
    assert undetected[1].job is not None and undetected[1].faces == ()
    out = []
    for sequence in (0, 2, 1, 3, 4):  # frame 2 comes early and waits for frame 1
        more, _ = logic.on_item(undetected[sequence])
        out += more
    # Detected in sequence order: 0 whole (no track yet), 1 and 2 around t1, 3 whole (600
    # ms of stream time since frame 0), 4 around t1 again.
    assert [sequence for sequence, _ in asked] == [0, 1, 2, 3, 4]
    assert [regions is None for _, regions in asked] == [True, False, False, True, False]
    plans, jobs = plans_and_jobs(out)
    assert [p.frame.sequence for p in plans] == [0, 1, 2, 3, 4]
    assert [f.decision.track_id for p in plans for f in p.faces] == ["t1"] * 5
    assert [j.image.frame.sequence for j in jobs] == [0]  # analysed once, then carried
    # Only the face analysed is cropped, from its own frame; the carried ones never are.
    assert cropped == [0] and jobs[0].face.crop is aligned
    # A frame whose turn passed is searched whole and answered untracked.
    late, _ = logic.on_item(undetected[2])
    assert asked[-1] == (2, None) and [type(item) for item in late] == [FaceJob]


def test_a_poison_frame_detected_by_the_tracker_gives_its_finished_frame_and_dead_letter():
    item = frame(0, [])
    poisoned = quarantine(job_of(item), 3, 3, logging.getLogger("test"))
    detection = FrameDetection(
        lambda _job, _regions: poisoned, whole_frame_every_ms=600, crop=lambda _job, faces: faces
    )
    logic = TrackFaces(None, TRACKING, clock=lambda: 0.0, detection=detection)
    undetected = extract_stream_frame(job_of(item), extract=None, tracker_detects=True)[0]
    out, _ = logic.on_item(undetected)
    (plan,) = plans_and_jobs(out)[0]
    assert plan.finished.error.code == "request.poison"
    assert [letter.code for letter in out if not isinstance(letter, FramePlan)] == [
        "request.poison"
    ]
