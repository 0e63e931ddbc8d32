"""What one server takes on at once, so that its memory has a ceiling: the image bytes held
by calls in progress (an Analyze keeps its image until its result arrives) and the number
of WatchResults streams. Beyond either, calls get RESOURCE_EXHAUSTED at once; the backlog
belongs in Kafka, not in the server. (The number of concurrent RPCs is capped by gRPC
itself: FACESTREAM_MAX_CONCURRENT_RPCS.)"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

import grpc

from grpc_server.validation import RequestRejectedError


class Admission:
    """Budgets of one server. Use from its event loop only (no lock needed)."""

    def __init__(self, max_image_bytes_held: int, max_watchers: int) -> None:
        self.max_image_bytes_held = max_image_bytes_held
        self.max_watchers = max_watchers
        self.image_bytes_held = 0
        self.watchers = 0

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
