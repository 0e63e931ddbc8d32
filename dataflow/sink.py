"""A Kafka sink that never loses a record silently.

Bytewax's own KafkaSink flushes without checking delivery reports, so a record the broker
refused would vanish. This sink raises instead: the worker stops, and with recovery the
dataflow resumes from its last snapshot and writes the record again (at-least-once).
"""

from __future__ import annotations

from typing import Any

from bytewax.outputs import DynamicSink, StatelessSinkPartition
from confluent_kafka import KafkaError, Message, Producer

from dataflow.items import OutgoingRecord


class DeliveryError(RuntimeError):
    """The broker did not acknowledge some records."""


class _ProducerPartition(StatelessSinkPartition[OutgoingRecord]):
    def __init__(self, config: dict[str, Any], flush_timeout: float) -> None:
        self._producer = Producer(config)
        self._flush_timeout = flush_timeout

    def write_batch(self, items: list[OutgoingRecord]) -> None:
        failures: list[str] = []

        def on_delivery(error: KafkaError | None, message: Message) -> None:
            if error is not None:
                failures.append(f"{message.topic()}: {error}")

        for item in items:
            while True:
                try:
                    self._producer.produce(
                        item.topic,
                        key=item.key,
                        value=item.value,
                        headers=item.headers,
                        on_delivery=on_delivery,
                    )
                    break
                except BufferError:  # local queue full: let deliveries drain, then retry
                    self._producer.poll(0.1)
        unsent = self._producer.flush(self._flush_timeout)
        if failures or unsent:
            raise DeliveryError(
                f"{len(failures)} record(s) refused and {unsent} unacknowledged after "
                f"{self._flush_timeout:.0f} s: {'; '.join(failures[:3])}"
            )

    def close(self) -> None:
        self._producer.flush(self._flush_timeout)


class AcknowledgedKafkaSink(DynamicSink[OutgoingRecord]):
    """Writes OutgoingRecords to their topics; a batch returns only once all are acked."""

    def __init__(self, producer_config: dict[str, Any], flush_timeout: float = 60) -> None:
        self._config = producer_config
        self._flush_timeout = flush_timeout

    def build(self, step_id: str, worker_index: int, worker_count: int) -> _ProducerPartition:
        return _ProducerPartition(dict(self._config), self._flush_timeout)
