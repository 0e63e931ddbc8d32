"""What one server takes on at once, so that its memory has a ceiling and no client takes
all of it: the image bytes held by calls in progress (an Analyze keeps its image until its
result arrives), the WatchResults streams, the calls running and the publishes waiting on
Kafka. Each has a share per principal, so one principal flooding any of them leaves the
others served, and (but for publishes and calls, capped by the publisher and by gRPC
itself) a ceiling for the whole server. Beyond either, calls get RESOURCE_EXHAUSTED at
once; the backlog belongs in Kafka, not in the server."""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterator
from contextlib import AbstractContextManager, contextmanager
from dataclasses import dataclass

import grpc

from grpc_server.errors import RequestRejectedError


@dataclass(frozen=True)
class Shares:
    """How much of each budget one principal may hold at once."""

    image_bytes: int
    watchers: int
    calls: int
    publishes: int


class _Budget:
    """One kind of thing held: by principal, with a share each and a server-wide ceiling."""

    def __init__(
        self,
        what: str,
        share: int,
        share_setting: str,
        ceiling: int | None = None,
        ceiling_setting: str = "",
    ) -> None:
        self.what = what
        self.share = share
        self.share_setting = share_setting
        self.ceiling = ceiling
        self.ceiling_setting = ceiling_setting
        self.total = 0
        self.held: Counter[str] = Counter()

    @contextmanager
    def hold(self, principal: str, amount: int = 1) -> Iterator[None]:
        """Count `amount` as held by `principal` for the `with` block, or refuse the call."""
        if self.ceiling is not None and self.total + amount > self.ceiling:
            raise RequestRejectedError(
                grpc.StatusCode.RESOURCE_EXHAUSTED,
                "server.overloaded",
                f"the server already holds {self.total} {self.what} (limit {self.ceiling}, "
                f"{self.ceiling_setting}); retry shortly",
            )
        if self.held[principal] + amount > self.share:
            raise RequestRejectedError(
                grpc.StatusCode.RESOURCE_EXHAUSTED,
                "principal.overloaded",
                f"principal {principal!r} already holds {self.held[principal]} {self.what} "
                f"(its share is {self.share}, {self.share_setting}); retry shortly",
            )
        self.total += amount
        self.held[principal] += amount
        try:
            yield
        finally:
            self.total -= amount
            self.held[principal] -= amount
            if not self.held[principal]:
                del self.held[principal]


class Admission:
    """Budgets of one server. Use from its event loop only (no lock needed)."""

    def __init__(self, max_image_bytes_held: int, max_watchers: int, shares: Shares) -> None:
        self.images = _Budget(
            "bytes of images for calls in progress",
            shares.image_bytes,
            "FACESTREAM_MAX_HELD_IMAGE_BYTES_PER_PRINCIPAL",
            max_image_bytes_held,
            "FACESTREAM_MAX_HELD_IMAGE_BYTES",
        )
        self.watchers = _Budget(
            "WatchResults streams",
            shares.watchers,
            "FACESTREAM_MAX_WATCHERS_PER_PRINCIPAL",
            max_watchers,
            "FACESTREAM_MAX_WATCHERS",
        )
        # The server's ceilings: gRPC's FACESTREAM_MAX_CONCURRENT_RPCS and the publisher's
        # FACESTREAM_MAX_IN_FLIGHT.
        self.calls = _Budget("calls", shares.calls, "FACESTREAM_MAX_CALLS_PER_PRINCIPAL")
        self.publishes = _Budget(
            "publishes waiting on Kafka",
            shares.publishes,
            "FACESTREAM_MAX_IN_FLIGHT_PER_PRINCIPAL",
        )

    def hold_image(self, principal: str, size: int) -> AbstractContextManager[None]:
        """Count `size` image bytes of `principal` as held for the `with` block."""
        return self.images.hold(principal, size)

    def watch(self, principal: str) -> AbstractContextManager[None]:
        """Count one WatchResults stream of `principal` for the `with` block."""
        return self.watchers.hold(principal)

    def call(self, principal: str) -> AbstractContextManager[None]:
        """Count one running call of `principal` for the `with` block."""
        return self.calls.hold(principal)

    def publishing(self, principal: str) -> AbstractContextManager[None]:
        """Count one publish of `principal` waiting for Kafka for the `with` block."""
        return self.publishes.hold(principal)
