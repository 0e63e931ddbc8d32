"""Publishing ImageSubmitted records to Kafka from asyncio, acknowledged by the broker.

A call returns only once the broker has the record (`acks=all`, idempotent producer), so
the server never acknowledges what Kafka does not hold. A background thread serves the
producer's callbacks and reports whether Kafka is reachable, for the health service.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import threading
from collections.abc import Callable

from confluent_kafka import KafkaError, KafkaException, Producer

from facestream.kafka_config import PLAINTEXT, KafkaSecurity, producer_config
from facestream.kafka_records import submission_key
from facestream.v1 import records_pb2
from grpc_server.background import run_or_report

# While Kafka is unreachable, ask it for metadata this often to notice when it is back.
RECONNECT_PROBE_SECONDS = 1.0


class PublishUnavailableError(Exception):
    """Kafka did not acknowledge the record. `maybe_accepted`: it timed out, so the record
    may still land; otherwise Kafka refused it."""

    def __init__(self, message: str, maybe_accepted: bool = False) -> None:
        super().__init__(message)
        self.maybe_accepted = maybe_accepted


class PublishOverloadedError(Exception):
    """Too many publishes are waiting for Kafka already; retry later."""


class RequestPublisher:
    """Acknowledged publishing of submissions, at most `max_in_flight` waiting at once.

    Use from one asyncio event loop. Set the callbacks before `start`; they are called from
    the producer's thread: `on_reachability` whenever Kafka becomes reachable or
    unreachable, `on_fatal` if that thread dies.
    """

    def __init__(
        self,
        bootstrap: str,
        topic: str,
        max_message_bytes: int,
        max_in_flight: int,
        ack_timeout: float,
        logger: logging.Logger,
        security: KafkaSecurity = PLAINTEXT,
    ) -> None:
        self.topic = topic
        self._max_in_flight = max_in_flight
        self._ack_timeout = ack_timeout
        self._logger = logger
        self.on_reachability: Callable[[bool], None] = lambda _reachable: None
        self.on_fatal: Callable[[str], None] = lambda _reason: None
        self._in_flight = 0
        self._reachable = False
        self._had_outage = False
        self._stop = threading.Event()
        self._failed = threading.Event()
        self._swap = threading.Lock()
        self._config = {
            **producer_config(bootstrap, max_message_bytes, security),
            # librdkafka gives up on a record when the server stops waiting for it.
            "message.timeout.ms": int(ack_timeout * 1000),
            "error_cb": self._on_error,
            "logger": logger,
        }
        self._producer = Producer(self._config)
        self._thread = threading.Thread(
            target=run_or_report,
            args=(self._serve, lambda reason: self.on_fatal(reason), logger),
            name="kafka-producer",
            daemon=True,
        )

    @property
    def reachable(self) -> bool:
        """Whether Kafka answered last time the producer talked to it."""
        return self._reachable

    @property
    def in_flight(self) -> int:
        return self._in_flight

    def start(self) -> None:
        """Start serving callbacks and probing Kafka; `reachable` turns true once it answers."""
        self._thread.start()

    async def publish(self, submission: records_pb2.ImageSubmitted, timeout: float) -> None:
        """Return once Kafka acknowledged the record, keyed by its request id (a frame by
        its stream: `facestream.kafka_records.submission_key`).

        Raises PublishOverloadedError at the in-flight limit, PublishUnavailableError when Kafka
        did not acknowledge within `timeout` (capped by FACESTREAM_ACK_TIMEOUT) or failed it.
        """
        if self._in_flight >= self._max_in_flight:
            raise PublishOverloadedError(
                f"the server already waits on {self._max_in_flight} publishes; retry shortly"
            )
        loop = asyncio.get_running_loop()
        acknowledged: asyncio.Future[None] = loop.create_future()

        def on_delivery(error: KafkaError | None, _message: object) -> None:
            if error is not None and error.code() == KafkaError._MSG_TIMED_OUT:
                # A broker that forgot this producer (restarted without its state) makes
                # every record time out: start afresh.
                self._failed.set()
            # The loop may have closed meanwhile: then nobody waits any more.
            with contextlib.suppress(RuntimeError):
                loop.call_soon_threadsafe(_settle, acknowledged, error, self._ack_timeout)

        self._in_flight += 1
        try:
            try:
                with self._swap:  # never onto a producer being replaced
                    self._producer.produce(
                        self.topic,
                        key=submission_key(submission),
                        value=submission.SerializeToString(),
                        on_delivery=on_delivery,
                    )
            except BufferError:
                raise PublishOverloadedError(
                    "the producer's queue is full; retry shortly"
                ) from None
            except KafkaException as error:
                raise PublishUnavailableError(f"Kafka refused the record: {error}") from None
            wait = min(timeout, self._ack_timeout)
            try:
                await asyncio.wait_for(asyncio.shield(acknowledged), wait)
            except TimeoutError:
                raise PublishUnavailableError(
                    f"Kafka did not acknowledge the record within {wait:.1f} s",
                    maybe_accepted=True,
                ) from None
        finally:
            self._in_flight -= 1

    def close(self, timeout: float) -> int:
        """Wait up to `timeout` for records still in the producer, then stop its thread.
        Returns how many records were left unacknowledged."""
        left = self._producer.flush(timeout)
        self._stop.set()
        if self._thread.is_alive():
            self._thread.join(timeout=5)
        return left

    def _serve(self) -> None:
        self._probe()
        while not self._stop.is_set():
            try:
                self._producer.poll(0.1)
            except KafkaException as error:
                self._on_error(error.args[0])
            if self._failed.is_set():
                self._replace_producer()
            if not self._reachable and self._stop.wait(RECONNECT_PROBE_SECONDS):
                break
            if not self._reachable:
                self._probe()

    def _probe(self) -> None:
        try:
            self._producer.list_topics(self.topic, timeout=RECONNECT_PROBE_SECONDS)
        except KafkaException:
            self._set_reachable(False)
            return
        if self._had_outage:
            # The broker may have restarted and forgotten the idempotent producer's id.
            self._replace_producer()
        self._set_reachable(True)

    def _replace_producer(self) -> None:
        # After a fatal error, an outage or a timed-out record the producer may be unusable
        # (a broker that lost its state refuses its producer id): its records fail now, and
        # a new producer, with a new id, takes over.
        self._failed.clear()
        with self._swap:
            failed, self._producer = self._producer, Producer(self._config)
            failed.purge()
        failed.poll(0)
        self._logger.warning("Kafka producer replaced")

    def _on_error(self, error: KafkaError) -> None:
        if error.code() == KafkaError._ALL_BROKERS_DOWN:
            self._set_reachable(False)
        if error.fatal():
            self._failed.set()
        self._logger.warning("Kafka producer: %s", error)

    def _set_reachable(self, reachable: bool) -> None:
        if reachable != self._reachable:
            self._had_outage = not reachable
            self._reachable = reachable
            self._logger.info("Kafka is %s", "reachable" if reachable else "UNREACHABLE")
            self.on_reachability(reachable)


def _settle(future: asyncio.Future[None], error: KafkaError | None, ack_timeout: float) -> None:
    if future.done():
        return
    if error is None:
        future.set_result(None)
    elif error.code() == KafkaError._MSG_TIMED_OUT:
        # librdkafka's own timeout is the ack timeout: say so as the wait above would.
        message = f"Kafka did not acknowledge the record within {ack_timeout:.1f} s"
        future.set_exception(PublishUnavailableError(message, maybe_accepted=True))
    else:
        future.set_exception(PublishUnavailableError(f"Kafka did not accept the record: {error}"))
