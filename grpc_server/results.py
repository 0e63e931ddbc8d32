"""The results listener: one consumer per server process on the results topic, handing each
AnalysisResult to the calls waiting for it (Analyze, WatchResults, WatchStream).

It reads every partition with `assign()` (no consumer group: every server process sees
every result) from where the topic ended at start-up. Recent results are kept, so a call
that starts waiting just after its result went by still gets it. Results can be duplicated
(at-least-once); each waiter gets each request id once.
"""

from __future__ import annotations

import asyncio
import json
import logging
import threading
from collections import OrderedDict
from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager
from typing import Protocol

from confluent_kafka import Consumer, KafkaException, TopicPartition
from google.protobuf.message import DecodeError

from facestream.kafka_config import PLAINTEXT, KafkaSecurity, consumer_config
from facestream.v1 import records_pb2
from grpc_server.background import run_or_report
from grpc_server.stream_results import StreamWaiter, WaiterOverflowError

RECENT_RESULTS = 10_000
# A stream that falls this far behind is closed rather than left to grow without bound.
WAITER_BACKLOG = 10_000
# Request ids a watch-everything stream remembers to drop duplicates.
WATCH_ALL_MEMORY = 100_000
STATISTICS_INTERVAL_MS = 1000


class ResultWaiter:
    """Results for some request ids (or all) of one principal (or of any, None), each
    request once, in arrival order."""

    def __init__(self, request_ids: Iterable[str] | None, principal: str | None) -> None:
        self.request_ids = frozenset(request_ids) if request_ids is not None else None
        self.principal = principal
        self._queue: asyncio.Queue[records_pb2.AnalysisResult] = asyncio.Queue(WAITER_BACKLOG)
        self._seen: OrderedDict[str | tuple[str, str], None] = OrderedDict()
        self._overflowed = False

    @property
    def complete(self) -> bool:
        """True when every requested id has been handed out (never for watch-all)."""
        return (
            self.request_ids is not None
            and len(self._seen) == len(self.request_ids)
            and self._queue.empty()
        )

    @property
    def missing(self) -> int:
        """How many of the requested ids have had no result yet (0 for watch-all)."""
        return 0 if self.request_ids is None else len(self.request_ids) - len(self._seen)

    @property
    def has_result(self) -> bool:
        """True when a result is queued and `next` returns at once."""
        return not self._queue.empty()

    def wants(self, result: records_pb2.AnalysisResult) -> bool:
        """Whether `result` is for this waiter: its principal's, and one of its ids."""
        return (self.principal is None or result.principal == self.principal) and (
            self.request_ids is None or result.request_id in self.request_ids
        )

    def offer(self, result: records_pb2.AnalysisResult) -> None:
        """Queue `result` unless this waiter already had that request."""
        # Watching everything, the same id from two principals are two requests.
        seen_as = (
            (result.principal, result.request_id) if self.request_ids is None else result.request_id
        )
        if seen_as in self._seen or self._overflowed:
            return
        try:
            self._queue.put_nowait(result)
        except asyncio.QueueFull:
            self._overflowed = True
            return
        self._seen[seen_as] = None
        if self.request_ids is None and len(self._seen) > WATCH_ALL_MEMORY:
            self._seen.popitem(last=False)

    async def next(self, timeout: float | None = None) -> records_pb2.AnalysisResult:
        """The next result; TimeoutError after `timeout` seconds, WaiterOverflowError if behind."""
        if self._overflowed and self._queue.empty():
            raise WaiterOverflowError(f"more than {WAITER_BACKLOG} results were waiting unread")
        if not self._queue.empty():
            return self._queue.get_nowait()
        return await asyncio.wait_for(self._queue.get(), timeout)


class Waiter(Protocol):
    """What the listener hands results to: a ResultWaiter or a StreamWaiter."""

    def wants(self, result: records_pb2.AnalysisResult) -> bool: ...

    def offer(self, result: records_pb2.AnalysisResult) -> None: ...


class ResultsListener:
    """Consumes the results topic in a thread and dispatches on the given event loop."""

    def __init__(
        self,
        bootstrap: str,
        topic: str,
        max_message_bytes: int,
        logger: logging.Logger,
        security: KafkaSecurity = PLAINTEXT,
        fetch_wait_ms: int = 500,
    ) -> None:
        self.topic = topic
        self._logger = logger
        self._lag: dict[int, int] = {}  # filled by the consumer's statistics callback
        self._consumer = Consumer(
            {
                **consumer_config(
                    bootstrap,
                    max_message_bytes,
                    "facestream-results-listener",
                    security,
                    fetch_wait_ms,
                ),
                "logger": logger,
                # librdkafka's statistics, every second, give the lag behind the topic's end.
                "statistics.interval.ms": STATISTICS_INTERVAL_MS,
                "stats_cb": self._on_statistics,
            }
        )
        # Recent results by (principal, request id): a request id is unique per principal.
        self._recent: OrderedDict[tuple[str, str], records_pb2.AnalysisResult] = OrderedDict()
        self._waiters: set[Waiter] = set()
        # Records read and their bytes (key and value), written by the listener's thread
        # alone: what the broker holds of the results (grpc_server.broker_budget).
        self.records_read = 0
        self.bytes_read = 0
        self._loop: asyncio.AbstractEventLoop | None = None
        self._stop = threading.Event()
        # Called from the listener's thread if it dies: the server must not go on unaware.
        self.on_fatal: Callable[[str], None] = lambda _reason: None
        self._thread = threading.Thread(
            target=run_or_report,
            args=(self._serve, lambda reason: self.on_fatal(reason), logger),
            name="results-listener",
            daemon=True,
        )

    def start(self, loop: asyncio.AbstractEventLoop, timeout: float) -> None:
        """Assign every partition of the results topic at its current end and start reading.

        Blocking (Kafka metadata): run it in an executor. Raises KafkaException when Kafka
        does not answer within `timeout`, LookupError when the topic does not exist.
        """
        metadata = self._consumer.list_topics(self.topic, timeout=timeout)
        topic = metadata.topics.get(self.topic)
        if topic is None or topic.error is not None or not topic.partitions:
            raise LookupError(f"the results topic {self.topic!r} does not exist")
        start = []
        for partition in sorted(topic.partitions):
            # The end offset now: results produced after this are all seen. A broker that
            # reports too low an end (the embedded one) only replays a few old results.
            _low, high = self._consumer.get_watermark_offsets(
                TopicPartition(self.topic, partition), timeout=timeout
            )
            start.append(TopicPartition(self.topic, partition, high))
        self._consumer.assign(start)
        self._loop = loop
        self._thread.start()
        self._logger.info("listening to %s (%d partitions)", self.topic, len(start))

    @property
    def lag(self) -> dict[int, int]:
        """Records on each results partition not yet read (as of the last statistics)."""
        return dict(self._lag)

    def _on_statistics(self, statistics: str) -> None:
        partitions = json.loads(statistics).get("topics", {}).get(self.topic, {})
        lag = {}
        for name, partition in partitions.get("partitions", {}).items():
            end = partition.get("ls_offset", -1)
            # app_offset: one past the last record handed to us; before the first one, the
            # position the partition was assigned at.
            position = partition.get("app_offset", -1)
            if position < 0:
                position = partition.get("next_offset", -1)
            if int(name) >= 0 and end >= 0 and position >= 0:
                lag[int(name)] = max(0, end - position)
        self._lag = lag

    @property
    def waiter_count(self) -> int:
        """How many calls are waiting for results now."""
        return len(self._waiters)

    @contextmanager
    def waiter(
        self,
        request_ids: Iterable[str] | None = None,
        principal: str | None = "",
        recent: bool = True,
    ) -> Iterator[ResultWaiter]:
        """Register a waiter for `request_ids` (None: every result) of `principal` (None:
        of every principal; "" is everyone's when authentication is off) for the `with`
        block.

        Call it on the event loop, before publishing, so no result can slip by. Recent
        results for the ids are handed over at once, unless `recent` is False (the caller
        publishes again and wants the new answers).
        """
        waiter = ResultWaiter(request_ids, principal)
        if waiter.request_ids is not None and recent:
            if principal is not None:
                recent = [self._recent.get((principal, rid)) for rid in waiter.request_ids]
            else:  # a principal allowed to see every result asks by id
                recent = [r for r in self._recent.values() if r.request_id in waiter.request_ids]
            for result in recent:
                if result is not None:
                    waiter.offer(result)
        with self._registered(waiter):
            yield waiter

    @contextmanager
    def stream_waiter(
        self, stream_id: str, principal: str, from_sequence: int, gap_timeout: float
    ) -> Iterator[StreamWaiter]:
        """Register a waiter for the results of one stream of `principal` for the `with`
        block (see StreamWaiter); its recent results are handed over at once. Call it on
        the event loop."""
        waiter = StreamWaiter(stream_id, principal, from_sequence, gap_timeout)
        for result in list(self._recent.values()):
            if waiter.wants(result):
                waiter.offer(result)
        with self._registered(waiter):
            yield waiter

    @contextmanager
    def _registered(self, waiter: Waiter) -> Iterator[None]:
        self._waiters.add(waiter)
        try:
            yield
        finally:
            self._waiters.discard(waiter)

    def close(self) -> None:
        self._stop.set()
        if self._thread.is_alive():
            self._thread.join(timeout=5)
        self._consumer.close()

    def _serve(self) -> None:
        assert self._loop is not None
        while not self._stop.is_set():
            try:
                message = self._consumer.poll(0.2)
            except KafkaException as error:
                self._logger.warning("results listener: %s", error)
                continue
            if message is None:
                continue
            if message.error() is not None:
                self._logger.warning("results listener: %s", message.error())
                continue
            self.records_read += 1
            self.bytes_read += len(message.value() or b"") + len(message.key() or b"")
            try:
                result = records_pb2.AnalysisResult.FromString(message.value() or b"")
            except DecodeError:
                self._logger.warning(
                    "results listener: skipped a record that is not an AnalysisResult "
                    "(%s partition %d offset %d)",
                    message.topic(),
                    message.partition(),
                    message.offset(),
                )
                continue
            if not result.request_id:
                continue
            try:
                self._loop.call_soon_threadsafe(self._dispatch, result)
            except RuntimeError:  # the loop is closed: the server is gone
                return

    def _dispatch(self, result: records_pb2.AnalysisResult) -> None:
        key = (result.principal, result.request_id)
        self._recent[key] = result
        self._recent.move_to_end(key)
        if len(self._recent) > RECENT_RESULTS:
            self._recent.popitem(last=False)
        for waiter in list(self._waiters):
            if waiter.wants(result):
                waiter.offer(result)
