"""How far a configuration's results are from a reference's on the same images: fast mode
against exact, bf16 against fp32.

Per image, faces are matched by box overlap (IoU); the report gives the share of images with
the same face count, the smallest IoU of matched faces, the largest probability difference
(percentage points) and the share of matched faces with the same dominant labels.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import asdict, dataclass
from typing import Any

import numpy as np

from facestream.analyzer import FaceAnalyzer, FaceAttributes
from facestream.faces import Face, model_input
from facestream.images import decode_image

Box = tuple[int, int, int, int]
# Large enough for every test and bench photo: the limits are the dataflow's business.
_NO_LIMIT = 1 << 40


@dataclass(frozen=True)
class AnalysedFace:
    box: Box
    attributes: FaceAttributes


def analyse(analyzer: FaceAnalyzer, image: bytes, detection_max_side: int) -> list[AnalysedFace]:
    """Each face of `image` with its attributes (all the analyzer's actions)."""
    faces: list[Face] = analyzer.find_faces(
        decode_image(image, _NO_LIMIT, _NO_LIMIT), analyzer.detector_backend, detection_max_side
    )
    if not faces:
        return []
    inputs = np.stack([model_input(face.crop) for face in faces])
    described = analyzer.describe(inputs, analyzer.actions)
    return [
        AnalysedFace((face.x, face.y, face.w, face.h), attributes)
        for face, attributes in zip(faces, described, strict=True)
    ]


def iou(a: Box, b: Box) -> float:
    """Intersection over union of two (x, y, w, h) boxes."""
    width = min(a[0] + a[2], b[0] + b[2]) - max(a[0], b[0])
    height = min(a[1] + a[3], b[1] + b[3]) - max(a[1], b[1])
    inter = max(0, width) * max(0, height)
    union = a[2] * a[3] + b[2] * b[3] - inter
    return inter / union if union else 0.0


def match(
    reference: Sequence[AnalysedFace], candidate: Sequence[AnalysedFace]
) -> list[tuple[AnalysedFace, AnalysedFace, float]]:
    """Pairs of faces, greedily by the largest IoU first; faces without overlap stay out."""
    pairs = sorted(
        (
            (iou(r.box, c.box), i, j)
            for i, r in enumerate(reference)
            for j, c in enumerate(candidate)
        ),
        reverse=True,
    )
    used_r: set[int] = set()
    used_c: set[int] = set()
    matched = []
    for overlap, i, j in pairs:
        if overlap > 0 and i not in used_r and j not in used_c:
            used_r.add(i)
            used_c.add(j)
            matched.append((reference[i], candidate[j], overlap))
    return matched


@dataclass(frozen=True)
class Agreement:
    images: int
    same_face_count: float  # share of images
    other_face_count: int  # images whose face counts differ
    matched_faces: int
    unmatched_faces: int  # in either run
    min_iou: float
    max_probability_pp: float  # percentage points
    same_dominant: float  # share of matched faces with every dominant label the same
    max_age_years: float

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


def agreement(
    reference: Sequence[Sequence[AnalysedFace]], candidate: Sequence[Sequence[AnalysedFace]]
) -> Agreement:
    """`candidate`'s results against `reference`'s, image by image (same order)."""
    same_count = matched_faces = unmatched = same_dominant = 0
    min_iou, max_pp, max_age = 1.0, 0.0, 0.0
    for ref_faces, cand_faces in zip(reference, candidate, strict=True):
        same_count += len(ref_faces) == len(cand_faces)
        pairs = match(ref_faces, cand_faces)
        unmatched += len(ref_faces) + len(cand_faces) - 2 * len(pairs)
        for ref, cand, overlap in pairs:
            matched_faces += 1
            min_iou = min(min_iou, overlap)
            a, b = ref.attributes, cand.attributes
            same_dominant += a.dominant == b.dominant
            for action, scores in a.scores.items():
                for label, percent in scores.items():
                    max_pp = max(max_pp, abs(percent - b.scores[action][label]))
            if a.age is not None and b.age is not None:
                max_age = max(max_age, abs(a.age - b.age))
    return Agreement(
        images=len(reference),
        same_face_count=same_count / max(1, len(reference)),
        other_face_count=len(reference) - same_count,
        matched_faces=matched_faces,
        unmatched_faces=unmatched,
        min_iou=min_iou if matched_faces else 0.0,
        max_probability_pp=max_pp,
        same_dominant=same_dominant / max(1, matched_faces),
        max_age_years=max_age,
    )
