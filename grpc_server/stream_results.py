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

from facestream.sequence_order import Offered, SequenceOrder
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
        self._order: SequenceOrder[records_pb2.AnalysisResult] = SequenceOrder(
            from_sequence, max_buffered
        )
        self._arrived = asyncio.Event()
        self._ended = False
        self._overflowed = False

    @property
    def skipped(self) -> int:
        """Frames given up on (their result never came in time)."""
        return self._order.skipped

    @property
    def complete(self) -> bool:
        """True once the stream's last frame was handed out."""
        return self._ended

    @property
    def has_result(self) -> bool:
        """True when the frame expected next is here and `next` returns at once."""
        return self._order.ready

    def wants(self, result: records_pb2.AnalysisResult) -> bool:
        """Whether `result` is a frame of this waiter's stream."""
        return (
            result.principal == self.principal
            and result.HasField("frame")
            and result.frame.stream_id == self.stream_id
        )

    def offer(self, result: records_pb2.AnalysisResult) -> None:
        """Keep `result` until its turn, unless its frame was handed out or is held already."""
        if self._ended:
            return
        offered = self._order.offer(result.frame.sequence, result)
        if offered is Offered.FULL:
            if not self.has_result:
                self._order.skip_gap()  # full of frames after a missing one: give up on it
            # Full of frames ready to go: the watcher does not keep up. It gets what is
            # held, then its call ends (overflowed), rather than holding more.
            self._overflowed = True
        if offered in (Offered.HELD, Offered.FULL):
            self._arrived.set()

    async def next(self, timeout: float | None = None) -> records_pb2.AnalysisResult:
        """The next frame's result, in order; TimeoutError after `timeout` seconds,
        WaiterOverflowError when the watcher fell too far behind."""
        return await asyncio.wait_for(self._next_in_order(), timeout)

    async def _next_in_order(self) -> records_pb2.AnalysisResult:
        order = self._order
        if self._overflowed and not order.ready:  # what it holds goes out first
            raise WaiterOverflowError(
                f"more than {order.max_buffered} results of the stream were waiting unread"
            )
        while not order.ready:
            wait = None
            if order.waiting_on_gap:  # later frames are here: the next one is missing, for now
                now = time.monotonic()
                wait = order.note_gap(now) + self.gap_timeout - now
                if wait <= 0:
                    order.skip_gap()
                    continue
            self._arrived.clear()
            try:
                await asyncio.wait_for(self._arrived.wait(), wait)
            except TimeoutError:
                continue
        result = order.pop()
        self._ended = result.frame.last
        return result
