"""What one server takes on at once, so that its memory has a ceiling and no client takes
all of it: the image bytes held by calls in progress (an Analyze keeps its image until its
result arrives), the number of WatchResults streams, and the publishes each principal has
waiting. Beyond any of them, calls get RESOURCE_EXHAUSTED at once; the backlog belongs in
Kafka, not in the server. (The number of concurrent RPCs is capped by gRPC itself:
FACESTREAM_MAX_CONCURRENT_RPCS.)"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterator
from contextlib import contextmanager

import grpc

from grpc_server.validation import RequestRejectedError


class Admission:
    """Budgets of one server. Use from its event loop only (no lock needed)."""

    def __init__(
        self, max_image_bytes_held: int, max_watchers: int, max_publishes_per_principal: int
    ) -> None:
        self.max_image_bytes_held = max_image_bytes_held
        self.max_watchers = max_watchers
        self.max_publishes_per_principal = max_publishes_per_principal
        self.image_bytes_held = 0
        self.watchers = 0
        self.publishes: Counter[str] = Counter()

    @contextmanager
    def hold_image(self, size: int) -> Iterator[None]:
        """Count `size` image bytes as held for the `with` block, or refuse the call."""
        if self.image_bytes_held + size > self.max_image_bytes_held:
            raise RequestRejectedError(
                grpc.StatusCode.RESOURCE_EXHAUSTED,
                "server.overloaded",
                f"the server already holds {self.image_bytes_held} bytes of images for calls "
                f"in progress (limit {self.max_image_bytes_held}, "
                "FACESTREAM_MAX_HELD_IMAGE_BYTES); retry shortly",
            )
        self.image_bytes_held += size
        try:
            yield
        finally:
            self.image_bytes_held -= size

    @contextmanager
    def publishing(self, principal: str) -> Iterator[None]:
        """Count one publish of `principal` waiting for Kafka, or refuse it."""
        if self.publishes[principal] >= self.max_publishes_per_principal:
            raise RequestRejectedError(
                grpc.StatusCode.RESOURCE_EXHAUSTED,
                "principal.overloaded",
                f"principal {principal!r} already has {self.publishes[principal]} publishes "
                "waiting (FACESTREAM_MAX_IN_FLIGHT_PER_PRINCIPAL); retry shortly",
            )
        self.publishes[principal] += 1
        try:
            yield
        finally:
            self.publishes[principal] -= 1
            if not self.publishes[principal]:
                del self.publishes[principal]

    @contextmanager
    def watch(self) -> Iterator[None]:
        """Count one WatchResults stream for the `with` block, or refuse it."""
        if self.watchers >= self.max_watchers:
            raise RequestRejectedError(
                grpc.StatusCode.RESOURCE_EXHAUSTED,
                "server.too_many_watchers",
                f"the server already serves {self.watchers} WatchResults streams "
                "(FACESTREAM_MAX_WATCHERS); retry later",
            )
        self.watchers += 1
        try:
            yield
        finally:
            self.watchers -= 1
