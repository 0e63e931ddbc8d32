"""`facestream video --view`: a page in the browser that shows a stream as it is answered:
the newest answered frame with its boxes, track ids and labels (MJPEG), the open tracks and
the ended tracks' summaries, and a status line (Server-Sent Events).

The client that sends a stream holds both its frames and their results, so the view is drawn
here and no frame is kept on the server. It costs the stream nothing it needs: `offer`
(called with each result) only records it; a drawing thread annotates the newest result
(frames that came while it drew are skipped); each watching page is served by a thread of
Werkzeug's server that sends the newest picture and state whenever that page is ready for
them. Nothing queues per page, so a slow or closed browser holds back no one, and at most
MAX_WATCHERS connections are served at once.
"""

from __future__ import annotations

import ipaddress
import json
import socket
import threading
import time
from collections import deque
from collections.abc import Callable, Iterator
from dataclasses import asdict, dataclass
from typing import Any

import cv2
import numpy as np
from werkzeug.serving import BaseWSGIServer, WSGIRequestHandler, make_server
from werkzeug.wrappers import Request, Response

from apps.live_page import PAGE
from apps.report import annotate_image, attribute_words, face_words
from apps.video import FrameResult, StreamSummary
from facestream.kafka_records import status_name
from facestream.models import SYNTHETIC_WARNING
from facestream.v1 import records_pb2

DEFAULT_VIEW_HOST = "127.0.0.1"
# Connections served at once (each page holds two: the picture and the events).
MAX_WATCHERS = 16
# Ended tracks the page lists, the newest first.
ENDED_SHOWN = 50
# Answered frames whose capture-to-result times make the status line's percentiles.
LATENCY_FRAMES = 200
# A page hears from the view at least this often (seconds), so it sees the counts move
# while no result comes (a live source dropping frames), and a dead connection is noticed.
REFRESH_SECONDS = 1.0
# At most one picture drawn, and one picture and one event sent to each page, per this many
# seconds, however fast results come: a page that shows a 5 fps camera misses nothing, and a
# file answered faster than that costs the client and the browser no more.
UPDATE_SECONDS = 0.1
# How long `close` waits for the pages still connected to get the end of the stream.
CLOSE_GRACE_SECONDS = 5.0
JPEG_QUALITY = 80
BOUNDARY = "frame"


@dataclass
class OpenTrack:
    """A track the stream follows now, as the page lists it."""

    track_id: str
    first_sequence: int
    first_position_ms: int
    last_sequence: int
    label: str  # its attributes (and identity) as the last frame gave them
    analysed_last: bool  # whether the models ran on it in its last frame (else carried)
    frames_seen: int
    frames_analysed: int


@dataclass(frozen=True)
class EndedTrack:
    """A track's summary, published when it ended, as the page lists it."""

    track_id: str
    first_position_ms: int
    last_position_ms: int
    frames_seen: int
    frames_analysed: int
    label: str
    ended_by: str


class TrackBoard:
    """The open tracks and the latest ended ones, from a stream's results in order."""

    def __init__(self) -> None:
        self.open: dict[str, OpenTrack] = {}
        self.ended: deque[EndedTrack] = deque(maxlen=ENDED_SHOWN)

    def record(self, result: records_pb2.AnalysisResult) -> None:
        """Follow the tracks of one frame's result: its faces' tracks, then the tracks it
        ended."""
        frame = result.frame
        for face in result.faces:
            if not face.track_id:
                continue
            track = self.open.get(face.track_id)
            if track is None:
                track = self.open[face.track_id] = OpenTrack(
                    face.track_id, frame.sequence, frame.position_ms, frame.sequence, "", False,
                    0, 0,
                )  # fmt: skip
            track.last_sequence = frame.sequence
            track.label = " ".join(face_words(face))
            track.analysed_last = not face.carried
            track.frames_seen += 1
            track.frames_analysed += not face.carried
        for summary in result.ended_tracks:
            self.open.pop(summary.track_id, None)
            self.ended.appendleft(ended_track(summary))

    def snapshot(self) -> dict[str, list[dict[str, Any]]]:
        """The tracks as the page shows them: open ones by id, ended ones newest first."""
        return {
            "open_tracks": [
                asdict(track) for _, track in sorted(self.open.items(), key=_by_number)
            ],
            "ended_tracks": [asdict(track) for track in self.ended],
        }


def _by_number(item: tuple[str, OpenTrack]) -> tuple[int, str]:
    digits = item[0].lstrip("t")
    return (int(digits) if digits.isdigit() else 0, item[0])


def ended_track(summary: records_pb2.TrackSummary) -> EndedTrack:
    """A track summary as the page lists it: its span, counts and mean attributes."""
    parts = ([summary.subject] if summary.subject else []) + attribute_words(summary)
    return EndedTrack(
        track_id=summary.track_id,
        first_position_ms=summary.first.position_ms,
        last_position_ms=summary.last.position_ms,
        frames_seen=summary.frames_seen,
        frames_analysed=summary.frames_analysed,
        label=" ".join(parts),
        ended_by=summary.ended_by,
    )


def percentile(values: list[float], share: float) -> float:
    """The `share` (0..1) percentile of `values`, 0 for none."""
    return float(np.percentile(values, share * 100)) if values else 0.0


def parse_view_address(text: str) -> tuple[str, int]:
    """`--view`'s ADDRESS: HOST:PORT, PORT or HOST (port 0: a free one). ValueError
    saying what is wrong."""
    host, _, port = text.rpartition(":") if ":" in text else ("", "", text)
    if not port.isdigit():
        host, port = text, "0"
    host = host.strip("[]") or DEFAULT_VIEW_HOST
    if not 0 <= int(port) <= 65535:
        raise ValueError(f"--view {text}: the port must be 0 to 65535")
    return host, int(port)


def is_loopback(host: str) -> bool:
    """True when `host` is this machine only (127.0.0.1, ::1, localhost)."""
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def view_notice(url: str, host: str) -> list[str]:
    """What to tell the person who asked for the view: where it is, and that anyone who can
    reach a host other than this machine's loopback sees the stream."""
    lines = [f"view: {url}"]
    if not is_loopback(host):
        lines.append(f"view: the page has no sign-in: anyone who can reach {host} sees this stream")
    return lines


class _QuietHandler(WSGIRequestHandler):
    """Werkzeug's handler without its line per request on stderr (the command's output)."""

    def log_request(self, code: int | str = "-", size: int | str = "-") -> None:
        pass


class LiveView:
    """The view of one stream (`description`, `mode`: live or file): `offer` each answered
    frame, `serve` the page, `finish` when the stream ended, `close` when done."""

    def __init__(self, description: str, mode: str) -> None:
        self.description = description
        self.mode = mode
        # The stream's counts so far (`VideoStream.summary`), once it is being sent.
        self.counts: Callable[[], StreamSummary] | None = None
        self.url = ""  # where the page is, once served
        self._changed = threading.Condition()
        self._board = TrackBoard()
        self._latencies: deque[float] = deque(maxlen=LATENCY_FRAMES)
        self._frame: dict[str, Any] = {}  # the newest answered frame, as the status shows it
        self._synthetic = False  # a result said the models ran on synthetic weights
        self._pending: FrameResult | None = None  # the newest result not yet drawn
        self._picture = b""  # the newest drawn frame, JPEG
        self._picture_version = 0
        self._picture_sequence = -1  # the sequence of the frame it shows
        self._state_version = 0
        self._no_more = False  # the stream ended: the drawing thread ends once it drew all
        self._finished = ""  # the stream's last line, once it ended and all was drawn
        self._closed = False
        self._watchers = 0
        self._drawer = threading.Thread(target=self._draw, name="live-view-draw", daemon=True)
        self._drawer.start()
        self._server: BaseWSGIServer | None = None
        self._serving: threading.Thread | None = None

    # The stream's side: cheap, never waits for a page.

    def offer(self, answer: FrameResult) -> None:
        """Record an answered (or refused) frame: its tracks, its time from capture to now,
        and it as the newest frame to draw."""
        result = answer.result
        with self._changed:
            if answer.frame.captured_at and not answer.frame.closing:
                self._latencies.append(time.monotonic() - answer.frame.captured_at)
            if result is not None:
                self._board.record(result)
                self._synthetic = self._synthetic or result.synthetic_weights
            self._frame = {
                "sequence": answer.frame.sequence,
                "position_ms": answer.frame.position_ms,
                "status": status_name(result) if result is not None else "REFUSED",
                "faces": len(result.faces) if result is not None else 0,
                "error": answer.error,
            }
            self._pending = answer
            self._state_version += 1
            self._changed.notify_all()

    def finish(self, line: str) -> None:
        """The stream ended (`line` says how): draw what is left, then tell every page (and
        end their connections once they have it)."""
        with self._changed:
            self._no_more = True
            self._changed.notify_all()
        self._drawer.join(10)
        with self._changed:
            self._finished = line
            self._state_version += 1
            self._changed.notify_all()

    def state(self) -> dict[str, Any]:
        """What the page's lists and status line show now."""
        counts = self.counts() if self.counts is not None else StreamSummary("", 0, 0, 0, 0, "")
        with self._changed:
            latencies = list(self._latencies)
            return {
                "source": self.description,
                "mode": self.mode,
                "sent": counts.sent,
                "answered": counts.answered,
                "refused": counts.refused,
                "dropped": counts.dropped,
                "p50": round(percentile(latencies, 0.5), 3),
                "p99": round(percentile(latencies, 0.99), 3),
                "frame": dict(self._frame),
                "picture": self._picture_sequence,  # the frame the picture shows (-1: none)
                **self._board.snapshot(),
                "finished": self._finished,
                "warning": SYNTHETIC_WARNING if self._synthetic else "",
            }

    def _paced(self, since: float) -> None:
        """Wait until UPDATE_SECONDS after `since`, unless the stream ends or the view
        closes meanwhile."""
        with self._changed:
            self._changed.wait_for(
                lambda: self._no_more or self._closed, since + UPDATE_SECONDS - time.monotonic()
            )

    def _draw(self) -> None:
        drawn_at = 0.0
        while True:
            self._paced(drawn_at)
            with self._changed:
                while self._pending is None and not (self._no_more or self._closed):
                    self._changed.wait()
                answer, self._pending = self._pending, None
                if answer is None:
                    return
            drawn_at = time.monotonic()
            picture = annotate_image(answer.frame.image, answer.result)
            ok, data = cv2.imencode(".jpg", picture, [cv2.IMWRITE_JPEG_QUALITY, JPEG_QUALITY])
            if ok:
                with self._changed:
                    self._picture = data.tobytes()
                    self._picture_version += 1
                    self._picture_sequence = answer.frame.sequence
                    self._state_version += 1
                    self._changed.notify_all()

    # The pages' side: each connection in a thread of the server.

    def serve(self, host: str = DEFAULT_VIEW_HOST, port: int = 0) -> str:
        """Serve the page at `host`:`port` (0: a free one) from a thread; its URL. OSError
        when the address cannot be bound."""
        # Bound here, so that an address in use is an OSError (Werkzeug would exit).
        family = socket.AF_INET6 if ":" in host else socket.AF_INET
        listening = socket.create_server((host, port), family=family)
        server = make_server(
            host,
            port,
            self._application,
            threaded=True,
            request_handler=_QuietHandler,
            fd=listening.fileno(),
        )
        listening.close()  # Werkzeug serves a duplicate of it
        self._server = server
        self._serving = threading.Thread(
            target=server.serve_forever, name="live-view-serve", daemon=True
        )
        self._serving.start()
        shown = f"[{host}]" if ":" in host else host
        self.url = f"http://{shown}:{server.port}/"
        return self.url

    def serve_at(self, address: str) -> list[str]:
        """Serve the page at `--view`'s ADDRESS (`parse_view_address`); the lines that
        tell where it is (`view_notice`). ValueError naming the address when it cannot be
        parsed or bound."""
        host, port = parse_view_address(address)
        try:
            url = self.serve(host, port)
        except OSError as error:
            raise ValueError(f"--view {address}: {error.strerror}") from None
        return view_notice(url, host)

    def close(self, grace: float = CLOSE_GRACE_SECONDS) -> None:
        """Stop serving, once the pages still connected got the end (at most `grace`
        seconds), and stop drawing."""
        deadline = time.monotonic() + grace
        with self._changed:
            while self._watchers and self._finished and time.monotonic() < deadline:
                self._changed.wait(max(0.0, deadline - time.monotonic()))
            self._closed = True
            self._changed.notify_all()
        if self._server is not None and self._serving is not None:
            self._server.shutdown()
            self._server.server_close()
            self._serving.join(10)
        self._drawer.join(10)

    @Request.application
    def _application(self, request: Request) -> Response:
        if request.method != "GET":
            return Response("only GET\n", status=405, mimetype="text/plain")
        if request.path == "/":
            return Response(PAGE, mimetype="text/html", headers={"Cache-Control": "no-store"})
        if request.path == "/state.json":
            return Response(json.dumps(self.state()), mimetype="application/json")
        if request.path == "/frame.jpg":
            with self._changed:
                picture = self._picture
            if not picture:
                return Response("no frame answered yet\n", status=404, mimetype="text/plain")
            return Response(picture, mimetype="image/jpeg", headers={"Cache-Control": "no-store"})
        streams = {"/video.mjpeg": self._pictures, "/events": self._events}
        if request.path not in streams:
            return Response("not found\n", status=404, mimetype="text/plain")
        with self._changed:
            if self._watchers >= MAX_WATCHERS:
                return Response("too many pages watching\n", status=503, mimetype="text/plain")
            self._watchers += 1
        mimetype = (
            f"multipart/x-mixed-replace; boundary={BOUNDARY}"
            if request.path == "/video.mjpeg"
            else "text/event-stream"
        )
        return Response(
            self._watching(streams[request.path]()),
            mimetype=mimetype,
            headers={"Cache-Control": "no-store", "X-Accel-Buffering": "no"},
            direct_passthrough=True,
        )

    def _watching(self, chunks: Iterator[bytes]) -> Iterator[bytes]:
        """`chunks`, counted as a watcher until they end or the page goes away (then the
        server closes this generator)."""
        try:
            yield b""  # Werkzeug sends the headers now: the page knows it is served
            yield from chunks
        finally:
            with self._changed:
                self._watchers -= 1
                self._changed.notify_all()

    def _pictures(self) -> Iterator[bytes]:
        """The newest drawn frame each time there is a newer one, until the stream ended
        and the last one was sent."""
        sent, sent_at = 0, 0.0
        while True:
            self._paced(sent_at)
            with self._changed:
                self._changed.wait_for(
                    lambda sent=sent: (
                        self._picture_version != sent or self._finished or self._closed
                    ),
                    REFRESH_SECONDS,
                )
                if self._closed or (self._picture_version == sent and self._finished):
                    return
                if self._picture_version == sent:
                    continue
                picture, sent = self._picture, self._picture_version
            sent_at = time.monotonic()
            yield (
                (
                    f"--{BOUNDARY}\r\nContent-Type: image/jpeg\r\n"
                    f"Content-Length: {len(picture)}\r\n\r\n"
                ).encode()
                + picture
                + b"\r\n"
            )

    def _events(self) -> Iterator[bytes]:
        """The state as a Server-Sent Event each time it changed (at least every
        REFRESH_SECONDS, for the counts), the last one once the stream ended."""
        sent, sent_at = -1, 0.0
        while True:
            self._paced(sent_at)
            with self._changed:
                self._changed.wait_for(
                    lambda sent=sent: self._state_version != sent or self._closed, REFRESH_SECONDS
                )
                if self._closed:
                    return
                sent = self._state_version
                finished = bool(self._finished)
            sent_at = time.monotonic()
            yield f"data: {json.dumps(self.state())}\n\n".encode()
            if finished:
                return
