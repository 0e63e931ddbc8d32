"""The recognition commands: `facestream gallery enroll / list / forget`,
`facestream identify` and `facestream verify`, over GalleryService and AnalyzeService.

Each prints for people by default (`--json`: JSON lines for programs) and exits 0 when the
call did what was asked, 1 when the server refused it (its status and error code printed),
2 for a usage error (a missing file)."""

from __future__ import annotations

import json
import sys
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import TypeVar

import grpc

from apps.client_commands import client_for, describe_rpc_error
from apps.result_table import format_table, message_json
from apps.result_text import identity_text, region_text
from di.settings import ClientProcessSettings
from facestream.client import AnalyzeClient, identify_in

T = TypeVar("T")


def _read(paths: Sequence[Path]) -> list[bytes] | None:
    """The files' bytes; None (and the reason printed) when one cannot be read."""
    try:
        return [path.read_bytes() for path in paths]
    except OSError as error:
        print(f"error: {error.filename}: {error.strerror}", file=sys.stderr)
        return None


def _call(settings: ClientProcessSettings, call: Callable[[AnalyzeClient], T]) -> T | None:
    """`call` with a client of the settings; None (and the refusal printed) when it fails."""
    try:
        with client_for(settings) as client:
            return call(client)
    except grpc.RpcError as error:
        print(f"error: {describe_rpc_error(error)}", file=sys.stderr)
        return None


def run_enroll(
    settings: ClientProcessSettings,
    gallery: str,
    subject: str,
    photos: Sequence[Path],
    request_id: str,
    as_json: bool,
) -> int:
    """Enrol `subject`'s face from each photo (one face each) into `gallery`."""
    images = _read(photos)
    if images is None:
        return 2
    reply = _call(
        settings, lambda client: client.enroll(gallery, subject, images, request_id=request_id)
    )
    if reply is None:
        return 1
    if as_json:
        print(json.dumps(message_json(reply)))
    else:
        rows = [
            (
                str(photos[image.index]),
                str(image.face_id) if image.face_id else "-",
                region_text(image.region) if image.HasField("region") else "-",
                ("already enrolled" if image.already else "enrolled")
                if image.face_id
                else f"{image.error.code}: {image.error.message}",
            )
            for image in reply.images
        ]
        print(f"{subject} in {gallery} (request {reply.request_id})")
        print(format_table(rows, ("photo", "face id", "region", "outcome")))
    return 0 if all(image.face_id for image in reply.images) else 1


def run_list(settings: ClientProcessSettings, gallery: str | None, as_json: bool) -> int:
    """The caller's galleries, or one gallery's subjects, with their face counts."""
    if gallery is None:
        galleries = _call(settings, lambda client: client.galleries())
        if galleries is None:
            return 1
        rows = [(g.gallery, str(g.subjects), str(g.faces)) for g in galleries]
        header: tuple[str, ...] = ("gallery", "subjects", "faces")
        listed = [message_json(g) for g in galleries]
    else:
        subjects = _call(settings, lambda client: client.subjects(gallery))
        if subjects is None:
            return 1
        rows = [(s.subject, str(s.faces)) for s in subjects]
        header = ("subject", "faces")
        listed = [message_json(s) for s in subjects]
    if as_json:
        for line in listed:
            print(json.dumps(line))
    else:
        print(format_table(rows, header))
    return 0


def run_forget(settings: ClientProcessSettings, gallery: str, subject: str, face_id: int) -> int:
    """Erase a gallery, a subject, or one face."""
    erased = _call(settings, lambda client: client.forget(gallery, subject, face_id))
    if erased is None:
        return 1
    what = f"face {face_id}" if face_id else (f"{subject!r}" if subject else f"gallery {gallery!r}")
    print(f"forgotten: {what} ({erased} face{'s' if erased != 1 else ''} erased)")
    return 0


def run_identify(
    settings: ClientProcessSettings,
    photos: Sequence[Path],
    gallery: str,
    top_k: int,
    threshold: float | None,
    as_json: bool,
) -> int:
    """Each face of each photo and whom it resembles in `gallery`."""
    images = _read(photos)
    if images is None:
        return 2
    ask = identify_in(gallery, top_k, threshold)
    failed = False
    rows = []
    for path, image in zip(photos, images, strict=True):
        result = _call(settings, lambda client, image=image: client.analyze(image, identify=ask))
        if result is None:
            failed = True
            continue
        if as_json:
            print(json.dumps({"image": str(path), **message_json(result)}), flush=True)
            continue
        if not result.faces:
            rows.append((str(path), "-", "-", f"{result.error.code or 'no face'}"))
        for number, face in enumerate(result.faces, start=1):
            rows.append((str(path), str(number), region_text(face.region), identity_text(face)))
    if rows:
        print(format_table(rows, ("photo", "face", "region", "identity")))
    return 1 if failed else 0


def run_verify(
    settings: ClientProcessSettings,
    photo: Path,
    other: Path | None,
    subject: tuple[str, str] | None,
    threshold: float | None,
    as_json: bool,
) -> int:
    """Whether `photo` shows the person of `other`, or the enrolled `subject`."""
    images = _read([photo, *([other] if other else [])])
    if images is None:
        return 2
    reply = _call(
        settings,
        lambda client: client.verify(
            images[0],
            other_image=images[1] if other else None,
            subject=subject,
            threshold=threshold,
        ),
    )
    if reply is None:
        return 1
    if as_json:
        print(json.dumps(message_json(reply)))
        return 0
    against = str(other) if other else f"{subject[1]} in {subject[0]}"  # type: ignore[index]
    verdict = "the same person" if reply.verified else "not the same person"
    print(
        f"{photo} and {against}: {verdict} (distance {reply.distance:.4f}, threshold "
        f"{reply.threshold:.2f})"
    )
    return 0
