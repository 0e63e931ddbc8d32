"""Video and live streams on the client side (`facestream video SOURCE`): a source's sampled
frames (`apps.video_source`) sent over SubmitStream as the frames of one stream, their
results back in order over WatchStream.

At most `window` frames are out (sent, not yet answered), so the system sets the pace:
- a file is read no faster than its frames are answered: every sampled frame is sent;
- a live source does not wait for anyone: while the window is full its newest frames wait
  in a small buffer, and when that is full the oldest unsent frame is dropped (and counted),
  so memory stays bounded and the frames sent are the recent ones.

A file's frame is sent once the next one is read (or the file ended), so that the stream's
last frame carries the last-frame flag. A live source's frame is sent as soon as it is read
(waiting for the next would hold every result back one sampling period); when the source
ends, its newest picture is sent once more, as the stream's last frame (the closing frame:
the same frame index and position, the next sequence number).
"""

from __future__ import annotations

import threading
import time
from collections import deque
from collections.abc import Callable, Iterator
from dataclasses import dataclass, replace

import grpc

from apps.video_source import READ_TIMEOUT_MS, SampledFrame, VideoSource, VideoSourceError
from facestream.client import AnalyzeClient, request
from facestream.v1 import analyze_service_pb2, records_pb2

# Frames sent and not yet answered: enough to keep the dataflow's batches full, few enough
# that a live frame's result comes soon after it was captured.
DEFAULT_WINDOW = 8
# Unsent frames a live source keeps while the window is full; the oldest is dropped first.
LIVE_BUFFER = 4
# Refusals whose frame the front still published, as a stand-in: a result comes for them.
ANSWERED_REFUSALS = ("image.", "request.")
# Refusals after which no further frame would be taken: the stream stops sending.
ENDING_REFUSALS = ("broker.full",)


class FrameQueue:
    """Frames read and not yet sent. `put` waits for room when frames must not be lost (a
    file); with `drop_oldest` (a live source) it never waits and drops the oldest instead."""

    def __init__(self, capacity: int, drop_oldest: bool) -> None:
        self._frames: deque[SampledFrame] = deque()
        self._capacity = capacity
        self._drop_oldest = drop_oldest
        self._changed = threading.Condition()
        self._closed = False
        self.dropped = 0
        self.reason = ""  # why the source ended early, if it did

    def put(self, frame: SampledFrame) -> None:
        with self._changed:
            while len(self._frames) >= self._capacity and not self._drop_oldest:
                if self._closed:  # abandoned: nobody takes frames any more
                    return
                self._changed.wait()
            if len(self._frames) >= self._capacity:
                self._frames.popleft()
                self.dropped += 1
            self._frames.append(frame)
            self._changed.notify_all()

    def put_back(self, frame: SampledFrame) -> None:
        """Return `frame`, taken earlier, to the front of the line (as the oldest unsent;
        a file's frames, which are never dropped)."""
        with self._changed:
            self._frames.appendleft(frame)
            self._changed.notify_all()

    def close(self, reason: str = "") -> None:
        """No more frames will come; `reason` says why, when the source broke."""
        with self._changed:
            self._closed = True
            self.reason = reason
            self._changed.notify_all()

    def abandon(self) -> None:
        """Nothing more will be sent: drop what waits, and let a waiting `put` go."""
        with self._changed:
            self._closed = True
            self._frames.clear()
            self._changed.notify_all()

    def get(self) -> SampledFrame | None:
        """The oldest unsent frame, waiting for one; None once closed and empty."""
        with self._changed:
            while not self._frames and not self._closed:
                self._changed.wait()
            frame = self._frames.popleft() if self._frames else None
            self._changed.notify_all()
            return frame


@dataclass(frozen=True)
class FrameResult:
    """A sent frame and its result, or why it has none."""

    frame: SampledFrame
    result: records_pb2.AnalysisResult | None
    error: str = ""


@dataclass(frozen=True)
class StreamSummary:
    """What a stream did: its last line on stderr, and its exit status (0 only when every
    frame sent was answered and the source did not break)."""

    stream_id: str
    sent: int
    answered: int
    refused: int  # refused by the front (their errors were printed)
    dropped: int  # a live source's frames dropped before sending
    broken: str  # why the source ended early, or ""
    ended: str = ""  # why the system stopped taking frames (an ending refusal), or ""

    def line(self) -> str:
        text = (
            f"stream {self.stream_id}: {self.sent} frame(s) sent, {self.answered} answered, "
            f"{self.refused} refused, {self.dropped} dropped"
        )
        if self.dropped:
            text += " (the live source was faster than the system)"
        text += f"; the source broke: {self.broken}" if self.broken else ""
        return text + (f"; the system stopped the stream: {self.ended}" if self.ended else "")


class _StreamState:
    """What a `VideoStream`'s threads share: the window of frames out, the frames waiting for
    their result, and the counts."""

    def __init__(self, window: int, on_result: Callable[[FrameResult], None]) -> None:
        self.window = threading.Semaphore(window)
        self.lock = threading.Lock()
        self.out: dict[int, SampledFrame] = {}  # sequence -> frame sent, not answered
        self.unreplied: deque[int] = deque()  # sequences sent, whose reply has not come
        self.sent = 0
        self.answered = 0
        self.refused = 0
        self.ended = ""
        self.last_progress = time.monotonic()
        self.sending_done = False
        self.all_answered = threading.Event()
        self.stopped = threading.Event()  # the stream ends early: send nothing more
        self._on_result = on_result
        self._output = threading.Lock()  # results are handed on one at a time

    def sending(self, frame: SampledFrame) -> None:
        with self.lock:
            self.out[frame.sequence] = frame
            self.unreplied.append(frame.sequence)
            self.sent += 1

    def replied(self, reply: analyze_service_pb2.SubmitReply) -> None:
        """A SubmitStream reply (they come in order): a refused frame is counted, and done
        unless the front published a stand-in that gets a result."""
        with self.lock:
            sequence = self.unreplied.popleft()
        if not reply.error.code:
            return
        with self.lock:
            self.refused += 1
        if reply.error.code in ENDING_REFUSALS and not self.ended:
            self.ended = f"{reply.error.code}: {reply.error.message}"
            self.stopped.set()  # the frames sent are still answered
        if not reply.error.code.startswith(ANSWERED_REFUSALS):
            self.settle(sequence, None, f"{reply.error.code}: {reply.error.message}")

    def settle(
        self, sequence: int, result: records_pb2.AnalysisResult | None, error: str = ""
    ) -> None:
        """Frame `sequence` is done: answered with `result`, or no result will come."""
        with self.lock:
            frame = self.out.pop(sequence, None)
            if frame is None:
                return
            self.window.release()
            self.answered += result is not None
            self.last_progress = time.monotonic()
        with self._output:
            self._on_result(FrameResult(frame, result, error))
        self._check_done()

    def done_sending(self) -> None:
        with self.lock:
            self.sending_done = True
        self._check_done()

    def _check_done(self) -> None:
        with self.lock:
            if self.sending_done and not self.out:
                self.all_answered.set()


class VideoStream:
    """`source`'s sampled frames sent as stream `stream_id` (each face identified with
    `identify`): `run` sends them and calls `on_result` for each (from another thread, one
    at a time, in sequence order) as results come; `summary` says how far it got, from any
    thread."""

    def __init__(
        self,
        client: AnalyzeClient,
        source: VideoSource,
        stream_id: str,
        on_result: Callable[[FrameResult], None],
        *,
        window: int = DEFAULT_WINDOW,
        timeout: float = 300.0,
        identify: records_pb2.Identify | None = None,
    ) -> None:
        self.client = client
        self.source = source
        self.stream_id = stream_id
        self.timeout = timeout
        self.identify = identify
        self._state = _StreamState(window, on_result)
        self._queue = FrameQueue(LIVE_BUFFER if source.live else window, drop_oldest=source.live)

    def summary(self) -> StreamSummary:
        """The counts so far (the final ones once `run` returned)."""
        state, queue = self._state, self._queue
        with state.lock:
            sent, answered, refused = state.sent, state.answered, state.refused
        return StreamSummary(
            self.stream_id, sent, answered, refused, queue.dropped, queue.reason, state.ended
        )

    def run(self) -> StreamSummary:
        """Send the frames; returns once every frame sent is answered, or `timeout` seconds
        passed without any answer. grpc.RpcError when a call fails."""
        state, queue, source = self._state, self._queue, self.source
        # The watch first, so that no result goes by unseen (the server keeps recent ones).
        results = self.client.watch_stream(self.stream_id)
        requests = _live_frame_requests if source.live else _file_frame_requests
        replies = self.client.submit_stream(requests(queue, state, self.stream_id, self.identify))
        failures: list[grpc.RpcError] = []
        watcher = threading.Thread(
            target=_watch,
            args=(results, replies, state, failures),
            name="watch-stream",
            daemon=True,
        )
        reader = threading.Thread(
            target=_read_source, args=(source, queue), name="read-source", daemon=True
        )
        watcher.start()
        reader.start()
        try:
            try:
                for reply in replies:
                    state.replied(reply)
            except grpc.RpcError:
                if failures:  # the watch failed first, and ended the submitting call
                    raise failures[0] from None
                raise
            state.done_sending()
            while not state.all_answered.wait(0.2):
                if failures:
                    raise failures[0]
                if time.monotonic() - state.last_progress > self.timeout:
                    break
        finally:
            state.stopped.set()
            source.stop()
            queue.abandon()
            results.cancel()
            replies.cancel()
            reader.join(READ_TIMEOUT_MS / 1000 + 5)
        return self.summary()


def capture_to_result(source: VideoSource, done: FrameResult) -> float | None:
    """Seconds from a live frame's capture (its position since the source opened) to now,
    its result; None for a file's frame, and for the closing frame (not captured then)."""
    if not source.live or source.opened_at is None or done.frame.closing:
        return None
    return time.monotonic() - (source.opened_at + done.frame.position_ms / 1000)


def _read_source(source: VideoSource, queue: FrameQueue) -> None:
    try:
        for frame in source.frames():
            queue.put(frame)
    except VideoSourceError as error:
        queue.close(str(error))
        return
    queue.close()


def _watch(
    results: Iterator[records_pb2.AnalysisResult],
    replies: grpc.Future,
    state: _StreamState,
    failures: list[grpc.RpcError],
) -> None:
    """Hand each result on; if the watch fails, the stream cannot go on: end the
    submitting call too, with this failure for `VideoStream.run` to raise."""
    try:
        for result in results:
            state.settle(result.frame.sequence, result)
    except grpc.RpcError as error:
        if error.code() != grpc.StatusCode.CANCELLED:  # cancelled: the stream is done
            failures.append(error)
            state.stopped.set()
            replies.cancel()


def _file_frame_requests(
    queue: FrameQueue,
    state: _StreamState,
    stream_id: str,
    identify: records_pb2.Identify | None = None,
) -> Iterator[analyze_service_pb2.SubmitRequest]:
    """SubmitStream's requests for a file: each frame once the next one is read (so the
    last one is known), and only while the window has room."""
    if not _room(state):
        return
    held = queue.get()
    sequence = 0
    while held is not None and not state.stopped.is_set():
        following = queue.get()
        frame = replace(held, sequence=sequence)
        sequence += 1
        state.sending(frame)
        place = frame.stream_frame(stream_id, last=following is None)
        yield request(frame.jpeg, frame=place, identify=identify)
        if following is None or not _room(state):
            return
        queue.put_back(following)  # back in line while the window is full
        held = queue.get()


def _live_frame_requests(
    queue: FrameQueue,
    state: _StreamState,
    stream_id: str,
    identify: records_pb2.Identify | None = None,
) -> Iterator[analyze_service_pb2.SubmitRequest]:
    """SubmitStream's requests for a live source: each frame as soon as it is read, while
    the window has room; once the source ended, the closing frame (the newest picture
    again, flagged last)."""
    newest: SampledFrame | None = None
    sequence = 0
    while not state.stopped.is_set() and _room(state):
        frame = queue.get()
        last = frame is None
        if frame is None:
            if newest is None:  # nothing was sent: there is no stream to end
                return
            frame = replace(newest, closing=True)
        # Numbered as sent: a live source's dropped frames leave no gap in the stream.
        frame = replace(frame, sequence=sequence)
        sequence += 1
        state.sending(frame)
        yield request(frame.jpeg, frame=frame.stream_frame(stream_id, last=last), identify=identify)
        if last:
            return
        newest = frame


def _room(state: _StreamState) -> bool:
    """Wait for room in the window; False when the stream ended early meanwhile."""
    while not state.window.acquire(timeout=0.2):
        if state.stopped.is_set():
            return False
    return True
