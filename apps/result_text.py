"""How a result reads for people, shared by the terminal table and the HTML report."""

from __future__ import annotations

from facestream.v1 import records_pb2


def region_text(region: records_pb2.Region) -> str:
    """A face box as WxH+X+Y (pixels of the original image)."""
    return f"{region.w}x{region.h}+{region.x}+{region.y}"


def identity_text(face: records_pb2.Face) -> str:
    """Whom a face resembles: its nearest subjects with their distances, a check mark on
    each verified one; its identification error; or "-" when it was not identified."""
    identity = face.identity
    if identity.error.code:
        return identity.error.code
    if not identity.matches:
        return "-" if not identity.gallery else "no match"
    return ", ".join(
        f"{match.subject} {match.distance:.3f}{' ✓' if match.verified else ''}"
        for match in identity.matches
    )


def identified_as(face: records_pb2.Face) -> str:
    """The subject a face was identified as (its nearest match, when verified), or ""."""
    matches = face.identity.matches
    return matches[0].subject if matches and matches[0].verified else ""
