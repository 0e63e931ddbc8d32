"""The frames of video and live streams at the gRPC front: each SubmitStream call checks
that every stream it carries comes in sequence, and holds a bounded table of them.

A stream's frames are numbered 0, 1, 2, ... by the client. Within one call a stream's next
frame must be the one after its previous (a repeat or a gap is refused, typed, and the
stream goes on); its first frame in a call may have any number, so a client that lost its
connection resumes on a new call where it stopped. A stream ends with its last frame.
"""

from __future__ import annotations

import grpc

from facestream.requests import InvalidRequestError, check_stream_id
from facestream.v1 import records_pb2
from grpc_server.errors import RequestRejectedError
from grpc_server.validation import invalid_argument

# Streams one SubmitStream call may have open at once (begun, last frame not yet sent):
# the table of next sequence numbers stays small whatever a client sends.
MAX_STREAMS_PER_CALL = 64
# Sequence numbers fit a signed 64-bit integer, as Kafka's offsets and most consumers' ints.
MAX_SEQUENCE = 2**63 - 1


class StreamSequences:
    """The streams of one SubmitStream call, and the sequence number each expects next."""

    def __init__(self, max_streams: int = MAX_STREAMS_PER_CALL) -> None:
        self._max_streams = max_streams
        self._next: dict[str, int] = {}

    @property
    def open_streams(self) -> int:
        """Streams begun in this call whose last frame has not been sent."""
        return len(self._next)

    def admit(self, frame: records_pb2.StreamFrame) -> None:
        """Take `frame` as its stream's next frame; RequestRejectedError saying why not (the
        stream then still expects the frame it expected)."""
        try:
            check_stream_id(frame.stream_id)
        except InvalidRequestError as error:
            raise invalid_argument(error) from None
        stream, sequence = frame.stream_id, frame.sequence
        if sequence > MAX_SEQUENCE:
            raise _refused("frame.bad_sequence", f"sequence {sequence} is above {MAX_SEQUENCE}")
        expected = self._next.get(stream)
        if expected is None and len(self._next) >= self._max_streams:
            raise RequestRejectedError(
                grpc.StatusCode.RESOURCE_EXHAUSTED,
                "stream.too_many",
                f"this call already carries {self._max_streams} open streams; end one (its "
                "last frame) or use another call",
            )
        if expected is not None and sequence < expected:
            raise _refused(
                "frame.repeated",
                f"stream {stream!r}: sequence {sequence} was already sent; {expected} is next",
            )
        if expected is not None and sequence > expected:
            raise _refused(
                "frame.sequence_gap",
                f"stream {stream!r}: sequence {sequence} skips {sequence - expected} "
                f"frame(s); {expected} is next",
            )
        if frame.last:
            self._next.pop(stream, None)
        else:
            self._next[stream] = sequence + 1


def _refused(code: str, message: str) -> RequestRejectedError:
    return RequestRejectedError(grpc.StatusCode.INVALID_ARGUMENT, code, message)
