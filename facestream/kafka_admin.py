"""Kafka administration that works on any Kafka: waiting until it answers, and creating
facestream's topics (the gRPC server does it at start-up, `facestream broker` on demand)."""

from __future__ import annotations

import time
from collections.abc import Sequence

from confluent_kafka import KafkaException
from confluent_kafka.admin import AdminClient, NewTopic

from facestream.kafka_config import PLAINTEXT, KafkaSecurity, TopicSpec


class BrokerError(RuntimeError):
    """The broker could not be started, or Kafka did not answer."""


def wait_for_kafka(bootstrap: str, timeout: float, security: KafkaSecurity = PLAINTEXT) -> None:
    """Return once Kafka at `bootstrap` answers a metadata request; BrokerError after timeout."""
    admin = AdminClient({"bootstrap.servers": bootstrap, **security.client_config, "log_level": 0})
    deadline = time.monotonic() + timeout
    while True:
        remaining = deadline - time.monotonic()
        try:
            admin.list_topics(timeout=max(0.1, min(1.0, remaining)))
            return
        except KafkaException as error:
            if remaining <= 0:
                raise BrokerError(
                    f"Kafka at {bootstrap} did not answer within {timeout:.0f} s: {error}"
                ) from error


def ensure_topics(
    bootstrap: str,
    topics: Sequence[TopicSpec],
    timeout: float = 30,
    security: KafkaSecurity = PLAINTEXT,
) -> list[str]:
    """Create the topics that do not exist yet; return the names of those created.

    Existing topics are left as they are (partitions cannot be changed on every broker).
    """
    admin = AdminClient({"bootstrap.servers": bootstrap, **security.client_config})
    existing = admin.list_topics(timeout=timeout).topics
    missing = [t for t in topics if t.name not in existing]
    if not missing:
        return []
    futures = admin.create_topics(
        [
            NewTopic(
                t.name,
                num_partitions=t.partitions,
                replication_factor=t.replication_factor,
                config=t.config,
            )
            for t in missing
        ],
        operation_timeout=timeout,
        request_timeout=timeout,
    )
    for name, future in futures.items():
        try:
            future.result()
        except KafkaException as error:
            # Another process may have created it meanwhile: that is fine.
            if "TOPIC_ALREADY_EXISTS" not in str(error):
                raise BrokerError(
                    f"Could not create topic {name} on {bootstrap}: {error}"
                ) from error
    return [t.name for t in missing]
