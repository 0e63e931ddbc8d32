"""Recognition at scale: galleries of 10,000 and 100,000 faces in the gallery store (the
embedded PostgreSQL with pgvector), against DeepFace's own search over the same vectors, in
one run on one machine.

The faces are synthetic people (facestream/synthetic_embeddings.py: VGG-Face's shape,
identities as clusters, some loose enough to reach the threshold), five faces a person,
enrolled through GalleryStore.enrol (one request per person, as the dataflow writes them).
The queries are other pictures of the first 200 people. Per size, the gallery searched as a
large one (its faces' binary codes in the process's copy, the nearest candidates ranked by
exact distance in PostgreSQL):

- enrolment (faces/s into the store), the store's bytes per face (table, TOAST and
  indexes), the copy's bytes per face, and the time a fresh process takes to read it;
- a query's time (identify, top 5), p50 and p99, alone and while a child process analyses
  faces with every action (the dataflow's own work) on the same cores; recall@1 and the
  top-5 overlap against the exact top 5 (numpy, float64);
- at 10,000, the exact search in a process's copy of the embeddings too: where the codes
  start to pay;
- the search kept to one gallery among another principal's faces (filtering): recall
  and what the other principal's faces leak (nothing).
- at the largest size, pgvector's own index for comparison: HNSW over the embeddings'
  binary quantization, its build, bytes, searches (p50/p99, recall@1) and enrolment while
  it is maintained.

The peers, on the same 10,000 vectors: `DeepFace.search` exact (its sqlite backend, each
row with DeepFace's 602,112-byte face crop), `DeepFace.search(search_method="ann")` after
`DeepFace.build_index` (faiss HNSW, stored in the same database), `DeepFace.find` (its npz
datastore); per query less the `DeepFace.represent` each runs first. At 100,000 they do not
run here, and the row says why, with their own errors where there is one: DeepFace's
pgvector backend refuses VGG-Face's 4,096 dimensions at any size; its ann index is one
blob, past SQLite's 1 GB limit; its sqlite rows would take 60 GB. 1,000,000 faces is
written on paper from the measured growth (figures and arithmetic in the row).

Usage: python -m bench.recognition_scale [--sizes 10000,100000] [--queries N]; `make bench`
runs it as the row `recognition_scale` (`--only recognition_scale`).
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from apps.gallery_database import EmbeddedPostgres
from apps.processes import ChildProcess
from bench.recognition import (
    enrol,
    peer_costs,
    seconds,
)
from di import child_environment
from facestream.embeddings import EMBEDDING_SIZE
from facestream.gallery_store import GallerySearch, GalleryStore, connection_pool
from facestream.models import ACTIONS
from facestream.synthetic_embeddings import SyntheticPeople

SIZES = (10_000, 100_000)
PER_PERSON = 5
QUERIES = 200
PRINCIPAL, GALLERY = "bench", "bench"
OTHER_PRINCIPAL = "neighbour"  # another principal's gallery, in the same table
SQLITE_MAX_BLOB = 1_000_000_000  # SQLite's default SQLITE_MAX_LENGTH, in bytes
BUSY = "analysing faces"


class ExactTop:
    """The exact nearest faces of fixed queries, over a gallery given in blocks."""

    def __init__(self, queries: np.ndarray, k: int = 5) -> None:
        self.queries = queries.astype(np.float64)
        self.k = k
        self.distances = np.full((len(queries), 0), np.inf)
        self.face_ids = np.zeros((len(queries), 0), np.int64)

    def add(self, rows: np.ndarray, face_ids: Sequence[int]) -> None:
        distances = 1.0 - self.queries @ rows.astype(np.float64).T
        merged = np.hstack([self.distances, distances])
        ids = np.hstack([self.face_ids, np.broadcast_to(np.asarray(face_ids), distances.shape)])
        order = np.argsort(merged, axis=1, kind="stable")[:, : self.k]
        self.distances = np.take_along_axis(merged, order, axis=1)
        self.face_ids = np.take_along_axis(ids, order, axis=1)


def percentile(values: Sequence[float], q: float) -> float:
    return float(np.percentile(np.asarray(values), q))


def timed_queries(
    store: GalleryStore, queries: np.ndarray, principal: str = PRINCIPAL
) -> tuple[list[float], list[list[Any]]]:
    """Each query identified alone (top 5): its seconds and its answer."""
    times, answers = [], []
    for query in queries:
        started = time.perf_counter()
        answers.append(store.identify(principal, GALLERY, [query], top_k=5)[0])
        times.append(time.perf_counter() - started)
    return times, answers


def recall_at_1(answers: Sequence[Sequence[Any]], truth: ExactTop) -> float:
    """The share of answers whose first face is the exact nearest one."""
    first = [a[0].face_id == t[0] for a, t in zip(answers, truth.face_ids, strict=True)]
    return float(np.mean(first))


def query_figures(times: Sequence[float]) -> dict[str, float]:
    return {"p50_ms": percentile(times, 50) * 1e3, "p99_ms": percentile(times, 99) * 1e3}


def vacuum(pool: Any) -> float:
    """VACUUM (ANALYZE) the face table; its seconds."""
    with pool.connection() as db:
        db.autocommit = True
        try:
            return seconds(lambda: db.execute("vacuum (analyze) face"))
        finally:
            db.autocommit = False


def store_bytes(pool: Any) -> int:
    """The face table on disk: its rows, their TOAST (the embeddings) and its indexes."""
    with pool.connection() as db:
        return int(db.execute("select pg_total_relation_size('face')").fetchone()[0])


def busy_analysis(mode: Mapping[str, str]) -> ChildProcess:
    """A child process analysing the bench's faces with every action, over and over (the
    dataflow's work), started and ready; stop() it."""
    from apps.processes import wait_until

    environment = child_environment(**mode, FACESTREAM_ACTIONS=",".join(ACTIONS))
    child = ChildProcess(
        "analysis-load", [sys.executable, "-m", "bench.recognition_scale", "--busy"], environment
    )
    try:
        wait_until(lambda: BUSY in child.output() or not child.running(), 600, "the load")
        if not child.running():
            raise RuntimeError(f"the analysis load exited:\n{child.log_tail()}")
    except BaseException:
        child.stop()
        raise
    return child


def run_busy() -> None:
    """The load's body: analyse the bench's faces until stopped."""
    from bench.pipeline_parts import detected_faces, in_process_steps
    from bench.workload import bench_images
    from di import load_settings

    settings = load_settings()
    analyzer, _logger, _limits = in_process_steps(settings)
    inputs = detected_faces(analyzer, settings, bench_images()[1]).inputs
    batch = settings.analysis.batch_size
    print(BUSY, flush=True)
    while True:
        for start in range(0, len(inputs), batch):
            analyzer.describe(inputs[start : start + batch], ACTIONS)


def deepface_pgvector_error(dsn: str, picture: np.ndarray) -> str:
    """What DeepFace's own pgvector backend answers when asked to register a VGG-Face
    face (it indexes the embedding column, which pgvector cannot for 4,096 dimensions)."""
    from deepface import DeepFace

    try:
        DeepFace.register(
            img=picture,
            model_name="VGG-Face",
            detector_backend="opencv",
            database_type="pgvector",
            connection_details=dsn,
        )
    except Exception as error:
        return f"{type(error).__name__}: {str(error).strip().splitlines()[0][:300]}"
    return "no error"


def deepface_ann_index_error(folder: Path, faces: int) -> str:
    """What DeepFace's sqlite client answers when it stores the ann index of `faces`
    VGG-Face embeddings: faiss's flat HNSW holds each as 4,096 float32 (16 KiB), in one
    blob; a blob of that size (zeros) is handed to DeepFace's own upsert."""
    from deepface.modules.database.sqlite import SqliteClient

    blob_bytes = faces * EMBEDDING_SIZE * 4
    client = SqliteClient(connection_details=str(folder / "ann-limit.sqlite"))
    try:
        client.upsert_embeddings_index(
            model_name="VGG-Face",
            detector_backend="opencv",
            aligned=True,
            l2_normalized=False,
            index_data=bytes(blob_bytes),
        )
    except Exception as error:
        return f"{type(error).__name__}: {str(error).strip().splitlines()[0][:300]}"
    finally:
        client.close()
        (folder / "ann-limit.sqlite").unlink(missing_ok=True)
    return "no error"


def scale_figures(
    pictures: Sequence[bytes],
    mode: Mapping[str, str],
    sizes: Sequence[int] = SIZES,
    queries_count: int = QUERIES,
    repeat: int = 3,
) -> dict[str, Any]:
    """The figures above."""
    import cv2

    people = SyntheticPeople(seed=7)
    queries = people.faces(0, queries_count, 1, draw=1)
    truth = ExactTop(queries)
    picture = cv2.imdecode(np.frombuffer(pictures[0], np.uint8), cv2.IMREAD_COLOR)
    figures: dict[str, Any] = {"sizes": {}, "per_person": PER_PERSON, "queries": len(queries)}
    enrolled = 0
    enrol_seconds = 0.0
    with tempfile.TemporaryDirectory(prefix="facestream-bench-scale-") as folder:
        database = EmbeddedPostgres(Path(folder) / "postgres")
        database.start()
        try:
            with connection_pool(database.dsn, max_size=2) as pool:
                by_codes = GalleryStore(pool, GallerySearch(exact_limit=0))
                by_codes.migrate()
                for size in sizes:
                    step = 1_000  # people a block
                    while enrolled < size:
                        people_now = min(step, (size - enrolled) // PER_PERSON)
                        first = enrolled // PER_PERSON
                        rows = people.faces(first, people_now, PER_PERSON)
                        started = time.perf_counter()
                        ids = enrol(by_codes, rows, PER_PERSON, first=first)
                        enrol_seconds += time.perf_counter() - started
                        truth.add(rows, ids)
                        enrolled += len(rows)
                    figures["sizes"][str(size)] = at_size(
                        pool, by_codes, queries, truth, size, mode, repeat
                    )
                figures["enrol_faces_per_s"] = enrolled / enrol_seconds
                figures["enrolled"] = enrolled
                figures["pgvector_hnsw"] = pgvector_hnsw(pool, by_codes, people, queries, truth)
                figures["filtering"] = filtering(by_codes, people, queries, truth)
                figures["deepface_pgvector_error"] = deepface_pgvector_error(database.dsn, picture)
        finally:
            database.stop()
        peer_size = min(sizes)
        gallery = people.faces(0, peer_size // PER_PERSON, PER_PERSON)
        figures["peers"] = {
            str(peer_size): peer_costs(picture, gallery, Path(folder), repeat, ann=True)
        }
        figures["deepface_ann_index_error_at_100k"] = deepface_ann_index_error(
            Path(folder), 100_000
        )
    return with_ratios(figures)


def at_size(
    pool: Any,
    by_codes: GalleryStore,
    queries: np.ndarray,
    truth: ExactTop,
    size: int,
    mode: Mapping[str, str],
    repeat: int,
) -> dict[str, Any]:
    """The figures of one gallery size."""
    # The table vacuumed after its enrolment, as autovacuum would soon: so that the
    # queries alone are measured alone, not beside a vacuum of the new rows.
    figures: dict[str, Any] = {"vacuum_s": vacuum(pool)}
    figures["bytes_per_face"] = store_bytes(pool) / size
    fresh = GalleryStore(pool, GallerySearch(exact_limit=0))
    figures["copy_load_s"] = seconds(lambda: fresh.identify(PRINCIPAL, GALLERY, queries[:1]))
    figures["copy_bytes_per_face"] = fresh.copy_bytes() / size
    timed_queries(by_codes, queries[:20])  # warm: the copy up to date, pages in memory
    times: list[float] = []
    for _ in range(repeat):
        run_times, answers = timed_queries(by_codes, queries)
        times += run_times
    figures["alone"] = query_figures(times)
    figures["recall_at_1"] = recall_at_1(answers, truth)
    figures["top5_overlap"] = top5_overlap(answers, truth, pool)
    if size <= 10_000:
        exact = GalleryStore(pool, GallerySearch(exact_limit=size))
        timed_queries(exact, queries[:1])  # its copy, loaded once
        copy_times: list[float] = []
        for _ in range(repeat):
            copy_times += timed_queries(exact, queries)[0]
        figures["exact_copy"] = query_figures(copy_times)
    load = busy_analysis(mode)
    try:
        busy_times: list[float] = []
        for _ in range(repeat):
            busy_times += timed_queries(by_codes, queries)[0]
    finally:
        load.stop()
    figures["under_load"] = query_figures(busy_times)
    return figures


def top5_overlap(answers: Sequence[Sequence[Any]], truth: ExactTop, pool: Any) -> float:
    """Of each query's exact 5 nearest faces' subjects (up to 5), the share the answer's 5
    subjects name, on average."""
    wanted = {int(f) for row in truth.face_ids for f in row}
    with pool.connection() as db:
        rows = db.execute(
            "select face.id, subject.name from face join subject on subject.id ="
            " face.subject_id where face.id = any(%s)",
            (sorted(wanted),),
        ).fetchall()
    names = dict(rows)
    shares = []
    for answer, faces in zip(answers, truth.face_ids, strict=True):
        exact = []
        for face in faces:
            if names[int(face)] not in exact:
                exact.append(names[int(face)])
        got = {m.subject for m in answer}
        shares.append(len(set(exact[:5]) & got) / min(5, len(exact)))
    return float(np.mean(shares))


# pgvector's own index for 4,096 dimensions, measured beside facestream's search: HNSW over
# the embeddings' binary quantization (pgvector indexes at most 2,000 dimensions of a
# vector, 4,000 of a halfvec), its nearest candidates ranked by exact distance; each search
# as (candidates ranked, hnsw.ef_search).
HNSW_OPTIONS = "m = 16, ef_construction = 128"
HNSW_SEARCHES = ((200, 200), (50, 400), (50, 800))
HNSW_NEAREST = """
select id from (
    select id, embedding from face where gallery_id = %(gallery)s and embedding is not null
    order by binary_quantize(embedding)::bit(4096) <~> binary_quantize(%(query)s)::bit(4096)
    limit %(candidates)s
) as candidate order by embedding <=> %(query)s limit 1
"""


def pgvector_hnsw(
    pool: Any, store: GalleryStore, people: SyntheticPeople, queries: np.ndarray, truth: ExactTop
) -> dict[str, Any]:
    """pgvector's HNSW over binary codes on the same gallery: its build, its bytes, each
    search's p50/p99 and recall@1, and enrolment while it is maintained (1,000 faces into
    another principal's gallery)."""
    from pgvector.psycopg import register_vector

    figures: dict[str, Any] = {"options": HNSW_OPTIONS, "searches": []}
    with pool.connection() as db:
        register_vector(db)
        db.execute("set maintenance_work_mem = '1GB'")
        figures["build_s"] = seconds(
            lambda: db.execute(
                "create index face_bits_hnsw on face using hnsw"
                " ((binary_quantize(embedding)::bit(4096)) bit_hamming_ops)"
                f" with ({HNSW_OPTIONS})"
            )
        )
        db.execute("analyze face")
        db.commit()
        figures["index_bytes"] = int(
            db.execute("select pg_relation_size('face_bits_hnsw')").fetchone()[0]
        )
        gallery = int(
            db.execute("select id from gallery where principal = %s", (PRINCIPAL,)).fetchone()[0]
        )
        for candidates, breadth in HNSW_SEARCHES:
            # The planner kept from reading the gallery and sorting it, so that the figures
            # are the index's (the row says whether the plan used it).
            db.execute(
                "select set_config('hnsw.ef_search', %s, false),"
                " set_config('hnsw.iterative_scan', 'relaxed_order', false),"
                " set_config('enable_seqscan', 'off', false),"
                " set_config('enable_bitmapscan', 'off', false),"
                " set_config('enable_sort', 'off', false)",
                (str(breadth),),
            )
            arguments = {"gallery": gallery, "candidates": candidates}
            times, first = [], []
            for query in queries:
                started = time.perf_counter()
                row = db.execute(HNSW_NEAREST, {**arguments, "query": query}).fetchone()
                times.append(time.perf_counter() - started)
                first.append(row[0])
            plan = db.execute(
                "explain " + HNSW_NEAREST, {**arguments, "query": queries[0]}
            ).fetchall()
            figures["searches"].append(
                {
                    "candidates": candidates,
                    "ef_search": breadth,
                    **query_figures(times),
                    "recall_at_1": float(np.mean(np.array(first) == truth.face_ids[:, 0])),
                    "index_used": any("face_bits_hnsw" in line for (line,) in plan),
                }
            )
        db.execute("reset all")  # the connection goes back to the pool as it came
        db.commit()
    rows = people.faces(2 * 10**6, 200, PER_PERSON)
    started = time.perf_counter()
    enrol(store, rows, PER_PERSON, principal="hnsw-enrolment")
    figures["enrol_faces_per_s"] = len(rows) / (time.perf_counter() - started)
    with pool.connection() as db:
        db.execute("drop index face_bits_hnsw")
    return figures


def filtering(
    by_codes: GalleryStore, people: SyntheticPeople, queries: np.ndarray, truth: ExactTop
) -> dict[str, Any]:
    """Another principal enrols, into a gallery of the same name, five faces for each
    query: the query itself (distance 0, the first answer if the filter let it through)
    and four of a stranger. The first principal's gallery is searched again (what leaks
    from the other), and the other's small gallery through the same index, where its faces
    are a small share of the index's (the filter keeps the scan going past the others':
    pgvector's iterative scan): its first answer must be the planted query itself."""
    strangers = people.faces(10**6, len(queries), PER_PERSON - 1)
    planted = np.concatenate(
        [queries[:, None, :], strangers.reshape(len(queries), PER_PERSON - 1, -1)], axis=1
    ).reshape(-1, EMBEDDING_SIZE)
    theirs = enrol(by_codes, planted, PER_PERSON, principal=OTHER_PRINCIPAL)
    times, answers = timed_queries(by_codes, queries)
    small_times, small_answers = timed_queries(by_codes, queries, principal=OTHER_PRINCIPAL)
    itself = theirs[::PER_PERSON]  # each person's first face: the planted query
    return {
        "other_principal_faces": len(planted),
        **query_figures(times),
        "recall_at_1": recall_at_1(answers, truth),
        "answers_from_the_other_principal": len(
            {m.face_id for answer in answers for m in answer} & set(theirs)
        ),
        "small_gallery": {
            "faces": len(planted),
            **query_figures(small_times),
            "recall_at_1": float(
                np.mean([a[0].face_id == f for a, f in zip(small_answers, itself, strict=True)])
            ),
        },
    }


def with_ratios(figures: dict[str, Any]) -> dict[str, Any]:
    """The ratios of the targets, and 1,000,000 faces on paper."""
    sizes = figures["sizes"]
    largest = max(sizes, key=int)
    peer_size, peers = next(iter(figures["peers"].items()))
    alone = sizes[largest]["alone"]["p50_ms"] / 1e3
    figures["identify_at_largest_vs_deepface_ann"] = peers["ann_s_per_face"] / alone
    figures["identify_at_largest_vs_deepface_search_on_paper"] = (
        peers["search_s_per_face"] * int(largest) / int(peer_size) / alone
    )
    figures["deepface_bytes_per_face"] = peers["sqlite_bytes_per_face"]
    figures["disk_vs_deepface"] = peers["sqlite_bytes_per_face"] / sizes[largest]["bytes_per_face"]
    figures["million_on_paper"] = million_on_paper(figures)
    return figures


def million_on_paper(figures: Mapping[str, Any]) -> dict[str, Any]:
    """1,000,000 faces from the measured growth: bytes grow with the faces; a query is a
    part that grows with the faces (the Hamming scan of every code) and a part that does
    not (ranking the same count of candidates), fitted as a + b n through the two largest
    sizes measured; enrolment at the measured rate; the copy's load with the faces."""
    sizes = sorted(figures["sizes"].items(), key=lambda item: int(item[0]))
    (small, at_small), (large, at_large) = sizes[-2], sizes[-1]
    n_small, n_large, million = int(small), int(large), 1_000_000
    per_face = (at_large["alone"]["p50_ms"] - at_small["alone"]["p50_ms"]) / (n_large - n_small)
    p50 = at_large["alone"]["p50_ms"] + per_face * (million - n_large)
    p99_growth = at_large["alone"]["p99_ms"] / at_large["alone"]["p50_ms"]
    return {
        "faces": million,
        "bytes": at_large["bytes_per_face"] * million,
        "copy_bytes": at_large["copy_bytes_per_face"] * million,
        "query_p50_ms": p50,
        "query_p99_ms": p50 * p99_growth,
        "enrol_s": million / figures["enrol_faces_per_s"],
        "copy_load_s": at_large["copy_load_s"] * million / n_large,
        "arithmetic": (
            f"bytes: {at_large['bytes_per_face']:.0f} B/face x 1e6; query p50: "
            f"{at_large['alone']['p50_ms']:.2f} ms at {n_large} + {per_face * 1e3:.3f} ms per "
            f"1,000 faces (measured {n_small}->{n_large}) x {million - n_large}; p99 at the "
            f"measured p99/p50 of {p99_growth:.2f}; enrolment at "
            f"{figures['enrol_faces_per_s']:.0f} faces/s; the copy's load "
            f"{at_large['copy_load_s']:.1f} s x 1e6/{n_large}"
        ),
    }


def main() -> None:
    from bench.workload import MODES, bench_images

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", default=",".join(str(s) for s in SIZES))
    parser.add_argument("--queries", type=int, default=QUERIES)
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--busy", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.busy:
        run_busy()
        return
    sizes = [int(s) for s in args.sizes.split(",")]
    figures = scale_figures(bench_images()[1], MODES["exact"], sizes, args.queries, args.repeat)
    print(json.dumps(figures, indent=2))


if __name__ == "__main__":
    main()
