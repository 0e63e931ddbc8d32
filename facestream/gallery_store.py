"""The galleries' store: enrolled faces in PostgreSQL with pgvector, per principal.

A gallery (a name, owned by one principal) holds subjects (a person's name or id), each
with the faces enrolled for it. Per face the store keeps its VGG-Face embedding, the
SHA-256 digest of the image it came from, its box in that image, and when and by which
request it was enrolled: never the face or the image (DeepFace's stores keep a 224x224
crop of each face; a recognition store that must forget a person should not hold their
picture).

Forgetting is real and final for what came before it: a forgotten face's embedding is
erased (its row stays, without it, so that a replay of its enrolment is recognised as
done), and a subject or a gallery remembers when it was last forgotten, so that an
enrolment accepted before that moment (late in Kafka, or replayed) writes nothing.

Distances are cosine distances, 1 - cos(a, b), as DeepFace computes them for VGG-Face.
"""

from __future__ import annotations

import hashlib
import re
import threading
import weakref
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any

import numpy as np
from pgvector.psycopg import register_vector

from facestream.embeddings import EMBEDDING_SIZE
from facestream.errors import CodedError

# DeepFace's threshold for VGG-Face with the cosine distance (deepface.modules.verification).
VGG_FACE_COSINE_THRESHOLD = 0.68
_GALLERY_NAME = re.compile(r"^[A-Za-z0-9._-]{1,64}$")
_SUBJECT_NAME_MAX = 128


class GalleryStoreError(CodedError):
    """A gallery request facestream refuses or cannot serve; `code` says which."""


# What a process without a gallery store answers to recognition.
NO_STORE = GalleryStoreError(
    "gallery.unavailable",
    "no gallery store is configured here (FACESTREAM_GALLERY_DSN, or `facestream up`)",
)


@dataclass(frozen=True)
class Migration:
    version: int
    what: str
    sql: str


# The schema's versions, applied in order: `NNNN_name.sql`, whose first line (a comment)
# says what it does. A version, once released, is never edited: a change is a new file.
MIGRATIONS_FOLDER = Path(__file__).parent / "gallery_migrations"


def migrations() -> tuple[Migration, ...]:
    """Every migration of the schema, oldest first."""
    found = []
    for path in sorted(MIGRATIONS_FOLDER.glob("*.sql")):
        sql = path.read_text()
        what = sql.splitlines()[0].removeprefix("--").strip()
        found.append(Migration(int(path.name.split("_", 1)[0]), what, sql))
    return tuple(found)


MIGRATIONS = migrations()


@dataclass(frozen=True)
class Box:
    x: int
    y: int
    w: int
    h: int


@dataclass(frozen=True)
class FaceToEnrol:
    """One face found in one image of an enrolment request."""

    image_index: int  # which image of the request
    embedding: np.ndarray
    image_sha256: bytes
    box: Box


@dataclass(frozen=True)
class Enrolled:
    """What one enrolment request wrote."""

    face_ids: tuple[int, ...]  # each face's id, in order: written now or before
    already: int  # of those, written by an earlier delivery of this request (a replay)
    refused: int  # faces forgotten since: accepted before their subject or gallery was
    # forgotten, or written by an earlier delivery and forgotten since


@dataclass(frozen=True)
class Match:
    subject: str
    distance: float
    face_id: int


@dataclass(frozen=True)
class SubjectCount:
    subject: str
    faces: int


@dataclass(frozen=True)
class GalleryCount:
    gallery: str
    subjects: int
    faces: int


def image_digest(image: bytes) -> bytes:
    """The SHA-256 of an enrolled face's source image, kept in its place."""
    return hashlib.sha256(image).digest()


def check_gallery_name(name: str) -> str:
    if not _GALLERY_NAME.match(name):
        raise GalleryStoreError(
            "gallery.bad_name", f"a gallery name is 1-64 of A-Za-z0-9._- (got {name[:80]!r})"
        )
    return name


def check_subject_name(name: str) -> str:
    if not 0 < len(name) <= _SUBJECT_NAME_MAX or name != name.strip() or not name.isprintable():
        raise GalleryStoreError(
            "subject.bad_name",
            f"a subject name is 1-{_SUBJECT_NAME_MAX} printable characters without leading or "
            f"trailing spaces (got {name[:80]!r})",
        )
    return name


def checked_embedding(embedding: np.ndarray) -> np.ndarray:
    """An embedding as the store takes it (float32); a ValueError unless it has 4096 finite
    values."""
    values = np.asarray(embedding, dtype=np.float32).ravel()
    if values.size != EMBEDDING_SIZE or not np.isfinite(values).all():
        raise ValueError(f"an embedding is {EMBEDDING_SIZE} finite values")
    return values


def connection_pool(dsn: str, max_size: int, timeout: float = 5.0) -> Any:
    """A psycopg pool on `dsn`, connecting in the background from now. Its connections are
    checked before they are lent, so that a restarted server costs one failed call, not a
    pool of dead connections; a call waits at most `timeout` s for a connection."""
    from psycopg_pool import ConnectionPool

    return ConnectionPool(
        dsn,
        min_size=1,
        max_size=max_size,
        timeout=timeout,
        check=ConnectionPool.check_connection,
        open=True,
        name="galleries",
    )


class GalleryStore:
    """The galleries of every principal, in one PostgreSQL database. Each method takes the
    principal it acts for: a principal sees and matches only its own galleries. A store
    that cannot be reached raises GalleryStoreError `gallery.unavailable`."""

    def __init__(self, pool: Any) -> None:
        self._pool = pool  # psycopg_pool.ConnectionPool
        self._migrated = False
        self._registered: weakref.WeakSet[Any] = weakref.WeakSet()  # vector types known
        self._copies: dict[tuple[str, str], FacesOfGallery] = {}
        self._copies_lock = threading.Lock()

    @contextmanager
    def _connection(self) -> Iterator[Any]:
        """A connection of the pool; the store's failures as GalleryStoreError:
        `gallery.unavailable` when it cannot be reached, `gallery.failed` for any other
        database error."""
        import psycopg

        try:
            with self._pool.connection() as connection:
                yield connection
        except psycopg.OperationalError as error:  # the pool's timeouts among them
            raise GalleryStoreError(
                "gallery.unavailable", f"the gallery store is unreachable: {_first_line(error)}"
            ) from None
        except psycopg.Error as error:
            raise GalleryStoreError(
                "gallery.failed", f"the gallery store failed: {type(error).__name__}"
            ) from error

    @contextmanager
    def _transaction(self) -> Iterator[Any]:
        """A connection in a transaction, the schema brought up to date first (once per
        store)."""
        with self._connection() as connection:
            if not self._migrated:
                with connection.transaction():
                    self._migrate(connection)
                self._migrated = True
            if connection not in self._registered:
                # pgvector's types as numpy arrays, sent and read in binary.
                register_vector(connection)
                self._registered.add(connection)
            with connection.transaction():
                yield connection

    def migrate(self) -> list[int]:
        """Apply the migrations this database has not had, in order, each once (several
        processes may start at once: an advisory lock makes them take turns); the versions
        applied now. The first call of any other method does it too."""
        with self._connection() as connection, connection.transaction():
            applied = self._migrate(connection)
        self._migrated = True
        return applied

    @staticmethod
    def _migrate(db: Any) -> list[int]:
        applied: list[int] = []
        db.execute("select pg_advisory_xact_lock(hashtext('facestream gallery schema'))")
        db.execute(
            "create table if not exists facestream_migration (version integer primary key,"
            " what text not null, applied_at timestamptz not null default now())"
        )
        done = {row[0] for row in db.execute("select version from facestream_migration")}
        for migration in MIGRATIONS:
            if migration.version in done:
                continue
            db.execute(migration.sql)
            db.execute(
                "insert into facestream_migration (version, what) values (%s, %s)",
                (migration.version, migration.what),
            )
            applied.append(migration.version)
        return applied

    def schema_version(self) -> int:
        with self._transaction() as db:
            row = db.execute("select coalesce(max(version), 0) from facestream_migration")
            return int(row.fetchone()[0])

    def enrol(
        self,
        principal: str,
        gallery: str,
        subject: str,
        request_id: str,
        accepted_at: datetime,
        faces: Sequence[FaceToEnrol],
    ) -> Enrolled:
        """Write the faces of one enrolment request, once: a face this request enrolled
        before is not written again (nor brought back if it was forgotten since), and none
        is written when the subject or the gallery was forgotten after `accepted_at` (when
        the front accepted the request)."""
        check_gallery_name(gallery)
        check_subject_name(subject)
        for face in faces:
            checked_embedding(face.embedding)  # refused before anything is written
        with self._transaction() as db:
            # The upserts lock the gallery's and the subject's rows: a forget of either
            # waits for this enrolment, or this enrolment sees it.
            gallery_id, gallery_forgotten = db.execute(
                "insert into gallery (principal, name) values (%s, %s) on conflict (principal,"
                " name) do update set name = excluded.name returning id, forgotten_at",
                (principal, gallery),
            ).fetchone()
            subject_id, subject_forgotten = db.execute(
                "insert into subject (gallery_id, name) values (%s, %s) on conflict (gallery_id,"
                " name) do update set name = excluded.name returning id, forgotten_at",
                (gallery_id, subject),
            ).fetchone()
            forgotten = [t for t in (gallery_forgotten, subject_forgotten) if t is not None]
            if forgotten and accepted_at <= max(forgotten):
                return Enrolled((), 0, len(faces))
            version = _next_version(db, gallery_id)
            written: list[int] = []
            already = refused = 0
            for face in faces:
                row = db.execute(
                    "insert into face (subject_id, gallery_id, changed_version, principal,"
                    " request_id, image_index, embedding, image_sha256, box_x, box_y, box_w,"
                    " box_h, accepted_at) values (%s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s,"
                    " %s, %s) on conflict (principal, request_id, image_index) do nothing"
                    " returning id",
                    (
                        subject_id,
                        gallery_id,
                        version,
                        principal,
                        request_id,
                        face.image_index,
                        checked_embedding(face.embedding),
                        face.image_sha256,
                        face.box.x,
                        face.box.y,
                        face.box.w,
                        face.box.h,
                        accepted_at,
                    ),
                ).fetchone()
                if row is None:  # written by an earlier delivery, and maybe forgotten since
                    row = db.execute(
                        "select id from face where principal = %s and request_id = %s and"
                        " image_index = %s and embedding is not null",
                        (principal, request_id, face.image_index),
                    ).fetchone()
                    if row is None:
                        refused += 1
                        continue
                    already += 1
                written.append(int(row[0]))
            return Enrolled(tuple(written), already, refused)

    def _gallery_id(self, db: Any, principal: str, gallery: str) -> int:
        return self._gallery_row(db, principal, gallery)[0]

    def identify(
        self, principal: str, gallery: str, embeddings: Sequence[np.ndarray], top_k: int = 1
    ) -> list[list[Match]]:
        """For each embedding, the `top_k` nearest subjects of the gallery, nearest first,
        each with the distance of its nearest face. `gallery.unknown` for a gallery the
        principal has not, `gallery.empty` for one without faces.

        The gallery's faces are matched in this process's copy of them, brought up to the
        gallery's version first (one indexed query for what changed): an answer never
        matches a face forgotten before it was asked for."""
        queries = np.stack([checked_embedding(e) for e in embeddings])
        with self._transaction() as db:
            gallery_id, version = self._gallery_row(db, principal, gallery)
            key = (principal, gallery)
            with self._copies_lock:
                known = self._copies.get(key)
            if known is None or known.gallery_id != gallery_id:
                known = FacesOfGallery.empty(gallery_id)
            if known.version != version:
                known = known.updated(_changed_faces(db, gallery_id, known.version), version)
                with self._copies_lock:
                    self._copies[key] = known
        if not known.size:
            raise GalleryStoreError("gallery.empty", f"gallery {gallery!r} has no faces")
        return known.nearest(queries, top_k)

    def _gallery_row(self, db: Any, principal: str, gallery: str) -> tuple[int, int]:
        check_gallery_name(gallery)
        row = db.execute(
            "select id, version from gallery where principal = %s and name = %s",
            (principal, gallery),
        ).fetchone()
        if row is None:
            raise GalleryStoreError("gallery.unknown", f"no gallery {gallery!r}")
        return int(row[0]), int(row[1])

    def nearest_of_subject(
        self, principal: str, gallery: str, subject: str, embeddings: Sequence[np.ndarray]
    ) -> list[Match]:
        """For each embedding, the subject's nearest enrolled face and its distance
        (`subject.unknown` when the gallery has no such subject with faces)."""
        check_subject_name(subject)
        queries = [checked_embedding(e) for e in embeddings]
        with self._transaction() as db:
            gallery_id = self._gallery_id(db, principal, gallery)
            nearest = []
            for query in queries:
                row = db.execute(
                    "select face.id, face.embedding <=> %s as distance from face join"
                    " subject on subject.id = face.subject_id where subject.gallery_id = %s and"
                    " subject.name = %s and face.embedding is not null order by distance limit 1",
                    (query, gallery_id, subject),
                ).fetchone()
                if row is None:
                    raise GalleryStoreError(
                        "subject.unknown", f"no subject {subject!r} with faces in {gallery!r}"
                    )
                nearest.append(Match(subject, float(row[1]), int(row[0])))
            return nearest

    def forget_subject(self, principal: str, gallery: str, subject: str, at: datetime) -> int:
        """Erase a subject's embeddings; an enrolment of it accepted before `at` writes
        nothing. The count of faces erased."""
        check_subject_name(subject)
        with self._transaction() as db:
            gallery_id = self._gallery_id(db, principal, gallery)
            row = db.execute(
                "update subject set forgotten_at = greatest(forgotten_at, %s) where gallery_id"
                " = %s and name = %s returning id",
                (at, gallery_id, subject),
            ).fetchone()
            if row is None:
                raise GalleryStoreError("subject.unknown", f"no subject {subject!r} in {gallery!r}")
            return _erase(db, gallery_id, "subject_id = %s", (row[0],), at)

    def forget_gallery(self, principal: str, gallery: str, at: datetime) -> int:
        """Erase every embedding of a gallery; an enrolment into it accepted before `at`
        writes nothing. The count of faces erased."""
        with self._transaction() as db:
            gallery_id = self._gallery_id(db, principal, gallery)
            db.execute(
                "update gallery set forgotten_at = greatest(forgotten_at, %s) where id = %s",
                (at, gallery_id),
            )
            return _erase(db, gallery_id, "gallery_id = %s", (gallery_id,), at)

    def forget_face(self, principal: str, face_id: int, at: datetime) -> None:
        """Erase one enrolled face's embedding (`face.unknown` when the principal has no
        such face)."""
        with self._transaction() as db:
            row = db.execute(
                "select gallery_id from face where principal = %s and id = %s and embedding is"
                " not null",
                (principal, face_id),
            ).fetchone()
            if row is None:
                raise GalleryStoreError("face.unknown", f"no enrolled face {face_id}")
            _erase(db, int(row[0]), "id = %s", (face_id,), at)

    def galleries(self, principal: str) -> list[GalleryCount]:
        """The principal's galleries that hold faces, with their subject and face counts."""
        with self._transaction() as db:
            rows = db.execute(
                "select gallery.name, count(distinct subject.id), count(face.id) from gallery"
                " join subject on subject.gallery_id = gallery.id join face on face.subject_id ="
                " subject.id and face.embedding is not null where gallery.principal = %s group"
                " by gallery.name order by gallery.name",
                (principal,),
            ).fetchall()
        return [GalleryCount(name, int(subjects), int(faces)) for name, subjects, faces in rows]

    def subjects(self, principal: str, gallery: str) -> list[SubjectCount]:
        """A gallery's subjects that hold faces, with their face counts."""
        with self._transaction() as db:
            gallery_id = self._gallery_id(db, principal, gallery)
            rows = db.execute(
                "select subject.name, count(face.id) from subject join face on face.subject_id ="
                " subject.id and face.embedding is not null where subject.gallery_id = %s group"
                " by subject.name order by subject.name",
                (gallery_id,),
            ).fetchall()
        return [SubjectCount(name, int(faces)) for name, faces in rows]


def _next_version(db: Any, gallery_id: int) -> int:
    """Raise a gallery's version (its row is locked until the transaction ends); the new one."""
    row = db.execute(
        "update gallery set version = version + 1 where id = %s returning version", (gallery_id,)
    ).fetchone()
    return int(row[0])


def _erase(db: Any, gallery_id: int, where: str, arguments: tuple[Any, ...], at: datetime) -> int:
    """Erase the embeddings of the gallery's faces `where` selects, as a new version of the
    gallery; how many there were."""
    version = _next_version(db, gallery_id)
    erased = db.execute(
        "update face set embedding = null, forgotten_at = %s, changed_version = %s where"
        f" gallery_id = %s and {where} and embedding is not null",
        (at, version, gallery_id, *arguments),
    )
    return int(erased.rowcount)


def _changed_faces(db: Any, gallery_id: int, since: int) -> list[tuple[int, str, Any]]:
    """The gallery's faces written or forgotten after version `since`: (id, subject, its
    embedding or None), read in binary."""
    with db.cursor(binary=True) as cursor:
        return cursor.execute(
            "select face.id, subject.name, face.embedding from face join subject on subject.id ="
            " face.subject_id where face.gallery_id = %s and face.changed_version > %s",
            (gallery_id, since),
        ).fetchall()


@dataclass(frozen=True)
class FacesOfGallery:
    """A process's copy of one gallery's faces at one version: their ids, subjects and
    embeddings (16 KiB a face). Immutable: an update makes a new copy, so that a match in
    progress never sees half of one."""

    gallery_id: int
    version: int
    face_ids: np.ndarray  # int64, (n,)
    subjects: np.ndarray  # object (str), (n,)
    embeddings: np.ndarray  # float32, (n, 4096), each of unit norm

    @classmethod
    def empty(cls, gallery_id: int) -> FacesOfGallery:
        return cls(
            gallery_id,
            -1,
            np.zeros(0, np.int64),
            np.zeros(0, object),
            np.zeros((0, EMBEDDING_SIZE), np.float32),
        )

    @property
    def size(self) -> int:
        return len(self.face_ids)

    def updated(self, changes: Sequence[tuple[int, str, Any]], version: int) -> FacesOfGallery:
        """This copy with `changes` applied (a face with an embedding written, one without
        removed), at `version`."""
        changed = [int(face_id) for face_id, _subject, _embedding in changes]
        keep = ~np.isin(self.face_ids, changed)
        added = [(int(f), s, e) for f, s, e in changes if e is not None]
        rows = np.stack([unit(e.to_numpy()) for _f, _s, e in added]) if added else None
        return FacesOfGallery(
            self.gallery_id,
            version,
            np.concatenate([self.face_ids[keep], np.array([f for f, _s, _e in added], np.int64)]),
            np.concatenate([self.subjects[keep], np.array([s for _f, s, _e in added], object)]),
            self.embeddings[keep] if rows is None else np.vstack([self.embeddings[keep], rows]),
        )

    def nearest(self, queries: np.ndarray, top_k: int) -> list[list[Match]]:
        """Each query's `top_k` nearest subjects (their nearest face each), by cosine
        distance, nearest first (of equal distances, by name)."""
        distances = 1.0 - (unit_rows(queries) @ self.embeddings.T).astype(np.float64)
        answers = []
        for row in distances:
            best: dict[str, Match] = {}
            for index in np.argsort(row, kind="stable"):
                subject = self.subjects[index]
                if subject not in best:
                    best[subject] = Match(subject, float(row[index]), int(self.face_ids[index]))
                    if len(best) == top_k:
                        break
            answers.append(sorted(best.values(), key=lambda m: (m.distance, m.subject)))
        return answers


def unit(vector: np.ndarray) -> np.ndarray:
    """A vector scaled to unit L2 norm, in float32."""
    values = np.asarray(vector, dtype=np.float32)
    return values / np.linalg.norm(values)


def unit_rows(rows: np.ndarray) -> np.ndarray:
    """Each row scaled to unit L2 norm, in float32."""
    values = np.asarray(rows, dtype=np.float32)
    return values / np.linalg.norm(values, axis=1, keepdims=True)


def _first_line(error: BaseException) -> str:
    return (str(error).strip().splitlines() or [type(error).__name__])[0]
