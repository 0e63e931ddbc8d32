"""The embedded broker: big records, key partitioning, and `facestream broker` start/stop."""

from __future__ import annotations

import os
import signal
import socket
import sys
import time
import uuid

import pytest
from confluent_kafka import Consumer, Producer, TopicPartition
from confluent_kafka.admin import AdminClient, ConfigResource

from apps.processes import ChildProcess, wait_until
from facestream.kafka_admin import ensure_topics
from facestream.kafka_config import TopicSpec, consumer_config, producer_config
from facestream.worker_process import process_alive
from tests.commands import PROJECT_ROOT as ROOT
from tests.commands import cli_env, facestream_command, run_facestream
from tests.pipeline import RECORD_LIMIT

MIB = 1024 * 1024


def produce_all(bootstrap: str, records: list[tuple[str, bytes, bytes]]) -> list[tuple]:
    """Produce (topic, key, value) records, wait for every ack; return (key, partition) acks."""
    producer = Producer(producer_config(bootstrap, RECORD_LIMIT))
    acks: list[tuple] = []

    def on_delivery(error, message):
        assert error is None, error
        acks.append((message.key(), message.partition()))

    for topic, key, value in records:
        producer.produce(topic, key=key, value=value, on_delivery=on_delivery)
    assert producer.flush(30) == 0
    return acks


def consume(bootstrap: str, topic: str, partitions: int, count: int, timeout: float = 30):
    """Read `count` records from the start of every partition; fail after timeout."""
    consumer = Consumer(consumer_config(bootstrap, RECORD_LIMIT, group_id=f"test-{uuid.uuid4()}"))
    consumer.assign([TopicPartition(topic, p, 0) for p in range(partitions)])
    got = []
    deadline = time.monotonic() + timeout
    try:
        while len(got) < count and time.monotonic() < deadline:
            message = consumer.poll(0.5)
            if message is None:
                continue
            assert message.error() is None, message.error()
            got.append((message.key(), message.partition(), message.value()))
    finally:
        consumer.close()
    assert len(got) == count, f"consumed {len(got)} of {count} records in {timeout} s"
    return got


def new_topic(bootstrap: str, partitions: int) -> str:
    name = f"test.{uuid.uuid4().hex[:8]}"
    assert ensure_topics(bootstrap, [TopicSpec(name, partitions, RECORD_LIMIT)]) == [name]
    return name


def test_nine_megabyte_record_round_trips(embedded_broker):
    topic = new_topic(embedded_broker.bootstrap, partitions=2)
    image = os.urandom(9 * MIB)
    produce_all(embedded_broker.bootstrap, [(topic, b"req-1", image)])
    [(key, _, value)] = consume(embedded_broker.bootstrap, topic, 2, count=1)
    assert key == b"req-1"
    assert value == image


def test_records_of_one_key_stay_on_one_partition_in_order(embedded_broker):
    topic = new_topic(embedded_broker.bootstrap, partitions=4)
    keys = [f"request-{i}".encode() for i in range(8)]
    records = [(topic, key, f"{key.decode()}#{n}".encode()) for n in range(5) for key in keys]
    acks = produce_all(embedded_broker.bootstrap, records)
    got = consume(embedded_broker.bootstrap, topic, 4, count=len(records))

    partitions_of = {key: {p for k, p in acks if k == key} for key in keys}
    assert all(len(parts) == 1 for parts in partitions_of.values()), partitions_of
    assert len(set().union(*partitions_of.values())) > 1, "all keys landed on one partition"
    for key in keys:
        values = [v for k, p, v in got if k == key]
        assert values == [f"{key.decode()}#{n}".encode() for n in range(5)]
        assert {p for k, p, _ in got if k == key} == partitions_of[key]


def test_ensure_topics_leaves_existing_topics_alone(embedded_broker):
    topic = new_topic(embedded_broker.bootstrap, partitions=3)
    assert ensure_topics(embedded_broker.bootstrap, [TopicSpec(topic, 1, RECORD_LIMIT)]) == []
    metadata = AdminClient({"bootstrap.servers": embedded_broker.bootstrap}).list_topics(timeout=10)
    assert len(metadata.topics[topic].partitions) == 3


@pytest.mark.parametrize("stop_signal", [signal.SIGINT, signal.SIGTERM])
def test_cli_broker_serves_topics_and_stops_on_signal(stop_signal, tmp_path):
    from apps.broker import free_port

    port = free_port()
    env = cli_env(
        FACESTREAM_EMBEDDED_BROKER_PORT=str(port),
        FACESTREAM_PARTITIONS="3",
        FACESTREAM_MAX_IMAGE_BYTES="9MiB",
        DEEPFACE_HOME=str(tmp_path),
    )
    broker = ChildProcess("facestream-broker", facestream_command("broker"), env)
    try:
        ready = broker.wait_for_output(r"ready on 127\.0\.0\.1:(\d+) \(pid (\d+)\)", timeout=60)
        assert int(ready.group(1)) == port
        broker_pid = int(ready.group(2))
        admin = AdminClient({"bootstrap.servers": f"127.0.0.1:{port}"})
        metadata = admin.list_topics(timeout=10)
        topics = ("faces.requests", "faces.results", "faces.dead-letter")
        for topic in topics:
            assert len(metadata.topics[topic].partitions) == 3
        # Topics admit a maximum-size image plus the record envelope.
        described = admin.describe_configs([ConfigResource("topic", t) for t in topics])
        for future in described.values():
            assert int(future.result(timeout=10)["max.message.bytes"].value) > 9 * MIB

        # Tansu waits up to 5 s for connected clients when it stops; let ours go first.
        del admin, described, metadata
        assert broker.stop(stop_signal, timeout=30) == 0, broker.output()
        assert "Embedded broker stopped." in broker.output()
        assert not process_alive(broker_pid)
    finally:
        broker.stop(signal.SIGKILL)


def test_cli_broker_starts_nothing_when_kafka_is_configured(embedded_broker, tmp_path):
    suffix = uuid.uuid4().hex[:8]
    env = cli_env(
        FACESTREAM_KAFKA_BOOTSTRAP=embedded_broker.bootstrap,
        FACESTREAM_TOPIC_REQUESTS=f"req.{suffix}",
        FACESTREAM_TOPIC_RESULTS=f"res.{suffix}",
        FACESTREAM_TOPIC_DEAD_LETTER=f"dead.{suffix}",
        DEEPFACE_HOME=str(tmp_path),
    )
    result = run_facestream("broker", env=env, timeout=60)
    assert result.returncode == 0, result.stderr
    assert "the embedded broker is not started" in result.stdout
    topics = AdminClient({"bootstrap.servers": embedded_broker.bootstrap}).list_topics(timeout=10)
    assert {f"req.{suffix}", f"res.{suffix}", f"dead.{suffix}"} <= set(topics.topics)


def test_cli_broker_reports_a_busy_port(tmp_path):
    with socket.socket() as occupant:
        occupant.bind(("127.0.0.1", 0))
        occupant.listen()
        port = occupant.getsockname()[1]
        env = cli_env(FACESTREAM_EMBEDDED_BROKER_PORT=str(port), DEEPFACE_HOME=str(tmp_path))
        result = run_facestream("broker", env=env, timeout=60)
    assert result.returncode == 1
    assert f"127.0.0.1:{port} is already in use" in result.stderr
    assert "FACESTREAM_EMBEDDED_BROKER_PORT" in result.stderr
    assert "Traceback" not in result.stderr


def test_cli_reports_bad_settings_without_traceback(tmp_path):
    env = cli_env(FACESTREAM_BATCH_SIZE="0", DEEPFACE_HOME=str(tmp_path))
    result = run_facestream("broker", env=env, timeout=60)
    assert result.returncode == 2
    assert "FACESTREAM_BATCH_SIZE='0' is not valid: expected an integer from 1 to 256" in (
        result.stderr
    )
    assert "Traceback" not in result.stderr


def test_broker_does_not_outlive_a_killed_parent():
    # The parent holds the broker until it is killed; SIGKILL skips every cleanup in it.
    parent_code = (
        "import threading\n"
        "from apps.broker import EmbeddedBroker, free_port\n"
        "broker = EmbeddedBroker(free_port()); broker.start(); print(broker.pid, flush=True)\n"
        "threading.Event().wait(120)\n"
    )
    parent = ChildProcess("broker-parent", [sys.executable, "-c", parent_code], cwd=ROOT)
    broker_pid = None
    try:
        broker_pid = int(parent.wait_for_output(r"^(\d+)$", timeout=60).group(1))
        parent.stop(signal.SIGKILL)
        wait_until(lambda: not process_alive(broker_pid), 10, "the broker to end with its parent")
    finally:
        parent.stop(signal.SIGKILL)
        if broker_pid and process_alive(broker_pid):
            os.kill(broker_pid, signal.SIGKILL)
