"""`facestream video` against the whole system: the real dataflow (`bytewax.run`, DeepFace's
detector, synthetic weights), the gRPC server and the embedded broker. A composed video
(apps/demo_video.py) is sent as a file and as a live HTTP MJPEG stream served by the test."""

from __future__ import annotations

import json
import re
import signal
import socket
import subprocess
import threading
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import cv2
import pytest

from apps.demo_video import ComposedVideo, compose_demo_video, demo_frames
from apps.headless_chromium import MISSING, chromium, installed
from apps.launch import TopicReader
from apps.mjpeg_camera import mjpeg_stream
from apps.processes import ChildProcess, wait_until
from apps.video import LIVE_BUFFER, FrameQueue, _live_frame_requests, _StreamState
from apps.video_source import SampledFrame, open_video_source
from facestream.models import SYNTHETIC_WARNING
from facestream.tracking import box_overlap
from facestream.v1 import records_pb2
from tests.commands import facestream_command, run_facestream
from tests.grpc_helpers import ready_pipeline
from tests.images import box_pixels
from tests.pipeline import Topics

# The composed video's faces and the detector's boxes for them overlap at least this much.
SAME_FACE = 0.5


@pytest.fixture(scope="module")
def composed(tmp_path_factory) -> ComposedVideo:
    """The demo video, shortened to 6 s at 5 fps (30 frames, to keep the suite short): two
    faces moving and zooming, one leaving."""
    return compose_demo_video(tmp_path_factory.mktemp("video") / "composed.mp4", seconds=6)


@pytest.fixture(scope="module")
def system(embedded_broker, synthetic_home) -> Iterator[dict[str, str]]:
    """The dataflow and the gRPC server; the environment of a `facestream` client of it."""
    topics = Topics(embedded_broker.bootstrap)
    with ready_pipeline(topics, synthetic_home, "-w", "2") as (_flow, server):
        yield {**topics.env(synthetic_home), "FACESTREAM_GRPC_ADDRESS": server.address}


def frame_lines(stdout: str) -> list[dict]:
    return [json.loads(line) for line in stdout.splitlines()]


@dataclass(frozen=True)
class ComposedRun:
    """`facestream video --json --out` of the composed video, once for the module."""

    done: subprocess.CompletedProcess[str]
    out: Path


@pytest.fixture(scope="module")
def composed_run(system, composed, tmp_path_factory) -> ComposedRun:
    out = tmp_path_factory.mktemp("annotated") / "annotated.mp4"
    done = run_facestream(
        "video", str(composed.path), "--stream-id", "composed", "--json", "--out", str(out),
        env=system, timeout=600,
    )  # fmt: skip
    return ComposedRun(done, out)


@pytest.mark.models
def test_every_sampled_frame_of_a_file_is_answered_in_order_with_its_faces(composed_run, composed):
    done, out = composed_run.done, composed_run.out
    assert done.returncode == 0, done.stderr
    frames = frame_lines(done.stdout)
    assert [f["sequence"] for f in frames] == list(range(composed.frame_count))
    assert [f["frame_index"] for f in frames] == list(range(composed.frame_count))  # 5 of 5 fps
    assert [f["position_ms"] for f in frames] == [200 * n for n in range(composed.frame_count)]
    assert {f["stream_id"] for f in frames} == {"composed"}
    assert [f["last"] for f in frames] == [False] * (composed.frame_count - 1) + [True]
    assert "0 dropped" in done.stderr and f"{composed.frame_count} answered" in done.stderr
    # Faces where the photos' faces are, and nowhere else: each whole face is found, and
    # a face found at no whole face's place is one leaving or coming back, cut by the
    # picture's edge.
    width, _height = composed.size
    for frame, boxes in zip(frames, composed.boxes, strict=True):
        found = [region_box(face) for face in frame["faces"]]
        assert frame["status"] == ("OK" if found else "NO_FACE"), frame
        for box in boxes:
            assert max((box_overlap(box, f) for f in found), default=0) >= SAME_FACE, (box, found)
        for face in found:
            whole = any(box_overlap(box, face) >= SAME_FACE for box in boxes)
            at_edge = face[0] <= 2 or face[0] + face[2] >= width - 2
            assert whole or at_edge, (frame["sequence"], face, boxes)
    annotated = cv2.VideoCapture(str(out))
    assert int(annotated.get(cv2.CAP_PROP_FRAME_COUNT)) == composed.frame_count
    annotated.release()


def region_box(face: dict) -> tuple[int, int, int, int]:
    """A face's region in a JSON line (protobuf's JSON leaves out zeros)."""
    region = face["region"]
    return (region.get("x", 0), region.get("y", 0), region.get("w", 0), region.get("h", 0))


def track_at(frame: dict, box: tuple[int, int, int, int]) -> str:
    """The track id of the face found at the composed face `box` in a frame's result."""
    overlap, track = max((box_overlap(box, region_box(f)), f["trackId"]) for f in frame["faces"])
    assert overlap >= SAME_FACE, (frame["sequence"], box, frame["faces"])
    return track


@pytest.mark.models
def test_each_face_is_followed_as_a_track_analysed_once_and_carried_between(
    composed_run, composed, system
):
    frames = frame_lines(composed_run.done.stdout)
    pairs = list(zip(frames, composed.boxes, strict=True))
    gone = next(n for n, boxes in enumerate(composed.boxes) if len(boxes) == 1)
    back = next(n for n in range(gone, len(pairs)) if len(composed.boxes[n]) == 2)
    # The two people keep their ids while visible; the one who left comes back as t3.
    assert {track_at(f, boxes[0]) for f, boxes in pairs} == {"t1"}
    assert {track_at(f, boxes[1]) for f, boxes in pairs[:gone]} == {"t2"}
    assert {track_at(f, boxes[1]) for f, boxes in pairs[back:]} == {"t3"}
    faces = [(f["sequence"], face) for f in frames for face in f["faces"]]
    analysed = [(n, face) for n, face in faces if not face.get("carried")]
    carried = [(n, face) for n, face in faces if face.get("carried")]
    assert all(face["attributesFrom"] == n for n, face in analysed)  # numbers, 0 included
    assert all(face["attributesFrom"] < n for n, face in carried)
    assert len(carried) > len(analysed)  # most faces carry their track's attributes
    assert all("age" in face and face["gender"]["dominant"] for _n, face in faces)
    # Each track ends once, summarised with the frame that ended it and on faces.tracks.
    ended = {t["trackId"]: (f["sequence"], t) for f in frames for t in f["ended_tracks"]}
    assert sorted(ended) == ["t1", "t2", "t3"]
    assert ended["t2"][1]["endedBy"] == "missing" and ended["t2"][0] < back
    assert {ended[t][1]["endedBy"] for t in ("t1", "t3")} == {"last_frame"}
    assert ended["t1"][1]["first"]["sequence"] == 0
    assert ended["t1"][1]["framesSeen"] == len(frames)
    topics_env = system
    reader = TopicReader(
        topics_env["FACESTREAM_KAFKA_BOOTSTRAP"],
        topics_env["FACESTREAM_TOPIC_TRACKS"],
        int(topics_env["FACESTREAM_PARTITIONS"]),
    )
    try:
        keys = lambda messages: {m.key() for m in messages}  # noqa: E731
        assert reader.read_until(lambda m: len(keys(m)) >= 3, 60), keys(reader.messages)
    finally:
        reader.close()
    assert keys(reader.messages) == {f"composed/{t}".encode() for t in ("t1", "t2", "t3")}
    summary = records_pb2.TrackSummary.FromString(reader.messages[0].value())
    assert summary.stream_id == "composed" and summary.synthetic_weights


@pytest.mark.models
def test_a_live_mjpeg_stream_is_read_and_a_break_ends_it_with_the_reason(system):
    pictures = [frame for frame, _boxes in demo_frames(10, (320, 240))]
    with mjpeg_stream(pictures, fps=10, count=30) as url:  # 3 s, then the camera is gone
        done = run_facestream(
            "video", url, "--fps", "5", "--stream-id", "camera", "--json", env=system, timeout=300
        )
    assert done.returncode == 1, done.stderr  # the stream broke
    assert "the stream ended or broke" in done.stderr
    frames = frame_lines(done.stdout)
    # How many frames are sampled depends on how fast this machine reads them: at least one.
    assert 1 <= len(frames) <= 30
    assert [f["sequence"] for f in frames] == list(range(len(frames)))
    assert frames[-1]["last"] and all(f["status"] in ("OK", "NO_FACE") for f in frames)
    positions = [f["position_ms"] for f in frames]
    assert positions == sorted(positions)
    assert f"{len(frames)} frame(s) sent, {len(frames)} answered" in done.stderr


@pytest.mark.models
def test_a_file_cut_short_ends_with_the_frames_read_answered_and_the_reason(system, tmp_path):
    whole = compose_demo_video(tmp_path / "whole.avi", seconds=4)  # 20 frames
    data = whole.path.read_bytes()
    cut = tmp_path / "cut.avi"
    cut.write_bytes(data[: len(data) * 6 // 10])
    done = run_facestream("video", str(cut), "--json", env=system, timeout=300)
    assert done.returncode == 1, done.stderr
    assert "the file is cut short or damaged" in done.stderr
    frames = frame_lines(done.stdout)
    assert 5 <= len(frames) < whole.frame_count
    assert [f["sequence"] for f in frames] == list(range(len(frames)))
    assert frames[-1]["last"]
    assert f"{len(frames)} frame(s) sent, {len(frames)} answered" in done.stderr


@pytest.mark.models
def test_a_live_source_faster_than_the_system_drops_its_oldest_frames(system):
    pictures = [frame for frame, _boxes in demo_frames(10, (640, 480))]
    # 25 frames a second, each with two faces, one in flight at a time: the system keeps
    # up with far fewer, so frames are dropped, and every frame sent is answered.
    with mjpeg_stream(pictures, fps=25, count=100) as url:
        done = run_facestream(
            "video", url, "--fps", "25", "--window", "1", "--json", env=system, timeout=300
        )
    frames = frame_lines(done.stdout)
    summary = done.stderr.strip().splitlines()[-1]
    dropped = int(summary.split(" dropped")[0].rsplit(" ", 1)[-1])
    assert dropped > 0, summary
    assert "the live source was faster than the system" in summary
    assert [f["sequence"] for f in frames] == list(range(len(frames)))  # no hole
    assert f"{len(frames)} frame(s) sent, {len(frames)} answered" in summary
    indexes = [f["frame_index"] for f in frames]
    # The camera ended: its newest picture came again as the closing frame, flagged last.
    assert frames[-1]["last"] and not any(f["last"] for f in frames[:-1])
    assert indexes[-1] == indexes[-2]
    sent = indexes[:-1]
    assert sent == sorted(sent) and len(set(sent)) == len(sent)


@pytest.mark.models
def test_ctrl_c_ends_a_live_stream_with_every_frame_sent_answered(system, tmp_path):
    pictures = [frame for frame, _boxes in demo_frames(10, (320, 240))]
    with mjpeg_stream(pictures, fps=5) as url:  # a camera without end
        video = ChildProcess(
            "video",
            facestream_command("video", url, "--json", "--stream-id", "endless"),
            system,
            tmp_path,
            separate_errors=True,
        )
        try:
            wait_until(lambda: len(video.output().splitlines()) >= 3, 300, "3 frames answered")
            video.process.send_signal(signal.SIGINT)
            code = video.process.wait(120)
        finally:
            video.stop(signal.SIGKILL)
    frames = frame_lines(video.output())
    assert code == 130, video.errors()
    assert "stopping: answering the frames sent" in video.errors()
    assert [f["sequence"] for f in frames] == list(range(len(frames)))
    assert frames[-1]["last"]  # the stream was ended, not left open
    assert f"{len(frames)} frame(s) sent, {len(frames)} answered" in video.errors()


def view_address(errors: str) -> str:
    """The live view's URL, once `facestream video --view` printed it."""
    found = re.search(r"^view: (http://\S+)$", errors, re.MULTILINE)
    return found.group(1) if found else ""


@pytest.mark.models
def test_the_live_view_shows_boxes_tracks_and_the_end_in_a_browser(system, tmp_path):
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support.ui import WebDriverWait

    if installed() is None:
        pytest.skip(MISSING)

    pictures = [frame for frame, _boxes in demo_frames(50, (640, 480))]  # a 10 s loop
    with mjpeg_stream(pictures, fps=5) as url:  # a camera without end
        video = ChildProcess(
            "video",
            facestream_command("video", url, "--json", "--stream-id", "viewed", "--view"),
            system,
            tmp_path,
            separate_errors=True,
        )
        try:
            wait_until(lambda: view_address(video.errors()), 120, "the view's address")
            page = view_address(video.errors())
            assert page.startswith("http://127.0.0.1:")
            with chromium(tmp_path) as browser:
                browser.get(page)

                def shown(what: str) -> str:
                    return browser.find_element(By.ID, "status").get_attribute(what) or ""

                def open_tracks() -> list[str]:
                    rows = browser.find_elements(By.CSS_SELECTOR, "#open-tracks tr[data-track]")
                    return [row.get_attribute("data-track") for row in rows]

                # Both faces of the video followed, and the picture drawn from that frame.
                WebDriverWait(browser, 300, 0.1).until(
                    lambda _b: (
                        shown("data-faces") == "2"
                        and shown("data-picture") == shown("data-frame")
                        and len(open_tracks()) == 2
                    )
                )
                tracks = open_tracks()
                assert all(re.fullmatch(r"t\d+", track) for track in tracks), tracks
                assert "answered" in browser.find_element(By.ID, "status").text
                warning = browser.find_element(By.ID, "warning")  # the test's weights
                assert warning.is_displayed() and warning.text == SYNTHETIC_WARNING
                picture = browser.find_element(By.ID, "picture")
                WebDriverWait(browser, 30, 0.1).until(
                    lambda _b: browser.execute_script(
                        "return arguments[0].naturalWidth", picture
                    ) == 640
                )  # fmt: skip
                screenshot = tmp_path / "live-view.png"
                assert browser.save_screenshot(str(screenshot))
                shot = cv2.imread(str(screenshot), cv2.IMREAD_COLOR)
                place = picture.rect
                x, y = round(place["x"]), round(place["y"])
                shown_picture = shot[y : y + round(place["height"]), x : x + round(place["width"])]
                assert box_pixels(shown_picture) > 300  # a face's box and its label band
                video.process.send_signal(signal.SIGINT)  # the camera's user stops the stream
                ended = browser.find_element(By.ID, "ended")
                WebDriverWait(browser, 120, 0.1).until(lambda _b: ended.is_displayed())
                assert ended.text.startswith("The stream has ended: stream viewed: ")
            code = video.process.wait(120)
        finally:
            video.stop(signal.SIGKILL)
    assert code == 130, video.errors()
    frames = frame_lines(video.output())
    assert f"{len(frames)} frame(s) sent, {len(frames)} answered" in video.errors()


@pytest.mark.models
def test_keep_view_serves_the_ended_streams_page_until_ctrl_c(system, composed, tmp_path):
    video = ChildProcess(
        "video",
        facestream_command("video", str(composed.path), "--json", "--view", "--keep-view"),
        system,
        tmp_path,
        separate_errors=True,
    )
    try:
        wait_until(lambda: "the page stays at" in video.errors(), 300, "the stream's end")
        page = view_address(video.errors())
        assert f"the page stays at {page} until Ctrl-C" in video.errors()
        with urllib.request.urlopen(f"{page}state.json", timeout=30) as reply:
            state = json.load(reply)
        assert state["finished"].startswith(f"stream {frame_lines(video.output())[0]['stream_id']}")
        assert state["answered"] == state["sent"] == composed.frame_count
        assert state["open_tracks"] == [] and state["ended_tracks"]  # all ended at the last frame
        assert video.running()
        video.process.send_signal(signal.SIGINT)
        code = video.process.wait(60)
    finally:
        video.stop(signal.SIGKILL)
    assert code == 0, video.errors()  # the stream was whole; Ctrl-C only closed the page


def test_a_live_sources_frames_go_as_read_and_its_newest_picture_closes_the_stream():
    def sampled(n: int) -> SampledFrame:
        return SampledFrame(n, 10 * n, 200 * n, None, b"jpeg-%d" % n)  # type: ignore[arg-type]

    queue = FrameQueue(LIVE_BUFFER, drop_oldest=True)
    state = _StreamState(8, lambda _result: None)
    requests = _live_frame_requests(queue, state, "cam")
    queue.put(sampled(0))
    # The first frame goes before the second is read (a file's would wait for it).
    first = next(requests)
    assert (first.image, first.frame.sequence, first.frame.last) == (b"jpeg-0", 0, False)
    queue.put(sampled(1))
    queue.close()
    second, closing = list(requests)
    assert (second.frame.frame_index, second.frame.last) == (10, False)
    assert closing.image == b"jpeg-1" and closing.frame.last
    assert [frame.closing for frame in state.out.values()] == [False, False, True]
    assert (closing.frame.sequence, closing.frame.frame_index, closing.frame.position_ms) == (
        2, 10, 200
    )  # fmt: skip
    assert state.sent == 3

    # A source that ended before its first frame sends nothing.
    empty = FrameQueue(LIVE_BUFFER, drop_oldest=True)
    empty.close()
    assert list(_live_frame_requests(empty, _StreamState(8, lambda _result: None), "cam")) == []


def test_a_live_queue_drops_its_oldest_frames_and_a_file_queue_none():
    def sampled(n: int) -> SampledFrame:
        return SampledFrame(n, n, 200 * n, None, b"")  # type: ignore[arg-type]

    live = FrameQueue(LIVE_BUFFER, drop_oldest=True)
    for n in range(1000):
        live.put(sampled(n))
    live.close()
    kept = []
    while (frame := live.get()) is not None:
        kept.append(frame.sequence)
    assert kept == list(range(1000 - LIVE_BUFFER, 1000))
    assert live.dropped == 1000 - LIVE_BUFFER

    # A file's reader waits for room instead: every frame comes out, in order.
    file = FrameQueue(2, drop_oldest=False)
    reader = threading.Thread(target=lambda: [file.put(sampled(n)) for n in range(10)])
    reader.start()
    taken = [file.get() for _ in range(10)]
    reader.join(10)
    assert [frame.sequence for frame in taken if frame] == list(range(10))
    assert file.dropped == 0


@pytest.mark.parametrize(
    ("source", "reason"),
    [
        ("no/such/video.mp4", "no such file"),
        ("http://127.0.0.1:1/stream.mjpg", "could not be opened"),
        ("GARBAGE", "not a video OpenCV can read"),
        ("EMPTY", "not a video OpenCV can read"),
        ("7", "camera 7: it could not be opened"),
    ],
)
def test_a_source_that_cannot_be_opened_fails_at_once_with_exit_2(tmp_path, source, reason):
    if source in ("GARBAGE", "EMPTY"):
        path = tmp_path / "video.mp4"
        path.write_bytes(b"\x00\x01garbage" * 500 if source == "GARBAGE" else b"")
        source = str(path)
    done = run_facestream("video", source, timeout=120)
    assert done.returncode == 2, (done.stdout, done.stderr)
    assert reason in done.stderr and "Traceback" not in done.stderr
    assert "WARN" not in done.stderr and " @ 0x" not in done.stderr  # OpenCV's, FFmpeg's


def test_options_that_do_not_fit_the_source_fail_with_exit_2(tmp_path):
    video = compose_demo_video(tmp_path / "short.avi", seconds=1)
    for args, reason in (
        (["--fps", "0"], "--fps"),
        (["--stream-id", "two words"], "stream id 'two words' is not valid"),
        (["--out", str(tmp_path / "x.txt")], "use a .mp4 or .avi file"),
        (["--window", "0"], "--window"),
        (["--keep-view"], "--keep-view needs --view"),
        (["--view", "127.0.0.1:70000"], "the port must be 0 to 65535"),
    ):
        done = run_facestream("video", str(video.path), *args, timeout=120)
        assert done.returncode == 2, (args, done.stderr)
        assert reason in done.stderr, (args, done.stderr)
    assert Path(video.path).is_file()


def test_a_view_address_in_use_fails_before_any_frame_is_sent(tmp_path):
    video = compose_demo_video(tmp_path / "short.avi", seconds=1)
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        done = run_facestream("video", str(video.path), "--view", f"127.0.0.1:{port}")
    assert done.returncode == 2, done.stderr
    assert f"error: --view 127.0.0.1:{port}: Address already in use" in done.stderr
    assert done.stdout == ""  # nothing was sent


def test_start_and_duration_pick_a_part_of_a_file(tmp_path):
    video = compose_demo_video(tmp_path / "ten.avi", seconds=10)  # 50 frames at 5 fps
    with open_video_source(str(video.path), fps=5, start=2, duration=3) as source:
        frames = list(source.frames())
    assert [f.frame_index for f in frames] == list(range(10, 25))
    assert [f.position_ms for f in frames] == [200 * n for n in range(10, 25)]
    assert [f.sequence for f in frames] == list(range(15))  # a stream starts at 0
    with open_video_source(str(video.path), fps=2.5) as source:  # every other frame
        assert [f.frame_index for f in source.frames()] == list(range(0, 50, 2))
