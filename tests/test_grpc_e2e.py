"""gRPC -> Kafka -> the real dataflow (`bytewax.run`, DeepFace with synthetic weights)
-> results -> back to gRPC clients and the `facestream` command."""

from __future__ import annotations

import base64
import json
import threading

import numpy as np
import pytest

from apps.processes import wait_until
from apps.result_table import COLUMNS
from facestream.client import embedding_of
from facestream.models import ACTIONS, SYNTHETIC_WARNING
from facestream.v1 import records_pb2
from tests.commands import run_facestream
from tests.grpc_helpers import ready_pipeline
from tests.photos import SINGLE_FACE, WITH_FACES, WITHOUT_FACE
from tests.pipeline import Topics, results_for

# Public test photos (tests/photos.py) with the faces DeepFace's detector finds in them.
IMAGES = {SINGLE_FACE[0]: 1, WITH_FACES: 12, WITHOUT_FACE: 0}


@pytest.mark.models
def test_analyze_returns_the_dataflow_result_and_a_watcher_sees_it(
    embedded_broker, synthetic_home, public_photos
):
    topics = Topics(embedded_broker.bootstrap)
    with (
        ready_pipeline(topics, synthetic_home, "-w", "2") as (flow, server),
        server.client() as analyst,
        server.client() as watcher,
    ):
        ids = [f"e2e-{name.split('.')[0]}" for name in IMAGES]
        watched: list[records_pb2.AnalysisResult] = []
        watching = threading.Thread(target=lambda: watched.extend(watcher.watch(ids, timeout=480)))
        watching.start()
        wait_until(lambda: server.listener.waiter_count == 1, 10, "the watch to register")

        answers = {}
        for request_id, name in zip(ids, IMAGES, strict=True):
            image = (public_photos / name).read_bytes()
            answers[request_id] = analyst.analyze(image, request_id=request_id, timeout=150)
        watching.join(60)
        on_topic = results_for(topics.bootstrap, topics, ids, 60, flow)

    for (request_id, answer), faces in zip(answers.items(), IMAGES.values(), strict=True):
        assert answer.request_id == request_id
        assert len(answer.faces) == faces, request_id
        expected = records_pb2.ANALYSIS_STATUS_OK if faces else records_pb2.ANALYSIS_STATUS_NO_FACE
        assert answer.status == expected, answer.error
        assert answer.synthetic_weights
        assert answer in on_topic[request_id]  # the very record the dataflow wrote
    assert sorted(r.request_id for r in watched) == sorted(ids)
    assert all(r in on_topic[r.request_id] for r in watched)


@pytest.mark.models
def test_submit_command_prints_the_dataflow_results(embedded_broker, synthetic_home, public_photos):
    topics = Topics(embedded_broker.bootstrap)
    env = topics.env(synthetic_home)
    with ready_pipeline(
        topics, synthetic_home, "-w", "1", FACESTREAM_ACTIONS=",".join(ACTIONS)
    ) as (_flow, server):
        client_env = {**env, "FACESTREAM_GRPC_ADDRESS": server.address}
        image = str(public_photos / SINGLE_FACE[0])
        as_json = run_facestream("submit", image, "--wait", "--json", env=client_env, timeout=240)
        assert as_json.returncode == 0, as_json.stderr
        (line,) = as_json.stdout.splitlines()
        record = json.loads(line)
        watched = run_facestream("watch", "--json", record["requestId"], env=client_env)
        without = run_facestream(
            "submit", image, "--wait", "--json", "--no-embeddings", env=client_env, timeout=240
        )
        attributes_only = run_facestream(
            "submit", image, "--wait", "--json", "--actions", "age,race", env=client_env
        )
        as_table = run_facestream("submit", image, "--wait", env=client_env, timeout=240)
        with server.client() as client:  # the Python client
            from_python = client.analyze(
                (public_photos / SINGLE_FACE[0]).read_bytes(), ["embedding"], timeout=150
            )
    assert record["status"] == "ANALYSIS_STATUS_OK"
    assert len(record["faces"]) == 1
    face = record["faces"][0]
    assert {"age", "gender", "emotion", "race", "region", "embedding"} <= set(face)
    # The embedding: base64 of 4096 little-endian float32 values of unit norm.
    embedding = np.frombuffer(base64.b64decode(face["embedding"]), dtype="<f4")
    assert embedding.shape == (4096,)
    assert np.linalg.norm(embedding) == pytest.approx(1, abs=1e-5)
    [face_from_python] = from_python.faces
    from_client = embedding_of(face_from_python)
    assert from_client is not None and from_client.dtype == np.float32
    np.testing.assert_array_equal(from_client, embedding)  # the same face, the same numbers
    assert not face_from_python.HasField("age")  # only what was asked
    assert watched.returncode == 0, watched.stderr
    (line,) = watched.stdout.splitlines()
    assert json.loads(line)["faces"][0]["embedding"] == face["embedding"]

    (line,) = without.stdout.splitlines()
    [face_without] = json.loads(line)["faces"]
    assert "embedding" not in face_without and face_without["age"] == face["age"]
    (line,) = attributes_only.stdout.splitlines()
    [only] = json.loads(line)["faces"]
    assert only["embedding"] == "" and "gender" not in only  # not asked
    assert only["race"] == face["race"]

    assert as_table.returncode == 0, as_table.stderr
    lines = as_table.stdout.splitlines()
    assert lines[0] == f"!! {SYNTHETIC_WARNING}"
    assert tuple(lines[1].split()) == COLUMNS
    (row,) = [line for line in lines if line.startswith(image)]
    cells = row.split()
    assert cells[1:3] == ["OK", "1"]
    assert 0 < float(cells[3]) < 120
    assert "analyze" in as_table.stderr  # the progress bar
