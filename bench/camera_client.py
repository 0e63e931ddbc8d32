"""One camera's client in the cameras row of `make bench`: what `facestream video URL` does
(`VideoStream` over a live source), in a process of its own so that its cost is counted as
a user pays it, for a given number of seconds; then one JSON line on stdout: frames sent,
answered, refused and dropped, each answered frame's capture-to-result seconds, the
frames whose result was not OK or NO_FACE, and the CPU seconds the client used.

    python -m bench.camera_client ADDRESS URL SECONDS [--fps 5]
"""

from __future__ import annotations

import argparse
import json
import time
from typing import Any

from apps.video import FrameResult, VideoStream, capture_to_result
from apps.video_source import open_video_source
from bench.video import ANSWERED
from facestream.client import AnalyzeClient

# Seconds without any answer after which a step's client gives up on its frames.
NO_PROGRESS_TIMEOUT = 120.0


def watch_camera(address: str, url: str, seconds: float, fps: float) -> dict[str, Any]:
    """Stream the camera at `url` to the system at `address` for `seconds`; the counts and
    the capture-to-result latencies."""
    latencies: list[float] = []
    failed = 0
    with (
        AnalyzeClient(address) as client,
        open_video_source(url, fps, duration=seconds) as source,
    ):

        def on_result(done: FrameResult) -> None:
            nonlocal failed
            if done.result is None or done.result.status not in ANSWERED:
                failed += 1
                return
            if (latency := capture_to_result(source, done)) is not None:
                latencies.append(latency)

        summary = VideoStream(
            client, source, f"camera-{time.time_ns()}", on_result, timeout=NO_PROGRESS_TIMEOUT
        ).run()
    return {
        "sent": summary.sent,
        "answered": summary.answered,
        "refused": summary.refused,
        "dropped": summary.dropped,
        "failed": failed,
        "broken": summary.broken,
        "seconds": seconds,
        "latencies": latencies,
        "cpu_s": time.process_time(),  # this process's, start-up included
    }


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(
        prog="python -m bench.camera_client", description=__doc__.splitlines()[0]
    )
    parser.add_argument("address")
    parser.add_argument("url")
    parser.add_argument("seconds", type=float)
    parser.add_argument("--fps", type=float, default=5.0)
    args = parser.parse_args(argv)
    print(json.dumps(watch_camera(args.address, args.url, args.seconds, args.fps)), flush=True)


if __name__ == "__main__":
    main()
