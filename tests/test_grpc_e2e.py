"""gRPC -> Kafka -> the real dataflow (`bytewax.run`, DeepFace with synthetic weights)
-> results -> back to gRPC clients and the `facestream` command."""

from __future__ import annotations

import json
import threading

import pytest

from apps.processes import wait_until
from apps.result_table import COLUMNS
from facestream.models import SYNTHETIC_WARNING
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
    with ready_pipeline(topics, synthetic_home, "-w", "1") as (_flow, server):
        client_env = {**env, "FACESTREAM_GRPC_ADDRESS": server.address}
        image = str(public_photos / SINGLE_FACE[0])
        as_json = run_facestream("submit", image, "--wait", "--json", env=client_env, timeout=240)
        as_table = run_facestream("submit", image, "--wait", env=client_env, timeout=240)
    assert as_json.returncode == 0, as_json.stderr
    (line,) = as_json.stdout.splitlines()
    record = json.loads(line)
    assert record["status"] == "ANALYSIS_STATUS_OK"
    assert len(record["faces"]) == 1
    assert {"age", "gender", "emotion", "race", "region"} <= set(record["faces"][0])
    assert as_table.returncode == 0, as_table.stderr
    lines = as_table.stdout.splitlines()
    assert lines[0] == f"!! {SYNTHETIC_WARNING}"
    assert tuple(lines[1].split()) == COLUMNS
    (row,) = [line for line in lines if line.startswith(image)]
    cells = row.split()
    assert cells[1:3] == ["OK", "1"]
    assert 0 < float(cells[3]) < 120
    assert "analyze" in as_table.stderr  # the progress bar
