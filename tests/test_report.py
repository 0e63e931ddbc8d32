"""The demo's pieces alone: the public images, the report, and the choice of weights."""

from __future__ import annotations

import dataclasses
import re

import cv2
import numpy as np
import pytest

from di import Settings
from facestream import demo
from facestream.faces import find_faces
from facestream.image_sources import (
    GROUP_NAME,
    PUBLIC_PHOTOS,
    demo_images,
    folder_images,
    skimage_data_dir,
)
from facestream.models import (
    ACTIONS,
    SYNTHETIC_WARNING,
    WeightsDownloadError,
    synthetic_deepface_home,
    weights_dir_of,
)
from facestream.records import result_record
from facestream.report import (
    BOX_COLOR,
    WARNING_COLOR,
    ReportEntry,
    annotate,
    face_label,
    summarize,
    write_report,
)
from facestream.v1 import records_pb2


def decode(data: bytes) -> np.ndarray:
    return cv2.imdecode(np.frombuffer(data, np.uint8), cv2.IMREAD_COLOR)


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


def test_demo_images_are_the_public_photos_as_shipped_plus_a_group():
    images = demo_images()
    assert [i.name for i in images] == [*PUBLIC_PHOTOS, GROUP_NAME]
    for image in images[:-1]:
        assert image.data == (skimage_data_dir() / image.name).read_bytes()
    group = decode(images[-1].data)
    assert group.shape == (768, 768, 3)
    # The group holds the astronaut twice (once mirrored): the real detector finds both.
    faces = find_faces(group, "opencv", 2048)
    assert len(faces) == 2
    assert {f.x < 384 for f in faces} == {True, False}


def test_folder_images_are_named_relative_to_the_folder(tmp_path):
    (tmp_path / "sub").mkdir()
    (tmp_path / "a.png").write_bytes(png(8, 8))
    (tmp_path / "sub" / "b.JPG").write_bytes(b"jpeg?")
    (tmp_path / "notes.txt").write_text("not an image")
    images = folder_images(tmp_path)
    assert [(i.name, i.data) for i in images] == [
        ("a.png", png(8, 8)),
        ("sub/b.JPG", b"jpeg?"),
    ]


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


@pytest.fixture
def no_real_weights(tmp_path) -> Settings:
    return Settings.from_env({"DEEPFACE_HOME": str(tmp_path)})


def test_weights_present_are_used_as_they_are(synthetic_home):
    settings = Settings.from_env({"DEEPFACE_HOME": str(synthetic_home)})
    home, synthetic = demo.choose_weights(settings, True, download=pytest.fail)
    assert (home, synthetic) == (synthetic_home, True)


def test_missing_weights_without_download_fall_back_to_synthetic(
    synthetic_home, no_real_weights, capsys
):
    home, synthetic = demo.choose_weights(no_real_weights, False, download=pytest.fail)
    assert (home, synthetic) == (synthetic_deepface_home(), True)
    out = capsys.readouterr().out
    assert "real DeepFace weights are missing" in out
    assert "downloading is off" in out
    assert f"using SYNTHETIC weights from {weights_dir_of(synthetic_home)}" in out
    assert not weights_dir_of(no_real_weights.deepface_home).exists()  # nothing mixed in


def test_a_failed_download_falls_back_to_synthetic(synthetic_home, no_real_weights, capsys):
    def offline(_folder):
        raise WeightsDownloadError("age_model_weights.h5: Failed to resolve host")

    home, synthetic = demo.choose_weights(no_real_weights, True, download=offline)
    assert (home, synthetic) == (synthetic_deepface_home(), True)
    assert "the download failed (age_model_weights.h5: Failed to resolve host)" in (
        capsys.readouterr().out
    )


def test_downloaded_weights_are_used_as_real(no_real_weights):
    fetched = []
    home, synthetic = demo.choose_weights(no_real_weights, True, download=fetched.append)
    assert fetched == [no_real_weights.weights_dir]
    assert (home, synthetic) == (no_real_weights.deepface_home, False)


def test_download_refuses_a_folder_deepface_would_not_write_to(tmp_path):
    from facestream.models import download_weights

    with pytest.raises(ValueError, match="DeepFace downloads into"):
        download_weights(tmp_path / "elsewhere", ACTIONS)


def test_download_in_child_runs_the_real_command(synthetic_home):
    # Every file is there (synthetic), so the command downloads nothing: no network.
    demo.download_in_child(Settings.from_env({"DEEPFACE_HOME": str(synthetic_home)}))


def test_download_in_child_reports_the_commands_error(tmp_path):
    # A settings object whose DEEPFACE_HOME the child cannot use: the child refuses.
    not_a_folder = tmp_path / "file"
    not_a_folder.write_text("")
    settings = Settings.from_env({"DEEPFACE_HOME": str(tmp_path)})
    settings = dataclasses.replace(settings, deepface_home=not_a_folder)
    with pytest.raises(WeightsDownloadError, match="DEEPFACE_HOME="):
        demo.download_in_child(settings)
