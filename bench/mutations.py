"""Hostile inputs for the fuzz scenario: mutated images for the gRPC front, and mutated
records for the requests topic. Seeded, so a failing input can be made again."""

from __future__ import annotations

from collections.abc import Sequence

import cv2
import numpy as np

from facestream.kafka_records import image_submitted
from facestream.v1 import records_pb2

# The formats facestream accepts, as OpenCV writes them.
SEED_FORMATS = (".jpg", ".png", ".webp", ".bmp", ".tiff")


def seed_images(picture: np.ndarray) -> list[bytes]:
    """The picture (BGR) encoded in each accepted format."""
    encoded = []
    for suffix in SEED_FORMATS:
        ok, data = cv2.imencode(suffix, picture)
        if not ok:
            raise ValueError(f"OpenCV could not encode {suffix}")
        encoded.append(data.tobytes())
    return encoded


def _flip_bits(data: bytes, rng: np.random.Generator) -> bytes:
    mutated = bytearray(data)
    for _ in range(int(rng.integers(1, 16))):
        position = int(rng.integers(0, len(mutated)))
        mutated[position] ^= 1 << int(rng.integers(0, 8))
    return bytes(mutated)


def _cut(data: bytes, rng: np.random.Generator) -> bytes:
    return data[: int(rng.integers(0, len(data)))]


def _splice(data: bytes, other: bytes, rng: np.random.Generator) -> bytes:
    return data[: int(rng.integers(0, len(data)))] + other[int(rng.integers(0, len(other))) :]


def _mutate_header(data: bytes, rng: np.random.Generator) -> bytes:
    # Sizes, lengths and offsets live in the first bytes of every format.
    mutated = bytearray(data)
    for _ in range(int(rng.integers(1, 6))):
        position = int(rng.integers(0, min(64, len(mutated))))
        mutated[position] = int(rng.integers(0, 256))
    return bytes(mutated)


def _repeat_chunk(data: bytes, rng: np.random.Generator) -> bytes:
    start = int(rng.integers(0, len(data)))
    chunk = data[start : start + int(rng.integers(1, 512))]
    return data[:start] + chunk * int(rng.integers(2, 50)) + data[start:]


def mutated_images(seeds: Sequence[bytes], count: int, seed: int = 0) -> list[bytes]:
    """`count` mutants of the seed images: bit flips, cuts, splices of two images, header
    bytes overwritten, repeated chunks; one kind after another."""
    rng = np.random.default_rng(seed)
    mutants = []
    for index in range(count):
        data = seeds[index % len(seeds)]
        kind = index // len(seeds) % 5
        if kind == 0:
            mutants.append(_flip_bits(data, rng))
        elif kind == 1:
            mutants.append(_cut(data, rng))
        elif kind == 2:
            mutants.append(_splice(data, seeds[int(rng.integers(0, len(seeds)))], rng))
        elif kind == 3:
            mutants.append(_mutate_header(data, rng))
        else:
            mutants.append(_repeat_chunk(data, rng))
    return mutants


def mutated_records(
    images: Sequence[bytes], count: int, seed: int = 0
) -> list[tuple[bytes | None, bytes | None]]:
    """`count` (key, value) records for the requests topic, keyed `fuzz-record-N`: random
    bytes, no value, another message type, flipped protobuf bytes, bad request ids, unknown
    actions and detectors, a thousand actions, extreme timestamps, empty and junk images."""
    rng = np.random.default_rng(seed)
    records: list[tuple[bytes | None, bytes | None]] = []
    for index in range(count):
        request_id = f"fuzz-record-{index}"
        image = images[index % len(images)]
        valid = image_submitted(request_id, image)
        kind = index % 12
        if kind == 0:
            value: bytes | None = rng.bytes(int(rng.integers(1, 2048)))
        elif kind == 1:
            value = None
        elif kind == 2:
            value = records_pb2.AnalysisResult(request_id=request_id).SerializeToString()
        elif kind == 3:
            value = _flip_bits(valid.SerializeToString(), rng)
        elif kind == 4:
            valid.request_id = "has spaces and é" if index % 2 else "x" * 300
            value = valid.SerializeToString()
        elif kind == 5:
            valid.actions.extend(["smile", "age"])
            value = valid.SerializeToString()
        elif kind == 6:
            valid.detector_backend = "yolo-" + "x" * 1000
            value = valid.SerializeToString()
        elif kind == 7:
            valid.actions.extend(["emotion"] * 1000)
            value = valid.SerializeToString()
        elif kind == 8:
            valid.submitted_at.seconds = 253402300799 if index % 2 else -62135596800
            value = valid.SerializeToString()
        elif kind == 9:
            valid.image = b""
            value = valid.SerializeToString()
        elif kind == 10:
            valid.image = rng.bytes(int(rng.integers(1, 200_000)))
            value = valid.SerializeToString()
        else:
            valid.image = mutated_images([image], 1, seed + index)[0]
            value = valid.SerializeToString()
        records.append((request_id.encode(), value))
    return records
