"""The live view (apps/live_view.py) on its own: the tracks it lists, its address option,
and its page, picture and events served by Werkzeug on 127.0.0.1 and read over HTTP, with
made-up results (the real stream and a real browser: tests/test_video_e2e.py)."""

from __future__ import annotations

import http.client
import json
import socket
import time
from collections.abc import Iterator

import cv2
import numpy as np
import pytest

from apps.live_view import MAX_WATCHERS, LiveView, TrackBoard, is_loopback, parse_view_address
from apps.video import FrameResult, StreamSummary
from apps.video_source import SampledFrame
from facestream.v1 import records_pb2
from tests.images import box_pixels

OK = records_pb2.ANALYSIS_STATUS_OK


def face(track: str, carried: bool, x: int = 40, age: float = 30) -> records_pb2.Face:
    return records_pb2.Face(
        region=records_pb2.Region(x=x, y=40, w=80, h=80),
        track_id=track,
        carried=carried,
        age=age,
        gender=records_pb2.Distribution(dominant="Woman", scores={"Woman": 90, "Man": 10}),
    )


def result(sequence: int, faces: list[records_pb2.Face], ended: tuple[str, ...] = ()):
    return records_pb2.AnalysisResult(
        status=OK,
        frame=records_pb2.StreamFrame(sequence=sequence, position_ms=200 * sequence),
        faces=faces,
        ended_tracks=[
            records_pb2.TrackSummary(
                track_id=track,
                first=records_pb2.FramePoint(sequence=0, position_ms=0),
                last=records_pb2.FramePoint(sequence=sequence - 1, position_ms=200 * sequence),
                frames_seen=sequence,
                frames_analysed=1,
                age=41,
                gender=records_pb2.Distribution(dominant="Man"),
                ended_by="missing",
            )
            for track in ended
        ],
    )


def answered(sequence: int, faces: list[records_pb2.Face], ended: tuple[str, ...] = ()):
    image = np.full((240, 320, 3), 90, np.uint8)
    frame = SampledFrame(sequence, sequence, 200 * sequence, image, b"", time.monotonic())
    return FrameResult(frame, result(sequence, faces, ended))


def test_the_board_lists_open_tracks_and_moves_ended_ones_with_their_summary():
    board = TrackBoard()
    board.record(result(0, [face("t1", carried=False), face("t2", carried=False, x=200)]))
    board.record(result(1, [face("t1", carried=True), face("t2", carried=False, x=200)]))
    untracked = face("", carried=False)
    board.record(result(2, [face("t2", carried=True, x=200), untracked], ended=("t1",)))
    lists = board.snapshot()
    [t2] = lists["open_tracks"]
    assert (t2["track_id"], t2["first_sequence"], t2["last_sequence"]) == ("t2", 0, 2)
    assert (t2["frames_seen"], t2["frames_analysed"], t2["analysed_last"]) == (3, 2, False)
    assert t2["label"] == "30 Woman"
    [t1] = lists["ended_tracks"]
    assert (t1["track_id"], t1["frames_seen"], t1["ended_by"], t1["label"]) == (
        "t1", 2, "missing", "41 Man"
    )  # fmt: skip


def test_open_tracks_are_listed_in_their_opening_order():
    board = TrackBoard()
    board.record(result(0, [face(f"t{n}", carried=False, x=10 * n) for n in (10, 2, 1)]))
    assert [t["track_id"] for t in board.snapshot()["open_tracks"]] == ["t1", "t2", "t10"]


@pytest.mark.parametrize(
    ("text", "address"),
    [
        ("127.0.0.1:0", ("127.0.0.1", 0)),
        ("8085", ("127.0.0.1", 8085)),
        (":8085", ("127.0.0.1", 8085)),
        ("0.0.0.0:9000", ("0.0.0.0", 9000)),
        ("localhost", ("localhost", 0)),
        ("[::1]:7000", ("::1", 7000)),
    ],
)
def test_view_addresses(text, address):
    assert parse_view_address(text) == address


def test_a_port_out_of_range_is_refused():
    with pytest.raises(ValueError, match="0 to 65535"):
        parse_view_address("127.0.0.1:70000")


def test_only_this_machine_counts_as_loopback():
    assert is_loopback("127.0.0.1") and is_loopback("::1") and is_loopback("localhost")
    assert not is_loopback("0.0.0.0") and not is_loopback("192.168.1.4")


def counts() -> StreamSummary:
    return StreamSummary("s", sent=7, answered=5, refused=0, dropped=2, broken="")


@pytest.fixture
def view() -> Iterator[tuple[LiveView, str]]:
    live = LiveView("camera 0", "live")
    live.counts = counts
    url = live.serve("127.0.0.1", 0)
    try:
        yield live, url
    finally:
        live.close(grace=0.5)


def connect(url: str) -> http.client.HTTPConnection:
    host, port = url.removeprefix("http://").rstrip("/").split(":")
    return http.client.HTTPConnection(host, int(port), timeout=30)


def get(url: str, path: str) -> http.client.HTTPResponse:
    connection = connect(url)
    connection.request("GET", path)
    return connection.getresponse()


def read_event(response: http.client.HTTPResponse) -> dict:
    line = response.readline()
    while not line.startswith(b"data: "):
        line = response.readline()
    return json.loads(line.removeprefix(b"data: "))


def events_until(response: http.client.HTTPResponse, done, limit: int = 50) -> dict:
    for _ in range(limit):
        state = read_event(response)
        if done(state):
            return state
    raise AssertionError(f"no event matched in {limit}; last: {state}")


def read_picture(response: http.client.HTTPResponse) -> np.ndarray:
    length = 0
    line = response.readline()
    while line not in (b"\r\n", b""):
        if line.lower().startswith(b"content-length:"):
            length = int(line.split(b":")[1])
        line = response.readline()
    data = response.read(length)
    response.readline()  # the part's closing CRLF
    return cv2.imdecode(np.frombuffer(data, np.uint8), cv2.IMREAD_COLOR)


def test_the_page_is_served_and_its_events_follow_the_stream_to_its_end(view):
    live, url = view
    page = get(url, "/")
    assert page.status == 200 and page.getheader("Content-Type").startswith("text/html")
    body = page.read().decode()
    assert 'picture.src = "video.mjpeg"' in body and 'new EventSource("events")' in body
    events = get(url, "/events")
    assert events.getheader("Content-Type").startswith("text/event-stream")
    first = read_event(events)
    assert (first["sent"], first["answered"], first["dropped"], first["mode"]) == (7, 5, 2, "live")
    assert first["open_tracks"] == [] and not first["finished"]
    live.offer(answered(0, [face("t1", carried=False), face("t2", carried=False, x=200)]))
    live.offer(answered(1, [face("t2", carried=True, x=200)], ended=("t1",)))
    state = events_until(events, lambda s: s["frame"].get("sequence") == 1)
    assert [t["track_id"] for t in state["open_tracks"]] == ["t2"]
    assert [t["track_id"] for t in state["ended_tracks"]] == ["t1"]
    assert state["frame"]["faces"] == 1 and state["p99"] >= state["p50"] >= 0
    assert state["warning"] == ""  # real weights: nothing to warn of
    live.finish("stream s: 2 frame(s) sent, 2 answered")
    last = events_until(events, lambda s: bool(s["finished"]))
    assert last["finished"] == "stream s: 2 frame(s) sent, 2 answered"
    assert events.read().strip() == b""  # the rest of the last event, then the end


def test_the_picture_is_the_newest_answered_frame_with_its_boxes(view):
    live, url = view
    assert get(url, "/frame.jpg").status == 404  # nothing answered yet
    pictures = get(url, "/video.mjpeg")
    assert pictures.getheader("Content-Type") == "multipart/x-mixed-replace; boundary=frame"
    live.offer(answered(0, []))
    empty = read_picture(pictures)
    assert empty.shape == (240, 320, 3) and box_pixels(empty) == 0
    live.offer(answered(1, [face("t1", carried=False)]))
    boxed = read_picture(pictures)
    assert box_pixels(boxed) > 200  # the box of the face at (40, 40, 80, 80) and its label
    still = cv2.imdecode(np.frombuffer(get(url, "/frame.jpg").read(), np.uint8), 1)
    assert box_pixels(still) == box_pixels(boxed)
    live.finish("done")
    assert pictures.read() == b""  # no newer frame after the end: the stream closes


def test_a_page_that_reads_nothing_holds_back_neither_the_stream_nor_other_pages(view):
    live, url = view
    host, port = url.removeprefix("http://").rstrip("/").split(":")
    stuck = socket.create_connection((host, int(port)), timeout=30)
    try:
        stuck.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
        stuck.sendall(b"GET /video.mjpeg HTTP/1.1\r\nHost: x\r\n\r\n")  # then never reads
        events = get(url, "/events")
        noise = np.random.default_rng(0).integers(0, 255, (720, 1280, 3), np.uint8)
        for sequence in range(40):  # each drawn: ~40 MB, far more than the sockets hold
            frame = SampledFrame(sequence, sequence, 0, noise, b"", time.monotonic())
            live.offer(FrameResult(frame, result(sequence, [face("t1", carried=False)])))
            events_until(events, lambda s, n=sequence: s["picture"] == n)
        state = read_event(get(url, "/events"))  # a page that came later is served too
        assert state["open_tracks"][0]["frames_seen"] == 40  # every result recorded
    finally:
        stuck.close()


def test_more_pages_than_the_view_serves_are_told_so(view):
    _live, url = view
    watching = [get(url, "/events") for _ in range(MAX_WATCHERS)]
    for response in watching:
        read_event(response)  # each one served, and counted
    refused = get(url, "/events")
    assert refused.status == 503 and b"too many pages" in refused.read()
    for response in watching:
        response.close()


def test_unknown_paths_and_other_methods_are_refused(view):
    _live, url = view
    assert get(url, "/nothing").status == 404
    connection = connect(url)
    connection.request("POST", "/")
    assert connection.getresponse().status == 405


def test_an_address_in_use_is_an_error_not_an_exit():
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        live = LiveView("camera 0", "live")
        with pytest.raises(OSError, match="in use"):
            live.serve("127.0.0.1", taken.getsockname()[1])
        live.close()


def test_serving_at_an_address_says_where_and_names_an_address_it_cannot_bind():
    live = LiveView("camera 0", "live")
    try:
        notice = live.serve_at("127.0.0.1:0")
        assert notice == [f"view: {live.url}"]
        assert live.url.startswith("http://127.0.0.1:")
        taken = live.url.rstrip("/").rsplit(":", 1)[1]
        other = LiveView("camera 1", "live")
        with pytest.raises(ValueError, match=rf"^--view 127\.0\.0\.1:{taken}: .*in use"):
            other.serve_at(f"127.0.0.1:{taken}")
        other.close()
    finally:
        live.close()
