"""Kafka client and topic configurations sized for images, shared by every facestream client.

Images can be larger than Kafka's 1 MB default, so producers, topics and consumers all get
the same record size limit (the maximum image size plus room for the protobuf envelope).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

SECURITY_PROTOCOLS = ("PLAINTEXT", "SSL", "SASL_PLAINTEXT", "SASL_SSL")
SASL_MECHANISMS = ("PLAIN", "SCRAM-SHA-256", "SCRAM-SHA-512")


@dataclass(frozen=True)
class KafkaSecurity:
    """How every facestream client authenticates to Kafka and protects the connection."""

    protocol: str = "PLAINTEXT"
    sasl_mechanism: str = ""
    sasl_username: str = ""
    sasl_password: str = field(default="", repr=False)  # a secret: never in a repr or log
    ssl_ca: Path | None = None

    @property
    def client_config(self) -> dict[str, str]:
        """librdkafka settings for this security, for producers, consumers and admins."""
        config = {"security.protocol": self.protocol}
        if self.protocol.startswith("SASL"):
            config |= {
                "sasl.mechanism": self.sasl_mechanism,
                "sasl.username": self.sasl_username,
                "sasl.password": self.sasl_password,
            }
        if self.protocol.endswith("SSL") and self.ssl_ca is not None:
            config["ssl.ca.location"] = str(self.ssl_ca)
        return config


PLAINTEXT = KafkaSecurity()


@dataclass(frozen=True)
class TopicSpec:
    """A topic facestream creates when it is missing."""

    name: str
    partitions: int
    max_message_bytes: int
    replication_factor: int = 1
    # With acks=all, a write is acknowledged once this many replicas have it.
    min_insync_replicas: int = 1
    # How long and how much (bytes per partition) Kafka keeps; -1: no limit.
    retention_ms: int = -1
    retention_bytes: int = -1

    @property
    def config(self) -> dict[str, str]:
        return {
            "max.message.bytes": str(self.max_message_bytes),
            "min.insync.replicas": str(self.min_insync_replicas),
            "retention.ms": str(self.retention_ms),
            "retention.bytes": str(self.retention_bytes),
        }


def producer_config(
    bootstrap: str, max_message_bytes: int, security: KafkaSecurity = PLAINTEXT
) -> dict[str, Any]:
    """Acknowledged, idempotent producer: a send succeeds only once all replicas have it."""
    return {
        "bootstrap.servers": bootstrap,
        **security.client_config,
        "acks": "all",
        "enable.idempotence": True,
        "message.max.bytes": max_message_bytes,
        # Java clients' partitioner, so the same key lands on the same partition whoever writes.
        "partitioner": "murmur2_random",
    }


def fetch_config(max_message_bytes: int, fetch_wait_ms: int = 500) -> dict[str, Any]:
    """Consumer fetch limits that admit one maximum-size record, and how long a fetch may
    wait at the broker for records (KafkaSettings.fetch_wait_ms)."""
    fetch_bytes = max(max_message_bytes, 50 * 1024 * 1024)
    return {
        "fetch.wait.max.ms": fetch_wait_ms,
        "fetch.max.bytes": fetch_bytes,
        "max.partition.fetch.bytes": max_message_bytes,
        # librdkafka requires this to exceed fetch.max.bytes by its 512-byte protocol overhead.
        "receive.message.max.bytes": fetch_bytes + 1024,
    }


def consumer_config(
    bootstrap: str,
    max_message_bytes: int,
    group_id: str,
    security: KafkaSecurity = PLAINTEXT,
    fetch_wait_ms: int = 500,
) -> dict[str, Any]:
    """Consumer able to fetch one maximum-size record; offsets are not committed to Kafka."""
    return {
        "bootstrap.servers": bootstrap,
        **security.client_config,
        "group.id": group_id,
        "enable.auto.commit": False,
        "auto.offset.reset": "earliest",
        **fetch_config(max_message_bytes, fetch_wait_ms),
    }
