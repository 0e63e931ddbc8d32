"""The client side of the `facestream` command: `submit`, `watch` and `video`."""

from __future__ import annotations

import json
import signal
import sys
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor, as_completed
from dataclasses import dataclass
from pathlib import Path
from types import FrameType

import cv2
import grpc
import numpy as np
from tqdm import tqdm

from apps.image_sources import IMAGE_SUFFIXES, NamedImage, image_files
from apps.live_view import LiveView, parse_view_address
from apps.report import annotate_image
from apps.result_table import error_row, format_table, frame_json, result_json, result_rows
from apps.result_text import identity_text
from apps.video import FrameResult, StreamSummary, VideoStream
from apps.video_source import (
    VideoSourceError,
    open_video_source,
    open_video_writer,
    video_fourcc,
)
from di.settings import ClientProcessSettings, Settings
from facestream.client import AnalyzeClient, error_reason, identify_in, request
from facestream.models import SYNTHETIC_WARNING
from facestream.requests import InvalidRequestError, check_stream_id
from facestream.v1 import analyze_service_pb2, records_pb2

SUBMIT_COLUMNS = ("image", "request id", "accepted")


def client_for(
    settings: ClientProcessSettings | Settings, address: str | None = None
) -> AnalyzeClient:
    """A client for the server at `address` (default FACESTREAM_GRPC_ADDRESS), with the
    client token and CA."""
    certificate = settings.tls.certificate
    return AnalyzeClient(
        address or settings.server.grpc_address,
        settings.client.client_token.get_secret_value(),
        settings.tls.tls_ca,
        client_certificate=certificate,
    )


def describe_rpc_error(error: grpc.RpcError) -> str:
    """A failed call for a person: its status, facestream's error code when it has one, and
    the server's message."""
    code = error.code() if isinstance(error, grpc.Call) else None
    details = error.details() if isinstance(error, grpc.Call) else str(error)
    reason = error_reason(error)
    return f"{code.name if code else 'ERROR'}{f' {reason}' if reason else ''}: {details}"


@dataclass(frozen=True)
class SubmitOptions:
    """What `facestream submit` was asked for."""

    paths: Sequence[Path]
    wait: bool
    as_json: bool
    timeout: float
    concurrency: int
    actions: Sequence[str] = ()  # empty: the server's default
    embeddings: bool = True  # False: JSON lines leave the faces' embeddings out


def run_submit(settings: ClientProcessSettings, options: SubmitOptions) -> int:
    """Send the images; print their request ids, or with `wait` their results.
    Exit code 0 when every image was accepted (and answered), 1 otherwise."""
    try:
        files = image_files(options.paths)
    except FileNotFoundError as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    if not files:
        suffixes = ", ".join(sorted(IMAGE_SUFFIXES))
        print(f"error: no image files found ({suffixes})", file=sys.stderr)
        return 2
    with client_for(settings) as client:
        if options.wait:
            return _analyze_all(client, files, options)
        return _submit_all(client, files, options)


def _submit_all(client: AnalyzeClient, files: list[Path], options: SubmitOptions) -> int:
    sent: list[Path] = []
    unreadable: list[tuple[Path, str]] = []

    def requests() -> Iterator[analyze_service_pb2.SubmitRequest]:
        for path in files:
            try:
                image = path.read_bytes()
            except OSError as error:
                unreadable.append((path, str(error)))
                continue
            sent.append(path)
            yield request(image, options.actions)

    rows: list[tuple[str, str, str]] = []
    try:
        with tqdm(total=len(files), unit="img", file=sys.stderr, desc="submit") as progress:
            for reply in client.submit_stream(requests(), timeout=options.timeout):
                path = sent[len(rows)]
                error = reply.error
                accepted = f"no: {error.code}: {error.message}" if error.code else "yes"
                rows.append((str(path), reply.request_id, accepted))
                progress.update(1)
    except grpc.RpcError as error:
        print(f"error: {describe_rpc_error(error)}", file=sys.stderr)
        return 1
    rows += [(str(path), "-", f"no: {reason}") for path, reason in unreadable]
    if options.as_json:
        print("\n".join(acceptance_json(*row) for row in rows))
    else:
        print(format_table(rows, SUBMIT_COLUMNS))
    return 0 if all(row[2] == "yes" for row in rows) else 1


def acceptance_json(image: str, request_id: str, accepted: str) -> str:
    """One JSON line saying whether an image was accepted, and under which request id."""
    return json.dumps({"image": image, "request_id": request_id, "accepted": accepted})


@dataclass(frozen=True)
class Analysis:
    """What `Analyze` gave for one image: its result, or why there is none, and how long
    the call took (seconds)."""

    name: str
    result: records_pb2.AnalysisResult | None
    error: str
    seconds: float


def analyze_images(
    client: AnalyzeClient,
    images: Sequence[Callable[[], NamedImage]],
    timeout: float,
    concurrency: int,
    request_ids: Sequence[str] = (),
    actions: Sequence[str] = (),
    identify: records_pb2.Identify | None = None,
) -> list[Analysis]:
    """Call `Analyze` for each image, `concurrency` at a time, with a progress bar on
    stderr; one Analysis per image, in order. `images` are loaders, so a file that cannot
    be read fails only its own entry. `request_ids`, when given, name the requests;
    `actions`, when given, are asked of every image; with `identify`, its faces are
    identified."""

    def analyze(index: int) -> Analysis:
        started = time.monotonic()
        name = f"#{index}"
        try:
            image = images[index]()
            name = image.name
            request_id = request_ids[index] if request_ids else ""
            result = client.analyze(
                image.data, actions, request_id=request_id, timeout=timeout, identify=identify
            )
        except OSError as error:
            return Analysis(name, None, f"unreadable: {error}", time.monotonic() - started)
        except grpc.RpcError as error:
            return Analysis(name, None, describe_rpc_error(error), time.monotonic() - started)
        return Analysis(name, result, "", time.monotonic() - started)

    analyses: dict[int, Analysis] = {}
    pool = ThreadPoolExecutor(concurrency)
    try:
        with tqdm(total=len(images), unit="img", file=sys.stderr, desc="analyze") as progress:
            futures = {pool.submit(analyze, index): index for index in range(len(images))}
            for future in as_completed(futures):
                analyses[futures[future]] = future.result()
                progress.update(1)
    finally:
        # On Ctrl-C, do not wait for calls still in flight: closing the channel ends them.
        pool.shutdown(wait=False, cancel_futures=True)
    return [analyses[index] for index in range(len(images))]


def _file_loader(path: Path) -> Callable[[], NamedImage]:
    return lambda: NamedImage(str(path), path.read_bytes())


def _analyze_all(client: AnalyzeClient, files: list[Path], options: SubmitOptions) -> int:
    as_json = options.as_json
    loaders = [_file_loader(p) for p in files]
    analyses = analyze_images(
        client, loaders, options.timeout, options.concurrency, actions=options.actions
    )
    rows = []
    for path, analysis in zip(files, analyses, strict=True):
        if analysis.result is None:
            rows.append(error_row(str(path), analysis.error))
            if as_json:
                print(acceptance_json(str(path), "-", f"no: {analysis.error}"))
            continue
        rows.extend(result_rows(str(path), analysis.result))
        if as_json:
            print(result_json(str(path), analysis.result, options.embeddings))
    if not as_json:
        if any(a.result is not None and a.result.synthetic_weights for a in analyses):
            print(f"!! {SYNTHETIC_WARNING}")
        print(format_table(rows))
    return 0 if all(a.result is not None for a in analyses) else 1


def run_watch(
    settings: ClientProcessSettings,
    request_ids: Sequence[str],
    as_json: bool,
    embeddings: bool = True,
) -> int:
    """Print results as they arrive: for the ids given (until each has one), or all;
    `embeddings=False` leaves the faces' embeddings out of JSON lines."""
    try:
        with client_for(settings) as client:
            for result in client.watch(request_ids):
                if as_json:
                    print(result_json(result.request_id, result, embeddings), flush=True)
                    continue
                marker = f"  [{SYNTHETIC_WARNING}]" if result.synthetic_weights else ""
                for row in result_rows(result.request_id, result):
                    print("  ".join(row) + marker, flush=True)
    except grpc.RpcError as error:
        print(f"error: {describe_rpc_error(error)}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        return 130
    return 0


@dataclass(frozen=True)
class VideoOptions:
    """What `facestream video` was asked for."""

    source: str
    fps: float
    stream_id: str
    start: float
    duration: float | None
    as_json: bool
    out: Path | None
    window: int
    timeout: float
    embeddings: bool = True  # False: JSON lines leave the faces' embeddings out
    gallery: str = ""  # identify each face against this gallery of the caller's
    view: str | None = None  # serve the live view at this address (apps.live_view)
    keep_view: bool = False  # keep serving it after the stream ended, until Ctrl-C


class AnnotatedVideo:
    """`--out FILE`: the sampled frames with boxes and labels, as a video (.mp4 or .avi)
    at the sampling rate."""

    def __init__(self, path: Path, fps: float) -> None:
        video_fourcc(path)  # a bad suffix fails now, before any frame is sent
        self.path = path
        self.fps = fps
        self._writer: cv2.VideoWriter | None = None

    def write(self, image: np.ndarray, result: records_pb2.AnalysisResult | None) -> None:
        annotated = annotate_image(image, result)
        if self._writer is None:
            height, width = annotated.shape[:2]
            self._writer = open_video_writer(self.path, self.fps, (width, height))
        self._writer.write(annotated)

    def close(self) -> None:
        if self._writer is not None:
            self._writer.release()
            self._writer = None


def run_video(settings: ClientProcessSettings, options: VideoOptions) -> int:
    """Send a video's sampled frames as one stream and print each frame's result as it
    comes (and with `view`, show it on a live page). Exit code 0 when every frame sent was
    answered and the source did not break, 1 otherwise, 2 when the source cannot be opened,
    an option does not fit it or the view's address cannot be served."""
    # OpenCV's warnings about a source it cannot open: the error below says what went wrong.
    cv2.utils.logging.setLogLevel(cv2.utils.logging.LOG_LEVEL_ERROR)
    try:
        check_stream_id(options.stream_id)
        if options.window < 1:
            raise ValueError(f"--window {options.window}: give 1 or more frames")
        if options.keep_view and options.view is None:
            raise ValueError("--keep-view needs --view")
        out = AnnotatedVideo(options.out, options.fps) if options.out else None
        if options.view is not None:
            parse_view_address(options.view)  # a bad address fails before the source opens
        source = open_video_source(options.source, options.fps, options.start, options.duration)
    except (InvalidRequestError, ValueError, VideoSourceError) as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    print(f"{source.description}: stream {options.stream_id}", file=sys.stderr, flush=True)
    view = LiveView(source.description, "live" if source.live else "file") if options.view else None

    def show(answer: FrameResult) -> None:
        if view is not None:
            view.offer(answer)
        frame = answer.frame.stream_frame(options.stream_id, last=False)
        if answer.result is not None:
            frame = answer.result.frame
        if options.as_json:
            print(frame_json(frame, answer.result, answer.error, options.embeddings), flush=True)
        else:
            name = f"#{frame.sequence} {frame.position_ms / 1000:.1f}s"
            rows = (
                result_rows(name, answer.result)
                if answer.result is not None
                else [error_row(name, answer.error)]
            )
            if options.gallery:
                faces = answer.result.faces if answer.result is not None else ()
                identities = [identity_text(face) for face in faces] or ["-"]
                rows = [(*row, identity) for row, identity in zip(rows, identities, strict=True)]
            for row in rows:
                print("  ".join(row), flush=True)
        if out is not None:
            out.write(answer.frame.image, answer.result)

    interrupted = threading.Event()

    def stop_reading(signum: int, _frame: FrameType | None) -> None:
        # The first Ctrl-C (or SIGTERM) ends the source: the frames sent are still answered
        # and counted. A second one quits at once.
        if interrupted.is_set():
            raise KeyboardInterrupt(signal.Signals(signum).name)
        interrupted.set()
        source.stop()
        print("stopping: answering the frames sent (again to quit now)", file=sys.stderr)

    signal.signal(signal.SIGINT, stop_reading)
    signal.signal(signal.SIGTERM, stop_reading)
    try:
        with source, client_for(settings) as client:
            stream = VideoStream(
                client,
                source,
                options.stream_id,
                show,
                window=options.window,
                timeout=options.timeout,
                identify=identify_in(options.gallery) if options.gallery else None,
            )
            if view is not None and options.view is not None:
                view.counts = stream.summary
                try:
                    notice = view.serve_at(options.view)
                except ValueError as error:
                    print(f"error: {error}", file=sys.stderr)
                    return 2
                for line in notice:
                    print(line, file=sys.stderr, flush=True)
            summary = stream.run()
        if out is not None:
            out.close()
        if view is not None:
            view.finish(summary.line())
        code = _video_outcome(summary, out, interrupted.is_set())
        if view is not None and options.keep_view:
            _keep_serving(view.url)
        return code
    except grpc.RpcError as error:
        print(f"error: {describe_rpc_error(error)}", file=sys.stderr)
        if view is not None:
            view.finish(f"the stream failed: {describe_rpc_error(error)}")
        return 1
    except KeyboardInterrupt:
        return 130
    finally:
        if out is not None:
            out.close()
        if view is not None:
            view.close()


def _video_outcome(summary: StreamSummary, out: AnnotatedVideo | None, interrupted: bool) -> int:
    """Print how a stream went; `facestream video`'s exit code for it."""
    if summary.sent == 0 and summary.broken:
        print(f"error: {summary.broken}", file=sys.stderr)
        return 2
    print(summary.line(), file=sys.stderr)
    if out is not None:
        print(f"annotated frames: {out.path}", file=sys.stderr)
    if summary.ended:
        print(f"error: {summary.ended}", file=sys.stderr)
        return 1
    if interrupted:
        return 130
    complete = summary.answered == summary.sent and not summary.broken
    return 0 if complete else 1


def _keep_serving(url: str) -> None:
    """`--keep-view`: the page stays until Ctrl-C (or SIGTERM)."""
    closing = threading.Event()
    signal.signal(signal.SIGINT, lambda *_: closing.set())
    signal.signal(signal.SIGTERM, lambda *_: closing.set())
    print(f"view: the stream has ended; the page stays at {url} until Ctrl-C", file=sys.stderr)
    while not closing.wait(0.5):
        pass
