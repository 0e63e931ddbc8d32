"""The plot of docs/recognition.md: a query's time against the gallery's size, for
facestream (a large gallery by its codes, then exact ranking; a small one exact in a
process's copy) and for DeepFace's search
(exact and ann) and find, from the `recognition_scale` row of bench/results/latest.json.
Measured points are filled and joined by solid lines; figures on paper (1,000,000 faces
for facestream, the peers' linear growth where they do not run) are hollow, dashed.

Usage: python -m bench.recognition_plot [--report bench/results/latest.json]
       [--out docs/images/recognition-scale.svg]
"""

from __future__ import annotations

import argparse
import json
import math
import textwrap
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from bench import RESULTS

WIDTH, HEIGHT = 720, 440
LEFT, RIGHT, TOP, BOTTOM = 70, 230, 30, 50
FACES = (1_000, 1_000_000)  # the x axis, log
MILLISECONDS = (1.0, 1_000_000.0)  # the y axis, log
OUT = Path(__file__).resolve().parent.parent / "docs" / "images" / "recognition-scale.svg"


@dataclass(frozen=True)
class Series:
    name: str
    colour: str
    measured: tuple[tuple[float, float], ...]  # (faces, ms)
    on_paper: tuple[tuple[float, float], ...] = ()  # continues from the last measured point


def series_of(scale: Mapping[str, Any]) -> list[Series]:
    """The plot's lines from a `recognition_scale` figure."""
    sizes = sorted(scale["sizes"].items(), key=lambda item: int(item[0]))
    million = scale["million_on_paper"]
    peer_size, peer = next(iter(scale["peers"].items()))
    n = int(peer_size)
    largest = max(int(size) for size, _ in sizes)

    def linear(ms: float) -> tuple[tuple[float, float], ...]:
        return tuple((size, ms * size / n) for size in (largest, 1_000_000) if size > n)

    search_ms, find_ms = peer["search_s_per_face"] * 1e3, peer["find_s_per_face"] * 1e3
    return [
        Series(
            "facestream, codes",
            "#1f77b4",
            tuple((int(size), at["alone"]["p50_ms"]) for size, at in sizes),
            ((million["faces"], million["query_p50_ms"]),),
        ),
        Series(
            "facestream, exact copy",
            "#17becf",
            tuple(
                (int(size), at["exact_copy"]["p50_ms"]) for size, at in sizes if "exact_copy" in at
            ),
        ),
        Series("DeepFace.search exact", "#d62728", ((n, search_ms),), linear(search_ms)),
        Series("DeepFace.search ann", "#ff7f0e", ((n, peer["ann_s_per_face"] * 1e3),)),
        Series("DeepFace.find", "#9467bd", ((n, find_ms),), linear(find_ms)),
    ]


def _x(faces: float) -> float:
    low, high = (math.log10(v) for v in FACES)
    return LEFT + (math.log10(faces) - low) / (high - low) * (WIDTH - LEFT - RIGHT)


def _y(ms: float) -> float:
    low, high = (math.log10(v) for v in MILLISECONDS)
    clipped = min(max(ms, MILLISECONDS[0]), MILLISECONDS[1])
    return TOP + (high - math.log10(clipped)) / (high - low) * (HEIGHT - TOP - BOTTOM)


def _path(points: Sequence[tuple[float, float]], colour: str, dashed: bool) -> str:
    if len(points) < 2:
        return ""
    d = " ".join(
        f"{'M' if i == 0 else 'L'}{_x(f):.1f},{_y(ms):.1f}" for i, (f, ms) in enumerate(points)
    )
    dash = ' stroke-dasharray="6,4"' if dashed else ""
    return f'<path d="{d}" fill="none" stroke="{colour}" stroke-width="2"{dash}/>'


def _text(x: float, y: float, body: str, **attributes: str) -> str:
    extra = "".join(f' {name.replace("_", "-")}="{value}"' for name, value in attributes.items())
    return f'<text x="{x:.1f}" y="{y:.1f}"{extra}>{body}</text>'


def _marker(faces: float, ms: float, colour: str, filled: bool) -> str:
    fill = colour if filled else "white"
    title = f"<title>{faces:,.0f} faces: {ms:,.1f} ms</title>"
    return (
        f'<circle cx="{_x(faces):.1f}" cy="{_y(ms):.1f}" r="4" fill="{fill}" '
        f'stroke="{colour}" stroke-width="2">{title}</circle>'
    )


def svg(lines: Sequence[Series], caption: str) -> str:
    """The plot as an SVG document."""
    parts = [
        f'<svg xmlns="http://www.w3.org/2000/svg" width="{WIDTH}" height="{HEIGHT}" '
        f'viewBox="0 0 {WIDTH} {HEIGHT}" font-family="sans-serif" font-size="12">',
        f'<rect width="{WIDTH}" height="{HEIGHT}" fill="white"/>',
    ]
    for power in range(3, 7):
        x = _x(10**power)
        parts.append(
            f'<line x1="{x:.1f}" y1="{TOP}" x2="{x:.1f}" y2="{HEIGHT - BOTTOM}" stroke="#ddd"/>'
        )
        parts.append(_text(x, HEIGHT - BOTTOM + 18, f"{10**power:,}", text_anchor="middle"))
    for power in range(0, 7):
        y = _y(10.0**power)
        parts.append(
            f'<line x1="{LEFT}" y1="{y:.1f}" x2="{WIDTH - RIGHT}" y2="{y:.1f}" stroke="#ddd"/>'
        )
        parts.append(f'<text x="{LEFT - 8}" y="{y + 4:.1f}" text-anchor="end">{10**power:,}</text>')
    parts.append(
        f'<text x="{(LEFT + WIDTH - RIGHT) / 2:.1f}" y="{HEIGHT - 12}" text-anchor="middle">'
        "faces in the gallery</text>"
    )
    parts.append(
        f'<text transform="translate(18,{(TOP + HEIGHT - BOTTOM) / 2:.1f}) rotate(-90)" '
        'text-anchor="middle">ms per query face (p50)</text>'
    )
    for index, line in enumerate(lines):
        parts.append(_path(line.measured, line.colour, dashed=False))
        if line.on_paper and line.measured:
            parts.append(_path((line.measured[-1], *line.on_paper), line.colour, dashed=True))
        parts += [_marker(f, ms, line.colour, filled=True) for f, ms in line.measured]
        parts += [_marker(f, ms, line.colour, filled=False) for f, ms in line.on_paper]
        y = TOP + 10 + 22 * index
        parts.append(
            f'<line x1="{WIDTH - RIGHT + 15}" y1="{y}" x2="{WIDTH - RIGHT + 40}" y2="{y}" '
            f'stroke="{line.colour}" stroke-width="3"/>'
        )
        parts.append(f'<text x="{WIDTH - RIGHT + 46}" y="{y + 4}">{line.name}</text>')
    y = TOP + 10 + 22 * len(lines) + 10
    parts.append(f'<text x="{WIDTH - RIGHT + 15}" y="{y}" font-size="11">filled: measured;</text>')
    parts.append(_text(WIDTH - RIGHT + 15, y + 15, "hollow, dashed: on paper", font_size="11"))
    for offset, text in enumerate(caption.split("\n")):
        parts.append(_text(WIDTH - RIGHT + 15, y + 40 + 15 * offset, text, font_size="10"))
    parts.append("</svg>")
    return "\n".join(part for part in parts if part) + "\n"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--report", type=Path, default=RESULTS / "latest.json")
    parser.add_argument("--out", type=Path, default=OUT)
    args = parser.parse_args()
    report = json.loads(args.report.read_text())
    caption = "\n".join(textwrap.wrap(str(report.get("machine", "")), 40))
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(svg(series_of(report["recognition_scale"]), caption))
    print(args.out)


if __name__ == "__main__":
    main()
