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

Identification matches a gallery in one of two ways, by its size, each in a copy the
process keeps of it: a gallery of at most `GallerySearch.exact_limit` faces by the exact
distance to each of its embeddings (16 KiB a face); a larger one by the Hamming distance
between binary codes (the embeddings' signs, 512 bytes a face), whose nearest candidates
are then ranked by their exact distance in PostgreSQL. docs/recognition.md ("At scale") has
the measurements behind the choice, pgvector's own indexes among them.
"""

from __future__ import annotations

import hashlib
import re
import threading
import weakref
from collections import OrderedDict
from collections.abc import Iterable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any, ClassVar, Self, TypeVar

import numpy as np
from pgvector.psycopg import register_vector

from facestream.embeddings import EMBEDDING_SIZE
from facestream.errors import CodedError

# DeepFace's threshold for VGG-Face with the cosine distance (deepface.modules.verification).
VGG_FACE_COSINE_THRESHOLD = 0.68
_GALLERY_NAME = re.compile(r"^[A-Za-z0-9._-]{1,64}$")
_SUBJECT_NAME_MAX = 128


Copy = TypeVar("Copy", bound="GalleryCopy")


class GalleryStoreError(CodedError):
    """A gallery request facestream refuses or cannot serve; `code` says which."""


# What a process without a gallery store answers to recognition.
NO_STORE = GalleryStoreError(
    "gallery.unavailable",
    "no gallery store is configured here (FACESTREAM_GALLERY_DSN, or `facestream up`)",
)


@dataclass(frozen=True)
class GallerySearch:
    """How identification searches a gallery."""

    exact_limit: int = 5_000  # up to this many faces: exact; above: codes, then exact
    candidates: int = 100  # the faces nearest by their codes that are ranked exactly
    copy_memory: int = 1 << 30  # bytes all of a process's copies may take together


# The exact distances of a large gallery's candidates (found by their codes); a face
# forgotten since the copy was read is not among them. They are read by their ids alone,
# so that PostgreSQL reads them by primary key whatever its statistics say of the
# gallery's size (stale after a large enrolment, they could make it read every face of the
# gallery instead); their gallery is checked on the rows read, their subjects are the
# copy's.
CANDIDATE_DISTANCES = """
select id, embedding <=> %(query)s, gallery_id from face
where id = any(%(ids)s) and embedding is not null
"""


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

    def __init__(self, pool: Any, search: GallerySearch | None = None) -> None:
        self._pool = pool  # psycopg_pool.ConnectionPool
        self._search = search or GallerySearch()
        self._migrated = False
        self._registered: weakref.WeakSet[Any] = weakref.WeakSet()  # vector types known
        # The copies of the galleries matched here, least recently used first.
        self._copies: OrderedDict[tuple[str, str], FacesOfGallery] = OrderedDict()
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
            added = 0
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
                if row is not None:
                    added += 1
                else:  # written by an earlier delivery, and maybe forgotten since
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
            _count_faces(db, gallery_id, added)
            return Enrolled(tuple(written), already, refused)

    def _gallery_id(self, db: Any, principal: str, gallery: str) -> int:
        return self._gallery_row(db, principal, gallery)[0]

    def identify(
        self, principal: str, gallery: str, embeddings: Sequence[np.ndarray], top_k: int = 1
    ) -> list[list[Match]]:
        """For each embedding, the `top_k` nearest subjects of the gallery, nearest first,
        each with the distance of its nearest face. `gallery.unknown` for a gallery the
        principal has not, `gallery.empty` for one without faces.

        The gallery is matched in this process's copy of it, brought up to the gallery's
        version first (one indexed query for what changed): an answer never matches a face
        forgotten before it was asked for. A gallery of at most `exact_limit` faces is
        matched exactly; a larger one by its faces' codes, the nearest `candidates` of
        them ranked by their exact distance."""
        queries = np.stack([checked_embedding(e) for e in embeddings])
        with self._transaction() as db:
            gallery_id, version, faces = self._gallery_row(db, principal, gallery)
            if not faces:
                raise GalleryStoreError("gallery.empty", f"gallery {gallery!r} has no faces")
            key = (principal, gallery)
            if faces <= self._search.exact_limit:
                exact = self._copy(db, key, FacesOfGallery, gallery_id, version)
            else:
                codes = self._copy(db, key, CodesOfGallery, gallery_id, version)
                found = codes.candidates(queries, self._search.candidates)
                return [
                    _nearest_subjects(_ranked(db, gallery_id, query, codes, rows), top_k)
                    for query, rows in zip(queries, found, strict=True)
                ]
        return exact.nearest(queries, top_k)

    def _copy(
        self, db: Any, key: tuple[str, str], kind: type[Copy], gallery_id: int, version: int
    ) -> Copy:
        """This process's copy of a gallery at `version`; the copies that no longer fit in
        `copy_memory` dropped, least recently used first (never the one returned)."""
        with self._copies_lock:
            known = self._copies.get(key)
        if not isinstance(known, kind) or known.gallery_id != gallery_id:
            known = kind.empty(gallery_id)
        if known.version != version:
            known = known.updated(_changed_faces(db, gallery_id, known.version, kind), version)
        with self._copies_lock:
            self._copies[key] = known
            self._copies.move_to_end(key)
            held = self._held_bytes()
            while held > self._search.copy_memory and len(self._copies) > 1:
                _key, dropped = self._copies.popitem(last=False)
                held -= dropped.nbytes
        return known

    def copy_bytes(self) -> int:
        """The memory this process's copies of galleries take now."""
        with self._copies_lock:
            return self._held_bytes()

    def _held_bytes(self) -> int:
        """The copies' bytes; the caller holds `_copies_lock`."""
        return sum(copy.nbytes for copy in self._copies.values())

    def explain_identify(self, principal: str, gallery: str, embedding: np.ndarray) -> str:
        """How identify() would match `embedding` in the gallery now: a line saying it is
        matched exactly in this process's copy, or PostgreSQL's plan for ranking the
        candidates its codes found."""
        query = checked_embedding(embedding)
        with self._transaction() as db:
            gallery_id, version, faces = self._gallery_row(db, principal, gallery)
            if faces <= self._search.exact_limit:
                return f"exact: {faces} faces in this process's copy of the gallery"
            codes = self._copy(db, (principal, gallery), CodesOfGallery, gallery_id, version)
            rows = codes.candidates(query[None, :], self._search.candidates)[0]
            arguments = {"query": query, "ids": codes.face_ids[rows].tolist()}
            plan = db.execute("explain " + CANDIDATE_DISTANCES, arguments).fetchall()
        return "\n".join(line for (line,) in plan)

    def _gallery_row(self, db: Any, principal: str, gallery: str) -> tuple[int, int, int]:
        """The gallery's id, version and count of faces."""
        check_gallery_name(gallery)
        row = db.execute(
            "select id, version, faces from gallery where principal = %s and name = %s",
            (principal, gallery),
        ).fetchone()
        if row is None:
            raise GalleryStoreError("gallery.unknown", f"no gallery {gallery!r}")
        return int(row[0]), int(row[1]), int(row[2])

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


def _count_faces(db: Any, gallery_id: int, change: int) -> None:
    """Add `change` (negative: remove) to the gallery's count of faces."""
    if change:
        db.execute("update gallery set faces = faces + %s where id = %s", (change, gallery_id))


def _erase(db: Any, gallery_id: int, where: str, arguments: tuple[Any, ...], at: datetime) -> int:
    """Erase the embeddings of the gallery's faces `where` selects, as a new version of the
    gallery; how many there were."""
    version = _next_version(db, gallery_id)
    erased = db.execute(
        "update face set embedding = null, forgotten_at = %s, changed_version = %s where"
        f" gallery_id = %s and {where} and embedding is not null",
        (at, version, gallery_id, *arguments),
    )
    _count_faces(db, gallery_id, -erased.rowcount)
    return int(erased.rowcount)


def _changed_faces(
    db: Any, gallery_id: int, since: int, kind: type[GalleryCopy]
) -> list[tuple[int, str, Any]]:
    """The gallery's faces written or forgotten after version `since`: (id, subject, the
    column the copy keeps, or None), read in binary."""
    with db.cursor(binary=True) as cursor:
        return cursor.execute(
            f"select face.id, subject.name, face.{kind.column} from face join subject on"
            " subject.id = face.subject_id where face.gallery_id = %s and"
            " face.changed_version > %s",
            (gallery_id, since),
        ).fetchall()


def _ranked(
    db: Any, gallery_id: int, query: np.ndarray, codes: CodesOfGallery, rows: np.ndarray
) -> list[tuple[int, str, float]]:
    """The candidates (the copy's `rows`) by their exact distance to `query`: (face id,
    subject, distance), nearest first, of equal distances by subject."""
    subjects = dict(zip(codes.face_ids[rows].tolist(), codes.subjects[rows], strict=True))
    found = db.execute(CANDIDATE_DISTANCES, {"query": query, "ids": list(subjects)}).fetchall()
    ranked = [(face, subjects[face], distance) for face, distance, of in found if of == gallery_id]
    return sorted(ranked, key=lambda row: (row[2], row[1]))


@dataclass(frozen=True)
class GalleryCopy:
    """A process's copy of one gallery's faces at one version: their ids, subjects and one
    row each (what the kind of copy matches by). Immutable: an update makes a new copy, so
    that a match in progress never sees half of one."""

    column: ClassVar[str]  # the face table's column a row is made from
    width: ClassVar[int]
    dtype: ClassVar[type[np.generic]]
    face_axis: ClassVar[int] = 0  # 0: rows holds a row per face; 1: a column per face

    gallery_id: int
    version: int
    face_ids: np.ndarray  # int64, (n,)
    subjects: np.ndarray  # object (str), (n,)
    rows: np.ndarray  # dtype, (n, width), or (width, n) when face_axis is 1

    @classmethod
    def empty(cls, gallery_id: int) -> Self:
        shape = (0, cls.width) if cls.face_axis == 0 else (cls.width, 0)
        return cls(
            gallery_id, -1, np.zeros(0, np.int64), np.zeros(0, object), np.zeros(shape, cls.dtype)
        )

    @staticmethod
    def row_of(value: Any) -> np.ndarray:
        """A face's row from its column's value, as read."""
        raise NotImplementedError

    @property
    def size(self) -> int:
        return len(self.face_ids)

    @property
    def nbytes(self) -> int:
        """The memory of its arrays (the subjects' names not counted)."""
        return self.rows.nbytes + self.face_ids.nbytes + self.subjects.nbytes

    def updated(self, changes: Sequence[tuple[int, str, Any]], version: int) -> Self:
        """This copy with `changes` applied (a face with a value written, one without
        removed), at `version`."""
        changed = [int(face_id) for face_id, _subject, _value in changes]
        keep = ~np.isin(self.face_ids, changed)
        added = [(int(f), s, v) for f, s, v in changes if v is not None]
        rows = np.compress(keep, self.rows, axis=self.face_axis)
        if added:
            new = np.stack([self.row_of(v) for _f, _s, v in added], axis=self.face_axis)
            rows = np.concatenate([rows, new], axis=self.face_axis)
        return type(self)(
            self.gallery_id,
            version,
            np.concatenate([self.face_ids[keep], np.array([f for f, _s, _v in added], np.int64)]),
            np.concatenate([self.subjects[keep], np.array([s for _f, s, _v in added], object)]),
            rows,
        )


@dataclass(frozen=True)
class FacesOfGallery(GalleryCopy):
    """The copy of a small gallery: its embeddings, each of unit norm (16 KiB a face)."""

    column = "embedding"
    width = EMBEDDING_SIZE
    dtype = np.float32

    @staticmethod
    def row_of(value: Any) -> np.ndarray:
        return unit(value.to_numpy())

    def nearest(self, queries: np.ndarray, top_k: int) -> list[list[Match]]:
        """Each query's `top_k` nearest subjects (their nearest face each), by cosine
        distance, nearest first (of equal distances, by name)."""
        distances = 1.0 - (unit_rows(queries) @ self.rows.T).astype(np.float64)
        return [
            _nearest_subjects(
                (
                    (int(self.face_ids[index]), self.subjects[index], float(row[index]))
                    for index in np.argsort(row, kind="stable")
                ),
                top_k,
            )
            for row in distances
        ]


@dataclass(frozen=True)
class CodesOfGallery(GalleryCopy):
    """The copy of a large gallery: each face's binary code, the signs of its embedding
    (pgvector's binary_quantize: a bit per value, 1 when above 0), 512 bytes a face. The
    codes are held word by word (a row of the faces' first words, then of their second...)
    so that a search runs along long rows: twice as fast as code by code."""

    column = "bits"
    width = EMBEDDING_SIZE // 64
    dtype = np.uint64
    face_axis = 1

    @staticmethod
    def row_of(value: Any) -> np.ndarray:
        # Read in binary, a bit string is its length (int32), then its bytes.
        return np.frombuffer(value, np.uint8, offset=4).view(np.uint64)

    def candidates(self, queries: np.ndarray, count: int) -> list[np.ndarray]:
        """For each query (an embedding), the `count` faces whose codes are nearest to its
        code: their places in this copy, in no order."""
        codes = np.packbits(queries > 0, axis=1).view(np.uint64)
        if count >= self.size:
            return [np.arange(self.size) for _ in codes]
        word = np.empty(self.size, np.uint64)
        bits = np.empty(self.size, np.uint8)
        found = []
        for code in codes:
            distances = np.zeros(self.size, np.uint16)
            for faces_word, query_word in zip(self.rows, code, strict=True):
                np.bitwise_xor(faces_word, query_word, out=word)
                distances += np.bitwise_count(word, out=bits)
            found.append(np.argpartition(distances, count)[:count])
        return found


def _nearest_subjects(faces: Iterable[tuple[int, str, float]], top_k: int) -> list[Match]:
    """The first `top_k` subjects among `faces` (face id, subject, distance; nearest
    first), each with its nearest face; nearest first, of equal distances by name."""
    best: dict[str, Match] = {}
    for face_id, subject, distance in faces:
        if subject not in best:
            best[subject] = Match(subject, float(distance), int(face_id))
            if len(best) == top_k:
                break
    return sorted(best.values(), key=lambda m: (m.distance, m.subject))


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
