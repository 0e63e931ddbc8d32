"""The embedded broker's byte budget, kept by the server that publishes to it.

The embedded broker (Tansu in memory) keeps every record until it stops: no retention, no
DeleteRecords. So the server counts what the broker holds because of facestream: the
requests it published and the results it read back (the dataflow writes them), each with
the broker's own cost per record. A request is refused with `broker.full` when it would take
the count past the budget; each request accepted and not yet answered keeps room for its
result, so that what was accepted is still answered. Track summaries and dead letters are
not counted: a few per stream, they fit in the per-record allowance.
"""

from __future__ import annotations

import logging
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Protocol

import grpc

from facestream.byte_sizes import size_text
from grpc_server.errors import RequestRejectedError

# What the embedded broker holds per record beyond its key and value (batch and record
# headers, its index): measured as its resident memory's growth per record written.
RECORD_OVERHEAD_BYTES = 512
# Room kept for each unanswered request's result before any result was read.
FIRST_RESULT_ALLOWANCE_BYTES = 2048


class ResultCounts(Protocol):
    """What the results listener has read so far (from its own thread)."""

    records_read: int
    bytes_read: int


class BrokerBudget:
    """Bytes the embedded broker holds for this server, against `budget` bytes; a warning
    is logged once they pass `warn_at` of it.

    Use `writing` around each publish, on the server's event loop (no lock needed); the
    results listener's counts are read as they stand.
    """

    def __init__(
        self, budget: int, warn_at: float, results: ResultCounts, logger: logging.Logger
    ) -> None:
        self.budget = budget
        self.warn_at = warn_at
        self._results = results
        self._logger = logger
        self.requests_published = 0
        self.request_bytes = 0
        self._reserved = 0  # publishes under way
        self.refusals = 0
        self._warned = False

    @property
    def held(self) -> int:
        """Bytes the broker holds for facestream as counted: requests and results, each
        with the broker's per-record cost."""
        results = self._results
        records = self.requests_published + results.records_read
        return self.request_bytes + results.bytes_read + records * RECORD_OVERHEAD_BYTES

    @property
    def unanswered(self) -> int:
        """Requests published whose result has not been read (never below 0: results come
        at least once, a duplicate counts as one more)."""
        return max(0, self.requests_published - self._results.records_read)

    @property
    def result_allowance(self) -> int:
        """Room kept for one result: the mean of those read so far, with its overhead."""
        results = self._results
        mean = (
            results.bytes_read / results.records_read
            if results.records_read
            else FIRST_RESULT_ALLOWANCE_BYTES
        )
        return int(mean) + RECORD_OVERHEAD_BYTES

    @property
    def committed(self) -> int:
        """What the broker will hold once every accepted request is answered, and the
        publishes under way."""
        return self.held + self._reserved + self.unanswered * self.result_allowance

    @contextmanager
    def writing(self, value_bytes: int, request_id: str) -> Iterator[None]:
        """Count one request of `value_bytes` (key included) once the `with` block publishes
        it; RequestRejectedError(broker.full) at once when it, with its result, would pass
        the budget. A publish that fails is not counted."""
        cost = value_bytes + RECORD_OVERHEAD_BYTES
        if self.committed + cost + self.result_allowance > self.budget:
            self.refusals += 1
            raise RequestRejectedError(
                grpc.StatusCode.RESOURCE_EXHAUSTED,
                "broker.full",
                f"the embedded broker is full: it holds {size_text(self.held)} of its "
                f"{size_text(self.budget)} budget (FACESTREAM_EMBEDDED_BROKER_BUDGET) and keeps "
                f"every record in memory; request {request_id} was not accepted. Requests "
                "accepted before are still answered. Restart `facestream up` to start afresh, "
                "or use a real Kafka (FACESTREAM_KAFKA_BOOTSTRAP) for a stream that never stops.",
                request_id,
            )
        self._reserved += cost
        try:
            yield
        finally:
            self._reserved -= cost
        self.requests_published += 1
        self.request_bytes += value_bytes
        self._warn_once()

    def _warn_once(self) -> None:
        if not self._warned and self.held >= self.warn_at * self.budget:
            self._warned = True
            self._logger.warning(
                "the embedded broker holds %s, %.0f%% of its %s budget "
                "(FACESTREAM_EMBEDDED_BROKER_BUDGET): past it new images and frames are refused "
                "(broker.full). Restart `facestream up` to start afresh, or use a real Kafka "
                "(FACESTREAM_KAFKA_BOOTSTRAP).",
                size_text(self.held),
                100 * self.held / self.budget,
                size_text(self.budget),
            )
