"""Recognition's steps: after the models, each face whose request asked for it is matched
against a gallery (identify), and an enrolment's face is written to the gallery store.

Both need the gallery store (facestream/gallery_store.py). When it cannot be reached, an
identification answers with a typed error in the face's `identity` and the rest of the
result stands; an enrolment is retried for a while, then fails its own request (the
client retries with the same request id: enrolment writes each face once).
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Sequence
from dataclasses import replace
from datetime import UTC, datetime

from dataflow.items import AnalyzedFace
from facestream.embeddings import embedding_of
from facestream.gallery_store import (
    NO_STORE,
    VGG_FACE_COSINE_THRESHOLD,
    Box,
    FaceToEnrol,
    GalleryStore,
    GalleryStoreError,
    Match,
)
from facestream.v1 import records_pb2


def recognise_faces(
    faces: Sequence[AnalyzedFace],
    store: GalleryStore | None,
    logger: logging.Logger,
    write_retry: float,
    sleep: Callable[[float], None] = time.sleep,
) -> list[AnalyzedFace]:
    """The faces with their identities and enrolments done, and without the embeddings
    their requests did not ask for (computed to identify or enrol them only)."""
    identities = identify_faces([f for f in faces if wants_identity(f)], store)
    done = []
    for face in faces:
        if face.image.enrolment is not None and face.record is not None and face.error is None:
            face = enrol_face(face, store, logger, write_retry, sleep)
        if id(face.record) in identities and face.record is not None:
            face.record.identity.CopyFrom(identities[id(face.record)])
        if not face.image.keep_embedding and face.record is not None:
            face.record.ClearField("embedding")
        done.append(face)
    return done


def wants_identity(face: AnalyzedFace) -> bool:
    return face.image.identify is not None and face.record is not None and face.error is None


def identify_faces(
    faces: Sequence[AnalyzedFace], store: GalleryStore | None
) -> dict[int, records_pb2.Identity]:
    """Each face's identity (keyed by the id of its record), one store query per gallery
    and principal for all their faces."""
    groups: dict[tuple[str, str, int], list[AnalyzedFace]] = {}
    for face in faces:
        ask = face.image.identify
        assert ask is not None
        groups.setdefault((face.image.principal, ask.gallery, ask.top_k or 1), []).append(face)
    identities: dict[int, records_pb2.Identity] = {}
    for (principal, gallery, top_k), group in groups.items():
        try:
            if store is None:
                raise NO_STORE
            embeddings = [embedding_of(face.record) for face in group]  # type: ignore[arg-type]
            answers = store.identify(principal, gallery, embeddings, top_k)  # type: ignore[arg-type]
        except GalleryStoreError as error:
            for face in group:
                identities[id(face.record)] = records_pb2.Identity(
                    gallery=gallery,
                    threshold=threshold_of(face.image.identify),  # type: ignore[arg-type]
                    error=records_pb2.Error(code=error.code, message=error.message),
                )
            continue
        for face, matches in zip(group, answers, strict=True):
            identities[id(face.record)] = identity(gallery, matches, face.image.identify)  # type: ignore[arg-type]
    return identities


def threshold_of(ask: records_pb2.Identify) -> float:
    """The distance at or under which a match is verified: the request's, or DeepFace's."""
    return ask.threshold if ask.HasField("threshold") else VGG_FACE_COSINE_THRESHOLD


def identity(
    gallery: str, matches: Sequence[Match], ask: records_pb2.Identify
) -> records_pb2.Identity:
    """A face's Identity from its nearest subjects."""
    threshold = threshold_of(ask)
    return records_pb2.Identity(
        gallery=gallery,
        threshold=threshold,
        matches=[
            records_pb2.Match(
                subject=m.subject,
                distance=m.distance,
                verified=m.distance <= threshold,
                face_id=m.face_id,
            )
            for m in matches
        ],
    )


def enrol_face(
    face: AnalyzedFace,
    store: GalleryStore | None,
    logger: logging.Logger,
    write_retry: float,
    sleep: Callable[[float], None] = time.sleep,
) -> AnalyzedFace:
    """Write an enrolment's face to the gallery store, once. While the store is
    unreachable the write is retried (1 s, 2 s, 4 s ... apart) for `write_retry` s; after
    that, or on a refusal (a bad name), the face carries the error."""
    enrolment, record = face.image.enrolment, face.record
    assert enrolment is not None and record is not None
    region = record.region
    to_write = FaceToEnrol(
        image_index=enrolment.image_index,
        embedding=embedding_of(record),  # type: ignore[arg-type]
        image_sha256=face.image.image_sha256,
        box=Box(region.x, region.y, region.w, region.h),
    )
    accepted_at = datetime.fromtimestamp(face.image.started_at, UTC)
    deadline, pause = time.monotonic() + write_retry, 1.0
    while True:
        try:
            if store is None:
                raise NO_STORE
            enrolled = store.enrol(
                face.image.principal,
                enrolment.gallery,
                enrolment.subject,
                enrolment.enrolment_id,
                accepted_at,
                [to_write],
            )
            break
        except GalleryStoreError as error:
            if error.code != "gallery.unavailable" or store is None or time.monotonic() > deadline:
                return replace(face, error=(error.code, error.message))
            logger.warning(
                "gallery store unreachable; enrolment %s retried in %.0f s",
                enrolment.enrolment_id,
                pause,
                extra={"request_id": face.image.request_id, "stage": "enrol"},
            )
            sleep(pause)
            pause = min(pause * 2, 10.0)
    if enrolled.refused:
        return replace(
            face,
            error=(
                "enroll.forgotten",
                f"{enrolment.subject!r} or gallery {enrolment.gallery!r} was forgotten after "
                "this enrolment was accepted: it is not written",
            ),
        )
    return replace(
        face,
        enrolled=records_pb2.EnrolledFace(
            face_id=enrolled.face_ids[0], already=bool(enrolled.already)
        ),
    )
