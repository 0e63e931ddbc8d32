"""Prometheus metrics: the counting steps alone, and the whole system's /metrics endpoints
scraped after known traffic, parsed with prometheus_client's own text parser."""

from __future__ import annotations

import urllib.request
from collections import Counter

import grpc
import pytest
from grpc_health.v1 import health_pb2
from prometheus_client import CollectorRegistry
from prometheus_client.parser import text_string_to_metric_families

from apps.broker import free_port
from apps.image_sources import group_photo, skimage_data_dir
from apps.launch import DataflowProcess
from apps.processes import wait_until
from dataflow.items import AnalyzedFace, DeadLetter
from dataflow.metrics import (
    DataflowMetrics,
    count_dead_letter,
    count_face,
    count_open,
    count_result,
    count_track,
    count_tracking,
)
from dataflow.tracking_steps import TrackingCounts
from facestream.client import AnalyzeClient
from facestream.kafka_records import result_record
from facestream.v1 import records_pb2
from tests.grpc_helpers import server_process
from tests.images import astronaut_jpeg
from tests.pipeline import Topics, produce, results_for, submission

Samples = dict[tuple[str, frozenset[tuple[str, str]]], float]


def parse(text: str) -> Samples:
    """Every sample of a /metrics page: (name, labels) -> value."""
    return {
        (sample.name, frozenset(sample.labels.items())): sample.value
        for family in text_string_to_metric_families(text)
        for sample in family.samples
    }


def scrape(url: str) -> Samples:
    with urllib.request.urlopen(url, timeout=5) as response:
        return parse(response.read().decode())


def value(samples: Samples, name: str, **labels: str) -> float:
    """The sample's value; 0 when the page has no such sample (a counter never touched)."""
    return samples.get((name, frozenset(labels.items())), 0.0)


def with_name(samples: Samples, name: str) -> dict[frozenset[tuple[str, str]], float]:
    return {labels: v for (n, labels), v in samples.items() if n == name}


def registry_samples(registry: CollectorRegistry) -> Samples:
    from prometheus_client import generate_latest

    return parse(generate_latest(registry).decode())


# the counting steps, alone


def test_count_result_counts_status_code_and_the_stages_an_image_reached():
    registry = CollectorRegistry()
    metrics = DataflowMetrics(registry)
    timings = records_pb2.StageTimings(decode=0.01, detect=0.2, analyze=0.3, total=0.6)
    count_result("s", result_record("a", records_pb2.ANALYSIS_STATUS_OK, timings=timings), metrics)
    invalid = result_record(
        "b",
        records_pb2.ANALYSIS_STATUS_INVALID_IMAGE,
        error=("image.truncated", "cut"),
        timings=records_pb2.StageTimings(total=0.01),
    )
    count_result("s", invalid, metrics)
    samples = registry_samples(registry)
    assert value(samples, "facestream_dataflow_images_total", status="ok", code="") == 1
    assert (
        value(
            samples,
            "facestream_dataflow_images_total",
            status="invalid_image",
            code="image.truncated",
        )
        == 1
    )
    for stage, seconds in (("decode", 0.01), ("detect", 0.2), ("analyze", 0.3)):
        name = "facestream_dataflow_stage_duration_seconds"
        assert value(samples, f"{name}_count", stage=stage) == 1  # the invalid image: none
        assert value(samples, f"{name}_sum", stage=stage) == pytest.approx(seconds)
    assert value(samples, "facestream_dataflow_image_duration_seconds_count") == 2


def test_count_face_and_dead_letter_count_by_outcome_and_code():
    registry = CollectorRegistry()
    metrics = DataflowMetrics(registry)
    for error in (None, None, ("analyze.failed", "boom")):
        count_face("s", AnalyzedFace(None, 0, None, error, 0.1), metrics)  # type: ignore[arg-type]
    count_dead_letter("s", DeadLetter(None, b"x", "request.poison", "crashed", "t/0/1"), metrics)
    samples = registry_samples(registry)
    assert value(samples, "facestream_dataflow_faces_total", status="ok") == 2
    assert value(samples, "facestream_dataflow_faces_total", status="failed") == 1
    assert value(samples, "facestream_dataflow_dead_letters_total", code="request.poison") == 1


def test_the_tracker_counts_decisions_skips_open_streams_and_ended_tracks():
    registry = CollectorRegistry()
    metrics = DataflowMetrics(registry)
    count_tracking(TrackingCounts(analysed=2, carried=5, untracked=1, late=1, skipped=3), metrics)
    count_open(1, 2, metrics)
    count_open(1, 1, metrics)
    count_open(-1, -2, metrics)
    count_track("s", records_pb2.TrackSummary(ended_by="missing"), metrics)
    samples = registry_samples(registry)
    faces = "facestream_dataflow_tracked_faces_total"
    assert [value(samples, faces, decision=d) for d in ("analysed", "carried", "untracked")] == [
        2,
        5,
        1,
    ]
    frames = "facestream_dataflow_stream_frames_total"
    assert value(samples, frames, outcome="skipped") == 3
    assert value(samples, frames, outcome="late") == 1
    assert value(samples, "facestream_dataflow_open_streams") == 1
    assert value(samples, "facestream_dataflow_open_tracks") == 1
    assert value(samples, "facestream_dataflow_tracks_total", ended_by="missing") == 1


# the whole system


@pytest.mark.models
@pytest.mark.timeout(1200)  # model loading (300) and three Analyze calls (150 each) at most
def test_every_metrics_endpoint_counts_the_traffic_sent(embedded_broker, synthetic_home):
    topics = Topics(embedded_broker.bootstrap)
    server_metrics, dataflow_metrics = free_port(), free_port()
    address = f"127.0.0.1:{free_port()}"
    env = topics.env(
        synthetic_home,
        FACESTREAM_GRPC_ADDRESS=address,
        FACESTREAM_METRICS_PORT=str(server_metrics),
        FACESTREAM_DATAFLOW_METRICS_PORT=str(dataflow_metrics),
    )
    server_url = f"http://127.0.0.1:{server_metrics}/metrics"
    dataflow_url = f"http://127.0.0.1:{dataflow_metrics}/metrics"
    with (
        DataflowProcess(env, "-w", "2") as flow,
        server_process(env) as server,
        AnalyzeClient(address) as client,
    ):

        def serving() -> bool:
            assert server.running(), server.output()
            try:
                return client.health(timeout=1) == health_pb2.HealthCheckResponse.SERVING
            except grpc.RpcError:
                return False

        wait_until(serving, 60, "the server to serve")
        before = scrape(server_url)
        wait_until(lambda: flow.running() and _answers(dataflow_url), 300, "dataflow metrics")
        flow.wait_built()
        # Traffic: 3 Analyze calls, 1 good and 1 refused Submit; on the topic directly, an
        # image that is not one and a record that is not a submission.
        analyzed = [
            client.analyze(image, request_id=rid, timeout=150)
            for rid, image in (
                ("astronaut-1", astronaut_jpeg()),
                ("astronaut-2", astronaut_jpeg(quality=80)),
                ("coffee", (skimage_data_dir() / "coffee.png").read_bytes()),
            )
        ]
        assert client.submit(group_photo(skimage_data_dir()), request_id="group") == "group"
        with pytest.raises(grpc.RpcError) as refused:
            client.submit(b"not an image at all", request_id="refused")
        assert refused.value.code() == grpc.StatusCode.INVALID_ARGUMENT
        produce(
            topics.bootstrap,
            topics.requests,
            [(b"junk", submission("junk", b"GIF89a but not really")), (b"x", b"not protobuf")],
        )
        ids = ["astronaut-1", "astronaut-2", "coffee", "group", "junk"]
        results = {
            rid: rs[0] for rid, rs in results_for(topics.bootstrap, topics, ids, 120, flow).items()
        }
        by_status = Counter(
            (records_pb2.AnalysisStatus.Name(r.status), r.error.code) for r in results.values()
        )
        faces = sum(len(r.faces) for r in results.values())

        def dataflow_counted() -> bool:
            samples = scrape(dataflow_url)
            images = sum(with_name(samples, "facestream_dataflow_images_total").values())
            dead = sum(with_name(samples, "facestream_dataflow_dead_letters_total").values())
            return images == len(ids) and dead == 1

        wait_until(dataflow_counted, 30, "the dataflow's counters to reach the traffic")
        on_dataflow = scrape(dataflow_url)
        # librdkafka's statistics, every second, give the lags.
        wait_until(
            lambda: with_name(scrape(server_url), "facestream_server_results_listener_lag_records"),
            30,
            "the results listener's lag",
        )
        wait_until(
            lambda: with_name(scrape(dataflow_url), "bytewax_kafka_consumer_lag"),
            30,
            "Bytewax's consumer lag",
        )

        def server_counted() -> bool:
            calls = with_name(scrape(server_url), "facestream_server_calls_total")
            return sum(n for labels, n in calls.items() if ("method", "Analyze") in labels) == 3

        # A call is counted as its handler returns, a moment after the client's answer.
        wait_until(server_counted, 10, "the server's counters to reach the traffic")
        on_server = scrape(server_url)

    assert [r.request_id for r in analyzed] == ids[:3]
    # the server
    service = "facestream.v1.AnalyzeService"
    calls = "facestream_server_calls_total"
    assert value(on_server, calls, service=service, method="Analyze", code="OK") == 3
    assert value(on_server, calls, service=service, method="Submit", code="OK") == 1
    assert value(on_server, calls, service=service, method="Submit", code="INVALID_ARGUMENT") == 1
    latency = "facestream_server_call_duration_seconds"
    assert value(on_server, f"{latency}_count", service=service, method="Analyze") == 3
    assert value(on_server, f"{latency}_count", service=service, method="Submit") == 2
    assert value(before, f"{latency}_count", service=service, method="Analyze") == 0
    assert value(on_server, "facestream_server_publishes_in_flight") == 0
    assert value(on_server, "facestream_server_result_waiters") == 0
    lags = with_name(on_server, "facestream_server_results_listener_lag_records")
    assert {dict(labels)["partition"] for labels in lags} == {
        str(p) for p in range(topics.partitions)
    }
    assert value(on_server, "process_resident_memory_bytes") > 0
    # the dataflow
    images = with_name(on_dataflow, "facestream_dataflow_images_total")
    assert {
        (dict(labels)["status"], dict(labels)["code"]): count for labels, count in images.items()
    } == {
        (name.removeprefix("ANALYSIS_STATUS_").lower(), code): count
        for (name, code), count in by_status.items()
    }
    assert by_status[("ANALYSIS_STATUS_OK", "")] == 3  # the astronauts and the group
    assert by_status[("ANALYSIS_STATUS_NO_FACE", "")] == 1
    assert value(on_dataflow, "facestream_dataflow_faces_total", status="ok") == faces
    assert value(on_dataflow, "facestream_dataflow_batch_size_faces_sum") == faces
    stage = "facestream_dataflow_stage_duration_seconds_count"
    assert value(on_dataflow, stage, stage="detect") == 4  # every decoded image
    assert value(on_dataflow, stage, stage="analyze") == 3  # images with faces
    assert value(on_dataflow, "facestream_dataflow_image_duration_seconds_count") == len(ids)
    assert (
        value(on_dataflow, "facestream_dataflow_dead_letters_total", code="record.unparseable") == 1
    )
    assert value(on_dataflow, "facestream_dataflow_model_load_seconds") > 0
    assert with_name(on_dataflow, "bytewax_kafka_consumer_lag")


def _answers(url: str) -> bool:
    try:
        scrape(url)
    except OSError:
        return False
    return True
