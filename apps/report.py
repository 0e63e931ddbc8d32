"""A run's results for people: a summary, each image annotated (boxes and labels), and an
`index.html` gallery of them. Every piece says so when the weights were synthetic."""

from __future__ import annotations

import html
import json
import re
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from pathlib import Path

import cv2
import numpy as np
from google.protobuf.json_format import MessageToDict

from apps.result_text import identified_as, region_text
from facestream.kafka_records import status_name
from facestream.models import SYNTHETIC_WARNING
from facestream.v1 import records_pb2

# Annotated images are shown in a browser: larger ones are scaled down to this side.
REPORT_MAX_SIDE = 1024
BOX_COLOR = (0, 200, 255)  # BGR amber: visible on skin, sky and dark backgrounds
WARNING_COLOR = (0, 0, 200)
NO_RESULT = "NO RESULT"  # a frame's status when its result never came


@dataclass(frozen=True)
class ReportEntry:
    """One image of a run: its name and bytes, and its result or why there is none."""

    name: str
    data: bytes
    result: records_pb2.AnalysisResult | None
    error: str = ""
    seconds: float = 0.0


@dataclass(frozen=True)
class Summary:
    """What a run did, in numbers."""

    images: int
    answered: int
    faces: int
    seconds: float
    faces_per_second: float
    p50_latency: float
    p99_latency: float
    synthetic_weights: bool

    def lines(self) -> list[str]:
        """The summary as a person reads it; the first line warns about synthetic weights."""
        lines = [f"!! {SYNTHETIC_WARNING}"] if self.synthetic_weights else []
        return [
            *lines,
            f"images: {self.images} ({self.answered} answered)",
            f"faces: {self.faces}",
            f"throughput: {self.faces_per_second:.2f} faces/s "
            f"({self.faces} faces in {self.seconds:.1f} s)",
            f"latency per image: p50 {self.p50_latency:.2f} s, p99 {self.p99_latency:.2f} s",
        ]


@dataclass(frozen=True)
class FrameRow:
    """One analysed frame of a video, as the report's frame table shows it."""

    sequence: int
    frame_index: int
    position_ms: int
    status: str
    faces: int
    tracks: str  # each face's track and whether the models ran on it, or "-" untracked
    labels: str


@dataclass(frozen=True)
class VideoSection:
    """A video of a run: what it is, its annotated animation (a file in the report
    folder, written by the caller) and its frames."""

    name: str
    animation_file: str
    frames: Sequence[FrameRow]


def summarize(entries: Sequence[ReportEntry], seconds: float) -> Summary:
    """Count images and faces and take latency percentiles of the answered images."""
    answered = [e for e in entries if e.result is not None]
    faces = sum(len(e.result.faces) for e in answered if e.result is not None)
    latencies = [e.seconds for e in answered] or [0.0]
    return Summary(
        images=len(entries),
        answered=len(answered),
        faces=faces,
        seconds=seconds,
        faces_per_second=faces / seconds if seconds > 0 else 0.0,
        p50_latency=float(np.percentile(latencies, 50)),
        p99_latency=float(np.percentile(latencies, 99)),
        synthetic_weights=any(e.result.synthetic_weights for e in answered if e.result),
    )


def face_label(face: records_pb2.Face) -> str:
    """A short label for a face: its track, then `face_words`."""
    parts = [face.track_id] if face.track_id else []
    return " ".join(parts + face_words(face)) or "face"


def face_words(face: records_pb2.Face) -> list[str]:
    """Whom a face was identified as (a verified match), then its `attribute_words`."""
    who = identified_as(face)
    return ([who] if who else []) + attribute_words(face)


def attribute_words(described: records_pb2.Face | records_pb2.TrackSummary) -> list[str]:
    """The age, then the dominant gender, emotion and race, of a face or of a track's
    means."""
    words = [f"{described.age:.0f}"] if described.HasField("age") else []
    distributions = (described.gender, described.emotion, described.race)
    return words + [d.dominant for d in distributions if d.dominant]


def track_text(face: records_pb2.Face) -> str:
    """A face's track and where its attributes come from: "t1 analysed" (the models ran
    on it in this frame), "t1 carried" (its track's), or "-" for a face not tracked."""
    if not face.track_id:
        return "-"
    return f"{face.track_id} {'carried' if face.carried else 'analysed'}"


def frame_rows(
    results: Sequence[records_pb2.AnalysisResult | None],
    frames: Sequence[tuple[int, int, int]],
) -> list[FrameRow]:
    """The frame table's rows: each frame's (sequence, frame index, position in ms) with
    its result, None for a frame that got none."""
    rows = []
    for result, (sequence, frame_index, position_ms) in zip(results, frames, strict=True):
        faces = result.faces if result is not None else ()
        rows.append(
            FrameRow(
                sequence=sequence,
                frame_index=frame_index,
                position_ms=position_ms,
                status=status_name(result) if result is not None else NO_RESULT,
                faces=len(faces),
                tracks="; ".join(track_text(face) for face in faces),
                labels="; ".join(face_label(face) for face in faces),
            )
        )
    return rows


def annotate(data: bytes, result: records_pb2.AnalysisResult | None) -> np.ndarray | None:
    """The image decoded and annotated (see `annotate_image`); None when it cannot be
    decoded."""
    image = cv2.imdecode(np.frombuffer(data, np.uint8), cv2.IMREAD_COLOR)
    if image is None:
        return None
    return annotate_image(image, result)


def annotate_image(image: np.ndarray, result: records_pb2.AnalysisResult | None) -> np.ndarray:
    """A copy of the image (BGR) with a box and a label on each face, at most
    REPORT_MAX_SIDE wide or high, and a warning strip when the weights were synthetic."""
    scale = min(1.0, REPORT_MAX_SIDE / max(image.shape[:2]))
    # A copy either way: the caller's frame may be shown or analysed again undrawn.
    if scale < 1.0:
        image = cv2.resize(image, None, fx=scale, fy=scale, interpolation=cv2.INTER_AREA)
    else:
        image = image.copy()
    thickness = max(2, round(max(image.shape[:2]) / 300))
    font_scale = max(0.45, max(image.shape[:2]) / 1400)
    for face in result.faces if result is not None else ():
        x, y = round(face.region.x * scale), round(face.region.y * scale)
        w, h = round(face.region.w * scale), round(face.region.h * scale)
        cv2.rectangle(image, (x, y), (x + w, y + h), BOX_COLOR, thickness)
        _text(image, face_label(face), (x, max(0, y - 4)), font_scale, BOX_COLOR, above=True)
    if result is not None and result.synthetic_weights:
        _text(image, SYNTHETIC_WARNING, (0, image.shape[0]), font_scale, WARNING_COLOR)
    return image


def _text(
    image: np.ndarray,
    text: str,
    corner: tuple[int, int],
    font_scale: float,
    background: tuple[int, int, int],
    above: bool = False,
) -> None:
    # White text on a filled band, so labels stay readable on any picture.
    font = cv2.FONT_HERSHEY_SIMPLEX
    (width, height), baseline = cv2.getTextSize(text, font, font_scale, 1)
    x, bottom = corner
    if above and bottom - height - baseline < 0:
        bottom = height + baseline
    top = bottom - height - baseline - 4
    cv2.rectangle(image, (x, top), (x + width + 6, bottom), background, cv2.FILLED)
    cv2.putText(
        image, text, (x + 3, bottom - baseline - 2), font, font_scale, (255, 255, 255), 1,
        cv2.LINE_AA,
    )  # fmt: skip


def _file_name(index: int, name: str) -> str:
    # The whole name, folders included, so that "a/x.jpg" and "b/x.jpg" stay apart.
    stem = re.sub(r"[^A-Za-z0-9._-]+", "_", name.rsplit(".", 1)[0])[-60:]
    return f"{index:03d}-{stem}.jpg"


def _status(entry: ReportEntry) -> str:
    return f"ERROR {entry.error}" if entry.result is None else status_name(entry.result)


def _card(entry: ReportEntry, image_file: str | None) -> str:
    result = entry.result
    rows = "".join(
        f"<tr><td>{n}</td><td>{html.escape(face_label(face))}</td>"
        f"<td>{region_text(face.region)}</td></tr>"
        for n, face in enumerate(result.faces if result else (), start=1)
    )
    problem = ""
    if result is not None and result.error.code:
        problem = f"{result.error.code}: {result.error.message}"
    elif result is None:
        problem = entry.error
    picture = (
        f'<img src="images/{image_file}" alt="{html.escape(entry.name)}">'
        if image_file
        else "<p>(not an image that can be shown)</p>"
    )
    return (
        f"<figure>{picture}<figcaption><b>{html.escape(entry.name)}</b> "
        f"{html.escape(_status(entry))}, {len(result.faces) if result else 0} face(s), "
        f"{entry.seconds:.2f} s"
        + (f"<br><i>{html.escape(problem)}</i>" if problem else "")
        + (f"<table><tr><th>#</th><th>label</th><th>region</th></tr>{rows}</table>" if rows else "")
        + "</figcaption></figure>"
    )


PAGE = """<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>facestream report</title>
<style>
body {{ font-family: sans-serif; margin: 2em; }}
.warning {{ background: #c00; color: #fff; padding: .6em 1em; font-weight: bold; }}
.gallery {{ display: flex; flex-wrap: wrap; gap: 1.5em; }}
figure {{ margin: 0; max-width: 420px; }}
img {{ max-width: 420px; border: 1px solid #ccc; }}
.video img {{ max-width: 640px; }}
.frames {{ font-size: small; margin: 1em 0 2em; }}
td, th {{ padding: 0 .5em; text-align: left; }}
</style></head><body>
<h1>facestream report</h1>
{warning}
<pre>{summary}</pre>
{video}
<div class="gallery">
{cards}
</div></body></html>
"""


def _video_section(video: VideoSection) -> str:
    name = html.escape(video.name)
    rows = "".join(
        f'<tr class="frame"><td>{row.sequence}</td><td>{row.frame_index}</td>'
        f"<td>{row.position_ms / 1000:.2f}</td><td>{html.escape(row.status)}</td>"
        f"<td>{row.faces}</td><td>{html.escape(row.tracks)}</td>"
        f"<td>{html.escape(row.labels)}</td></tr>"
        for row in video.frames
    )
    return (
        f'<section class="video"><h2>Video</h2><p>{name}</p>'
        f'<img src="{html.escape(video.animation_file)}" alt="{name}, annotated">'
        '<table class="frames"><tr><th>#</th><th>frame</th><th>at (s)</th><th>status</th>'
        f"<th>faces</th><th>tracks</th><th>labels</th></tr>{rows}</table></section>"
    )


def write_report(
    folder: Path,
    entries: Sequence[ReportEntry],
    summary: Summary,
    video: VideoSection | None = None,
) -> Path:
    """Write `folder/index.html`, `folder/images/*.jpg` (annotated), `folder/results.jsonl`
    (one result per line) and `folder/summary.json`; return the index's path. A video's
    section, with its animation and frame table, goes above the images."""
    images = folder / "images"
    images.mkdir(parents=True, exist_ok=True)
    cards = []
    with (folder / "results.jsonl").open("w") as results:
        for index, entry in enumerate(entries):
            annotated = annotate(entry.data, entry.result)
            image_file = None
            if annotated is not None:
                image_file = _file_name(index, entry.name)
                cv2.imwrite(str(images / image_file), annotated, [cv2.IMWRITE_JPEG_QUALITY, 88])
            cards.append(_card(entry, image_file))
            record = MessageToDict(entry.result) if entry.result is not None else None
            results.write(
                json.dumps({"image": entry.name, "error": entry.error, "result": record}) + "\n"
            )
    (folder / "summary.json").write_text(json.dumps(asdict(summary), indent=2) + "\n")
    warning = (
        f'<p class="warning">{html.escape(SYNTHETIC_WARNING)}: the models ran on synthetic '
        "weights (same architecture, random values), so ages, genders, emotions and races "
        "below are meaningless. Face detection is real.</p>"
        if summary.synthetic_weights
        else ""
    )
    index = folder / "index.html"
    index.write_text(
        PAGE.format(
            warning=warning,
            summary=html.escape("\n".join(summary.lines())),
            video=_video_section(video) if video is not None else "",
            cards="\n".join(cards),
        )
    )
    return index
