"""What identification costs, in this process, side by side in one run, with a gallery of
10,000 enrolled faces (2,000 synthetic people of 5 faces each, embeddings shaped like
VGG-Face's: facestream/synthetic_embeddings.py):

- facestream: enrolment of precomputed embeddings into the gallery store (the embedded
  PostgreSQL), then per face the analysis (every action, batches of FACESTREAM_BATCH_SIZE)
  and the identification against the gallery (the dataflow's step: the process's copy of
  the gallery, batches of the same size), A B A B; the identification's share of the
  analysis (target: <= 5%) and one face identified alone;
- the peers on the same vectors: `DeepFace.search` (its sqlite backend, exact search: each
  row as DeepFace writes it, with its 602,112-byte face crop) and `DeepFace.find` (its npz
  datastore of the same 10,000 embeddings), per query face, less the `DeepFace.represent`
  of the query each of them runs first (timed on the same picture, in turn); bench/
  recognition_scale.py adds DeepFace's approximate search and larger galleries;
- what each stores per face.

Usage: python -m bench.recognition [--repeat N] [--faces N] (prints JSON); `make bench`
runs it as a row (`--only recognition`).
"""

from __future__ import annotations

import argparse
import hashlib
import json
import sqlite3
import statistics
import tempfile
import time
from collections.abc import Callable, Mapping, Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np

from apps.gallery_database import EmbeddedPostgres
from di import Settings, child_environment
from facestream.gallery_store import Box, FaceToEnrol, GallerySearch, GalleryStore, connection_pool
from facestream.models import ACTIONS
from facestream.synthetic_embeddings import SyntheticPeople

IDENTITIES = 2_000
FACES_PER_IDENTITY = 5
DEEPFACE_CROP_BYTES = 224 * 224 * 3 * 4  # the float32 face crop DeepFace keeps per face
PRINCIPAL, GALLERY = "bench", "bench"
PAIRS_PER_REPEAT = 5


def seconds(run: Callable[[], object]) -> float:
    started = time.perf_counter()
    run()
    return time.perf_counter() - started


def recognition_cost(
    pictures: Sequence[bytes], mode: Mapping[str, str], repeat: int = 3, faces: int = 0
) -> dict[str, Any]:
    """The figures above, for `pictures` (the query faces come from them) and a gallery of
    `faces` enrolled faces (0: 10,000)."""
    from bench.pipeline_parts import detected_faces, in_process_steps

    size = faces or IDENTITIES * FACES_PER_IDENTITY
    settings = Settings.from_env(child_environment(**mode, FACESTREAM_ACTIONS=",".join(ACTIONS)))
    analyzer, _logger, _limits = in_process_steps(settings)
    detected = detected_faces(analyzer, settings, pictures)
    inputs = detected.inputs
    batch = settings.analysis.batch_size
    queries = np.stack([a.embedding for a in analyzer.describe(inputs, ("embedding",))])
    gallery = SyntheticPeople().faces(0, size // FACES_PER_IDENTITY, FACES_PER_IDENTITY)
    with tempfile.TemporaryDirectory(prefix="facestream-bench-galleries-") as folder:
        database = EmbeddedPostgres(Path(folder) / "postgres")
        database.start()
        try:
            with connection_pool(database.dsn, max_size=2) as pool:
                # The dataflow's way for a gallery of this size (GallerySearch's defaults).
                store = GalleryStore(pool, GallerySearch())
                enrol_seconds = seconds(lambda: enrol(store, gallery, FACES_PER_IDENTITY))
                copy_seconds = seconds(lambda: store.identify(PRINCIPAL, GALLERY, queries[:1]))
                stored_bytes = store_bytes(pool)

                def analyse() -> None:
                    for start in range(0, len(inputs), batch):
                        analyzer.describe(inputs[start : start + batch], ACTIONS)

                def identify() -> None:
                    for start in range(0, len(queries), batch):
                        store.identify(PRINCIPAL, GALLERY, queries[start : start + batch])

                def identify_alone() -> None:
                    for query in queries:
                        store.identify(PRINCIPAL, GALLERY, [query])

                analyse()  # warm: traced graphs
                timed: dict[str, list[float]] = {"analysis": [], "identify": [], "alone": []}
                for _ in range(PAIRS_PER_REPEAT * repeat):
                    timed["analysis"].append(seconds(analyse) / len(inputs))
                    timed["identify"].append(seconds(identify) / len(queries))
                    timed["alone"].append(seconds(identify_alone) / len(queries))
        finally:
            database.stop()
        peers = peer_costs(detected.pictures[0], gallery, Path(folder), repeat)
    median = {name: statistics.median(values) for name, values in timed.items()}
    return {
        "gallery_faces": size,
        "identities": size // FACES_PER_IDENTITY,
        "query_faces": len(queries),
        "enrol_faces_per_s": size / enrol_seconds,
        "copy_load_s": copy_seconds,
        "s_per_face": median,
        "identify_extra": median["identify"] / median["analysis"],
        "store_bytes_per_face": stored_bytes / size,
        "peers": peers,
        "identify_vs_deepface_search": peers["search_s_per_face"] / median["alone"],
        "identify_vs_deepface_find": peers["find_s_per_face"] / median["alone"],
    }


def enrol(
    store: GalleryStore,
    rows: np.ndarray,
    per_person: int,
    first: int = 0,
    principal: str = PRINCIPAL,
) -> list[int]:
    """Enrol `rows` (`per_person` faces a person, person by person, the first being person
    `first`), one request per person with its faces together; the faces' ids, in order."""
    accepted = datetime.now(UTC)
    ids: list[int] = []
    for offset in range(len(rows) // per_person):
        person = first + offset
        faces = [
            FaceToEnrol(index, row, hashlib.sha256(row.tobytes()).digest(), Box(0, 0, 224, 224))
            for index, row in enumerate(rows[offset * per_person : (offset + 1) * per_person])
        ]
        done = store.enrol(principal, GALLERY, f"id-{person}", f"enrol-{person}", accepted, faces)
        ids += done.face_ids
    return ids


def store_bytes(pool: Any) -> int:
    """What the face table and its indexes take on disk, in bytes."""
    with pool.connection() as db:
        return int(db.execute("select pg_total_relation_size('face')").fetchone()[0])


def peer_costs(
    picture: np.ndarray, gallery: np.ndarray, folder: Path, repeat: int, ann: bool = False
) -> dict[str, Any]:
    """Per query face: DeepFace.search (sqlite, exact) and DeepFace.find (npz) over the
    gallery's embeddings, each less the DeepFace.represent of the query it runs first;
    with `ann`, DeepFace.search's approximate search too (after DeepFace.build_index on the
    same database, whose time is given)."""
    from deepface import DeepFace

    database = folder / "deepface.sqlite"
    write_deepface_sqlite(database, gallery)
    images = folder / "find"
    write_deepface_datastore(images, gallery)
    common = {"model_name": "VGG-Face", "detector_backend": "opencv"}

    def represent() -> None:
        DeepFace.represent(picture, **common)

    def search(method: str = "exact") -> None:
        DeepFace.search(
            img=picture,
            **common,
            database_type="sqlite",
            connection_details=str(database),
            search_method=method,
            similarity_search=True,
            k=1,
        )

    def find() -> None:
        DeepFace.find(
            img_path=picture, db_path=str(images), **common, refresh_database=False, silent=True
        )

    runs: dict[str, Callable[[], None]] = {"represent": represent, "search": search, "find": find}
    figures: dict[str, Any] = {}
    if ann:
        figures["build_index_s"] = seconds(
            lambda: DeepFace.build_index(
                **common, database_type="sqlite", connection_details=str(database)
            )
        )
        runs["ann"] = lambda: search("ann")
    for warm in runs.values():
        warm()
    timed: dict[str, list[float]] = {name: [] for name in runs}
    for _ in range(repeat):
        for name, run in runs.items():
            timed[name].append(seconds(run))
    median = {name: statistics.median(values) for name, values in timed.items()}
    figures.update(
        {
            "s_per_call": median,
            "sqlite_bytes_per_face": database.stat().st_size / len(gallery),
        }
    )
    for name in runs.keys() - {"represent"}:
        figures[f"{name}_s_per_face"] = max(1e-9, median[name] - median["represent"])
    return figures


def write_deepface_sqlite(path: Path, gallery: np.ndarray) -> None:
    """The gallery as DeepFace's sqlite backend stores it: its own schema (made by its own
    client), a row per face with the face crop it keeps (602,112 bytes of float32) and the
    embedding as little-endian float64, written in batches."""
    from deepface.modules.database.sqlite import SqliteClient

    SqliteClient(connection_details=str(path)).close()  # its schema
    crop = bytes(DEEPFACE_CROP_BYTES)
    with sqlite3.connect(path) as db:
        for start in range(0, len(gallery), 200):
            rows = []
            for index, row in enumerate(gallery[start : start + 200], start):
                embedding = row.astype("<f8").tobytes()
                rows.append(
                    (
                        f"face-{index}.jpg",
                        crop,
                        "[224, 224, 3]",
                        "VGG-Face",
                        "opencv",
                        1,
                        0,
                        embedding,
                        hashlib.sha256(f"face-{index}".encode()).hexdigest(),
                        hashlib.sha256(embedding).hexdigest(),
                    )
                )
            db.executemany(
                "insert into embeddings (img_name, face, face_shape, model_name,"
                " detector_backend, aligned, l2_normalized, embedding, face_hash,"
                " embedding_hash) values (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                rows,
            )


def write_deepface_datastore(folder: Path, gallery: np.ndarray) -> None:
    """The gallery as `DeepFace.find`'s npz datastore of a folder of images (written with
    its own serializer), read back with refresh_database=False: no image is represented."""
    from deepface.modules import recognition

    folder.mkdir(parents=True, exist_ok=True)
    serialize = getattr(recognition, "__serialize_npz")  # DeepFace's own, module-private
    representations = [
        {
            "identity": str(folder / f"face-{index}.jpg"),
            "hash": f"{index:064x}",
            "embedding": row.astype(np.float64).tolist(),
            "target_x": 0,
            "target_y": 0,
            "target_w": 224,
            "target_h": 224,
        }
        for index, row in enumerate(gallery)
    ]
    name = "ds_model_vggface_detector_opencv_aligned_normalization_base_expand_0.npz"
    (folder / name).write_bytes(serialize(representations))


def main() -> None:
    from bench.workload import MODES, bench_images

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--faces", type=int, default=0, help="gallery size (default 10,000)")
    args = parser.parse_args()
    figures = recognition_cost(bench_images()[1], MODES["exact"], args.repeat, args.faces)
    print(json.dumps(figures, indent=2))


if __name__ == "__main__":
    main()
