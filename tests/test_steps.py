"""Each dataflow step alone. The real analyzer (synthetic weights) where models matter;
small stand-ins only to make a detector or a model fail on purpose."""

from __future__ import annotations

import logging
import os
import pickle
import signal
from dataclasses import replace
from functools import partial

import cv2
import numpy as np
import pytest
from bytewax.connectors.kafka import KafkaSourceMessage

from dataflow.items import AnalyzedFace, DeadLetter, FaceJob, ImageJob, ImageProgress
from dataflow.steps import (
    NOT_CROPPED_PROBLEM,
    analyze_faces,
    crash_on_request,
    crop_located_faces,
    dead_letter_out,
    extract_faces,
    extract_faces_with_quarantine,
    gather_key,
    gather_results,
    parse_request,
    result_record_out,
)
from facestream.attempts import AttemptLog
from facestream.faces import NOT_CROPPED, Face, Region, find_faces
from facestream.kafka_records import Status, image_submitted
from facestream.models import ATTRIBUTE_ACTIONS
from facestream.requests import RequestLimits
from facestream.tracking import box_overlap
from facestream.v1 import records_pb2
from tests.images import astronaut_jpeg, mpo, png_claiming
from tests.photos import SINGLE_FACE, TWO_FACES, WITHOUT_FACE
from tests.pipeline import submission

LOG = logging.getLogger("test")
LIMITS = RequestLimits(
    max_image_bytes=10 * 1024 * 1024,
    max_pixels=40_000_000,
    enabled_actions=ATTRIBUTE_ACTIONS,
    default_detector="opencv",
    available_detectors=("opencv", "mtcnn", "skip"),
)
SIDE = 2048  # FACESTREAM_DETECTION_MAX_SIDE in exact mode


def message(value, key=b"k", offset=7):
    return KafkaSourceMessage(
        key=key, value=value, topic="faces.requests", partition=2, offset=offset
    )


def job(image: bytes, actions=(), request_id="r-1") -> ImageJob:
    parsed = parse_request(message(submission(request_id, image, actions)))
    assert isinstance(parsed, ImageJob)
    return parsed


# parse_request


@pytest.mark.model_process
def test_the_principal_travels_from_the_request_to_its_finished_result(analyzer):
    record = image_submitted("r-7", b"not an image", principal="team-b").SerializeToString()
    parsed = parse_request(message(record))
    assert parsed.principal == "team-b"
    [result] = extract_faces(parsed, analyzer, LIMITS, LOG, detection_max_side=SIDE)
    assert (result.request_id, result.principal) == ("r-7", "team-b")


def test_parse_request_reads_a_submission():
    parsed = parse_request(message(submission("req-9", b"bytes", ["age"])))
    assert isinstance(parsed, ImageJob)
    assert (parsed.request_id, parsed.image, parsed.actions) == ("req-9", b"bytes", ("age",))
    assert parsed.source == "faces.requests/2/7"
    assert parsed.submitted_at is not None and parsed.submitted_at <= parsed.received_at


@pytest.mark.parametrize(
    ("value", "reason"),
    [
        (None, "no value"),
        (b"\xff\xff\xff garbage", "not an ImageSubmitted protobuf"),
        (records_pb2.ImageSubmitted(image=b"x").SerializeToString(), "no request_id"),
        (records_pb2.ImageSubmitted(request_id="bad id").SerializeToString(), "not valid"),
    ],
)
def test_parse_request_sends_unusable_records_to_dead_letters(value, reason):
    parsed = parse_request(message(value))
    assert isinstance(parsed, DeadLetter)
    assert reason in parsed.reason
    assert parsed.code == "record.unparseable"
    assert (parsed.key, parsed.value, parsed.source) == (b"k", value, "faces.requests/2/7")


def test_dead_letter_record_keeps_bytes_and_says_why():
    letter = DeadLetter(b"k", b"v", "record.unparseable", "not ours", "t/0/1")
    record = dead_letter_out(letter, "faces.dead-letter")
    assert (record.topic, record.key, record.value) == ("faces.dead-letter", b"k", b"v")
    assert dict(record.headers) == {
        "facestream-error-code": b"record.unparseable",
        "facestream-error": b"not ours",
        "facestream-source": b"t/0/1",
    }


# extract_faces


def frame_submission(image: bytes, sequence: int, refusal: records_pb2.Error | None = None):
    """A serialized ImageSubmitted for frame `sequence` of stream "cam" (the front's
    stand-in for a refused frame when `refusal` is given)."""
    frame = records_pb2.StreamFrame(
        stream_id="cam", sequence=sequence, frame_index=3 * sequence, position_ms=600, last=True
    )
    record = image_submitted(f"f-{sequence}", image, principal="team-b", frame=frame)
    if refusal is not None:
        record.refusal.CopyFrom(refusal)
    return record.SerializeToString()


@pytest.mark.model_process
@pytest.mark.models
def test_a_frame_is_answered_like_an_image_with_its_place_copied(analyzer, public_photos):
    image = (public_photos / TWO_FACES).read_bytes()
    parsed = parse_request(message(frame_submission(image, 4)))
    assert parsed.frame is not None and parsed.refusal is None
    extracted = extract_faces(parsed, analyzer, LIMITS, LOG, detection_max_side=SIDE)
    faces = analyze_faces(extracted, analyzer.describe, 8, LOG)
    state, emitted = None, []
    for face in pickle.loads(pickle.dumps(faces)):  # as they cross workers
        state, out = gather_results(state, face, True)
        emitted += out
    [result] = emitted
    assert result.status == Status.ANALYSIS_STATUS_OK and len(result.faces) == 2
    assert result.frame == parsed.frame
    assert (result.frame.sequence, result.frame.frame_index, result.frame.last) == (4, 12, True)
    without_face = (public_photos / WITHOUT_FACE).read_bytes()
    [empty] = extract_faces(
        parse_request(message(frame_submission(without_face, 5))),
        analyzer,
        LIMITS,
        LOG,
        detection_max_side=SIDE,
    )
    assert empty.status == Status.ANALYSIS_STATUS_NO_FACE and empty.frame.sequence == 5


@pytest.mark.parametrize(
    ("code", "status"),
    [
        ("image.not_an_image", Status.ANALYSIS_STATUS_INVALID_IMAGE),
        ("request.unknown_action", Status.ANALYSIS_STATUS_FAILED),
    ],
)
@pytest.mark.model_process
def test_a_frame_the_front_refused_is_answered_with_its_refusal(analyzer, code, status):
    refusal = records_pb2.Error(code=code, message="said by the front")
    parsed = parse_request(message(frame_submission(b"", 9, refusal)))
    assert parsed.refusal == (code, "said by the front")
    [result] = extract_faces(parsed, analyzer, LIMITS, LOG, detection_max_side=SIDE)
    assert (result.status, result.error.code, result.error.message) == (
        status,
        code,
        "said by the front",
    )
    assert (result.request_id, result.principal, result.frame.sequence) == ("f-9", "team-b", 9)


@pytest.mark.model_process
@pytest.mark.models
def test_extract_faces_gives_one_job_per_face(analyzer, public_photos):
    image = (public_photos / TWO_FACES).read_bytes()
    faces = extract_faces(job(image), analyzer, LIMITS, LOG, detection_max_side=SIDE)
    assert [f.index for f in faces] == [0, 1]
    assert all(isinstance(f, FaceJob) and f.image.face_count == 2 for f in faces)
    assert all(f.face.crop.dtype == np.uint8 and f.face.crop.ndim == 3 for f in faces)
    assert faces[0].actions == ("age", "gender", "emotion", "race")
    assert faces[0].image.detect > 0
    pickle.loads(pickle.dumps(faces[0]))  # crosses workers


@pytest.mark.model_process
@pytest.mark.models
@pytest.mark.parametrize("mode", ["exact", "fast"])
def test_faces_found_in_regions_are_located_and_only_those_given_are_cropped(
    analyzer_for, public_photos, mode
):
    analyzer = analyzer_for("openvino", mode=mode, precision="fp32")
    image = job((public_photos / TWO_FACES).read_bytes())
    whole = extract_faces(image, analyzer, LIMITS, LOG, detection_max_side=SIDE)
    regions = [
        Region(f.face.x - f.face.w // 2, f.face.y - f.face.h // 2, 2 * f.face.w, 2 * f.face.h)
        for f in whole
    ]
    located = extract_faces(
        image, analyzer, LIMITS, LOG, detection_max_side=SIDE, locate=True, regions=regions
    )
    assert len(located) == len(whole) == 2
    assert all(f.face.crop.size == 0 and f.face.located for f in located)
    pickle.loads(pickle.dumps(located[0]))  # crosses workers
    [cropped] = crop_located_faces(image, located[1:], analyzer, LIMITS, LOG)
    picture = cv2.imdecode(np.frombuffer(image.image, np.uint8), cv2.IMREAD_COLOR)
    [_, found] = find_faces(picture, "opencv", 0, analyzer.bordered_detection, regions)
    assert cropped.index == 1 and cropped.face.located is None
    assert np.array_equal(cropped.face.crop, found.crop)
    assert located[0].face.crop.size == 0  # the face not given stays uncropped
    # In the whole frame (the tracker's whole-frame search): find_faces' faces. Exact mode's
    # come cropped by DeepFace's bordered detection; fast mode's are only located, found
    # around the faces proposed.
    in_whole = extract_faces(image, analyzer, LIMITS, LOG, detection_max_side=SIDE, locate=True)
    assert all((f.face.crop.size == 0) == (mode == "fast") for f in in_whole)
    assert (analyzer.proposals is not None) == (mode == "fast")
    expected = find_faces(picture, "opencv", SIDE, analyzer.bordered_detection)
    cropped_whole = analyzer.crop_faces(picture, "opencv", [f.face for f in in_whole])
    assert len(cropped_whole) == len(expected) == 2
    for late, found in zip(cropped_whole, expected, strict=True):
        late_box, found_box = (late.x, late.y, late.w, late.h), (found.x, found.y, found.w, found.h)
        if mode == "exact":
            assert late_box == found_box and np.array_equal(late.crop, found.crop)
        else:
            assert box_overlap(late_box, found_box) >= 0.5
            assert late.located is None and late.crop.shape[0] >= 0.8 * late.h


@pytest.mark.models
@pytest.mark.parametrize(
    ("image", "status", "code"),
    [
        ("bad/empty.jpg", Status.ANALYSIS_STATUS_INVALID_IMAGE, "image.empty"),
        ("bad/text_as.jpg", Status.ANALYSIS_STATUS_INVALID_IMAGE, "image.not_an_image"),
        ("bad/truncated_half.jpg", Status.ANALYSIS_STATUS_INVALID_IMAGE, "image.truncated"),
        (WITHOUT_FACE, Status.ANALYSIS_STATUS_NO_FACE, ""),
    ],
)
@pytest.mark.model_process
def test_extract_faces_finishes_images_without_faces(analyzer, public_photos, image, status, code):
    [result] = extract_faces(
        job((public_photos / image).read_bytes()), analyzer, LIMITS, LOG, detection_max_side=SIDE
    )
    assert isinstance(result, records_pb2.AnalysisResult)
    assert (result.request_id, result.status, result.error.code) == ("r-1", status, code)
    assert not result.faces
    assert result.synthetic_weights


@pytest.mark.model_process
@pytest.mark.models
def test_extract_faces_refuses_a_pixel_bomb_and_unknown_actions(analyzer):
    [bomb] = extract_faces(
        job(png_claiming(20_000, 20_000)), analyzer, LIMITS, LOG, detection_max_side=SIDE
    )
    assert (bomb.status, bomb.error.code) == (
        Status.ANALYSIS_STATUS_INVALID_IMAGE,
        "image.too_many_pixels",
    )
    [unknown] = extract_faces(
        job(b"irrelevant", actions=["smile"]), analyzer, LIMITS, LOG, detection_max_side=SIDE
    )
    assert (unknown.status, unknown.error.code) == (
        Status.ANALYSIS_STATUS_FAILED,
        "request.unknown_action",
    )


class BrokenDetector:
    actions = ("emotion",)
    synthetic_weights = True

    def find_faces(self, image, detector_backend, detection_max_side):
        raise RuntimeError("detector exploded")


def test_a_detector_failure_fails_only_that_image(public_photos):
    image = (public_photos / SINGLE_FACE[0]).read_bytes()
    [result] = extract_faces(job(image), BrokenDetector(), LIMITS, LOG, detection_max_side=SIDE)
    assert result.status == Status.ANALYSIS_STATUS_FAILED
    assert result.error.code == "detect.failed"
    assert "detector exploded" in result.error.message


def test_an_exception_from_a_decoder_fails_only_that_image(monkeypatch):
    # Whatever a native decoder raises on hostile bytes ends as a typed INVALID_IMAGE.
    def exploding_decoder(*_args):
        raise MemoryError("cannot allocate")

    monkeypatch.setattr("dataflow.steps.decode_image", exploding_decoder)
    [result] = extract_faces(job(b"bytes"), BrokenDetector(), LIMITS, LOG, detection_max_side=SIDE)
    assert (result.status, result.error.code) == (
        Status.ANALYSIS_STATUS_INVALID_IMAGE,
        "image.undecodable",
    )
    assert "cannot allocate" not in result.error.message  # no raw exception text


@pytest.mark.model_process
@pytest.mark.parametrize("kind", ["multi-picture JPEG (MPO)", "JPEG with a trailer"])
def test_phone_photos_give_what_deepface_analyze_gives(analyzer, tmp_path, kind):
    from tests.test_dataflow_e2e import assert_same_as_deepface, reference_analysis

    photo = astronaut_jpeg()
    data = (
        mpo(photo, astronaut_jpeg(40))
        if kind.startswith("multi")
        else photo + b"\x00\x00\x00\x18ftypmp42" + b"\xff\xda" * 64
    )
    path = tmp_path / "phone.jpg"
    path.write_bytes(data)
    faces = extract_faces(job(data), analyzer, LIMITS, LOG, detection_max_side=SIDE)
    analyzed = analyze_faces(faces, analyzer.describe, 8, LOG)
    state, emitted = None, []
    for face in analyzed:
        state, out = gather_results(state, face, True)
        emitted += out
    [result] = emitted
    assert_same_as_deepface(result, reference_analysis(path), kind)


# extract_faces_with_quarantine


def test_attempts_survive_the_log_object_and_are_forgotten_when_finished(tmp_path):
    log = AttemptLog(tmp_path / "attempts", max_attempts=2)
    assert log.begin("r-1@t/0/1") == 0
    # A new process (a new AttemptLog on the same folder) sees the attempt that never ended.
    again = AttemptLog(tmp_path / "attempts", max_attempts=2)
    assert again.begin("r-1@t/0/1") == 1
    assert again.begin("r-2@t/0/2") == 0  # other records count apart
    again.finish("r-1@t/0/1")
    assert again.begin("r-1@t/0/1") == 0
    assert not again.is_poison(1) and again.is_poison(2)


def test_a_record_that_crashed_max_attempts_times_is_quarantined(tmp_path):
    attempts = AttemptLog(tmp_path, max_attempts=3)
    poison = job(b"crashes the decoder", request_id="poison-1")
    calls = []

    def crashing_extract(image_job):
        calls.append(image_job)
        raise SystemExit("stands for a crash: the step never returns")

    for _crash in range(3):
        with pytest.raises(SystemExit):
            extract_faces_with_quarantine(poison, crashing_extract, attempts, LOG)
    result, letter = extract_faces_with_quarantine(poison, crashing_extract, attempts, LOG)
    assert len(calls) == 3  # the fourth read never reaches the decoder
    assert (result.request_id, result.status, result.error.code) == (
        "poison-1",
        Status.ANALYSIS_STATUS_FAILED,
        "request.poison",
    )
    assert isinstance(letter, DeadLetter)
    assert letter.value == poison.record  # the record as read, for a person to look at
    assert records_pb2.ImageSubmitted.FromString(letter.value).image == b"crashes the decoder"
    assert letter.reason.startswith("request.poison") and "3 attempts" in letter.reason
    # A replay of the same record is quarantined again, not retried.
    again = extract_faces_with_quarantine(poison, crashing_extract, attempts, LOG)
    assert again[0].error.code == "request.poison" and len(calls) == 3


def test_records_that_finish_are_never_quarantined(tmp_path):
    attempts = AttemptLog(tmp_path, max_attempts=1)
    healthy = job(b"fine", request_id="ok-1")
    for _ in range(3):
        assert extract_faces_with_quarantine(healthy, lambda _job: ["done"], attempts, LOG) == [
            "done"
        ]


# crash_on_request (the FACESTREAM_FAILPOINT_CRASH_ON fail point)


@pytest.fixture
def signals_sent(monkeypatch):
    """The signals the code under test sends, instead of sending them: each "kill" raises
    SystemExit, as the step never returns after a real SIGSEGV, and this process lives on."""
    sent = []

    def fake_kill(pid, signum):
        sent.append((pid, signum))
        raise SystemExit(f"stands for signal {signum}")

    monkeypatch.setattr(os, "kill", fake_kill)
    return sent


def test_the_fail_point_crashes_inside_the_quarantine_until_it_quarantines(tmp_path, signals_sent):
    attempts = AttemptLog(tmp_path, max_attempts=3)
    poison = job(b"fine bytes", request_id="crash-1")
    calls = []
    extract = partial(crash_on_request, extract=calls.append, request_prefix="crash-")

    for _crash in range(3):
        with pytest.raises(SystemExit):
            extract_faces_with_quarantine(poison, extract, attempts, LOG)
    # The process itself, with SIGSEGV, as a native decoder would; each crash counted.
    assert signals_sent == [(os.getpid(), signal.SIGSEGV)] * 3
    assert calls == []  # the crash comes before the real extraction
    result, letter = extract_faces_with_quarantine(poison, extract, attempts, LOG)
    assert (result.request_id, result.status, result.error.code) == (
        "crash-1",
        Status.ANALYSIS_STATUS_FAILED,
        "request.poison",
    )
    assert isinstance(letter, DeadLetter) and letter.value == poison.record
    assert len(signals_sent) == 3  # quarantined without a fourth crash


def test_the_fail_point_lets_other_requests_through(signals_sent):
    extract = partial(crash_on_request, extract=lambda _job: ["done"], request_prefix="crash-")
    assert extract(job(b"fine", request_id="ok-1")) == ["done"]
    assert extract(job(b"fine", request_id="ok-crash-1")) == ["done"]  # a prefix, not a substring
    off = partial(crash_on_request, extract=lambda _job: ["done"], request_prefix="")
    assert off(job(b"fine", request_id="crash-1")) == ["done"]  # empty: off
    assert signals_sent == []


# analyze_faces


def face_jobs(count, request_id="r-1", actions=("age", "gender", "emotion", "race"), seed=0):
    rng = np.random.default_rng(seed)
    progress = ImageProgress(request_id, "", f"t/0/{seed}", count, 0.0, 0.0, 0.0, 0.0)
    return [
        FaceJob(
            image=progress,
            index=i,
            face=Face(1, 2, 30, 40, 0.9, rng.integers(0, 256, (40, 30, 3), dtype=np.uint8)),
            actions=actions,
        )
        for i in range(count)
    ]


class CountingAnalyzer:
    """Wraps the real analyzer; records the batch size of each describe call."""

    def __init__(self, real, fail_on_call=None):
        self.real, self.calls, self.fail_on_call = real, [], fail_on_call

    def describe(self, faces, actions):
        self.calls.append((len(faces), tuple(actions)))
        if len(self.calls) == self.fail_on_call:
            raise RuntimeError("model exploded")
        return self.real.describe(faces, actions)


@pytest.mark.model_process
@pytest.mark.models
def test_analyze_faces_calls_the_models_once_per_batch(analyzer):
    counting = CountingAnalyzer(analyzer)
    jobs = face_jobs(5) + face_jobs(2, request_id="r-2", actions=("emotion",), seed=1)
    analyzed = analyze_faces(jobs, counting.describe, batch_size=2, logger=LOG)
    full = ("age", "gender", "emotion", "race")
    assert counting.calls == [(2, full), (2, full), (1, full), (2, ("emotion",))]
    assert len(analyzed) == 7 and all(a.error is None for a in analyzed)
    emotion_only = [a.record for a in analyzed if a.image.request_id == "r-2"]
    assert all(
        r.emotion.dominant and not r.HasField("age") and not r.race.scores for r in emotion_only
    )


@pytest.mark.model_process
@pytest.mark.models
def test_analyze_faces_matches_one_face_at_a_time(analyzer):
    jobs = face_jobs(3, seed=3)
    batched = analyze_faces(jobs, analyzer.describe, batch_size=16, logger=LOG)
    for job_, together in zip(jobs, batched, strict=True):
        [alone] = analyze_faces([job_], analyzer.describe, batch_size=1, logger=LOG)
        assert alone.record.emotion.dominant == together.record.emotion.dominant
        for label, value in alone.record.race.scores.items():
            assert abs(value - together.record.race.scores[label]) / 100 <= 1e-4


@pytest.mark.model_process
@pytest.mark.models
def test_a_failing_batch_fails_only_its_faces(analyzer):
    failing = CountingAnalyzer(analyzer, fail_on_call=2)
    first, second = face_jobs(2, "r-1"), face_jobs(2, "r-2", seed=1)
    analyzed = analyze_faces(first + second, failing.describe, batch_size=2, logger=LOG)
    errors = {a.image.request_id: a.error for a in analyzed}
    assert errors["r-1"] is None
    assert errors["r-2"][0] == "analyze.failed" and "model exploded" in errors["r-2"][1]


@pytest.mark.model_process
@pytest.mark.models
def test_a_face_without_a_crop_fails_alone(analyzer):
    counting = CountingAnalyzer(analyzer)
    jobs = face_jobs(3)
    jobs[1] = replace(jobs[1], face=replace(jobs[1].face, crop=NOT_CROPPED))
    analyzed = analyze_faces(jobs, counting.describe, batch_size=4, logger=LOG)
    errors = {a.index: a.error for a in analyzed}
    assert errors == {0: None, 1: NOT_CROPPED_PROBLEM, 2: None}
    assert counting.calls == [(2, ("age", "gender", "emotion", "race"))]


# gather_results


def analyzed(progress, index, error=None):
    record = None if error else records_pb2.Face(region=records_pb2.Region(x=index), confidence=1)
    return AnalyzedFace(progress, index, record, error, analyze_seconds=0.5)


def test_gather_emits_once_all_faces_are_in_whatever_their_order():
    progress = ImageProgress("r-1", "team-a", "t/0/1", 3, 0.0, 0.1, 0.2, 0.3)
    state, out = gather_results(None, analyzed(progress, 2), synthetic_weights=True)
    assert out == []
    state, out = gather_results(state, analyzed(progress, 0), synthetic_weights=True)
    state, out = gather_results(state, analyzed(progress, 0), synthetic_weights=True)  # replayed
    assert out == [] and len(state.faces) == 2
    state, [result] = gather_results(state, analyzed(progress, 1), synthetic_weights=True)
    assert state is None
    assert result.status == Status.ANALYSIS_STATUS_OK
    assert [f.region.x for f in result.faces] == [0, 1, 2]
    assert (result.timings.decode, result.timings.detect, result.timings.analyze) == (0.2, 0.3, 0.5)
    assert result.synthetic_weights
    assert result.principal == "team-a"  # the result goes back to whoever submitted


def test_gather_fails_the_image_when_a_face_failed():
    progress = ImageProgress("r-1", "", "t/0/1", 2, 0.0, 0.0, 0.0, 0.0)
    state, _ = gather_results(None, analyzed(progress, 0), synthetic_weights=False)
    _, [result] = gather_results(
        state, analyzed(progress, 1, ("analyze.failed", "boom")), synthetic_weights=False
    )
    assert result.status == Status.ANALYSIS_STATUS_FAILED
    assert (result.error.code, result.error.message) == ("analyze.failed", "boom")
    assert not result.faces


def test_two_submissions_of_one_request_id_are_gathered_apart():
    first = ImageProgress("r-1", "", "t/0/1", 1, 0.0, 0.0, 0.0, 0.0)
    retry = replace(first, source="t/3/9")
    assert gather_key(analyzed(first, 0)) != gather_key(analyzed(retry, 0))


def test_result_record_is_keyed_by_request_id():
    result = records_pb2.AnalysisResult(request_id="r-1", status=Status.ANALYSIS_STATUS_OK)
    record = result_record_out(result, "faces.results", max_bytes=11 * 1024 * 1024)
    assert (record.topic, record.key) == ("faces.results", b"r-1")
    assert records_pb2.AnalysisResult.FromString(record.value) == result


def test_a_result_over_the_record_limit_goes_out_failed_saying_why():
    embedding = np.zeros(4096, dtype="<f4").tobytes()
    frame = records_pb2.StreamFrame(stream_id="s", sequence=4)
    result = records_pb2.AnalysisResult(
        request_id="r-9",
        principal="alice",
        status=Status.ANALYSIS_STATUS_OK,
        faces=[records_pb2.Face(embedding=embedding) for _ in range(64)],
        frame=frame,
    )
    size = len(result.SerializeToString())
    fits = result_record_out(result, "faces.results", max_bytes=size + 2048)
    assert records_pb2.AnalysisResult.FromString(fits.value) == result
    record = result_record_out(result, "faces.results", max_bytes=size)
    assert record.key == b"alice/r-9" and len(record.value) < 1024
    failed = records_pb2.AnalysisResult.FromString(record.value)
    assert failed.status == Status.ANALYSIS_STATUS_FAILED and not failed.faces
    assert failed.error.code == "result.too_large"
    assert "64 faces" in failed.error.message and "embedding" in failed.error.message
    assert (failed.principal, failed.frame) == ("alice", frame)  # still reaches its caller
