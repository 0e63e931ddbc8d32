"""Byte sizes in the units facestream's settings accept (KiB, MiB, GiB: powers of 1024),
written for a person."""

from __future__ import annotations

MIB = 1024 * 1024
UNITS = {"B": 1, "KiB": 1024, "MiB": MIB, "GiB": 1024 * MIB}


def size_text(count: float) -> str:
    """A byte count for a person: 1.0 GiB, 64.0 MiB, 900 KiB."""
    for unit in ("GiB", "MiB"):
        if count >= UNITS[unit]:
            return f"{count / UNITS[unit]:.1f} {unit}"
    return f"{count / 1024:.0f} KiB"
