"""The embedded broker's byte budget: its bookkeeping, the refusal on every submitting RPC
over a real channel (the server on the embedded broker, the dataflow played by
StandInDataflow), `facestream video`'s exit, the metrics and `facestream up`'s lines."""

from __future__ import annotations

import logging
import re
from dataclasses import dataclass

import grpc
import pytest

from apps.broker import free_port
from apps.demo_video import compose_demo_video
from apps.processes import wait_until
from apps.up import BudgetReport, broker_use
from di.settings import ServerProcessSettings
from facestream.client import request
from facestream.v1 import records_pb2
from grpc_server.broker_budget import (
    FIRST_RESULT_ALLOWANCE_BYTES,
    RECORD_OVERHEAD_BYTES,
    BrokerBudget,
)
from grpc_server.errors import RequestRejectedError
from tests.commands import SYNTHETIC_HOME, cli_env, run_facestream
from tests.grpc_helpers import ServerThread, stand_in_dataflow
from tests.test_grpc_server import assert_status, jpeg

MIB = 1024 * 1024
LOGGER = logging.getLogger("test-broker-budget")


@dataclass
class Results:
    """What a results listener has read, as the budget sees it."""

    records_read: int = 0
    bytes_read: int = 0


def publish(budget: BrokerBudget, size: int, request_id: str = "r") -> None:
    with budget.writing(size, request_id):
        pass


# The bookkeeping


def test_requests_and_results_are_counted_with_the_brokers_cost_per_record():
    results = Results()
    budget = BrokerBudget(10 * MIB, 0.8, results, LOGGER)
    publish(budget, 1000)
    publish(budget, 3000)
    assert budget.held == 4000 + 2 * RECORD_OVERHEAD_BYTES
    results.records_read, results.bytes_read = 2, 600
    assert budget.held == 4600 + 4 * RECORD_OVERHEAD_BYTES
    assert budget.unanswered == 0


def test_each_unanswered_request_keeps_room_for_its_result():
    results = Results()
    budget = BrokerBudget(10 * MIB, 0.8, results, LOGGER)
    for _ in range(3):
        publish(budget, 1000)
    allowance = FIRST_RESULT_ALLOWANCE_BYTES + RECORD_OVERHEAD_BYTES  # before any result
    assert budget.committed == budget.held + 3 * allowance
    results.records_read, results.bytes_read = 1, 400  # then the mean result's size
    assert budget.unanswered == 2
    assert budget.committed == budget.held + 2 * (400 + RECORD_OVERHEAD_BYTES)
    results.records_read, results.bytes_read = 5, 2000  # duplicates: never below none
    assert budget.unanswered == 0 and budget.committed == budget.held


def test_a_request_that_would_pass_the_budget_is_refused_and_not_counted():
    budget = BrokerBudget(1 * MIB, 0.8, Results(), LOGGER)
    accepted = 0
    with pytest.raises(RequestRejectedError) as refused:
        for index in range(100):  # bounded: 1 MiB holds about ten
            publish(budget, 100_000, f"r{index}")
            accepted += 1
    assert 5 <= accepted < 11
    error = refused.value
    assert error.status == grpc.StatusCode.RESOURCE_EXHAUSTED
    assert error.code == "broker.full" and error.request_id == f"r{accepted}"
    assert "FACESTREAM_EMBEDDED_BROKER_BUDGET" in error.message
    assert "FACESTREAM_KAFKA_BOOTSTRAP" in error.message
    assert budget.requests_published == accepted
    assert budget.committed <= budget.budget  # room is left for the accepted ones' results
    publish(budget, 100, "small")  # a smaller request still fits


def test_a_publish_that_fails_is_not_counted():
    budget = BrokerBudget(1 * MIB, 0.8, Results(), LOGGER)
    with pytest.raises(TimeoutError), budget.writing(500_000, "lost"):
        raise TimeoutError("Kafka did not acknowledge")
    assert budget.held == 0 and budget.committed == budget.unanswered == 0
    publish(budget, 500_000)  # its room is free again


def test_the_warning_is_logged_once_at_80_percent(caplog):
    budget = BrokerBudget(1 * MIB, 0.8, Results(), LOGGER)
    with caplog.at_level(logging.WARNING, LOGGER.name):
        publish(budget, 700_000)
        assert not caplog.records
        publish(budget, 150_000)  # 81%
        publish(budget, 10_000)
    assert len(caplog.records) == 1
    message = caplog.records[0].getMessage()
    assert "81% of its 1.0 MiB budget" in message and "broker.full" in message


# Over a real channel: the server on the embedded broker


def budget_settings(topics, budget: str, **overrides: str) -> ServerProcessSettings:
    """A test server's settings with no Kafka named: it writes to the embedded broker (the
    session's, by its port) and keeps its budget."""
    port = topics.bootstrap.rpartition(":")[2]
    env = {
        **topics.env(SYNTHETIC_HOME, FACESTREAM_GRPC_ADDRESS="127.0.0.1:0", **overrides),
        "FACESTREAM_KAFKA_BOOTSTRAP": "",
        "FACESTREAM_EMBEDDED_BROKER_PORT": port,
        "FACESTREAM_EMBEDDED_BROKER_BUDGET": budget,
    }
    return ServerProcessSettings.from_env(env)


def fill(client, image: bytes) -> list[str]:
    """Submit `image` until the budget refuses one; the ids accepted."""
    accepted: list[str] = []
    for index in range(200):  # bounded: 1 MiB holds a few dozen
        try:
            accepted.append(client.submit(image, request_id=f"fill-{index}"))
        except grpc.RpcError as error:
            assert error.code() == grpc.StatusCode.RESOURCE_EXHAUSTED, error.details()
            assert "embedded broker is full" in error.details()
            return accepted
    raise AssertionError("200 submissions were accepted within a 1 MiB budget")


def test_every_submitting_rpc_is_refused_at_the_budget_and_what_was_accepted_is_answered(
    topics,
):
    image = jpeg(160, 120, seed=3)
    metrics_port = free_port()
    settings = budget_settings(topics, "1MiB", FACESTREAM_METRICS_PORT=str(metrics_port))
    with (
        stand_in_dataflow(topics),
        ServerThread(settings) as server,
        server.client() as client,
    ):
        server.wait_serving()
        accepted = fill(client, image)
        assert len(accepted) >= 3
        # Analyze and SubmitStream are refused alike, with the same code.
        assert_status(
            lambda: client.analyze(image, request_id="one-more", timeout=30),
            grpc.StatusCode.RESOURCE_EXHAUSTED,
            "embedded broker is full",
            "FACESTREAM_EMBEDDED_BROKER_BUDGET",
        )
        frame = records_pb2.StreamFrame(stream_id="cam", sequence=0)
        replies = list(client.submit_stream(iter([request(image, frame=frame)]), timeout=30))
        assert [reply.error.code for reply in replies] == ["broker.full"]
        # Everything accepted is answered.
        answered = {result.request_id for result in client.watch(accepted, timeout=60)}
        assert answered == set(accepted)
        # The metrics say what the broker holds: each request with its image, and each
        # result, with the broker's cost per record.
        url = f"http://127.0.0.1:{metrics_port}/metrics"
        least = len(accepted) * (len(image) + 2 * RECORD_OVERHEAD_BYTES)
        wait_until(
            lambda: getattr(broker_use(url), "held", 0) >= least, 30, "the results to be counted"
        )
        use = broker_use(url)
        assert use is not None and use.budget == MIB and use.held <= MIB
        assert use.refusals == 3  # the Submit that ended fill, the Analyze and the frame


def test_a_server_on_a_named_kafka_has_no_budget(topics):
    metrics_port = free_port()
    settings = ServerProcessSettings.from_env(
        topics.env(
            SYNTHETIC_HOME,
            FACESTREAM_GRPC_ADDRESS="127.0.0.1:0",
            FACESTREAM_METRICS_PORT=str(metrics_port),
            FACESTREAM_EMBEDDED_BROKER_BUDGET="1MiB",
        )
    )
    with ServerThread(settings) as server, server.client() as client:
        server.wait_serving()
        image = jpeg(320, 240, seed=4)
        assert len(image) * 40 > MIB
        ids = [client.submit(image, request_id=f"free-{i}") for i in range(40)]
        assert len(set(ids)) == 40
        assert broker_use(f"http://127.0.0.1:{metrics_port}/metrics") is None


def test_up_says_the_last_step_of_the_budget_passed_once(topics, capsys):
    metrics_port = free_port()
    settings = budget_settings(topics, "1MiB", FACESTREAM_METRICS_PORT=str(metrics_port))
    report = BudgetReport(f"http://127.0.0.1:{metrics_port}/metrics", interval=0)
    with stand_in_dataflow(topics), ServerThread(settings) as server, server.client() as client:
        server.wait_serving()
        report.check()
        assert capsys.readouterr().out == ""  # nothing held yet
        fill(client, jpeg(160, 120, seed=5))
        report.check()
        said = capsys.readouterr().out.splitlines()
        report.check()
        assert capsys.readouterr().out == ""  # each step once
    assert len(said) == 1, said  # the last step passed, not each on the way
    assert said[0].startswith("broker: FULL: the embedded broker holds"), said
    assert "refused (broker.full)" in said[0]


def test_video_stops_at_broker_full_with_exit_1_and_every_accepted_frame_answered(topics, tmp_path):
    video = compose_demo_video(tmp_path / "long.avi", seconds=20)  # 100 frames
    settings = budget_settings(topics, "1MiB", FACESTREAM_STREAM_GAP_TIMEOUT="2")
    with stand_in_dataflow(topics), ServerThread(settings) as server:
        server.wait_serving()
        run = run_facestream(
            "video",
            str(video.path),
            "--json",
            "--no-embeddings",
            "--timeout",
            "60",
            env=cli_env(FACESTREAM_GRPC_ADDRESS=server.address),
            timeout=240,
        )
    assert run.returncode == 1, run.stderr
    assert "error: broker.full: the embedded broker is full" in run.stderr
    summary = re.search(r"(\d+) frame\(s\) sent, (\d+) answered, (\d+) refused", run.stderr)
    assert summary is not None, run.stderr
    sent, answered, refused = map(int, summary.groups())
    assert refused >= 1 and answered >= 1
    assert answered + refused == sent < 100  # it stopped sending; every accepted one answered
    assert len(run.stdout.splitlines()) == sent
