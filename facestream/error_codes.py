"""Every error code facestream gives, in one list: what a client branches on. A refused
call carries its code as `ErrorInfo.reason` (with its gRPC status), a `SubmitStream` reply
as `error.code`, a result as `error.code` (with its status), a dead letter in its
`reason` header. The gRPC API page's catalog is generated from this list
(`python -m facestream.error_codes`), and a test keeps the two, and the code, equal."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class ErrorCode:
    code: str
    where: str  # the gRPC status of a refused call, or the result status it comes with
    meaning: str


INVALID = "`INVALID_ARGUMENT`"
EXHAUSTED = "`RESOURCE_EXHAUSTED`"

ERROR_CODES = (
    ErrorCode("image.empty", INVALID, "the image has no bytes"),
    ErrorCode("image.not_an_image", INVALID, "the bytes are no image format facestream reads"),
    ErrorCode(
        "image.unsupported_format",
        INVALID,
        "an image, in a format other than JPEG, PNG, WebP, BMP or TIFF",
    ),
    ErrorCode("image.truncated", INVALID, "the image's data ends before its header says"),
    ErrorCode(
        "image.undecodable",
        "result `INVALID_IMAGE`",
        "the header passed, the pixels could not be decoded",
    ),
    ErrorCode("image.too_large", EXHAUSTED, "more bytes than `FACESTREAM_MAX_IMAGE_BYTES`"),
    ErrorCode(
        "image.too_many_pixels",
        EXHAUSTED,
        "more pixels than `FACESTREAM_MAX_PIXELS` (from the header, nothing decoded)",
    ),
    ErrorCode("request.bad_id", INVALID, "a request id other than 1-128 of `A-Za-z0-9._:-`"),
    ErrorCode("request.unknown_action", INVALID, "an action facestream does not know"),
    ErrorCode("request.action_disabled", INVALID, "an action not in `FACESTREAM_ACTIONS`"),
    ErrorCode("request.unknown_detector", INVALID, "a detector backend DeepFace does not know"),
    ErrorCode(
        "request.detector_unavailable",
        INVALID,
        "a detector whose files are not installed (`facestream models download --detectors`)",
    ),
    ErrorCode("frame.needs_stream", INVALID, "a frame sent to `Submit` or `Analyze`"),
    ErrorCode("frame.bad_stream_id", INVALID, "a stream id other than 1-128 of `A-Za-z0-9._:-`"),
    ErrorCode("frame.bad_sequence", INVALID, "a frame's sequence number above the maximum"),
    ErrorCode("frame.repeated", INVALID, "a sequence number the stream already had"),
    ErrorCode("frame.sequence_gap", INVALID, "a sequence number that skips frames"),
    ErrorCode("stream.too_many", EXHAUSTED, "more open streams in one `SubmitStream` call"),
    ErrorCode("stream.read_failed", "`INTERNAL`", "the server could not read the call's requests"),
    ErrorCode("auth.unauthenticated", "`UNAUTHENTICATED`", "no or an unknown credential"),
    ErrorCode(
        "auth.permission_denied", "`PERMISSION_DENIED`", "the principal lacks the method's scope"
    ),
    ErrorCode(
        "server.overloaded",
        EXHAUSTED,
        "a server-wide cap reached (held image bytes, "
        "publishes in flight, watchers): retry shortly",
    ),
    ErrorCode(
        "principal.overloaded",
        EXHAUSTED,
        "the principal's share of a cap reached: retry shortly",
    ),
    ErrorCode(
        "broker.full",
        EXHAUSTED,
        "the embedded broker's `FACESTREAM_EMBEDDED_BROKER_BUDGET` "
        "reached: restart `facestream up`, or use a real Kafka",
    ),
    ErrorCode(
        "kafka.unavailable",
        "`UNAVAILABLE`",
        "Kafka unreachable, or its acknowledgement late: retry with the same request id",
    ),
    ErrorCode(
        "result.timeout",
        "`DEADLINE_EXCEEDED`",
        "accepted, the result not ready in time: `WatchResults` gets it",
    ),
    ErrorCode("watch.overflow", EXHAUSTED, "a watcher more than 10,000 results behind"),
    ErrorCode("detect.failed", "result `FAILED`", "face detection raised on this image"),
    ErrorCode("analyze.failed", "result `FAILED`", "the attribute models raised on this face"),
    ErrorCode(
        "result.too_large", "result `FAILED`", "the result would not fit in one Kafka record"
    ),
    ErrorCode(
        "request.poison",
        "result `FAILED`, dead letter",
        "the record crashed the dataflow `FACESTREAM_MAX_ATTEMPTS` times: quarantined",
    ),
    ErrorCode("record.unparseable", "dead letter", "a record on the requests topic, not ours"),
)


def catalog_table() -> str:
    """The error codes as the gRPC API page's markdown table."""
    rows = ["| code | comes with | means |", "|---|---|---|"]
    rows += [f"| `{e.code}` | {e.where} | {e.meaning} |" for e in ERROR_CODES]
    return "\n".join(rows)


if __name__ == "__main__":
    print(catalog_table())
