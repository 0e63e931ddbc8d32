"""Helpers to drive the real dataflow (started with apps.launch.DataflowProcess): its own
topics on the test broker, and producing / consuming facestream records."""

from __future__ import annotations

import uuid
from collections.abc import Iterable, Sequence
from pathlib import Path

from confluent_kafka import Producer

from apps.launch import DataflowProcess, TopicReader
from di.settings import RequestSettings
from facestream.kafka_admin import ensure_topics
from facestream.kafka_config import TopicSpec, producer_config
from facestream.kafka_records import image_submitted, result_key
from facestream.v1 import records_pb2
from tests.commands import cli_env

# Topics of the tests admit what facestream's own do: one maximum-size image and envelope.
RECORD_LIMIT = RequestSettings.from_env({}).kafka_max_message_bytes


class Topics:
    """A fresh set of facestream topics on the broker, and the env that points at them."""

    def __init__(self, bootstrap: str, partitions: int = 4) -> None:
        suffix = uuid.uuid4().hex[:8]
        self.bootstrap = bootstrap
        self.partitions = partitions
        self.requests = f"requests.{suffix}"
        self.results = f"results.{suffix}"
        self.dead_letter = f"dead.{suffix}"
        self.tracks = f"tracks.{suffix}"
        ensure_topics(
            bootstrap,
            [
                TopicSpec(t, partitions, RECORD_LIMIT)
                for t in (self.requests, self.results, self.dead_letter, self.tracks)
            ],
        )

    def env(self, home: Path, **overrides: str) -> dict[str, str]:
        return cli_env(
            FACESTREAM_KAFKA_BOOTSTRAP=self.bootstrap,
            FACESTREAM_TOPIC_REQUESTS=self.requests,
            FACESTREAM_TOPIC_RESULTS=self.results,
            FACESTREAM_TOPIC_DEAD_LETTER=self.dead_letter,
            FACESTREAM_TOPIC_TRACKS=self.tracks,
            FACESTREAM_PARTITIONS=str(self.partitions),
            DEEPFACE_HOME=str(home),
            **overrides,
        )


def submission(
    request_id: str, image: bytes, actions: Sequence[str] = (), detector_backend: str = ""
) -> bytes:
    """A serialized ImageSubmitted record."""
    return image_submitted(
        request_id, image, actions=actions, detector_backend=detector_backend
    ).SerializeToString()


def produce(
    bootstrap: str, topic: str, records: Iterable[tuple[bytes | None, bytes | None]]
) -> None:
    """Produce (key, value) records and wait until the broker acknowledged all of them."""
    producer = Producer(producer_config(bootstrap, RECORD_LIMIT))
    failures = []
    for key, value in records:
        producer.produce(
            topic,
            key=key,
            value=value,
            on_delivery=lambda error, _msg: failures.append(error) if error else None,
        )
    assert producer.flush(30) == 0 and not failures, failures


def consume_until(
    bootstrap: str,
    topic: str,
    partitions: int,
    done,
    timeout: float,
    process: DataflowProcess | None = None,
) -> list:
    """Consume from the start until done(messages) is true; fail on timeout or if the
    process given exits meanwhile."""

    def alive() -> None:
        if process is not None and not process.running():
            raise AssertionError(f"the dataflow exited early:\n{process.log_tail()}")

    reader = TopicReader(bootstrap, topic, partitions)
    try:
        if not reader.read_until(done, timeout, alive):
            raise AssertionError(f"timed out after {timeout} s with {len(reader.messages)} records")
    finally:
        reader.close()
    return reader.messages


def results_for(
    bootstrap: str,
    topics: Topics,
    request_ids: Iterable[str],
    timeout: float,
    process: DataflowProcess | None = None,
) -> dict[str, list[records_pb2.AnalysisResult]]:
    """Every AnalysisResult on the results topic, by request id, once all ids have one."""
    wanted = set(request_ids)

    def parsed(messages):
        by_id: dict[str, list] = {}
        for message in messages:
            result = records_pb2.AnalysisResult.FromString(message.value())
            assert message.key() == result_key(result)
            by_id.setdefault(result.request_id, []).append(result)
        return by_id

    messages = consume_until(
        bootstrap,
        topics.results,
        topics.partitions,
        lambda got: wanted <= set(parsed(got)),
        timeout,
        process,
    )
    return parsed(messages)
