"""Synthetic VGG-Face embeddings of synthetic people, for measuring and testing recognition
at sizes no photo collection here reaches.

They have the shape of real ones: VGG-Face's embedding is its fc7 layer after a ReLU, so
its values are non-negative and about two thirds are zero; the faces of one person cluster
around that person's direction, some tightly (cosine distance ~0.1) and some loosely (up to
the 0.68 threshold), and different people sit at 0.55-0.8 from each other, the nearest
strangers inside the threshold. People differ along a few hundred directions, not all
4,096: face embeddings are known to lie near a space of low dimension, which is what lets
any approximate index (pgvector's, faiss's) find neighbours; independent random directions
in 4,096 dimensions would have no near neighbours to find.

Every face is a function of (seed, person, draw): draw 0 is a person's enrolled faces,
draws 1, 2, ... other pictures of the same person (the queries), so a gallery can be
made in blocks and its queries made apart, in any order.
"""

from __future__ import annotations

import numpy as np

from facestream.embeddings import EMBEDDING_SIZE

IDENTITY_DIMENSIONS = 128  # the directions people differ along
VARIATION_DIMENSIONS = 32  # the directions one person's pictures differ along (pose, light)
ISOTROPIC_NOISE = 0.3  # and a little of every direction
SPREAD = (0.3, 1.5)  # how far a person's pictures stray, drawn per person


class SyntheticPeople:
    """People with VGG-Face-like embeddings, each a function of (seed, person, draw)."""

    def __init__(self, seed: int = 7) -> None:
        self._seed = seed
        rng = np.random.default_rng([seed, 0])
        # A shared direction below zero: after the ReLU, most values are 0.
        self._base = (0.5 * rng.normal(size=EMBEDDING_SIZE) - 0.5).astype(np.float32)
        self._identity_axes = _axes(rng, IDENTITY_DIMENSIONS)
        self._variation_axes = _axes(rng, VARIATION_DIMENSIONS)

    def faces(self, first: int, people: int, per_person: int, draw: int = 0) -> np.ndarray:
        """(people * per_person, 4096) float32 unit rows: `per_person` faces of each person
        `first` .. `first + people - 1`, person by person."""
        rows = np.empty((people * per_person, EMBEDDING_SIZE), np.float32)
        for offset in range(people):
            person = first + offset
            own = np.random.default_rng([self._seed, 1, person])
            centre = own.normal(size=IDENTITY_DIMENSIONS).astype(np.float32) @ self._identity_axes
            spread = own.uniform(*SPREAD)
            pictures = np.random.default_rng([self._seed, 2, draw, person])
            wiggle = (
                pictures.normal(size=(per_person, VARIATION_DIMENSIONS)).astype(np.float32)
                @ self._variation_axes
            )
            wiggle += ISOTROPIC_NOISE * pictures.normal(size=(per_person, EMBEDDING_SIZE)).astype(
                np.float32
            )
            wiggle *= spread / np.sqrt(1 + ISOTROPIC_NOISE**2)
            rows[offset * per_person : (offset + 1) * per_person] = self._base + centre + wiggle
        np.maximum(rows, 0, out=rows)
        rows /= np.linalg.norm(rows, axis=1, keepdims=True)
        return rows


def _axes(rng: np.random.Generator, dimensions: int) -> np.ndarray:
    """(dimensions, 4096) random directions, scaled so that a standard normal mix of them
    has about unit variance per value."""
    return (rng.normal(size=(dimensions, EMBEDDING_SIZE)) / np.sqrt(dimensions)).astype(np.float32)
