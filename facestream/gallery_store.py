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
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any

import numpy as np

from facestream.embeddings import EMBEDDING_SIZE
from facestream.errors import CodedError

# DeepFace's threshold for VGG-Face with the cosine distance (deepface.modules.verification).
VGG_FACE_COSINE_THRESHOLD = 0.68
_GALLERY_NAME = re.compile(r"^[A-Za-z0-9._-]{1,64}$")
_SUBJECT_NAME_MAX = 128


class GalleryStoreError(CodedError):
    """A gallery request facestream refuses or cannot serve; `code` says which."""


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


def vector_text(embedding: np.ndarray) -> str:
    """An embedding as pgvector's text form; a ValueError unless it has 4096 finite values."""
    values = np.asarray(embedding, dtype=np.float32).ravel()
    if values.size != EMBEDDING_SIZE or not np.isfinite(values).all():
        raise ValueError(f"an embedding is {EMBEDDING_SIZE} finite values")
    return "[" + ",".join(repr(float(v)) for v in values) + "]"


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
        vectors = [vector_text(face.embedding) for face in faces]
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
            written: list[int] = []
            already = refused = 0
            for face, vector in zip(faces, vectors, strict=True):
                row = db.execute(
                    "insert into face (subject_id, principal, request_id, image_index, embedding,"
                    " image_sha256, box_x, box_y, box_w, box_h, accepted_at) values (%s, %s,"
                    " %s, %s, %s::vector, %s, %s, %s, %s, %s, %s) on conflict (principal,"
                    " request_id, image_index) do nothing returning id",
                    (
                        subject_id,
                        principal,
                        request_id,
                        face.image_index,
                        vector,
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
        check_gallery_name(gallery)
        row = db.execute(
            "select id from gallery where principal = %s and name = %s", (principal, gallery)
        ).fetchone()
        if row is None:
            raise GalleryStoreError("gallery.unknown", f"no gallery {gallery!r}")
        return int(row[0])

    def identify(
        self, principal: str, gallery: str, embeddings: Sequence[np.ndarray], top_k: int = 1
    ) -> list[list[Match]]:
        """For each embedding, the `top_k` nearest subjects of the gallery, nearest first,
        each with the distance of its nearest face. `gallery.unknown` for a gallery the
        principal has not, `gallery.empty` for one without faces."""
        queries = [vector_text(e) for e in embeddings]
        with self._transaction() as db:
            gallery_id = self._gallery_id(db, principal, gallery)
            has_faces = db.execute(
                "select exists (select 1 from face join subject on subject.id = face.subject_id"
                " where subject.gallery_id = %s and face.embedding is not null)",
                (gallery_id,),
            ).fetchone()[0]
            if not has_faces:
                raise GalleryStoreError("gallery.empty", f"gallery {gallery!r} has no faces")
            return [self._nearest(db, gallery_id, query, top_k) for query in queries]

    @staticmethod
    def _nearest(db: Any, gallery_id: int, query: str, top_k: int) -> list[Match]:
        rows = db.execute(
            "select distinct on (subject.name) subject.name, face.id,"
            " face.embedding <=> %s::vector as distance from face join subject on subject.id ="
            " face.subject_id where subject.gallery_id = %s and face.embedding is not null"
            " order by subject.name, distance",
            (query, gallery_id),
        ).fetchall()
        best = sorted(
            (Match(name, float(distance), int(face)) for name, face, distance in rows),
            key=lambda m: (m.distance, m.subject),
        )
        return best[:top_k]

    def nearest_of_subject(
        self, principal: str, gallery: str, subject: str, embeddings: Sequence[np.ndarray]
    ) -> list[Match]:
        """For each embedding, the subject's nearest enrolled face and its distance
        (`subject.unknown` when the gallery has no such subject with faces)."""
        check_subject_name(subject)
        queries = [vector_text(e) for e in embeddings]
        with self._transaction() as db:
            gallery_id = self._gallery_id(db, principal, gallery)
            nearest = []
            for query in queries:
                row = db.execute(
                    "select face.id, face.embedding <=> %s::vector as distance from face join"
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
            return _erase(db, "subject_id = %s", (row[0],), at)

    def forget_gallery(self, principal: str, gallery: str, at: datetime) -> int:
        """Erase every embedding of a gallery; an enrolment into it accepted before `at`
        writes nothing. The count of faces erased."""
        with self._transaction() as db:
            gallery_id = self._gallery_id(db, principal, gallery)
            db.execute(
                "update gallery set forgotten_at = greatest(forgotten_at, %s) where id = %s",
                (at, gallery_id),
            )
            return _erase(
                db,
                "subject_id in (select id from subject where gallery_id = %s)",
                (gallery_id,),
                at,
            )

    def forget_face(self, principal: str, face_id: int, at: datetime) -> None:
        """Erase one enrolled face's embedding (`face.unknown` when the principal has no
        such face)."""
        with self._transaction() as db:
            if not _erase(db, "principal = %s and id = %s", (principal, face_id), at):
                raise GalleryStoreError("face.unknown", f"no enrolled face {face_id}")

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


def _erase(db: Any, where: str, arguments: tuple[Any, ...], at: datetime) -> int:
    """Erase the embeddings of the faces `where` selects; how many there were."""
    erased = db.execute(
        f"update face set embedding = null, forgotten_at = %s where {where}"
        " and embedding is not null",
        (at, *arguments),
    )
    return int(erased.rowcount)


def _first_line(error: BaseException) -> str:
    return (str(error).strip().splitlines() or [type(error).__name__])[0]
