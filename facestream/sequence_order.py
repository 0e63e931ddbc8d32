"""Items of one stream handed out in sequence order: the rule that WatchStream's waiter (at
the gRPC front) and the dataflow's tracker (before it follows faces) share.

Items come numbered 0, 1, 2, ... but not always in that order. `SequenceOrder` holds the
ones that come early until those before them are out, and hands each sequence out once.
A missing item is waited for: the caller decides how long (`gap_since` says since when it
has been missing) and then `skip_gap()` gives up on it. An item whose turn has passed (it
was handed out, or skipped) is refused by `offer` as late, so the caller can answer it
some other way. Pure: no clock, no I/O; the callers bring the time.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from enum import Enum
from typing import Generic, TypeVar

Item = TypeVar("Item")


class Offered(Enum):
    """What `SequenceOrder.offer` did with an item."""

    HELD = "held"  # kept until its turn
    LATE = "late"  # its turn has passed: handed out or skipped already
    REPEATED = "repeated"  # an item of this sequence is held already
    FULL = "full"  # the buffer holds `max_buffered` items: not kept


@dataclass
class SequenceOrder(Generic[Item]):
    """The next sequence to hand out and the items held until their turn."""

    next: int
    max_buffered: int
    buffer: dict[int, Item] = field(default_factory=dict)
    gap_since: float | None = None  # when the expected item was first found missing
    skipped: int = 0  # sequences given up on

    @property
    def ready(self) -> bool:
        """True when the expected item is here."""
        return self.next in self.buffer

    @property
    def waiting_on_gap(self) -> bool:
        """True when later items are held but the expected one is missing."""
        return bool(self.buffer) and not self.ready

    def offer(self, sequence: int, item: Item) -> Offered:
        """Hold `item` until its turn, or say why not."""
        if sequence < self.next:
            return Offered.LATE
        if sequence in self.buffer:
            return Offered.REPEATED
        if len(self.buffer) >= self.max_buffered:
            return Offered.FULL
        self.buffer[sequence] = item
        return Offered.HELD

    def pop(self) -> Item:
        """The expected item (check `ready` first); the one after it is expected next."""
        item = self.buffer.pop(self.next)
        self.next += 1
        self.gap_since = None
        return item

    def pop_ready(self) -> list[Item]:
        """Every item that is next in turn, in order."""
        items = []
        while self.ready:
            items.append(self.pop())
        return items

    def note_gap(self, now: float) -> float:
        """Record that the expected item is missing at `now`; since when it is missing."""
        if self.gap_since is None:
            self.gap_since = now
        return self.gap_since

    def skip_gap(self) -> int:
        """Give up on the items before the earliest one held; how many were skipped."""
        earliest = min(self.buffer)
        skipped = earliest - self.next
        self.skipped += skipped
        self.next = earliest
        self.gap_since = None
        return skipped
