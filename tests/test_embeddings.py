"""The embedding action: VGG-Face's embedding of each face, equal to `DeepFace.represent`'s,
from the shared trunk when VGG-Face's weights hold the attribute models' trunk and from
VGG-Face alone when they do not; its record format and its helpers for clients."""

from __future__ import annotations

import base64
import json
import os
import struct
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import pytest

from dataflow.steps import analyze_faces, extract_faces
from facestream.analyzer import FaceAttributes
from facestream.embeddings import (
    EMBEDDING_SIZE,
    cosine_similarity,
    embedding_of,
)
from facestream.engines import ENGINES
from facestream.faces import Face
from facestream.kafka_records import face_record
from facestream.models import (
    ACTION_MODELS,
    ACTIONS,
    DEFAULT_SEED,
    synthesize_weights,
    weights_dir_of,
)
from facestream.requests import RequestLimits
from facestream.v1 import records_pb2
from facestream.worker_process import WorkerProcess
from tests.test_steps import LOG, job

ROOT = Path(__file__).resolve().parent.parent
# cosine(facestream, DeepFace.represent) in fp32 on every engine.
SAME_EMBEDDING = 0.99999
LIMITS = RequestLimits(
    max_image_bytes=64 * 1024 * 1024,
    max_pixels=100_000_000,
    enabled_actions=ACTIONS,
    default_detector="opencv",
    available_detectors=("opencv",),
)


def unit_vector(seed: int) -> np.ndarray:
    vector = np.random.default_rng(seed).normal(size=EMBEDDING_SIZE)
    return (vector / np.linalg.norm(vector)).astype(np.float32)


def face_with(embedding: np.ndarray | None) -> records_pb2.Face:
    attributes = FaceAttributes(age=30.0, scores={}, dominant={}, embedding=embedding)
    return face_record(Face(x=1, y=2, w=3, h=4, confidence=0.9, crop=np.zeros(1)), attributes)


# The record format


def test_an_embedding_is_packed_as_little_endian_float32_and_read_back_as_numpy():
    vector = unit_vector(1)
    record = face_with(vector)
    assert len(record.embedding) == 4 * EMBEDDING_SIZE
    # The documented byte order, independent of this machine's.
    assert record.embedding[:4] == struct.pack("<f", vector[0])
    assert record.embedding[-4:] == struct.pack("<f", vector[-1])
    # It survives the wire.
    read = embedding_of(records_pb2.Face.FromString(record.SerializeToString()))
    assert read is not None and read.dtype == np.float32
    np.testing.assert_array_equal(read, vector)
    assert read.flags.writeable  # a copy the caller owns, not a view of the message


def test_a_face_without_the_action_has_no_embedding():
    record = face_with(None)
    assert record.embedding == b""
    assert embedding_of(record) is None


def test_a_truncated_embedding_is_refused_with_its_size():
    record = face_with(unit_vector(2))
    record.embedding = record.embedding[:-4]
    with pytest.raises(ValueError, match="16384 bytes, got 16380"):
        embedding_of(record)


def test_cosine_similarity_of_faces():
    a, b = unit_vector(3), unit_vector(4)
    assert cosine_similarity(a, a) == pytest.approx(1)
    assert cosine_similarity(a, -a) == pytest.approx(-1)
    assert cosine_similarity(a, b) == pytest.approx(float(a.astype(np.float64) @ b), abs=1e-9)
    assert cosine_similarity(a, 3 * a) == pytest.approx(1)  # the norm does not matter
    assert abs(cosine_similarity(a, b)) < 0.1  # random directions in 4096-d are far apart


def test_the_embedding_is_carried_by_the_clients_json():
    from apps.result_table import frame_json, result_json

    vector = unit_vector(5)
    result = records_pb2.AnalysisResult(request_id="r", faces=[face_with(vector)])
    [face] = json.loads(result_json("a.jpg", result))["faces"]
    np.testing.assert_array_equal(
        np.frombuffer(base64.b64decode(face["embedding"]), dtype="<f4"), vector
    )
    [face] = json.loads(result_json("a.jpg", result, embeddings=False))["faces"]
    assert "embedding" not in face and face["age"] == 30.0
    frame = records_pb2.StreamFrame(stream_id="s", sequence=3)
    [face] = json.loads(frame_json(frame, result))["faces"]
    assert base64.b64decode(face["embedding"]) == vector.astype("<f4").tobytes()
    [face] = json.loads(frame_json(frame, result, embeddings=False))["faces"]
    assert "embedding" not in face


# Equal to DeepFace.represent


def represent(path, detector_backend="opencv"):
    """DeepFace.represent on the file, as users call it today, or [] when it finds no face."""
    from deepface import DeepFace

    try:
        return DeepFace.represent(
            str(path), model_name="VGG-Face", detector_backend=detector_backend, align=True
        )
    except ValueError as error:
        assert "Face could not be detected" in str(error)
        return []


def faces_by_box(faces, box):
    return {box(face): face for face in faces}


@pytest.fixture(scope="module")
def deepface_represents(valid_test_photos) -> dict[Path, list[dict]]:
    """DeepFace.represent's faces on every valid test photo, found once for every engine's
    run, in a process that exits with DeepFace's models (tests/model_process.py)."""
    with WorkerProcess("deepface-reference") as deepface:
        return {path: deepface.call(represent, path) for path in valid_test_photos}


@pytest.mark.model_process
@pytest.mark.models
@pytest.mark.timeout(1200)
@pytest.mark.parametrize("engine", ENGINES)
def test_each_faces_embedding_is_deepface_represents_on_every_photo(
    analyzer_for, deepface_represents, engine
):
    analyzer = analyzer_for(engine, actions=ACTIONS)
    assert analyzer.shared_actions == ("age", "gender", "race", "embedding")
    compared = 0
    for path, represented in deepface_represents.items():
        data = path.read_bytes()
        # Detection at full size, as DeepFace.represent runs it (as the e2e test does).
        found = extract_faces(job(data, ACTIONS), analyzer, LIMITS, LOG, detection_max_side=0)
        jobs = [face for face in found if not isinstance(face, records_pb2.AnalysisResult)]
        analyzed = analyze_faces(jobs, analyzer.describe, 8, LOG)
        assert all(face.error is None for face in analyzed), path.name
        ours = faces_by_box(
            [face.record for face in analyzed], lambda f: (f.region.x, f.region.y, f.region.w)
        )
        theirs = faces_by_box(
            represented, lambda r: tuple(r["facial_area"][k] for k in ("x", "y", "w"))
        )
        assert set(ours) == set(theirs), path.name
        for box, face in ours.items():
            embedding = embedding_of(face)
            expected = np.asarray(theirs[box]["embedding"])
            assert embedding is not None and embedding.shape == expected.shape
            similarity = cosine_similarity(embedding, expected)
            assert similarity >= SAME_EMBEDDING, (path.name, box, similarity)
            assert np.linalg.norm(embedding) == pytest.approx(1, abs=1e-6)
            compared += 1
    assert compared >= 10  # the public photos alone hold more faces than this


@pytest.mark.model_process
@pytest.mark.models
def test_synthetic_vgg_face_weights_hold_the_attribute_trunk_and_a_head_of_their_own(
    synthetic_home,
):
    from facestream.analyzer import deepface_model
    from facestream.shared_trunk import split_trunk, trunk_digest

    vgg_face = deepface_model("embedding").model
    age = deepface_model("age").model
    assert vgg_face.output_shape == (None, EMBEDDING_SIZE)  # DeepFace's descriptor: fc7
    assert trunk_digest(vgg_face) == trunk_digest(age)
    fc6 = [split_trunk(model)[1][0].get_weights()[0] for model in (vgg_face, age)]
    assert fc6[0].shape == fc6[1].shape and not np.array_equal(*fc6)


# VGG-Face's trunk differs from the attribute models' (a fine-tuned file): it runs alone.

SEPARATE_VGG_FACE = textwrap.dedent(
    """
    import json, sys
    import numpy as np
    from deepface import DeepFace
    from di import Settings, build_container
    from facestream.analyzer import FaceAnalyzer
    from facestream.faces import model_input

    home, engine, photo = sys.argv[1:]
    settings = Settings.from_env(
        {"DEEPFACE_HOME": home, "FACESTREAM_ENGINE": engine,
         "FACESTREAM_ACTIONS": "age,gender,race,embedding"}
    )
    analyzer = build_container(settings)[FaceAnalyzer]
    [face] = analyzer.find_faces(__import__("cv2").imread(photo), "opencv", 0)
    [ours] = analyzer.describe(model_input(face.crop)[None], ("age", "embedding"))
    [theirs] = DeepFace.represent(photo, model_name="VGG-Face", detector_backend="opencv")
    expected = np.asarray(theirs["embedding"])
    print(json.dumps({
        "shared": analyzer.shared_actions,
        "alone": sorted(analyzer._forward),
        "cosine": float(ours.embedding @ expected / np.linalg.norm(expected)),
    }))
    """
)


@pytest.mark.model_process
@pytest.mark.models
@pytest.mark.timeout(600)
def test_a_vgg_face_file_with_another_trunk_runs_alone_and_still_equals_represent(
    synthetic_home, public_photos, tmp_path
):
    from tests.photos import SINGLE_FACE

    weights = weights_dir_of(tmp_path)
    weights.mkdir(parents=True)
    for action in ("age", "gender", "race"):  # the session's files: their trunks are equal
        name = ACTION_MODELS[action].weight_file
        (weights / name).symlink_to(weights_dir_of(synthetic_home) / name)
    synthesize_weights(weights, ["embedding"], seed=DEFAULT_SEED + 1)  # another trunk
    # A process of its own: DeepFace caches its models per process, by name.
    run = subprocess.run(
        [
            sys.executable,
            "-c",
            SEPARATE_VGG_FACE,
            str(tmp_path),
            "tensorflow",
            str(public_photos / SINGLE_FACE[0]),
        ],
        capture_output=True,
        text=True,
        timeout=540,
        cwd=ROOT,
        env={**os.environ, "DEEPFACE_HOME": str(tmp_path)},
        check=False,
    )
    assert run.returncode == 0, run.stderr[-3000:]
    found = json.loads(run.stdout.splitlines()[-1])
    assert found["shared"] == ["age", "gender", "race"]  # the attribute models still share
    assert found["alone"] == ["embedding"]
    assert found["cosine"] >= SAME_EMBEDDING
