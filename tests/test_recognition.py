"""Recognition end to end: a real gRPC channel, the real dataflow (synthetic weights), the
embedded broker and the embedded PostgreSQL. Enrolment, identification, verification and
forgetting, each principal in its own galleries.

With synthetic weights different people are close, so these tests check the mechanics
with images whose answer is known (the same image enrolled and queried: distance 0), not
recognition's accuracy; tests/test_recognition_deepface.py holds the answers equal to
DeepFace's own."""

from __future__ import annotations

import json
from collections.abc import Iterator

import grpc
import pytest

from apps.demo_video import compose_demo_video
from facestream.client import AnalyzeClient, error_reason, identify_in
from facestream.gallery_store import GalleryStore, connection_pool
from facestream.models import ACTIONS
from tests.commands import cli_env, run_facestream
from tests.credentials import TOKENS, credentials_file
from tests.grpc_helpers import ready_pipeline
from tests.photos import SINGLE_FACE, TWO_FACES, WITHOUT_FACE
from tests.pipeline import Topics

pytestmark = pytest.mark.models

GALLERY_SCOPES = '["analyze:submit", "results:read", "gallery:read", "gallery:write"]'


@pytest.fixture(scope="module")
def recognition(embedded_broker, gallery_database, synthetic_home, tmp_path_factory) -> Iterator:
    """The system with recognition: team-a and team-b may use galleries, reader may not."""
    import psycopg

    with psycopg.connect(gallery_database.dsn_of("postgres"), autocommit=True) as db:
        db.execute("create database recognition")
    dsn = gallery_database.dsn_of("recognition")
    auth = credentials_file(
        tmp_path_factory.mktemp("auth") / "principals.toml",
        scopes={
            "team-a": GALLERY_SCOPES,
            "team-b": GALLERY_SCOPES,
            "reader": '["analyze:submit", "results:read"]',
        },
    )
    topics = Topics(embedded_broker.bootstrap)
    settings = {
        # Every action: the engine cache holds their conversion (tests/model_process.py), so
        # the dataflow's start does not pay a conversion's peak beside the suite.
        "FACESTREAM_ACTIONS": ",".join(ACTIONS),
        "FACESTREAM_GALLERY_DSN": dsn,
        "FACESTREAM_AUTH_FILE": str(auth),
    }
    with (
        ready_pipeline(topics, synthetic_home, "-w", "1", **settings) as (_flow, server),
        connection_pool(dsn, max_size=2) as pool,
    ):
        clients = {
            name: server.client(token=TOKENS[name]) for name in ("team-a", "team-b", "reader")
        }
        yield clients, GalleryStore(pool), server.address
        for client in clients.values():
            client.close()


def photo(public_photos, name: str) -> bytes:
    return (public_photos / name).read_bytes()


def refused(call) -> grpc.RpcError:
    with pytest.raises(grpc.RpcError) as caught:
        call()
    return caught.value


def test_enrol_identify_verify_and_forget(recognition, public_photos):
    clients, _store, _address = recognition
    team_a: AnalyzeClient = clients["team-a"]
    astronaut, mirror = (photo(public_photos, name) for name in SINGLE_FACE[:2])

    alice = team_a.enroll("staff", "alice", [astronaut], request_id="enrol-alice")
    (image,) = alice.images
    assert image.face_id and not image.already and image.region.w > 0
    again = team_a.enroll("staff", "alice", [astronaut], request_id="enrol-alice")
    assert (again.images[0].face_id, again.images[0].already) == (image.face_id, True)
    bob = team_a.enroll("staff", "bob", [mirror], request_id="enrol-bob")
    assert bob.images[0].face_id not in (0, image.face_id)

    result = team_a.analyze(astronaut, actions=["age"], identify=identify_in("staff", top_k=2))
    (face,) = result.faces
    assert face.HasField("age") and not face.embedding  # attributes, no embedding asked
    assert [m.subject for m in face.identity.matches] == ["alice", "bob"]
    nearest = face.identity.matches[0]
    assert nearest.distance == pytest.approx(0, abs=1e-4) and nearest.verified
    assert nearest.face_id == image.face_id

    same = team_a.verify(astronaut, other_image=astronaut)
    assert same.verified and same.distance == pytest.approx(0, abs=1e-4)
    assert same.threshold == pytest.approx(0.68)
    against_bob = team_a.verify(mirror, subject=("staff", "bob"))
    assert against_bob.verified and against_bob.face_id == bob.images[0].face_id

    assert [(g.gallery, g.subjects, g.faces) for g in team_a.galleries()] == [("staff", 2, 2)]
    assert team_a.forget("staff", "alice") == 1
    assert [s.subject for s in team_a.subjects("staff")] == ["bob"]
    after = team_a.analyze(astronaut, actions=["age"], identify=identify_in("staff", top_k=2))
    assert [m.subject for m in after.faces[0].identity.matches] == ["bob"]
    # The same enrolment sent again does not bring the forgotten face back.
    replay = refused(lambda: team_a.enroll("staff", "alice", [astronaut], request_id="enrol-alice"))
    assert replay.code() == grpc.StatusCode.FAILED_PRECONDITION
    assert error_reason(replay) == "enroll.forgotten"
    assert [s.subject for s in team_a.subjects("staff")] == ["bob"]


def test_an_enrolment_image_must_hold_exactly_one_face(recognition, public_photos):
    team_a = recognition[0]["team-a"]
    for name, count in ((TWO_FACES, 2), (WITHOUT_FACE, 0)):
        image = photo(public_photos, name)
        error = refused(lambda image=image: team_a.enroll("staff-2", "x", [image]))
        assert error.code() == grpc.StatusCode.INVALID_ARGUMENT
        assert error_reason(error) == "enroll.face_count"
        assert f"has {count}" in error.details()
    assert "staff-2" not in [g.gallery for g in team_a.galleries()]


def test_a_principal_sees_and_matches_only_its_own_galleries(recognition, public_photos):
    clients, _store, _address = recognition
    astronaut = photo(public_photos, SINGLE_FACE[0])
    clients["team-a"].enroll("private", "alice", [astronaut])
    team_b = clients["team-b"]
    assert "private" not in [g.gallery for g in team_b.galleries()]
    result = team_b.analyze(astronaut, actions=["age"], identify=identify_in("private"))
    assert result.faces[0].identity.error.code == "gallery.unknown"
    assert error_reason(refused(lambda: team_b.subjects("private"))) == "gallery.unknown"
    assert error_reason(refused(lambda: team_b.forget("private", "alice"))) == "gallery.unknown"
    reader = clients["reader"]
    for call in (
        lambda: reader.enroll("mine", "x", [astronaut]),
        lambda: reader.analyze(astronaut, identify=identify_in("private")),
        lambda: reader.galleries(),
    ):
        error = refused(call)
        assert error.code() == grpc.StatusCode.PERMISSION_DENIED
        assert error_reason(error) == "auth.permission_denied"


def test_bad_names_and_options_are_refused_before_anything_is_published(recognition, public_photos):
    team_a = recognition[0]["team-a"]
    astronaut = photo(public_photos, SINGLE_FACE[0])
    cases = [
        (lambda: team_a.enroll("bad name", "x", [astronaut]), "gallery.bad_name"),
        (lambda: team_a.enroll("staff", " x", [astronaut]), "subject.bad_name"),
        (lambda: team_a.enroll("staff", "x", []), "enroll.bad_request"),
        (
            lambda: team_a.analyze(astronaut, identify=identify_in("staff", top_k=500)),
            "identify.bad_options",
        ),
        (
            lambda: team_a.verify(astronaut, other_image=astronaut, threshold=-1),
            "identify.bad_options",
        ),
        (lambda: team_a.verify(astronaut), "verify.bad_request"),
    ]
    for call, code in cases:
        error = refused(call)
        assert error.code() == grpc.StatusCode.INVALID_ARGUMENT, code
        assert error_reason(error) == code


def test_the_recognition_commands(recognition, public_photos):
    address = recognition[2]
    env = cli_env(FACESTREAM_GRPC_ADDRESS=address, FACESTREAM_CLIENT_TOKEN=TOKENS["team-b"])
    astronaut = str(public_photos / SINGLE_FACE[0])

    enrolled = run_facestream("gallery", "enroll", "cli", "Eileen C.", astronaut, env=env)
    assert enrolled.returncode == 0, enrolled.stderr
    assert "Eileen C. in cli" in enrolled.stdout and " enrolled" in enrolled.stdout
    listed = run_facestream("gallery", "list", "--json", env=env)
    assert listed.returncode == 0, listed.stderr
    galleries = [json.loads(line) for line in listed.stdout.splitlines()]
    assert {"gallery": "cli", "subjects": 1, "faces": 1} in galleries
    identified = run_facestream("identify", astronaut, "--gallery", "cli", env=env)
    assert identified.returncode == 0, identified.stderr
    assert "Eileen C. 0.000 ✓" in identified.stdout
    verified = run_facestream("verify", astronaut, "--subject", "cli/Eileen C.", env=env)
    assert verified.returncode == 0, verified.stderr
    assert ": the same person (distance 0.0000" in verified.stdout
    forgotten = run_facestream("gallery", "forget", "cli", "Eileen C.", env=env)
    assert forgotten.returncode == 0, forgotten.stderr
    assert "(1 face erased)" in forgotten.stdout
    unknown = run_facestream("gallery", "list", "nope", env=env)
    assert unknown.returncode == 1
    assert "NOT_FOUND gallery.unknown" in unknown.stderr


def test_a_video_is_identified_track_by_track(recognition, public_photos, tmp_path):
    clients, _store, address = recognition
    clients["team-b"].enroll("video", "Eileen", [photo(public_photos, SINGLE_FACE[0])])
    video = compose_demo_video(tmp_path / "short.avi", seconds=2)
    env = cli_env(FACESTREAM_GRPC_ADDRESS=address, FACESTREAM_CLIENT_TOKEN=TOKENS["team-b"])
    done = run_facestream(
        "video",
        str(video.path),
        "--gallery",
        "video",
        "--json",
        "--no-embeddings",
        env=env,
        timeout=300,
    )
    assert done.returncode == 0, done.stderr
    frames = [json.loads(line) for line in done.stdout.splitlines()]
    assert len(frames) == video.frame_count
    faces = [face for frame in frames for face in frame.get("faces", [])]
    assert faces and all(face["trackId"] for face in faces)
    # With synthetic weights every face is near the one subject: each is identified as it,
    # the carried faces with their track's identity.
    assert {face["identity"]["matches"][0]["subject"] for face in faces} == {"Eileen"}
    assert any(face.get("carried") for face in faces)
    summaries = [track for frame in frames for track in frame.get("ended_tracks", [])]
    assert summaries and {track["subject"] for track in summaries} == {"Eileen"}
    table = run_facestream("video", str(video.path), "--gallery", "video", env=env, timeout=300)
    assert table.returncode == 0, table.stderr
    assert "Eileen 0." in table.stdout
