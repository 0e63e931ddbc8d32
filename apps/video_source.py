"""Video sources: a video file, an `rtsp://` or `http(s)://` stream, or a camera, read with
OpenCV (its wheel has FFmpeg) and sampled at a number of frames per second of video, each
sampled frame decoded and encoded as JPEG, ready to send."""

from __future__ import annotations

import re
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from types import TracebackType

import cv2
import numpy as np

from facestream.v1 import records_pb2

DEFAULT_FPS = 5.0
JPEG_QUALITY = 90
# OpenCV's (FFmpeg's) waits for a stream that does not answer, in milliseconds.
OPEN_TIMEOUT_MS = 10_000
READ_TIMEOUT_MS = 10_000
LIVE_SCHEMES = re.compile(r"^(rtsps?|https?)://", re.IGNORECASE)
# The video files OpenCV writes here, by suffix: its FFmpeg has no H.264 encoder.
VIDEO_FOURCC = {".mp4": "mp4v", ".avi": "MJPG"}


class VideoSourceError(Exception):
    """The source cannot be opened or read; the message says why."""


@dataclass(frozen=True)
class SampledFrame:
    """A frame sampled from the source, as sent."""

    sequence: int  # 0, 1, 2, ... in the stream (numbered again as sent)
    frame_index: int  # in the source
    position_ms: int  # in the source (a live source: since it was opened)
    image: np.ndarray  # BGR, as decoded
    jpeg: bytes
    captured_at: float = 0.0  # time.monotonic() when it was read from the source
    # A live source's newest picture sent once more to end its stream (apps.video).
    closing: bool = False

    def stream_frame(self, stream_id: str, last: bool) -> records_pb2.StreamFrame:
        return records_pb2.StreamFrame(
            stream_id=stream_id,
            sequence=self.sequence,
            frame_index=self.frame_index,
            position_ms=self.position_ms,
            last=last,
        )


class VideoSource:
    """An opened source; `frames()` samples it. A context manager that releases it."""

    def __init__(
        self,
        capture: cv2.VideoCapture,
        description: str,
        live: bool,
        fps: float,
        start: float,
        duration: float | None,
    ) -> None:
        self.capture = capture
        self.description = description
        self.live = live
        self.fps = fps
        self.start_ms = start * 1000
        self.end_ms = None if duration is None else (start + duration) * 1000
        self._stop = threading.Event()
        # time.monotonic() when sampling began: a live frame was grabbed at
        # opened_at + position_ms / 1000 (for its capture-to-result time).
        self.opened_at: float | None = None
        source_fps = capture.get(cv2.CAP_PROP_FPS)
        # A file's frame rate places its frames in time; some containers do not say it.
        self.source_fps = source_fps if 0 < source_fps < 1000 else 25.0

    def stop(self) -> None:
        """Make `frames()` end after the frame it is reading (from any thread)."""
        self._stop.set()

    def frames(self) -> Iterator[SampledFrame]:
        """The sampled frames, in order. VideoSourceError when no frame can be read at all,
        or when a live source breaks (after the frames read until then)."""
        period_ms = 1000 / self.fps
        opened = self.opened_at = time.monotonic()
        index = self._seek_start()
        next_sample_ms = self.start_ms
        sequence = 0
        while not self._stop.is_set():
            if not self.capture.grab():
                break
            read_at = time.monotonic()
            position_ms = (read_at - opened) * 1000 if self.live else index * 1000 / self.source_fps
            if self.end_ms is not None and position_ms >= self.end_ms:
                return
            if position_ms + 1e-6 >= next_sample_ms:
                ok, image = self.capture.retrieve()
                if not ok or image is None:
                    break
                # Never a burst to catch up: the next sample is a period after this one.
                next_sample_ms = max(next_sample_ms + period_ms, position_ms + period_ms / 2)
                yield SampledFrame(
                    sequence, index, round(position_ms), image, encode_jpeg(image), read_at
                )
                sequence += 1
            index += 1
        if self._stop.is_set():
            return
        if sequence == 0:
            raise VideoSourceError(f"{self.description}: no frame could be read")
        if self.live:
            raise VideoSourceError(f"{self.description}: the stream ended or broke")
        # A file whose header promises more frames than could be read is cut short or
        # damaged (containers that estimate their count may be a frame or two off).
        promised = int(self.capture.get(cv2.CAP_PROP_FRAME_COUNT))
        if promised > 0 and index < promised - 2:
            raise VideoSourceError(
                f"{self.description}: reading stopped at frame {index} of {promised}: the "
                "file is cut short or damaged"
            )

    def _seek_start(self) -> int:
        """Go to the start position of a file; the index of the frame there."""
        if self.start_ms <= 0:
            return 0
        self.capture.set(cv2.CAP_PROP_POS_MSEC, self.start_ms)
        return int(self.capture.get(cv2.CAP_PROP_POS_FRAMES))

    def close(self) -> None:
        self.capture.release()

    def __enter__(self) -> VideoSource:
        return self

    def __exit__(
        self,
        kind: type[BaseException] | None,
        error: BaseException | None,
        trace: TracebackType | None,
    ) -> None:
        self.close()


def encode_jpeg(image: np.ndarray) -> bytes:
    ok, data = cv2.imencode(".jpg", image, [cv2.IMWRITE_JPEG_QUALITY, JPEG_QUALITY])
    if not ok:
        raise VideoSourceError("a frame could not be encoded as JPEG")
    return data.tobytes()


def open_video_source(
    spec: str, fps: float = DEFAULT_FPS, start: float = 0.0, duration: float | None = None
) -> VideoSource:
    """Open `spec`: a camera index ("0"), an rtsp/http(s) URL (live), or a video file.
    VideoSourceError saying why when it cannot be opened or the options do not fit it."""
    if not 0 < fps <= 120:
        raise VideoSourceError(f"--fps {fps}: give a number above 0 and at most 120")
    if start < 0 or (duration is not None and duration <= 0):
        raise VideoSourceError("--start must be 0 or more and --duration above 0 (seconds)")
    timeouts = [
        cv2.CAP_PROP_OPEN_TIMEOUT_MSEC,
        OPEN_TIMEOUT_MS,
        cv2.CAP_PROP_READ_TIMEOUT_MSEC,
        READ_TIMEOUT_MS,
    ]
    if spec.isdigit():
        live, description = True, f"camera {spec}"
        capture = cv2.VideoCapture(int(spec))
        problem = "it could not be opened (no such camera, or it is busy)"
    elif LIVE_SCHEMES.match(spec):
        live, description = True, _without_credentials(spec)
        capture = cv2.VideoCapture(spec, cv2.CAP_FFMPEG, timeouts)
        problem = "it could not be opened (refused, unreachable, or not a video stream)"
    else:
        live, description = False, spec
        if not Path(spec).is_file():
            raise VideoSourceError(f"{spec}: no such file")
        capture = cv2.VideoCapture(spec, cv2.CAP_FFMPEG, timeouts)
        problem = "it is not a video OpenCV can read (unsupported codec or not a video)"
    if not capture.isOpened():
        capture.release()
        raise VideoSourceError(f"{description}: {problem}")
    if live and start > 0:
        capture.release()
        raise VideoSourceError(f"{description}: --start needs a video file, not a live source")
    return VideoSource(capture, description, live, fps, start, duration)


def _without_credentials(url: str) -> str:
    """The URL as it may be printed: a user:password@ part is hidden."""
    return re.sub(r"//[^/@]*@", "//***@", url)


def video_fourcc(path: Path) -> str:
    """The codec OpenCV writes `path` with, by its suffix; ValueError for another suffix."""
    fourcc = VIDEO_FOURCC.get(path.suffix.lower())
    if fourcc is None:
        raise ValueError(f"{path}: use a {' or '.join(VIDEO_FOURCC)} file")
    return fourcc


def open_video_writer(path: Path, fps: float, size: tuple[int, int]) -> cv2.VideoWriter:
    """A writer of the video `path` (.mp4 or .avi; ValueError otherwise) at `fps`, of
    frames of `size` (width, height); RuntimeError when OpenCV cannot write it here."""
    fourcc = video_fourcc(path)
    writer = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*fourcc), fps, size)
    if not writer.isOpened():
        raise RuntimeError(f"{path}: OpenCV cannot write {fourcc} video here")
    return writer
