"""Recognition gives DeepFace's answers: on galleries and queries composed here (not the
demo's photos), each query face's best match and its distance equal those of
`DeepFace.find` (a folder of the enrolment photos) and `DeepFace.search` (its sqlite
backend), and `Verify` equals `DeepFace.verify` on pairs.

facestream's side runs its own steps (detection, the shared trunk, the gallery store on the
embedded PostgreSQL) in the module's model worker, beside DeepFace; the same steps behind
Kafka and gRPC are tests/test_recognition.py's."""

from __future__ import annotations

import time
from pathlib import Path

import cv2
import pytest

from dataflow.recognition_steps import recognise_faces
from dataflow.steps import analyze_faces, extract_faces
from facestream.embeddings import EMBEDDING_SIZE, embedding_of
from facestream.gallery_store import GalleryStore, connection_pool
from facestream.models import ACTIONS
from facestream.v1 import records_pb2
from grpc_server.gallery_requests import closest_pair
from tests.test_embeddings import LIMITS
from tests.test_steps import LOG

pytestmark = [pytest.mark.model_process, pytest.mark.models]

SAME_DISTANCE = 1e-5


def composed_subjects(
    public_photos: Path, folder: Path
) -> tuple[dict[str, list[Path]], list[Path]]:
    """Five subjects made from the public astronaut photo (light, shade, blur, a crop, the
    mirror image), two enrolment photos each, and one query photo each at another size."""
    astronaut = cv2.imread(str(public_photos / "astronaut.png"))
    variants = {
        "light": cv2.convertScaleAbs(astronaut, alpha=1.0, beta=45),
        "shade": cv2.convertScaleAbs(astronaut, alpha=0.75, beta=0),
        "blur": cv2.GaussianBlur(astronaut, (7, 7), 0),
        "crop": astronaut[20:480, 30:500],
        "mirror": cv2.flip(astronaut, 1),
    }
    gallery, queries = {}, []
    (folder / "gallery").mkdir(parents=True)
    for name, image in variants.items():
        height, width = image.shape[:2]
        shots = []
        for index, scale in enumerate((1.0, 0.9)):
            path = folder / "gallery" / f"{name}-{index}.png"
            size = (int(width * scale), int(height * scale))
            cv2.imwrite(str(path), cv2.resize(image, size, interpolation=cv2.INTER_AREA))
            shots.append(path)
        gallery[name] = shots
        query = folder / f"query-{name}.png"
        cv2.imwrite(str(query), cv2.resize(image, (int(width * 0.8), int(height * 0.8))))
        queries.append(query)
    return gallery, queries


def image_job(path: Path, **fields: object):
    from dataflow.items import ImageJob

    return ImageJob(
        request_id=path.stem,
        source=f"test/0/{path.stem}",
        image=path.read_bytes(),
        actions=(),
        detector_backend="opencv",
        submitted_at=time.time(),
        received_at=time.time(),
        record=b"",
        principal="team-a",
        **fields,
    )


def through_facestream(analyzer, store: GalleryStore | None, job) -> list:
    """One image through facestream's steps: its analysed faces (identified or enrolled)."""
    found = extract_faces(job, analyzer, LIMITS, LOG, detection_max_side=0)
    faces = [f for f in found if not isinstance(f, records_pb2.AnalysisResult)]
    assert faces, found
    analysed = analyze_faces(faces, analyzer.describe, 8, LOG)
    return recognise_faces(analysed, store, LOG, write_retry=0)


def test_identification_equals_deepface_find_and_search(
    analyzer_for, gallery_dsn, public_photos, tmp_path
):
    from deepface import DeepFace

    analyzer = analyzer_for("openvino", actions=ACTIONS)
    gallery, queries = composed_subjects(public_photos, tmp_path)
    subject_of = {str(path): name for name, paths in gallery.items() for path in paths}
    with connection_pool(gallery_dsn, max_size=2) as pool:
        store = GalleryStore(pool)
        for name, paths in gallery.items():
            for index, path in enumerate(paths):
                enrolment = records_pb2.Enrolment(
                    gallery="held-out", subject=name, enrolment_id=f"e-{name}", image_index=index
                )
                (face,) = through_facestream(analyzer, store, image_job(path, enrolment=enrolment))
                assert face.enrolled is not None and face.error is None, face.error
        database = tmp_path / "deepface.sqlite"
        for path in subject_of:
            DeepFace.register(
                img=path,
                img_name=path,
                model_name="VGG-Face",
                detector_backend="opencv",
                database_type="sqlite",
                connection_details=str(database),
            )
        ask = records_pb2.Identify(gallery="held-out", top_k=len(gallery))
        compared = 0
        for query in queries:
            (ours,) = through_facestream(analyzer, store, image_job(query, identify=ask))
            best = ours.record.identity.matches[0]
            (found,) = DeepFace.find(
                img_path=str(query),
                db_path=str(tmp_path / "gallery"),
                model_name="VGG-Face",
                detector_backend="opencv",
                distance_metric="cosine",
                silent=True,
                return_type="dict",
            )
            (searched,) = DeepFace.search(
                img=str(query),
                model_name="VGG-Face",
                detector_backend="opencv",
                distance_metric="cosine",
                database_type="sqlite",
                connection_details=str(database),
                search_method="exact",
                return_type="dict",
            )
            for theirs, name_key in ((found, "identity"), (searched, "img_name")):
                nearest = min(theirs, key=lambda row: row["distance"])
                assert subject_of[nearest[name_key]] == best.subject, query.name
                assert best.distance == pytest.approx(nearest["distance"], abs=SAME_DISTANCE)
                assert best.verified == (nearest["distance"] <= nearest["threshold"])
                assert best.verified == (best.distance <= ours.record.identity.threshold)
            # Every subject's distance, not only the nearest: each its best photo's.
            for match in ours.record.identity.matches:
                theirs_best = min(
                    row["distance"] for row in found if subject_of[row["identity"]] == match.subject
                )
                assert match.distance == pytest.approx(theirs_best, abs=SAME_DISTANCE)
                compared += 1
        assert compared == len(queries) * len(gallery)


def test_verify_equals_deepface_verify_on_pairs(analyzer_for, public_photos, tmp_path):
    from deepface import DeepFace

    analyzer = analyzer_for("openvino", actions=ACTIONS)
    gallery, queries = composed_subjects(public_photos, tmp_path)
    crowd = public_photos / "crowd.jpg"  # twelve faces: verify keeps the closest pair
    pairs = [
        (queries[0], gallery["light"][0]),
        (queries[1], gallery["blur"][1]),
        (crowd, queries[4]),
    ]
    for first, second in pairs:
        faces = [
            [f.record for f in through_facestream(analyzer, None, image_job(path))]
            for path in (first, second)
        ]
        assert all(len(embedding_of(f)) == EMBEDDING_SIZE for side in faces for f in side)
        _face, _other, distance = closest_pair(*faces)
        theirs = DeepFace.verify(
            img1_path=str(first),
            img2_path=str(second),
            model_name="VGG-Face",
            detector_backend="opencv",
            distance_metric="cosine",
        )
        assert distance == pytest.approx(theirs["distance"], abs=SAME_DISTANCE), (first, second)
        assert (distance <= theirs["threshold"]) == theirs["verified"]
        assert theirs["threshold"] == pytest.approx(0.68)
