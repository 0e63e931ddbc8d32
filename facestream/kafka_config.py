"""Kafka client and topic configurations sized for images, shared by every facestream client.

Images can be larger than Kafka's 1 MB default, so producers, topics and consumers all get
the same record size limit (the maximum image size plus room for the protobuf envelope).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any


@dataclass(frozen=True)
class TopicSpec:
    """A topic facestream creates when it is missing."""

    name: str
    partitions: int
    max_message_bytes: int

    @property
    def config(self) -> dict[str, str]:
        return {"max.message.bytes": str(self.max_message_bytes)}


def producer_config(bootstrap: str, max_message_bytes: int) -> dict[str, Any]:
    """Acknowledged, idempotent producer: a send succeeds only once all replicas have it."""
    return {
        "bootstrap.servers": bootstrap,
        "acks": "all",
        "enable.idempotence": True,
        "message.max.bytes": max_message_bytes,
        # Java clients' partitioner, so the same key lands on the same partition whoever writes.
        "partitioner": "murmur2_random",
    }


def fetch_config(max_message_bytes: int) -> dict[str, Any]:
    """Consumer fetch limits that admit one maximum-size record."""
    fetch_bytes = max(max_message_bytes, 50 * 1024 * 1024)
    return {
        "fetch.max.bytes": fetch_bytes,
        "max.partition.fetch.bytes": max_message_bytes,
        # librdkafka requires this to exceed fetch.max.bytes by its 512-byte protocol overhead.
        "receive.message.max.bytes": fetch_bytes + 1024,
    }


def consumer_config(bootstrap: str, max_message_bytes: int, group_id: str) -> dict[str, Any]:
    """Consumer able to fetch one maximum-size record; offsets are not committed to Kafka."""
    return {
        "bootstrap.servers": bootstrap,
        "group.id": group_id,
        "enable.auto.commit": False,
        "auto.offset.reset": "earliest",
        **fetch_config(max_message_bytes),
    }
