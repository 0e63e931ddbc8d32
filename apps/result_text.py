"""How a result reads for people, shared by the terminal table and the HTML report."""

from __future__ import annotations

from facestream.v1 import records_pb2


def region_text(region: records_pb2.Region) -> str:
    """A face box as WxH+X+Y (pixels of the original image)."""
    return f"{region.w}x{region.h}+{region.x}+{region.y}"
