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


# One row a code: `code | comes with | means`; an indented line continues the meaning.
_CATALOG = """
image.empty | `INVALID_ARGUMENT` | the image has no bytes
image.not_an_image | `INVALID_ARGUMENT` | the bytes are no image format facestream reads
image.unsupported_format | `INVALID_ARGUMENT` | an image, in a format other than JPEG, PNG,
    WebP, BMP or TIFF
image.truncated | `INVALID_ARGUMENT` | the image's data ends before its header says
image.undecodable | result `INVALID_IMAGE` | the header passed, the pixels could not be decoded
image.too_large | `RESOURCE_EXHAUSTED` | more bytes than `FACESTREAM_MAX_IMAGE_BYTES`
image.too_many_pixels | `RESOURCE_EXHAUSTED` | more pixels than `FACESTREAM_MAX_PIXELS` (from
    the header, nothing decoded)
request.bad_id | `INVALID_ARGUMENT` | a request id other than 1-128 of `A-Za-z0-9._:-`
request.unknown_action | `INVALID_ARGUMENT` | an action facestream does not know
request.action_disabled | `INVALID_ARGUMENT` | an action not in `FACESTREAM_ACTIONS`
request.unknown_detector | `INVALID_ARGUMENT` | a detector backend DeepFace does not know
request.detector_unavailable | `INVALID_ARGUMENT` | a detector whose files are not installed
    (`facestream models download --detectors`)
frame.needs_stream | `INVALID_ARGUMENT` | a frame sent to `Submit` or `Analyze`
frame.bad_stream_id | `INVALID_ARGUMENT` | a stream id other than 1-128 of `A-Za-z0-9._:-`
frame.bad_sequence | `INVALID_ARGUMENT` | a frame's sequence number above the maximum
frame.repeated | `INVALID_ARGUMENT` | a sequence number the stream already had
frame.sequence_gap | `INVALID_ARGUMENT` | a sequence number that skips frames
stream.too_many | `RESOURCE_EXHAUSTED` | more open streams in one `SubmitStream` call
stream.read_failed | `INTERNAL` | the server could not read the call's requests
auth.unauthenticated | `UNAUTHENTICATED` | no or an unknown credential
auth.permission_denied | `PERMISSION_DENIED` | the principal lacks the method's scope
server.overloaded | `RESOURCE_EXHAUSTED` | a server-wide cap reached (held image bytes,
    publishes in flight, watchers): retry shortly
principal.overloaded | `RESOURCE_EXHAUSTED` | the principal's share of a cap reached: retry
    shortly
broker.full | `RESOURCE_EXHAUSTED` | the embedded broker's `FACESTREAM_EMBEDDED_BROKER_BUDGET`
    reached: restart `facestream up`, or use a real Kafka
kafka.unavailable | `UNAVAILABLE` | Kafka unreachable, or its acknowledgement late: retry with
    the same request id
result.timeout | `DEADLINE_EXCEEDED` | accepted, the result not ready in time: `WatchResults`
    gets it
watch.overflow | `RESOURCE_EXHAUSTED` | a watcher more than 10,000 results behind
detect.failed | result `FAILED` | face detection raised on this image
analyze.failed | result `FAILED` | the attribute models raised on this face
result.too_large | result `FAILED` | the result would not fit in one Kafka record
request.poison | result `FAILED`, dead letter | the record crashed the dataflow
    `FACESTREAM_MAX_ATTEMPTS` times: quarantined
record.unparseable | dead letter | a record on the requests topic, not ours
gallery.bad_name | `INVALID_ARGUMENT` | a gallery name other than 1-64 of `A-Za-z0-9._-`
subject.bad_name | `INVALID_ARGUMENT` | a subject name other than 1-128 printable characters
    without leading or trailing spaces
identify.bad_options | `INVALID_ARGUMENT` | `identify.top_k` above 100, or a threshold outside
    (0, 2]
enroll.bad_request | `INVALID_ARGUMENT` | an enrolment without images, or with more than 16
enroll.face_count | `INVALID_ARGUMENT`; result `FAILED` | an enrolment image without exactly
    one face (the message says how many)
enroll.forgotten | `FAILED_PRECONDITION`; result `FAILED` | an enrolment accepted before its
    subject or gallery was forgotten, or a forgotten face enrolled again: nothing written
verify.bad_request | `INVALID_ARGUMENT` | a `Verify` without another image or a subject
verify.no_face | `INVALID_ARGUMENT` | an image of a `Verify` has no face
forget.bad_request | `INVALID_ARGUMENT` | a `Forget` naming both a subject and a face
gallery.unknown | `NOT_FOUND`; a face's `identity.error` | a gallery the caller does not have
subject.unknown | `NOT_FOUND` | a subject the gallery does not have (with faces)
face.unknown | `NOT_FOUND` | an enrolled face id the caller does not have
gallery.empty | `FAILED_PRECONDITION`; a face's `identity.error` | a gallery whose faces were all
    forgotten
gallery.unavailable | `UNAVAILABLE`; result `FAILED`; a face's `identity.error` | the gallery
    store is unreachable or not configured: retry (an enrolment with the same request id)
gallery.failed | `INTERNAL`; result `FAILED`; a face's `identity.error` | the gallery store
    answered with an error (logged)
"""


def _parse(catalog: str) -> tuple[ErrorCode, ...]:
    rows: list[list[str]] = []
    for line in catalog.strip("\n").splitlines():
        if line.startswith(" "):
            rows[-1][-1] += " " + line.strip()
        else:
            rows.append([part.strip() for part in line.split(" | ")])
    return tuple(ErrorCode(*row) for row in rows)


ERROR_CODES = _parse(_CATALOG)


def catalog_table() -> str:
    """The error codes as the gRPC API page's markdown table."""
    rows = ["| code | comes with | means |", "|---|---|---|"]
    rows += [f"| `{e.code}` | {e.where} | {e.meaning} |" for e in ERROR_CODES]
    return "\n".join(rows)


if __name__ == "__main__":
    print(catalog_table())
