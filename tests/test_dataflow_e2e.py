"""The dataflow end to end: real `bytewax.run` processes, the embedded broker, DeepFace's
own code with synthetic weights."""

from __future__ import annotations

import os
import subprocess
import sys
from contextlib import ExitStack
from pathlib import Path

import cv2
import numpy as np
import pytest

from apps.launch import DataflowProcess, cluster_args
from facestream.engines import ENGINES
from facestream.faces import face_crops
from facestream.models import ATTRIBUTE_ACTIONS
from facestream.thread_priority import BOOKKEEPING_NICENESS
from facestream.v1 import records_pb2
from facestream.worker_process import WorkerProcess
from tests.photos import SINGLE_FACE, TRUNCATED, TWO_FACES, WITH_FACES, WITHOUT_FACE
from tests.pipeline import (
    Topics,
    consume_until,
    produce,
    results_for,
    submission,
)

OK = records_pb2.ANALYSIS_STATUS_OK
NO_FACE = records_pb2.ANALYSIS_STATUS_NO_FACE
INVALID = records_pb2.ANALYSIS_STATUS_INVALID_IMAGE


def reference_analysis(image, detector_backend="opencv"):
    """DeepFace.analyze on the file (or BGR array), or None when DeepFace finds no face. Its
    models are gigabytes: called in the module's model worker (tests/model_process.py)."""
    from deepface import DeepFace

    try:
        return DeepFace.analyze(
            image if isinstance(image, np.ndarray) else str(image),
            actions=ATTRIBUTE_ACTIONS,
            detector_backend=detector_backend,
            silent=True,
        )
    except ValueError as error:
        assert "Face could not be detected" in str(error)
        return None


def thread_priorities(pid: int) -> list[tuple[str, int]]:
    """Each thread of a process: its name and niceness (Linux)."""
    found = []
    for thread in os.listdir(f"/proc/{pid}/task"):
        name = Path(f"/proc/{pid}/task/{thread}/comm").read_text().strip()
        found.append((name, os.getpriority(os.PRIO_PROCESS, int(thread))))
    return found


def assert_same_as_deepface(result, reference, name):
    assert result.status == OK, (name, result.error)
    assert len(result.faces) == len(reference), name
    # OpenCV's parallel Haar detector returns the same boxes in a varying order.
    faces = sorted(result.faces, key=lambda f: (f.region.x, f.region.y, f.region.w, f.region.h))
    reference = sorted(reference, key=lambda r: tuple(r["region"][k] for k in "xywh"))
    for face, expected in zip(faces, reference, strict=True):
        assert (face.region.x, face.region.y, face.region.w, face.region.h) == tuple(
            expected["region"][k] for k in "xywh"
        ), name
        assert face.confidence == pytest.approx(expected["face_confidence"]), name
        assert abs(face.age - expected["age"]) < 1, name  # DeepFace truncates age to int
        for action in ("gender", "emotion", "race"):
            ours = getattr(face, action)
            assert ours.dominant == expected[f"dominant_{action}"], (name, action)
            assert set(ours.scores) == set(expected[action]), (name, action)
            for label, percent in expected[action].items():
                # Within 1e-3 percentage points: the fp32 contract of every engine.
                assert abs(ours.scores[label] - percent) <= 1e-3, (name, action, label)


@pytest.fixture(scope="module")
def face_crops_of_public_photos(public_photos) -> dict[str, bytes]:
    """Face crops (JPEG) of two public photos, by request id: what a client with its own
    detector sends with detector skip."""
    return {
        f"crop-{index}": crop
        for index, crop in enumerate(
            crop
            for name in (SINGLE_FACE[0], TWO_FACES)
            for crop in face_crops(cv2.imread(str(public_photos / name)), "opencv")
        )
    }


@pytest.fixture(scope="module")
def deepface_answers(valid_test_photos, face_crops_of_public_photos) -> dict[object, object]:
    """DeepFace.analyze's answer (reference_analysis) to every test photo (by path) and face
    crop (by request id, detector skip), found once for every engine's run: DeepFace's
    models in a process that exits with them (tests/model_process.py)."""
    with WorkerProcess("deepface-reference") as deepface:
        answers: dict[object, object] = {
            path: deepface.call(reference_analysis, path) for path in valid_test_photos
        }
        for request_id, crop in face_crops_of_public_photos.items():
            image = cv2.imdecode(np.frombuffer(crop, np.uint8), cv2.IMREAD_COLOR)
            answers[request_id] = deepface.call(reference_analysis, image, "skip")
    return answers


@pytest.mark.models
@pytest.mark.timeout(1200)  # above the 900 s it waits for results
@pytest.mark.parametrize("engine", ENGINES)
def test_four_workers_give_deepface_analyze_results_for_every_image(
    embedded_broker,
    synthetic_home,
    test_photos,
    face_crops_of_public_photos,
    deepface_answers,
    engine,
    capsys,
):
    images = test_photos
    ids = {path: f"image-{index}" for index, path in enumerate(images)}
    topics = Topics(embedded_broker.bootstrap)
    records = [(ids[p].encode(), submission(ids[p], p.read_bytes())) for p in images]
    # Records that are not ours, in the middle of the stream: they must not stop it.
    garbage = [(b"junk-1", b"\xff\xfe not protobuf"), (b"junk-2", None)]
    records[3:3] = garbage
    # Face crops sent with detector skip, as a client with its own detector sends them.
    crops = face_crops_of_public_photos
    records += [
        (rid.encode(), submission(rid, crop, detector_backend="skip"))
        for rid, crop in crops.items()
    ]
    produce(topics.bootstrap, topics.requests, records)
    env = topics.env(
        synthetic_home,
        FACESTREAM_DETECTION_MAX_SIDE="0",
        FACESTREAM_BATCH_SIZE="8",
        FACESTREAM_ENGINE=engine,
    )
    with DataflowProcess(env, "-w", "4") as flow:
        results = results_for(
            topics.bootstrap, topics, [*ids.values(), *crops], timeout=900, process=flow
        )
        dead = consume_until(
            topics.bootstrap,
            topics.dead_letter,
            topics.partitions,
            lambda got: len(got) >= len(garbage),
            timeout=60,
            process=flow,
        )
        priorities = thread_priorities(flow.pid)
    # Bytewax's workers run below the threads that compute (facestream/thread_priority.py).
    workers = [nice for name, nice in priorities if name.startswith("timely:work")]
    assert workers and all(nice == BOOKKEEPING_NICENESS for nice in workers), priorities
    assert any(nice < BOOKKEEPING_NICENESS for _name, nice in priorities), priorities
    assert sorted((m.key(), m.value() or b"") for m in dead) == sorted(
        (k, v or b"") for k, v in garbage
    )
    assert all(dict(m.headers())["facestream-error"] for m in dead)

    faces_compared = 0
    for path, request_id in ids.items():
        [result] = results[request_id]
        assert result.synthetic_weights
        assert result.worker, path.name
        if path.parent.name == "bad":
            assert result.status == INVALID, path.name
            assert result.error.code.startswith("image."), result.error
            assert result.error.message
            continue
        reference = deepface_answers[path]
        if reference is None:
            assert result.status == NO_FACE, path.name
            assert not result.faces
        else:
            assert_same_as_deepface(result, reference, path.name)
            faces_compared += len(reference)
    for request_id in crops:
        [result] = results[request_id]
        assert_same_as_deepface(result, deepface_answers[request_id], request_id)
    assert len(crops) >= 3
    with capsys.disabled():
        print(
            f"\n{engine}: {faces_compared} faces on {len(images)} images and {len(crops)} "
            "crops (detector skip) as DeepFace.analyze"
        )
    # The public set alone has more than 20 faces (the crowd: 12).
    assert faces_compared >= 10, f"only {faces_compared} faces were compared"


def single_face_photos(public_photos):
    return [public_photos / name for name in SINGLE_FACE]


@pytest.mark.models
def test_recovery_after_sigkill_loses_no_request(
    embedded_broker, synthetic_home, public_photos, tmp_path, capsys
):
    recovery = tmp_path / "recovery"
    recovery.mkdir()
    subprocess.run(
        [sys.executable, "-m", "bytewax.recovery", str(recovery), "2"], check=True, timeout=60
    )
    topics = Topics(embedded_broker.bootstrap, partitions=2)
    photos = single_face_photos(public_photos)
    ids = [f"req-{i}" for i in range(80)]
    produce(
        topics.bootstrap,
        topics.requests,
        [
            (rid.encode(), submission(rid, photos[i % len(photos)].read_bytes()))
            for i, rid in enumerate(ids)
        ],
    )
    env = topics.env(synthetic_home, FACESTREAM_ACTIONS="emotion")
    args = ("-w", "2", "-r", str(recovery), "-s", "1", "-b", "0")

    with DataflowProcess(env, *args) as first:
        before = consume_until(
            topics.bootstrap,
            topics.results,
            topics.partitions,
            lambda got: len(got) >= 15,
            timeout=280,
            process=first,
        )
        first.kill()  # mid-stream: no flush, no final snapshot
    killed_at = len(before)
    assert killed_at < len(ids), "the stream finished before the crash; nothing was tested"

    with DataflowProcess(env, *args) as second:
        results = results_for(topics.bootstrap, topics, ids, timeout=280, process=second)

    assert set(results) == set(ids)
    for request_id in ids:
        for result in results[request_id]:
            assert result.status == OK, result
            assert len(result.faces) == 1 and result.faces[0].emotion.dominant
    total = sum(len(r) for r in results.values())
    with capsys.disabled():
        print(
            f"\nrecovery: {len(ids)} requests, killed after {killed_at} results, "
            f"{total} results in all, {total - len(ids)} duplicates"
        )


def cluster_commands(shape: str) -> list[list[str]]:
    """bytewax.run arguments for each process of a cluster shape."""
    if shape == "one process, 2 workers":
        return [["-w", "2"]]
    return cluster_args(2, 1)


@pytest.mark.models
@pytest.mark.parametrize("shape", ["one process, 2 workers", "two processes"])
def test_cluster_shapes_process_every_image(
    embedded_broker, synthetic_home, public_photos, test_photos, shape
):
    images = test_photos
    ids = {path: f"cluster-{index}" for index, path in enumerate(images)}
    topics = Topics(embedded_broker.bootstrap)
    produce(
        topics.bootstrap,
        topics.requests,
        [(ids[p].encode(), submission(ids[p], p.read_bytes())) for p in images],
    )
    env = topics.env(synthetic_home, FACESTREAM_ACTIONS="emotion")
    with ExitStack() as stack:
        processes = [
            stack.enter_context(DataflowProcess(env, *args)) for args in cluster_commands(shape)
        ]
        results = results_for(
            topics.bootstrap, topics, ids.values(), timeout=540, process=processes[0]
        )
        assert all(p.running() for p in processes), processes[-1].log_tail()
        priorities = [thread_priorities(p.pid) for p in processes]
    # Worker threads run below the computing ones only where a process runs more than one
    # (a lone worker keeps its priority against other processes' models).
    lowered = [any(nice == BOOKKEEPING_NICENESS for _name, nice in found) for found in priorities]
    assert lowered == [shape == "one process, 2 workers"] * len(processes), priorities
    workers = {r.worker for rs in results.values() for r in rs}
    assert len(workers) >= 2, f"all results came from one worker: {workers}"
    status = {path: results[rid][0].status for path, rid in ids.items()}
    assert status[public_photos / TRUNCATED] == INVALID
    assert status[public_photos / WITH_FACES] == OK
    assert status[public_photos / WITHOUT_FACE] == NO_FACE
    assert sum(len(results[rid][0].faces) for rid in ids.values()) >= 15


def test_dataflow_refuses_to_start_without_weights(embedded_broker, tmp_path):
    topics = Topics(embedded_broker.bootstrap)
    with DataflowProcess(topics.env(tmp_path), "-w", "1") as flow:
        flow.process.wait(120)
        log = flow.log_tail(60)
    assert flow.process.returncode == 1, log
    assert "facestream dataflow cannot start" in log
    assert str(tmp_path / ".deepface" / "weights") in log
    assert "age_model_weights.h5" in log
    assert "facestream models synth" in log
    assert "Traceback" not in log
