"""WatchStream's waiter: the results of one stream, handed out in sequence order.

The dataflow answers a stream's frames in any order (a frame without faces is done before
the one before it, whose faces are still being analysed), and at least once. The waiter
keeps the results that come early until those before them are out, hands out each frame
once, and ends after the stream's last frame. A frame whose result does not come (its
record was never published: Kafka refused it) is skipped after `gap_timeout` seconds, so a
watcher never waits forever on a hole.
"""

from __future__ import annotations

import asyncio
import time

from facestream.v1 import records_pb2

# Results a waiter holds: ahead of a missing frame (beyond it the missing frame is
# skipped), or not yet read by a slow watcher (beyond it the watch ends, overflowed).
MAX_BUFFERED = 10_000


class WaiterOverflowError(Exception):
    """The waiter's reader fell too many results behind."""


class StreamWaiter:
    """The results of stream `stream_id` of `principal`, from `from_sequence` on."""

    def __init__(
        self,
        stream_id: str,
        principal: str,
        from_sequence: int,
        gap_timeout: float,
        max_buffered: int = MAX_BUFFERED,
    ) -> None:
        self.stream_id = stream_id
        self.principal = principal
        self.gap_timeout = gap_timeout
        self.skipped = 0  # frames given up on (their result never came in time)
        self._max_buffered = max_buffered
        self._next = from_sequence
        self._buffer: dict[int, records_pb2.AnalysisResult] = {}
        self._arrived = asyncio.Event()
        self._gap_since: float | None = None  # when the frame expected next was first missed
        self._ended = False
        self._overflowed = False

    @property
    def complete(self) -> bool:
        """True once the stream's last frame was handed out."""
        return self._ended

    @property
    def has_result(self) -> bool:
        """True when the frame expected next is here and `next` returns at once."""
        return self._next in self._buffer

    def wants(self, result: records_pb2.AnalysisResult) -> bool:
        """Whether `result` is a frame of this waiter's stream."""
        return (
            result.principal == self.principal
            and result.HasField("frame")
            and result.frame.stream_id == self.stream_id
        )

    def offer(self, result: records_pb2.AnalysisResult) -> None:
        """Keep `result` until its turn, unless its frame was handed out or is held already."""
        sequence = result.frame.sequence
        if self._ended or sequence < self._next or sequence in self._buffer:
            return
        if len(self._buffer) >= self._max_buffered:
            if not self.has_result:
                self._skip_gap()  # full of frames after a missing one: give up on it
            # Full of frames ready to go: the watcher does not keep up. It gets what is
            # held, then its call ends (overflowed), rather than holding more.
            self._overflowed = True
            self._arrived.set()
            return
        self._buffer[sequence] = result
        self._arrived.set()

    async def next(self, timeout: float | None = None) -> records_pb2.AnalysisResult:
        """The next frame's result, in order; TimeoutError after `timeout` seconds,
        WaiterOverflowError when the watcher fell too far behind."""
        return await asyncio.wait_for(self._next_in_order(), timeout)

    async def _next_in_order(self) -> records_pb2.AnalysisResult:
        if self._overflowed and not self.has_result:  # what it holds goes out first
            raise WaiterOverflowError(
                f"more than {self._max_buffered} results of the stream were waiting unread"
            )
        while self._next not in self._buffer:
            wait = None
            if self._buffer:  # later frames are here: the next one is missing, for now
                now = time.monotonic()
                self._gap_since = self._gap_since or now
                wait = self._gap_since + self.gap_timeout - now
                if wait <= 0:
                    self._skip_gap()
                    continue
            self._arrived.clear()
            try:
                await asyncio.wait_for(self._arrived.wait(), wait)
            except TimeoutError:
                continue
        result = self._buffer.pop(self._next)
        self._next += 1
        self._gap_since = None
        self._ended = result.frame.last
        return result

    def _skip_gap(self) -> None:
        """Give up on the frames before the earliest one held."""
        earliest = min(self._buffer)
        self.skipped += earliest - self._next
        self._next = earliest
        self._gap_since = None
