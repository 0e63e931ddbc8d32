"""The flow's wiring, in process (bytewax.testing): requests-topic records in, the records
it writes out. Every step is the real one, bound by the dataflow's composition root
(`bind_steps`); only the models are a stand-in (they are the steps' tests' business, and
the real flow with the real models runs in tests/test_dataflow_e2e.py)."""

from __future__ import annotations

import logging
from dataclasses import replace
from pathlib import Path

import bytewax.operators as op
import cv2
import numpy as np
import pytest
from bytewax.connectors.kafka import KafkaSourceMessage
from bytewax.dataflow import Dataflow
from bytewax.testing import TestingSink, TestingSource, run_main
from prometheus_client import CollectorRegistry

from dataflow.flow import analyse_requests
from dataflow.items import OutgoingRecord
from dataflow.metrics import DataflowMetrics
from di.container import build_container
from di.dataflow_root import bind_steps
from di.settings import DataflowProcessSettings
from facestream.analyzer import FaceAttributes
from facestream.attempts import AttemptLog
from facestream.faces import NOT_CROPPED, Face, Located
from facestream.gallery_store import GalleryStore
from facestream.kafka_records import image_submitted
from facestream.requests import RequestLimits
from facestream.v1 import records_pb2
from tests.test_grpc_server import jpeg

TOPIC = "requests"
Status = records_pb2.AnalysisStatus


class StandInModels:
    """One face in the top-left quarter of any picture that is not one flat colour; every
    face aged 30 and a woman."""

    synthetic_weights = True
    actions = ("age", "gender", "embedding")

    def find_faces(self, image: np.ndarray, _detector: str, _max_side: int) -> list[Face]:
        if image.std() == 0:
            return []
        height, width = image.shape[:2]
        crop = image[: height // 2, : width // 2]
        return [Face(x=0, y=0, w=width // 2, h=height // 2, confidence=0.9, crop=crop)]

    def locate_faces(
        self, image: np.ndarray, detector: str, _regions: object, _max_side: int = 0
    ) -> list[Face]:
        """find_faces' faces, not yet cropped."""
        located = Located(area=None, refine_eyes=False)
        return [
            replace(face, crop=NOT_CROPPED, located=located)
            for face in self.find_faces(image, detector, 0)
        ]

    def crop_faces(self, image: np.ndarray, _detector: str, faces: list[Face]) -> list[Face]:
        return [
            replace(
                face, crop=image[face.y : face.y + face.h, face.x : face.x + face.w], located=None
            )
            if face.located
            else face
            for face in faces
        ]

    def describe(self, inputs: np.ndarray, actions: tuple[str, ...]) -> list[FaceAttributes]:
        gender = {"Woman": 90.0, "Man": 10.0}
        return [
            FaceAttributes(
                30.0,
                {"gender": gender},
                {"gender": "Woman"},
                stand_in_embedding(face) if "embedding" in actions else None,
            )
            for face in inputs
        ]


def stand_in_embedding(face: np.ndarray) -> np.ndarray:
    """4096 non-negative values with a unit norm, from the face's pixels: the same face
    gives the same embedding, another face another."""
    grey = cv2.resize(face.astype(np.float32).mean(axis=2), (64, 64)).ravel()
    values = np.abs(grey - grey.mean()) + 1e-3
    return (values / np.linalg.norm(values)).astype(np.float32)


def run_flow(
    tmp_path: Path,
    values: list[bytes],
    galleries: GalleryStore | None = None,
    **settings: str,
) -> dict[str, list[bytes]]:
    """The flow over these requests-topic values (with this gallery store); the values it
    wrote, by topic."""
    settings = DataflowProcessSettings.from_env(
        {
            "FACESTREAM_ATTEMPTS_DIR": str(tmp_path / "attempts"),
            "FACESTREAM_ACTIONS": "age,gender,embedding",
            "FACESTREAM_TOPIC_RESULTS": "results",
            "FACESTREAM_TOPIC_TRACKS": "tracks",
            "FACESTREAM_TOPIC_DEAD_LETTER": "dead",
            **settings,
        }
    )
    container = build_container(settings)
    metrics = DataflowMetrics(CollectorRegistry())
    steps = bind_steps(
        settings,
        StandInModels(),  # type: ignore[arg-type]
        container[RequestLimits],
        container[AttemptLog],
        container[logging.Logger],
        metrics,
        galleries,
    )
    flow = Dataflow("in_process")
    messages = [
        KafkaSourceMessage(key=None, value=value, topic=TOPIC, partition=0, offset=offset)
        for offset, value in enumerate(values)
    ]
    records = analyse_requests(
        "analyse_requests", op.input("in", flow, TestingSource(messages)), steps, metrics
    )
    written: list[OutgoingRecord] = []
    op.output("out", records, TestingSink(written))
    run_main(flow)
    by_topic: dict[str, list[bytes]] = {}
    for record in written:
        by_topic.setdefault(record.topic, []).append(record.value or b"")
    return by_topic


def results_of(written: dict[str, list[bytes]]) -> dict[str, records_pb2.AnalysisResult]:
    found = [records_pb2.AnalysisResult.FromString(v) for v in written.get("results", [])]
    return {result.request_id: result for result in found}


def test_an_image_in_gives_its_result_out(tmp_path):
    flat = np.full((64, 64, 3), 128, np.uint8)
    written = run_flow(
        tmp_path,
        [
            image_submitted("face", jpeg(96, 96, seed=1)).SerializeToString(),
            image_submitted("flat", cv2.imencode(".png", flat)[1].tobytes()).SerializeToString(),
            image_submitted("broken", jpeg()[:-200]).SerializeToString(),
        ],
    )
    results = results_of(written)
    assert set(results) == {"face", "flat", "broken"}
    (face,) = results["face"].faces
    assert results["face"].status == Status.ANALYSIS_STATUS_OK
    assert face.age == 30.0 and face.gender.dominant == "Woman"
    assert (face.region.w, face.region.h) == (48, 48)
    assert results["flat"].status == Status.ANALYSIS_STATUS_NO_FACE
    assert results["broken"].status == Status.ANALYSIS_STATUS_INVALID_IMAGE
    assert results["broken"].error.code == "image.truncated"
    assert "dead" not in written and "tracks" not in written


def frame(sequence: int, last: bool = False) -> bytes:
    place = records_pb2.StreamFrame(stream_id="cam", sequence=sequence, last=last)
    image = jpeg(96, 96, seed=2)  # the same picture: the same face in the same place
    return image_submitted(f"cam-{sequence}", image, frame=place).SerializeToString()


def test_a_stream_of_frames_in_gives_its_frames_in_order_and_its_tracks_out(tmp_path):
    written = run_flow(tmp_path, [frame(0), frame(1), frame(2, last=True)])
    results = [records_pb2.AnalysisResult.FromString(v) for v in written["results"]]
    assert [r.frame.sequence for r in results] == [0, 1, 2]
    faces = [r.faces[0] for r in results]
    assert [f.track_id for f in faces] == ["t1"] * 3
    assert [f.carried for f in faces] == [False, True, True]  # analysed once, carried after
    assert all(f.attributes_from == 0 and f.age == 30.0 for f in faces)
    (summary,) = [records_pb2.TrackSummary.FromString(v) for v in written["tracks"]]
    assert (summary.track_id, summary.ended_by) == ("t1", "last_frame")
    assert (summary.frames_seen, summary.frames_analysed) == (3, 1)
    assert [t.track_id for t in results[-1].ended_tracks] == ["t1"]


@pytest.mark.parametrize("tracking", ["2", "0"])  # tracking on, and off
def test_records_that_are_not_ours_and_poison_records_go_to_the_dead_letters(tmp_path, tracking):
    poison = image_submitted("poison", jpeg(96, 96, seed=3)).SerializeToString()
    # The record crashed the process on each of its attempts: the attempt log says so.
    attempts = AttemptLog(tmp_path / "attempts", max_attempts=3)
    for _ in range(3):
        attempts.begin(f"poison@{TOPIC}/0/1")
    written = run_flow(
        tmp_path, [b"not a record of ours", poison], FACESTREAM_TRACKING_REANALYSE_AFTER=tracking
    )
    dead = written["dead"]
    assert len(dead) == 2 and poison in dead and b"not a record of ours" in dead
    result = results_of(written)["poison"]
    assert result.status == Status.ANALYSIS_STATUS_FAILED
    assert result.error.code == "request.poison"


def enrolment(subject: str, image: bytes, request_id: str = "enrol-1", index: int = 0) -> bytes:
    ask = records_pb2.Enrolment(
        gallery="staff", subject=subject, enrolment_id=request_id, image_index=index
    )
    return image_submitted(
        f"{request_id}:{index}", image, principal="team-a", enrolment=ask
    ).SerializeToString()


def identification(request_id: str, image: bytes, **ask: object) -> bytes:
    return image_submitted(
        request_id,
        image,
        actions=["age"],
        principal="team-a",
        identify=records_pb2.Identify(gallery="staff", **ask),
    ).SerializeToString()


def test_an_enrolment_writes_its_face_once_and_an_identification_finds_it(tmp_path, gallery_store):
    alice, bob = jpeg(96, 96, seed=11), jpeg(96, 96, seed=12)
    written = run_flow(
        tmp_path, [enrolment("alice", alice), enrolment("bob", bob, "enrol-2")], gallery_store
    )
    enrolled = results_of(written)
    assert all(r.status == Status.ANALYSIS_STATUS_OK for r in enrolled.values()), enrolled
    alice_face = enrolled["enrol-1:0"].enrolled
    assert alice_face.face_id and not alice_face.already
    assert not enrolled["enrol-1:0"].faces[0].embedding  # not asked for: not in the result
    # A replay of the record (a redelivery after a crash) writes nothing again.
    replayed = results_of(run_flow(tmp_path, [enrolment("alice", alice)], gallery_store))
    assert replayed["enrol-1:0"].enrolled.face_id == alice_face.face_id
    assert replayed["enrol-1:0"].enrolled.already
    assert [(s.subject, s.faces) for s in gallery_store.subjects("team-a", "staff")] == [
        ("alice", 1),
        ("bob", 1),
    ]
    found = results_of(run_flow(tmp_path, [identification("who", alice, top_k=2)], gallery_store))[
        "who"
    ]
    (face,) = found.faces
    assert face.age == 30.0 and not face.embedding  # its attributes, no embedding
    assert [m.subject for m in face.identity.matches] == ["alice", "bob"]
    nearest = face.identity.matches[0]
    assert nearest.distance == pytest.approx(0, abs=1e-6) and nearest.verified
    assert nearest.face_id == alice_face.face_id
    assert face.identity.threshold == pytest.approx(0.68)


def test_an_enrolment_image_must_hold_one_face(tmp_path, gallery_store):
    flat = cv2.imencode(".png", np.full((64, 64, 3), 128, np.uint8))[1].tobytes()
    result = results_of(run_flow(tmp_path, [enrolment("alice", flat)], gallery_store))["enrol-1:0"]
    assert result.status == Status.ANALYSIS_STATUS_FAILED
    assert result.error.code == "enroll.face_count"
    assert "has 0" in result.error.message
    assert gallery_store.galleries("team-a") == []


def test_without_a_gallery_store_identification_fails_typed_and_the_rest_stands(tmp_path):
    result = results_of(run_flow(tmp_path, [identification("who", jpeg(96, 96, seed=11))]))["who"]
    assert result.status == Status.ANALYSIS_STATUS_OK
    (face,) = result.faces
    assert face.age == 30.0
    assert face.identity.error.code == "gallery.unavailable"
    assert not face.identity.matches


def test_a_track_is_identified_when_analysed_and_carries_its_identity(tmp_path, gallery_store):
    image = jpeg(96, 96, seed=2)
    run_flow(tmp_path, [enrolment("carol", image)], gallery_store)
    ask = records_pb2.Identify(gallery="staff")
    frames = [
        image_submitted(
            f"cam-{n}",
            image,
            principal="team-a",
            frame=records_pb2.StreamFrame(stream_id="cam", sequence=n, last=n == 2),
            identify=ask,
        ).SerializeToString()
        for n in range(3)
    ]
    written = run_flow(tmp_path, frames, gallery_store)
    faces = [records_pb2.AnalysisResult.FromString(v).faces[0] for v in written["results"]]
    assert [f.carried for f in faces] == [False, True, True]
    assert [f.identity.matches[0].subject for f in faces] == ["carol"] * 3
    (summary,) = [records_pb2.TrackSummary.FromString(v) for v in written["tracks"]]
    assert summary.subject == "carol"
    assert summary.subject_distance == pytest.approx(0, abs=1e-6)
