"""The demo's report alone: annotated images, labels, the summary and the gallery."""

from __future__ import annotations

import re

import cv2
import numpy as np

from apps.report import (
    BOX_COLOR,
    WARNING_COLOR,
    ReportEntry,
    annotate,
    face_label,
    summarize,
    write_report,
)
from facestream.kafka_records import result_record
from facestream.models import (
    SYNTHETIC_WARNING,
)
from facestream.v1 import records_pb2


def a_result(
    boxes: list[tuple[int, int, int, int]], synthetic: bool = False
) -> records_pb2.AnalysisResult:
    result = result_record(
        "r-1", records_pb2.ANALYSIS_STATUS_OK if boxes else records_pb2.ANALYSIS_STATUS_NO_FACE
    )
    for x, y, w, h in boxes:
        face = result.faces.add()
        face.region.x, face.region.y, face.region.w, face.region.h = x, y, w, h
        face.age = 31.4
        face.gender.dominant = "Woman"
        face.emotion.dominant = "happy"
    result.synthetic_weights = synthetic
    return result


def png(width: int, height: int, value: int = 128) -> bytes:
    return cv2.imencode(".png", np.full((height, width, 3), value, np.uint8))[1].tobytes()


def test_annotate_draws_a_box_and_label_per_face():
    image = annotate(png(400, 300), a_result([(50, 60, 100, 80)]))
    assert image.shape == (300, 400, 3)
    assert tuple(image[100, 50]) == BOX_COLOR  # the left edge of the box
    assert tuple(image[100, 150]) == BOX_COLOR  # the right edge
    assert tuple(image[100, 100]) == (128, 128, 128)  # inside the box: untouched
    assert (image[40:58, 52:140] == 255).any()  # white label text above the box
    assert tuple(image[299, 2]) == (128, 128, 128)  # no synthetic strip: real weights


def test_annotate_scales_large_images_and_marks_synthetic_weights():
    image = annotate(png(2048, 1024), a_result([(400, 400, 200, 200)], synthetic=True))
    assert image.shape == (512, 1024, 3)
    assert tuple(image[250, 200]) == BOX_COLOR  # the box, scaled by one half
    assert tuple(image[510, 1]) == WARNING_COLOR  # the synthetic strip at the bottom


def test_annotate_gives_none_for_bytes_that_are_no_image():
    assert annotate(b"not an image", None) is None


def test_face_label_has_age_and_dominant_labels():
    (face,) = a_result([(0, 0, 1, 1)]).faces
    assert face_label(face) == "31 Woman happy"
    assert face_label(records_pb2.Face()) == "face"


def test_face_label_names_the_track_and_a_verified_subject_only():
    (face,) = a_result([(0, 0, 1, 1)]).faces
    face.track_id = "t2"
    face.identity.matches.add(subject="Ada", distance=0.2, verified=True)
    assert face_label(face) == "t2 Ada 31 Woman happy"
    face.identity.matches[0].verified = False  # someone the gallery does not know
    assert face_label(face) == "t2 31 Woman happy"


def test_summary_counts_faces_and_takes_latency_percentiles():
    entries = [
        ReportEntry(f"{n}.png", b"", a_result([(0, 0, 1, 1)] * n), seconds=float(n))
        for n in range(1, 5)
    ] + [ReportEntry("lost.png", b"", None, "UNAVAILABLE: broker down", 9.0)]
    summary = summarize(entries, seconds=5.0)
    assert (summary.images, summary.answered, summary.faces) == (5, 4, 10)
    assert summary.faces_per_second == 2.0
    assert summary.p50_latency == 2.5  # of the answered images only
    assert 3.9 < summary.p99_latency <= 4.0
    assert not summary.synthetic_weights
    assert not any(SYNTHETIC_WARNING in line for line in summary.lines())


def test_report_is_a_gallery_with_every_image_and_the_warning(tmp_path):
    entries = [
        ReportEntry("<b>me</b>.png", png(64, 64), a_result([(1, 2, 30, 40)], synthetic=True)),
        ReportEntry("broken.jpg", b"xx", None, "INVALID_ARGUMENT: not an image"),
    ]
    index = write_report(tmp_path, entries, summarize(entries, 1.0))
    page = index.read_text()
    assert 'class="warning"' in page and SYNTHETIC_WARNING in page
    assert "&lt;b&gt;me&lt;/b&gt;.png" in page and "<b>me</b>" not in page
    assert re.findall(r'<img src="images/([^"]+)"', page) == ["000-_b_me_b_.jpg"]
    assert (tmp_path / "images" / "000-_b_me_b_.jpg").is_file()
    assert "INVALID_ARGUMENT: not an image" in page
    assert "30x40+1+2" in page
    assert len((tmp_path / "results.jsonl").read_text().splitlines()) == 2
