"""Results for people (an aligned table, one row per face) and for programs (JSON lines)."""

from __future__ import annotations

import json
from collections.abc import Iterable, Sequence
from typing import Any

from google.protobuf.descriptor import FieldDescriptor
from google.protobuf.json_format import MessageToDict
from google.protobuf.message import Message

from apps.result_text import region_text
from facestream.kafka_records import status_name
from facestream.v1 import records_pb2

COLUMNS = ("image", "status", "face", "age", "gender", "emotion", "race", "region")


def _label(distribution: records_pb2.Distribution) -> str:
    if not distribution.dominant:
        return "-"
    return f"{distribution.dominant} {distribution.scores[distribution.dominant]:.0f}%"


def result_rows(image: str, result: records_pb2.AnalysisResult) -> list[tuple[str, ...]]:
    """Table rows for one result: a row per face, or one row saying why there is none."""
    status = status_name(result)
    if not result.faces:
        detail = f"{result.error.code}: {result.error.message}" if result.error.code else "-"
        return [(image, status, "-", "-", "-", "-", "-", detail)]
    rows = []
    for number, face in enumerate(result.faces, start=1):
        rows.append(
            (
                image,
                status,
                str(number),
                f"{face.age:.0f}" if face.HasField("age") else "-",
                _label(face.gender),
                _label(face.emotion),
                _label(face.race),
                region_text(face.region),
            )
        )
    return rows


def error_row(image: str, error: str) -> tuple[str, ...]:
    """The table row of an image that got no result, saying why."""
    return (image, "ERROR", "-", "-", "-", "-", "-", error)


def format_table(rows: Sequence[Sequence[str]], header: Sequence[str] = COLUMNS) -> str:
    """Rows as left-aligned columns under `header`."""
    widths = [max(len(str(cell)) for cell in column) for column in zip(header, *rows, strict=True)]
    lines = [header, ["-" * width for width in widths], *rows]
    return "\n".join(
        "  ".join(str(cell).ljust(width) for cell, width in zip(line, widths, strict=True)).rstrip()
        for line in lines
    )


_64_BIT = {
    FieldDescriptor.TYPE_INT64,
    FieldDescriptor.TYPE_UINT64,
    FieldDescriptor.TYPE_SINT64,
    FieldDescriptor.TYPE_FIXED64,
    FieldDescriptor.TYPE_SFIXED64,
}


def message_json(message: Message) -> dict[str, Any]:
    """`message` in protobuf's JSON mapping, with every field (zeros and false included, so
    that frame 0 has its `attributesFrom`) and 64-bit integers as numbers, not the strings
    the mapping writes them as (sequences and positions stay far below 2**53)."""
    found = MessageToDict(message, always_print_fields_with_no_presence=True)
    _as_numbers(message, found)
    return found


def _as_numbers(message: Message, found: dict[str, Any]) -> None:
    for field in message.DESCRIPTOR.fields:
        if field.json_name not in found:
            continue
        value = getattr(message, field.name)
        repeated = field.is_repeated
        if field.type in _64_BIT:
            found[field.json_name] = [int(v) for v in value] if repeated else int(value)
        elif field.message_type is not None and not field.message_type.GetOptions().map_entry:
            pairs = (
                zip(value, found[field.json_name], strict=True)
                if repeated
                else [(value, found[field.json_name])]
            )
            for inner, inner_found in pairs:
                _as_numbers(inner, inner_found)


def _faces_json(faces: Iterable[records_pb2.Face], embeddings: bool) -> list[dict[str, Any]]:
    # protobuf's JSON mapping writes bytes as base64: the embedding's 16 KiB become one
    # string; `embeddings=False` leaves the key out.
    found = [message_json(face) for face in faces]
    if not embeddings:
        for face in found:
            face.pop("embedding", None)
    return found


def result_json(image: str, result: records_pb2.AnalysisResult, embeddings: bool = True) -> str:
    """One JSON line: the result as protobuf's JSON mapping, plus the image it is for;
    each face's embedding as base64 of its little-endian float32 values, or left out
    when not `embeddings`."""
    found = message_json(result)
    found["faces"] = _faces_json(result.faces, embeddings)
    return json.dumps({"image": image, **found}, sort_keys=True)


def frame_json(
    frame: records_pb2.StreamFrame,
    result: records_pb2.AnalysisResult | None,
    error: str = "",
    embeddings: bool = True,
) -> str:
    """One JSON line for a frame of a stream: its place (stream id, sequence, frame index,
    position in ms, last), its status and faces (regions, attributes, tracks, embeddings
    unless not `embeddings`), the summaries of the tracks it ended, or why it has no
    result."""
    place = {
        "stream_id": frame.stream_id,
        "sequence": frame.sequence,
        "frame_index": frame.frame_index,
        "position_ms": frame.position_ms,
        "last": frame.last,
    }
    if result is None:
        return json.dumps({**place, "status": "REFUSED", "error": error, "faces": []})
    return json.dumps(
        {
            **place,
            "request_id": result.request_id,
            "status": status_name(result),
            "error": f"{result.error.code}: {result.error.message}" if result.error.code else "",
            "faces": _faces_json(result.faces, embeddings),
            "ended_tracks": [message_json(track) for track in result.ended_tracks],
            "synthetic_weights": result.synthetic_weights,
        }
    )
