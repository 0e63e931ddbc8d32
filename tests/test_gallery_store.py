"""The galleries' store on a real PostgreSQL with pgvector (the embedded one): its schema
and migrations, enrolment once per request, identification against numpy's cosine
distances, forgetting that stays forgotten, principals kept apart, typed failures."""

from __future__ import annotations

import os
import stat
import threading
from datetime import UTC, datetime, timedelta
from pathlib import Path

import numpy as np
import psycopg
import pytest

from apps.gallery_database import SYSTEM_USER, EmbeddedPostgres
from facestream.embeddings import EMBEDDING_SIZE
from facestream.gallery_store import (
    MIGRATIONS,
    Box,
    FaceToEnrol,
    GalleryStore,
    GalleryStoreError,
    connection_pool,
    image_digest,
)


def vgg_like(rng: np.random.Generator, centre: np.ndarray | None = None, spread: float = 0.3):
    """A unit embedding shaped like VGG-Face's (fc7 after ReLU: non-negative, many zeros),
    near `centre` when given (the same person)."""
    raw = rng.normal(size=EMBEDDING_SIZE)
    if centre is not None:
        raw = centre * np.linalg.norm(raw) + spread * raw
    values = np.maximum(raw, 0).astype(np.float32)
    return values / np.linalg.norm(values)


def faces(*embeddings: np.ndarray) -> list[FaceToEnrol]:
    return [
        FaceToEnrol(i, e, image_digest(e.tobytes()), Box(10 * i, 20, 64, 64))
        for i, e in enumerate(embeddings)
    ]


def cosine_distance(a: np.ndarray, b: np.ndarray) -> float:
    a64, b64 = a.astype(np.float64), b.astype(np.float64)
    return float(1 - a64 @ b64 / (np.linalg.norm(a64) * np.linalg.norm(b64)))


NOW = datetime(2026, 12, 6, 12, 0, tzinfo=UTC)


def test_migrations_apply_once_and_record_their_version(gallery_dsn):
    with connection_pool(gallery_dsn, max_size=4) as pool:
        store = GalleryStore(pool)
        results: list[list[int]] = []
        # Processes starting together take turns: each migration is applied by one.
        threads = [
            threading.Thread(target=lambda: results.append(store.migrate())) for _ in range(3)
        ]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(timeout=60)
        assert sorted(results) == [[], [], [m.version for m in MIGRATIONS]]
        assert store.schema_version() == MIGRATIONS[-1].version
        assert store.migrate() == []
        with pool.connection() as db:
            extension = db.execute("select extversion from pg_extension where extname = 'vector'")
            assert extension.fetchone() is not None
            dimensions = db.execute(
                "select atttypmod from pg_attribute where attrelid = 'face'::regclass and "
                "attname = 'embedding'"
            ).fetchone()
            assert dimensions == (EMBEDDING_SIZE,)


def test_the_store_keeps_no_face_image(gallery_store, gallery_dsn):
    rng = np.random.default_rng(1)
    image = os.urandom(50_000)
    face = FaceToEnrol(0, vgg_like(rng), image_digest(image), Box(1, 2, 3, 4))
    gallery_store.enrol("team-a", "staff", "alice", "r-1", NOW, [face])
    with psycopg.connect(gallery_dsn) as db:
        binary = db.execute(
            "select table_name, column_name from information_schema.columns where "
            "table_schema = 'public' and data_type = 'bytea'"
        ).fetchall()
        assert binary == [("face", "image_sha256")]
        digest, size = db.execute(
            "select image_sha256, pg_column_size(face.*) from face"
        ).fetchone()
    assert bytes(digest) == image_digest(image)
    # An embedding (4096 float32), its code (a bit a value) and a few fields: DeepFace
    # keeps a 602,112-byte crop.
    assert size < EMBEDDING_SIZE * 4 + EMBEDDING_SIZE // 8 + 512


def test_identify_gives_the_nearest_subjects_with_numpy_cosine_distances(gallery_store):
    rng = np.random.default_rng(2)
    people = {name: vgg_like(rng) for name in ("alice", "bob", "carol", "dan")}
    enrolled: dict[str, list[np.ndarray]] = {}
    for n, (name, centre) in enumerate(people.items()):
        shots = [vgg_like(rng, centre) for _ in range(3)]
        enrolled[name] = shots
        done = gallery_store.enrol("team-a", "staff", name, f"enrol-{n}", NOW, faces(*shots))
        assert len(done.face_ids) == 3 and done.already == 0
    queries = [vgg_like(rng, centre) for centre in people.values()]
    answers = gallery_store.identify("team-a", "staff", queries, top_k=3)
    for query, matches in zip(queries, answers, strict=True):
        expected = sorted(
            (min(cosine_distance(query, shot) for shot in shots), name)
            for name, shots in enrolled.items()
        )[:3]
        assert [m.subject for m in matches] == [name for _, name in expected]
        for match, (distance, _) in zip(matches, expected, strict=True):
            assert match.distance == pytest.approx(distance, abs=1e-5)
    assert [matches[0].subject for matches in answers] == list(people)


def test_a_replayed_enrolment_writes_nothing_twice(gallery_store):
    rng = np.random.default_rng(3)
    shots = faces(vgg_like(rng), vgg_like(rng))
    first = gallery_store.enrol("team-a", "staff", "alice", "r-1", NOW, shots)
    again = gallery_store.enrol("team-a", "staff", "alice", "r-1", NOW, shots)
    assert (len(first.face_ids), first.already) == (2, 0)
    assert (again.face_ids, again.already) == (first.face_ids, 2)
    assert [(s.subject, s.faces) for s in gallery_store.subjects("team-a", "staff")] == [
        ("alice", 2)
    ]


def test_a_forgotten_subject_stays_forgotten(gallery_store):
    rng = np.random.default_rng(4)
    alice, bob = vgg_like(rng), vgg_like(rng)
    gallery_store.enrol("team-a", "staff", "alice", "r-1", NOW, faces(alice))
    gallery_store.enrol("team-a", "staff", "bob", "r-2", NOW, faces(bob))
    forgotten_at = NOW + timedelta(seconds=10)
    assert gallery_store.forget_subject("team-a", "staff", "alice", forgotten_at) == 1
    [[nearest]] = gallery_store.identify("team-a", "staff", [alice])
    assert nearest.subject == "bob"
    # A replay of its enrolment, and a late one accepted before the forget: nothing comes back.
    replay = gallery_store.enrol("team-a", "staff", "alice", "r-1", NOW, faces(alice))
    assert (replay.face_ids, replay.refused) == ((), 1)
    late = gallery_store.enrol(
        "team-a", "staff", "alice", "r-3", NOW + timedelta(seconds=5), faces(alice)
    )
    assert (late.face_ids, late.refused) == ((), 1)
    assert [s.subject for s in gallery_store.subjects("team-a", "staff")] == ["bob"]
    # Enrolled again after the forget: a new enrolment counts.
    later = forgotten_at + timedelta(seconds=1)
    assert (
        len(gallery_store.enrol("team-a", "staff", "alice", "r-4", later, faces(alice)).face_ids)
        == 1
    )
    [[nearest]] = gallery_store.identify("team-a", "staff", [alice])
    assert (nearest.subject, nearest.distance) == ("alice", pytest.approx(0, abs=1e-6))


def test_forgetting_a_gallery_or_a_face(gallery_store):
    rng = np.random.default_rng(5)
    alice = vgg_like(rng)
    done = gallery_store.enrol("team-a", "staff", "alice", "r-1", NOW, faces(alice, vgg_like(rng)))
    gallery_store.forget_face("team-a", done.face_ids[0], NOW + timedelta(seconds=1))
    assert [(s.subject, s.faces) for s in gallery_store.subjects("team-a", "staff")] == [
        ("alice", 1)
    ]
    # Its enrolment delivered again, even accepted later, does not bring it back.
    replay = gallery_store.enrol(
        "team-a", "staff", "alice", "r-1", NOW + timedelta(seconds=5), faces(alice, vgg_like(rng))
    )
    assert (replay.face_ids, replay.already, replay.refused) == ((done.face_ids[1],), 1, 1)
    with pytest.raises(GalleryStoreError) as unknown:
        gallery_store.forget_face("team-b", done.face_ids[1], NOW + timedelta(seconds=1))
    assert unknown.value.code == "face.unknown"
    assert gallery_store.forget_gallery("team-a", "staff", NOW + timedelta(seconds=2)) == 1
    assert gallery_store.galleries("team-a") == []
    with pytest.raises(GalleryStoreError) as empty:
        gallery_store.identify("team-a", "staff", [alice])
    assert empty.value.code == "gallery.empty"
    late = gallery_store.enrol(
        "team-a", "staff", "bob", "r-2", NOW + timedelta(seconds=1), faces(alice)
    )
    assert late.refused == 1


def test_a_principal_sees_and_matches_only_its_own_galleries(gallery_store):
    rng = np.random.default_rng(6)
    alice = vgg_like(rng)
    gallery_store.enrol("team-a", "staff", "alice", "r-1", NOW, faces(alice))
    gallery_store.enrol("team-b", "visitors", "zed", "r-1", NOW, faces(vgg_like(rng)))
    assert [g.gallery for g in gallery_store.galleries("team-b")] == ["visitors"]
    for call in (
        lambda: gallery_store.identify("team-b", "staff", [alice]),
        lambda: gallery_store.subjects("team-b", "staff"),
        lambda: gallery_store.forget_subject("team-b", "staff", "alice", NOW),
        lambda: gallery_store.forget_gallery("team-b", "staff", NOW),
    ):
        with pytest.raises(GalleryStoreError) as refused:
            call()
        assert refused.value.code == "gallery.unknown"
    # The same request id from two principals is two requests.
    gallery_store.enrol("team-b", "staff", "alice", "r-1", NOW, faces(alice))
    [[match]] = gallery_store.identify("team-a", "staff", [alice])
    assert match.subject == "alice"
    assert [(g.gallery, g.faces) for g in gallery_store.galleries("team-a")] == [("staff", 1)]


@pytest.mark.parametrize(
    ("gallery", "subject", "code"),
    [
        ("staff room", "alice", "gallery.bad_name"),
        ("", "alice", "gallery.bad_name"),
        ("x" * 65, "alice", "gallery.bad_name"),
        ("staff", "", "subject.bad_name"),
        ("staff", " alice", "subject.bad_name"),
        ("staff", "al\nice", "subject.bad_name"),
        ("staff", "a" * 129, "subject.bad_name"),
    ],
)
def test_bad_names_are_refused_with_their_code(gallery_store, gallery, subject, code):
    rng = np.random.default_rng(7)
    with pytest.raises(GalleryStoreError) as refused:
        gallery_store.enrol("team-a", gallery, subject, "r-1", NOW, faces(vgg_like(rng)))
    assert refused.value.code == code


def test_a_subject_may_have_any_printable_name(gallery_store):
    rng = np.random.default_rng(8)
    gallery_store.enrol("team-a", "staff", "José García-Núñez", "r-1", NOW, faces(vgg_like(rng)))
    assert [s.subject for s in gallery_store.subjects("team-a", "staff")] == ["José García-Núñez"]


def test_a_stopped_store_fails_typed_and_a_restarted_one_serves_again(tmp_path):
    database = EmbeddedPostgres(tmp_path / "postgres")
    database.start()
    try:
        rng = np.random.default_rng(9)
        alice = vgg_like(rng)
        with connection_pool(database.dsn, max_size=2, timeout=2) as pool:
            store = GalleryStore(pool)
            store.migrate()
            store.enrol("team-a", "staff", "alice", "r-1", NOW, faces(alice))
            database.stop()
            with pytest.raises(GalleryStoreError) as down:
                store.identify("team-a", "staff", [alice])
            assert down.value.code == "gallery.unavailable"
            assert "unreachable" in down.value.message
            # Its data was kept: the same folder, started again.
            database.start()
            [[match]] = store.identify("team-a", "staff", [alice])
            assert match.subject == "alice"
    finally:
        database.stop()


def test_the_embedded_server_is_reachable_only_by_its_owner(gallery_database):
    with psycopg.connect(gallery_database.dsn) as db:
        assert db.execute("show listen_addresses").fetchone() == ("",)
    for folder in (gallery_database.folder, gallery_database.socket):
        assert stat.S_IMODE(folder.stat().st_mode) == 0o700
    if os.geteuid() == 0:
        import pwd

        owner = pwd.getpwuid(gallery_database.data.stat().st_uid).pw_name
        assert owner == SYSTEM_USER
        assert db_server_user(gallery_database) == SYSTEM_USER


def db_server_user(database: EmbeddedPostgres) -> str:
    """The system user the server process runs as."""
    import pwd

    pid = int((database.data / "postmaster.pid").read_text().split()[0])
    status = Path(f"/proc/{pid}/status").read_text().splitlines()
    uid = int(next(line for line in status if line.startswith("Uid:")).split()[1])
    return pwd.getpwuid(uid).pw_name


def test_a_process_copy_of_a_gallery_follows_what_other_processes_write(gallery_dsn):
    # The dataflow matches in its own copy of a gallery; the gRPC server forgets. Each
    # answer follows every change committed before it was asked for.
    rng = np.random.default_rng(10)
    alice, bob = vgg_like(rng), vgg_like(rng)
    with (
        connection_pool(gallery_dsn, max_size=2) as matching_pool,
        connection_pool(gallery_dsn, max_size=2) as writing_pool,
    ):
        matching, writing = GalleryStore(matching_pool), GalleryStore(writing_pool)
        writing.enrol("team-a", "staff", "alice", "r-1", NOW, faces(alice))
        [[first]] = matching.identify("team-a", "staff", [bob])
        assert first.subject == "alice"
        writing.enrol("team-a", "staff", "bob", "r-2", NOW, faces(bob))
        [[second]] = matching.identify("team-a", "staff", [bob])
        assert (second.subject, second.distance) == ("bob", pytest.approx(0, abs=1e-6))
        writing.forget_subject("team-a", "staff", "bob", NOW + timedelta(seconds=1))
        [[third]] = matching.identify("team-a", "staff", [bob])
        assert third == first
        writing.forget_gallery("team-a", "staff", NOW + timedelta(seconds=2))
        with pytest.raises(GalleryStoreError) as empty:
            matching.identify("team-a", "staff", [bob])
        assert empty.value.code == "gallery.empty"
