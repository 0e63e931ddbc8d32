"""The demo's video alone: composed from the public photos, read back with OpenCV, its
faces' boxes, the looping animation, and the report's video section."""

from __future__ import annotations

import re

import cv2
import numpy as np
import pytest

from apps.demo_video import ComposedVideo, compose_demo_video, demo_frames, write_animation
from apps.report import (
    BOX_COLOR,
    NO_RESULT,
    VideoSection,
    annotate_image,
    frame_rows,
    summarize,
    write_report,
)
from tests.test_report import a_result

SECONDS, FPS, SIZE = 10.0, 5.0, (640, 480)


@pytest.fixture(scope="module")
def video(tmp_path_factory) -> ComposedVideo:
    """The demo video as the demo composes it: 10 s at 5 frames per second."""
    return compose_demo_video(tmp_path_factory.mktemp("video") / "demo.mp4", SECONDS, FPS, SIZE)


def read_frames(path) -> list[np.ndarray]:
    capture = cv2.VideoCapture(str(path))
    frames = []
    try:
        while True:
            ok, frame = capture.read()
            if not ok:
                return frames
            frames.append(frame)
    finally:
        capture.release()


def test_the_video_reads_back_with_every_frame_at_its_size(video):
    frames = read_frames(video.path)
    assert video.frame_count == len(frames) == 50
    assert {frame.shape for frame in frames} == {(480, 640, 3)}
    assert (video.fps, video.size) == (FPS, SIZE)


def test_two_faces_then_one_then_the_other_back_and_every_box_inside_the_picture(video):
    assert len(video.boxes) == video.frame_count
    counts = [len(boxes) for boxes in video.boxes]
    gone, back = counts.index(1), len(counts) - counts[::-1].index(1)
    assert set(counts[:gone]) == {2} and set(counts[back:]) == {2}
    assert back - gone > 5  # away longer than the tracker's default end of a track
    assert video.boxes[back][1][0] < video.boxes[gone - 1][1][0]  # back on the other side
    width, height = video.size
    for boxes in video.boxes:
        for x, y, w, h in boxes:
            assert x >= 0 and y >= 0 and x + w <= width and y + h <= height
            assert w >= 70 and h >= 70  # large enough for DeepFace's detector


def test_the_faces_move_zoom_and_never_overlap(video):
    first, middle, last = video.boxes[0], video.boxes[video.frame_count // 2], video.boxes[-1]
    assert len(middle) == 2
    for before, after in zip(first, middle, strict=True):
        assert before[:2] != after[:2]  # moved
        assert before[2:] != after[2:]  # zoomed
    assert first[0][2] < last[0][2]  # the remaining face grew
    for boxes in video.boxes:
        if len(boxes) == 2:  # side by side: one ends left of where the other starts
            (a_x, _, a_w, _), (b_x, _, b_w, _) = boxes
            assert a_x + a_w < b_x or b_x + b_w < a_x


def test_the_same_call_writes_the_same_video(tmp_path):
    one = compose_demo_video(tmp_path / "one.mp4", seconds=1.0)
    two = compose_demo_video(tmp_path / "two.mp4", seconds=1.0)
    assert one.boxes == two.boxes
    assert one.path.read_bytes() == two.path.read_bytes()


def test_avi_is_written_too(tmp_path):
    video = compose_demo_video(tmp_path / "demo.avi", seconds=1.0, fps=5.0, size=(320, 240))
    frames = read_frames(video.path)
    assert video.frame_count == len(frames) == 5
    assert frames[0].shape == (240, 320, 3)


@pytest.mark.parametrize("suffix", [".mkv", ".webp", ""])
def test_other_video_suffixes_are_refused(tmp_path, suffix):
    with pytest.raises(ValueError):
        compose_demo_video(tmp_path / f"demo{suffix}", seconds=1.0)


@pytest.mark.parametrize("suffix", [".webp", ".gif"])
def test_the_animation_reads_back_with_every_frame_looping(tmp_path, suffix):
    frames = [frame for frame, _ in demo_frames(6, (320, 240))]
    path = write_animation(frames, tmp_path / f"video{suffix}", fps=5.0)
    ok, animation = cv2.imreadanimation(str(path))
    assert ok
    assert len(animation.frames) == 6
    assert animation.frames[0].shape[:2] == (240, 320)
    assert list(animation.durations) == [200] * 6
    assert animation.loop_count == 0  # forever


@pytest.mark.parametrize("suffix", [".png", ".mp4"])
def test_other_animation_suffixes_are_refused(tmp_path, suffix):
    with pytest.raises(ValueError):
        write_animation([np.zeros((8, 8, 3), np.uint8)], tmp_path / f"video{suffix}", 5.0)


def test_annotate_image_draws_on_a_copy_at_the_face(video):
    ((frame, boxes),) = demo_frames(1, video.size)
    x, y, w, h = boxes[0]
    untouched = frame.copy()
    drawn = annotate_image(frame, a_result([boxes[0]]))
    assert np.array_equal(frame, untouched)  # the caller's frame is not drawn on
    assert drawn.shape == frame.shape
    assert tuple(drawn[y + h // 2, x]) == BOX_COLOR  # the box's left edge
    assert not np.array_equal(
        drawn[y : y + h + 1, x : x + w + 1], frame[y : y + h + 1, x : x + w + 1]
    )
    assert np.array_equal(drawn[-40:, :], frame[-40:, :])  # far from the face: unchanged


def test_frame_rows_say_what_each_frame_got():
    results = [a_result([(1, 2, 30, 40), (50, 2, 30, 40)]), a_result([]), None]
    rows = frame_rows(results, [(0, 0, 0), (1, 5, 1000), (2, 10, 2000)])
    assert [(r.sequence, r.frame_index, r.position_ms) for r in rows] == [
        (0, 0, 0),
        (1, 5, 1000),
        (2, 10, 2000),
    ]
    assert [(r.status, r.faces) for r in rows] == [("OK", 2), ("NO_FACE", 0), (NO_RESULT, 0)]
    assert rows[0].labels == "31 Woman happy; 31 Woman happy"
    assert rows[0].tracks == "-; -"  # not tracked
    assert rows[2].labels == rows[2].tracks == ""


def test_frame_rows_name_each_faces_track_and_whether_it_was_analysed():
    result = a_result([(1, 2, 30, 40), (50, 2, 30, 40)])
    result.faces[0].track_id, result.faces[1].track_id = "t1", "t2"
    result.faces[1].carried = True
    [row] = frame_rows([result], [(0, 0, 0)])
    assert row.tracks == "t1 analysed; t2 carried"
    assert row.labels.startswith("t1 31 Woman") and "; t2 31 Woman" in row.labels


def test_report_shows_the_video_above_the_images_with_a_row_per_frame(tmp_path):
    results = [a_result([(10, 20, 90, 90)]), None, a_result([])]
    rows = frame_rows(results, [(0, 0, 0), (1, 5, 1000), (2, 10, 2500)])
    video = VideoSection("<demo> video", "video.webp", rows)
    index = write_report(tmp_path, [], summarize([], 1.0), video)
    page = index.read_text()
    assert '<img src="video.webp"' in page
    assert "&lt;demo&gt; video" in page and "<demo>" not in page
    assert len(re.findall(r'<tr class="frame">', page)) == len(rows)
    assert page.index("<h2>Video</h2>") < page.index('class="gallery"')
    assert "<td>2.50</td>" in page and NO_RESULT in page and "31 Woman happy" in page


def test_report_without_a_video_has_no_video_section(tmp_path):
    page = write_report(tmp_path, [], summarize([], 1.0)).read_text()
    assert "<h2>Video</h2>" not in page and "<img" not in page
