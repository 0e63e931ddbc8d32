"""The face embedding's wire format, for the dataflow that writes it and for clients.

`Face.embedding` (records.proto) holds VGG-Face's embedding of one face, as
`DeepFace.represent(model_name="VGG-Face")` returns it: 4096 values with an L2 norm of 1,
packed as IEEE-754 float32 in little-endian byte order. Bytes rather than a repeated float
field: JSON shows them as one base64 string instead of 4096 numbers, and numpy reads them
with `np.frombuffer`.
"""

from __future__ import annotations

import numpy as np

from facestream.v1 import records_pb2

EMBEDDING_DTYPE = np.dtype("<f4")
EMBEDDING_SIZE = 4096
EMBEDDING_BYTES = EMBEDDING_SIZE * EMBEDDING_DTYPE.itemsize


def embedding_bytes(embedding: np.ndarray) -> bytes:
    """An embedding packed for `Face.embedding`."""
    return np.asarray(embedding, dtype=EMBEDDING_DTYPE).tobytes()


def embedding_of(face: records_pb2.Face) -> np.ndarray | None:
    """A result's face embedding as a float32 numpy array of 4096 values (a copy the caller
    owns), or None when the request did not ask for "embedding"."""
    if not face.embedding:
        return None
    if len(face.embedding) != EMBEDDING_BYTES:
        raise ValueError(f"an embedding is {EMBEDDING_BYTES} bytes, got {len(face.embedding)}")
    return np.frombuffer(face.embedding, dtype=EMBEDDING_DTYPE).astype(np.float32)


def cosine_similarity(first: np.ndarray, second: np.ndarray) -> float:
    """How alike two faces' embeddings are, from -1 to 1 (1: the same direction), in
    float64. For facestream's unit-norm embeddings this is their dot product; the norms
    are divided out anyway, so any two vectors may be compared."""
    a, b = np.asarray(first, dtype=np.float64), np.asarray(second, dtype=np.float64)
    return float(a @ b / (np.linalg.norm(a) * np.linalg.norm(b)))
