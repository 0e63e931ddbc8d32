"""A camera for tests and benchmarks: a live HTTP MJPEG stream (what IP cameras serve)
of given frames, served on 127.0.0.1 by a thread of the caller and stopped by it."""

from __future__ import annotations

import itertools
import threading
import time
from collections.abc import Iterator, Sequence
from contextlib import contextmanager, suppress
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import cv2
import numpy as np

BOUNDARY = b"frame"


@contextmanager
def mjpeg_stream(
    frames: Sequence[np.ndarray], fps: float, count: int | None = None, first: int = 0
) -> Iterator[str]:
    """An HTTP MJPEG stream (multipart/x-mixed-replace) of `count` frames cycling through
    `frames` from frame `first` at `fps` (None: without end), after which the server closes
    the connection (the stream breaks); its URL. The server stops on the way out."""
    encoded = [cv2.imencode(".jpg", frame)[1].tobytes() for frame in frames]

    class Camera(BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            self.send_response(200)
            self.send_header(
                "Content-Type", f"multipart/x-mixed-replace; boundary={BOUNDARY.decode()}"
            )
            self.end_headers()
            started = time.monotonic()
            for index in itertools.count() if count is None else range(count):
                # A camera's pace: frame `index` leaves at its time, whoever reads it.
                delay = started + index / fps - time.monotonic()
                if delay > 0:
                    time.sleep(delay)
                data = encoded[(first + index) % len(encoded)]
                part = (
                    b"--"
                    + BOUNDARY
                    + b"\r\nContent-Type: image/jpeg\r\n"
                    + f"Content-Length: {len(data)}\r\n\r\n".encode()
                    + data
                    + b"\r\n"
                )
                try:
                    self.wfile.write(part)
                    self.wfile.flush()
                except OSError:  # the reader went away
                    return

        def log_message(self, *_args: object) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Camera)
    thread = threading.Thread(target=server.serve_forever, name="mjpeg-camera", daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}/stream.mjpg"
    finally:
        server.shutdown()
        server.server_close()
        thread.join(10)


def main(argv: list[str] | None = None) -> None:
    """Serve the demo's composed video as a camera until stopped (SIGTERM or Ctrl-C): its
    frames in a loop, at --fps, --size pixels; the URL is printed on the first line."""
    import argparse
    import signal

    from apps.demo_video import demo_frames

    parser = argparse.ArgumentParser(prog="python -m apps.mjpeg_camera", description=main.__doc__)
    parser.add_argument("--fps", type=float, default=5.0)
    parser.add_argument("--size", default="640x480", help="WIDTHxHEIGHT")
    parser.add_argument("--seconds", type=float, default=10.0, help="the loop's length")
    parser.add_argument(
        "--start", type=float, default=0.0, help="seconds into the loop where it begins"
    )
    args = parser.parse_args(argv)
    width, height = (int(side) for side in args.size.split("x"))
    loop = round(args.seconds * args.fps)
    pictures = [frame for frame, _boxes in demo_frames(loop, (width, height))]
    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    with mjpeg_stream(pictures, args.fps, first=round(args.start * args.fps)) as url:
        print(url, flush=True)
        with suppress(KeyboardInterrupt):
            stop.wait()


if __name__ == "__main__":
    main()
