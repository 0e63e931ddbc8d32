"""Identification of large galleries, on the embedded PostgreSQL: a gallery above the exact
limit is searched by its faces' binary codes (the embeddings' signs) in the process's copy,
and the nearest candidates ranked by their exact distance in PostgreSQL. Its answers
against exact search on synthetic people shaped like VGG-Face's embeddings, the ranking's
plan (by primary key, never a scan) above the limit and the exact copy below it, the
search kept to the principal's gallery, and the copies' memory bound."""

from __future__ import annotations

from datetime import UTC, datetime

import numpy as np
import pytest

from facestream.gallery_store import (
    Box,
    FaceToEnrol,
    GallerySearch,
    GalleryStore,
    connection_pool,
    image_digest,
)
from facestream.synthetic_embeddings import SyntheticPeople

PEOPLE, PER_PERSON = 400, 5
NOW = datetime(2026, 12, 6, 12, 0, tzinfo=UTC)


@pytest.fixture(scope="module")
def people() -> SyntheticPeople:
    return SyntheticPeople(seed=11)


@pytest.fixture
def pool(gallery_dsn):
    with connection_pool(gallery_dsn, max_size=4) as pool:
        GalleryStore(pool).migrate()
        yield pool


def enrol_people(
    store: GalleryStore, principal: str, gallery: str, rows: np.ndarray, first: int = 0
) -> list[int]:
    """Enrol `rows` (PER_PERSON faces a person, person by person) as subjects `person-N`;
    the faces' ids."""
    ids: list[int] = []
    for start in range(0, len(rows), PER_PERSON):
        person = first + start // PER_PERSON
        faces = [
            FaceToEnrol(i, row, image_digest(row.tobytes()), Box(0, 0, 224, 224))
            for i, row in enumerate(rows[start : start + PER_PERSON])
        ]
        request = f"{principal}-{gallery}-{person}"
        done = store.enrol(principal, gallery, f"person-{person}", request, NOW, faces)
        ids += done.face_ids
    return ids


def test_codes_then_exact_ranking_find_what_exact_search_finds(pool, people):
    enrol_people(GalleryStore(pool), "alice", "staff", people.faces(0, PEOPLE, PER_PERSON))
    exact = GalleryStore(pool, GallerySearch(exact_limit=PEOPLE * PER_PERSON))
    by_codes = GalleryStore(pool, GallerySearch(exact_limit=0))
    # Other pictures of enrolled people, and strangers.
    queries = np.vstack([people.faces(0, 100, 1, draw=1), people.faces(PEOPLE, 20, 1)])

    truth = exact.identify("alice", "staff", list(queries), top_k=5)
    found = by_codes.identify("alice", "staff", list(queries), top_k=5)

    same_first = [t[0].face_id == f[0].face_id for t, f in zip(truth, found, strict=True)]
    assert np.mean(same_first) >= 0.99, f"recall@1 {np.mean(same_first):.3f}"
    overlap = [
        len({m.subject for m in t} & {m.subject for m in f}) / 5
        for t, f in zip(truth, found, strict=True)
    ]
    assert np.mean(overlap) >= 0.95, f"top-5 overlap {np.mean(overlap):.3f}"
    for t, f in zip(truth, found, strict=True):
        if t[0].face_id == f[0].face_id:  # the same face, at the same exact distance
            assert f[0].distance == pytest.approx(t[0].distance, abs=1e-6)
    # The answers are ranked by exact distance, not by their codes: distances rise.
    for answer in found:
        assert [m.distance for m in answer] == sorted(m.distance for m in answer)


def test_above_the_limit_codes_then_candidates_by_key_and_below_it_the_exact_copy(pool, people):
    faces = 60 * PER_PERSON
    enrol_people(GalleryStore(pool), "alice", "staff", people.faces(0, 60, PER_PERSON))
    query = people.faces(0, 1, 1, draw=1)[0]

    above = GalleryStore(pool, GallerySearch(exact_limit=faces - 1, candidates=20))
    plan = above.explain_identify("alice", "staff", query)
    # The candidates are read by their primary key: the ranking never reads the gallery.
    assert "Index Scan on face_pkey" in plan or "Index Scan using face_pkey" in plan, plan
    assert "Seq Scan on face" not in plan, plan
    assert "face_changes" not in plan, plan
    # Its copy holds codes: 512 bytes a face, not the embeddings' 16 KiB.
    assert faces * 512 <= above.copy_bytes() < faces * 1024

    below = GalleryStore(pool, GallerySearch(exact_limit=faces))
    plan = below.explain_identify("alice", "staff", query)
    assert plan == f"exact: {faces} faces in this process's copy of the gallery"
    assert below.copy_bytes() == 0
    below.identify("alice", "staff", [query])
    assert below.copy_bytes() >= faces * 4096 * 4


def test_the_search_by_codes_keeps_to_the_principals_gallery(pool, people):
    store = GalleryStore(pool, GallerySearch(exact_limit=0))
    own = enrol_people(store, "alice", "staff", people.faces(0, 60, PER_PERSON))
    queries = people.faces(0, 20, 1, draw=1)
    # The queries themselves, at distance 0, in bob's gallery of the same name and in
    # alice's other gallery: any leak across the filter would come first.
    copies = np.repeat(queries, PER_PERSON, axis=0)
    enrol_people(store, "bob", "staff", copies, first=1000)
    enrol_people(store, "alice", "visitors", copies, first=2000)

    answers = store.identify("alice", "staff", list(queries), top_k=5)

    assert all(len(answer) == 5 for answer in answers)
    returned = {m.face_id for answer in answers for m in answer}
    assert returned <= set(own)
    assert all(m.distance > 1e-3 for answer in answers for m in answer)
    intruders = store.identify("bob", "staff", list(queries), top_k=1)
    assert all(answer[0].distance < 1e-5 for answer in intruders)


def test_a_forgotten_face_is_not_found_by_its_code(pool, people):
    store = GalleryStore(pool, GallerySearch(exact_limit=0))
    rows = people.faces(0, 40, PER_PERSON)
    enrol_people(store, "alice", "staff", rows)
    query = rows[0]  # person-0's first face itself
    assert store.identify("alice", "staff", [query])[0][0].distance < 1e-5

    store.forget_subject("alice", "staff", "person-0", NOW)

    answer = store.identify("alice", "staff", [query], top_k=3)[0]
    assert "person-0" not in {m.subject for m in answer}
    assert store.galleries("alice")[0].faces == 39 * PER_PERSON


def test_copies_stay_within_their_memory(pool, people):
    one_gallery = 20 * PER_PERSON * 4096 * 4
    store = GalleryStore(pool, GallerySearch(copy_memory=one_gallery + one_gallery // 2))
    galleries = {}
    for index, name in enumerate(("north", "south", "east")):
        rows = people.faces(100 * index, 20, PER_PERSON)
        enrol_people(store, "alice", name, rows, first=100 * index)
        galleries[name] = rows

    for _round in range(2):
        for name, rows in galleries.items():
            answer = store.identify("alice", name, [rows[3]])[0][0]
            # Each is answered from a fresh or kept copy, never another gallery's.
            assert answer.distance < 1e-5
            assert store.copy_bytes() <= one_gallery + one_gallery // 2
