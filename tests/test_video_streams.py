"""Frames of video streams at the gRPC front, over a real channel and the embedded broker:
SubmitStream keeps each stream in order on one partition and refuses what breaks the order,
WatchStream hands a stream's results to its owner alone, in order. The dataflow is played by
the stand-in (tests/grpc_helpers.py); the real one answers frames in test_video_e2e.py."""

from __future__ import annotations

import asyncio
import threading

import grpc
import pytest

from apps.demo_video import compose_demo_video
from apps.processes import wait_until
from apps.video import VideoStream
from apps.video_source import open_video_source
from facestream.client import request
from facestream.kafka_records import result_record
from facestream.v1 import records_pb2
from grpc_server.errors import RequestRejectedError
from grpc_server.frame_sequences import MAX_STREAMS_PER_CALL, StreamSequences
from grpc_server.stream_results import StreamWaiter, WaiterOverflowError
from tests.credentials import TOKENS, credentials_file, serving_with_credentials
from tests.grpc_helpers import ServerThread, server_settings, stand_in_dataflow
from tests.pipeline import consume_until
from tests.test_grpc_server import assert_status, jpeg


def frame(stream: str, sequence: int, last: bool = False) -> records_pb2.StreamFrame:
    return records_pb2.StreamFrame(
        stream_id=stream,
        sequence=sequence,
        frame_index=sequence,  # as sampled from a source at its own rate
        position_ms=sequence,
        last=last,
    )


def frame_request(stream: str, sequence: int, last: bool = False, image: bytes | None = None):
    return request(
        jpeg(seed=sequence) if image is None else image, frame=frame(stream, sequence, last)
    )


def refusal_code(sequences: StreamSequences, stream_frame: records_pb2.StreamFrame) -> str:
    try:
        sequences.admit(stream_frame)
    except RequestRejectedError as rejected:
        return rejected.code
    return ""


def test_a_stream_must_come_in_sequence_within_a_call():
    sequences = StreamSequences()
    assert refusal_code(sequences, frame("cam", 5)) == ""  # a call may resume a stream
    assert refusal_code(sequences, frame("cam", 6)) == ""
    assert refusal_code(sequences, frame("cam", 6)) == "frame.repeated"
    assert refusal_code(sequences, frame("cam", 3)) == "frame.repeated"
    assert refusal_code(sequences, frame("cam", 6 + 2**31)) == "frame.sequence_gap"
    assert refusal_code(sequences, frame("cam", 7)) == ""  # refusals leave the order as it was
    assert refusal_code(sequences, frame("cam", 2**64 - 1)) == "frame.bad_sequence"
    assert refusal_code(sequences, frame("bad id!", 0)) == "frame.bad_stream_id"
    assert refusal_code(sequences, frame("cam", 8, last=True)) == ""
    assert sequences.open_streams == 0  # the last frame ends it
    assert refusal_code(sequences, frame("new", 2**63)) == "frame.bad_sequence"


def test_a_call_holds_a_bounded_number_of_open_streams():
    sequences = StreamSequences()
    codes = [refusal_code(sequences, frame(f"s{n}", 0)) for n in range(10_000)]
    assert codes[:MAX_STREAMS_PER_CALL] == [""] * MAX_STREAMS_PER_CALL
    assert set(codes[MAX_STREAMS_PER_CALL:]) == {"stream.too_many"}
    assert sequences.open_streams == MAX_STREAMS_PER_CALL
    assert refusal_code(sequences, frame("s0", 1, last=True)) == ""  # ending one frees a place
    assert refusal_code(sequences, frame("another", 0)) == ""


def result_of(stream: str, sequence: int, last: bool = False, principal: str = ""):
    return result_record(
        f"r{sequence}",
        records_pb2.ANALYSIS_STATUS_NO_FACE,
        principal=principal,
        frame=frame(stream, sequence, last),
    )


def test_the_stream_waiter_hands_out_each_frame_once_in_order():
    async def scenario() -> list[int]:
        waiter = StreamWaiter("cam", "", from_sequence=0, gap_timeout=60)
        for sequence in (2, 0, 3, 1, 0, 2):  # out of order, and twice (at-least-once)
            waiter.offer(result_of("cam", sequence, last=sequence == 3))
        waiter.offer(result_of("other", 0))
        assert not waiter.wants(result_of("other", 0))
        assert not waiter.wants(result_of("cam", 0, principal="mallory"))
        got = []
        while not waiter.complete:
            got.append((await waiter.next(5)).frame.sequence)
        return got

    assert asyncio.run(scenario()) == [0, 1, 2, 3]


def test_the_stream_waiter_starts_at_the_sequence_asked_for():
    async def scenario() -> list[int]:
        waiter = StreamWaiter("cam", "", from_sequence=2, gap_timeout=60)
        for sequence in (0, 3, 1, 2):
            waiter.offer(result_of("cam", sequence, last=sequence == 3))
        return [(await waiter.next(5)).frame.sequence for _ in range(2)]

    assert asyncio.run(scenario()) == [2, 3]


def test_the_stream_waiter_skips_a_missing_frame_after_the_gap_timeout():
    async def scenario() -> tuple[list[int], int]:
        waiter = StreamWaiter("cam", "", from_sequence=0, gap_timeout=0.3)
        waiter.offer(result_of("cam", 0))
        waiter.offer(result_of("cam", 2, last=True))  # 1 never comes
        got = [(await waiter.next(10)).frame.sequence, (await waiter.next(10)).frame.sequence]
        waiter.offer(result_of("cam", 1))  # too late: the stream went past it
        assert waiter.complete and not waiter.has_result
        return got, waiter.skipped

    assert asyncio.run(scenario()) == ([0, 2], 1)


def test_the_stream_waiter_buffer_is_bounded():
    async def scenario() -> tuple[int, int, str]:
        waiter = StreamWaiter("cam", "", from_sequence=0, gap_timeout=3600, max_buffered=100)
        for sequence in range(1, 10_001):  # frame 0 never comes, nor is anything read
            waiter.offer(result_of("cam", sequence))
        held = len(waiter._order.buffer)
        first = (await waiter.next(5)).frame.sequence  # frame 0 was given up on
        for _ in range(99):
            await waiter.next(5)
        try:
            await waiter.next(5)
        except WaiterOverflowError as overflow:  # then the reader was too slow
            return held, first, str(overflow)
        return held, first, ""

    held, first, overflow = asyncio.run(scenario())
    assert held == 100 and first == 1
    assert "more than 100 results" in overflow


@pytest.fixture
def two_principals(topics):
    settings = server_settings(topics, FACESTREAM_AUTH_TOKENS="alpha,beta")
    with ServerThread(settings) as server, stand_in_dataflow(topics):
        server.wait_serving()
        with server.client(token="alpha") as alpha, server.client(token="beta") as beta:
            yield server, alpha, beta


def test_frames_are_keyed_by_stream_in_order_and_watched_by_their_owner_alone(
    topics, two_principals
):
    server, alpha, beta = two_principals
    # beta watches a stream of the same id: stream ids are per principal, so it sees none.
    beta_results: list[records_pb2.AnalysisResult] = []
    beta_watch = beta.watch_stream("cam-1", timeout=30)

    def read_beta() -> None:
        try:
            beta_results.extend(beta_watch)
        except grpc.RpcError:
            return

    reader = threading.Thread(target=read_beta, daemon=True)
    reader.start()
    # beta waits before the frames are sent, so that its seeing nothing means something.
    wait_until(lambda: server.listener.waiter_count == 1, 30, "beta's watch to wait")
    watch = alpha.watch_stream("cam-1", timeout=60)
    count = 30
    replies = list(
        alpha.submit_stream(
            [frame_request("cam-1", n, last=n == count - 1) for n in range(count)], timeout=30
        )
    )
    assert [r.error.code for r in replies] == [""] * count
    results = list(watch)
    assert [r.frame.sequence for r in results] == list(range(count))
    assert [r.request_id for r in results] == [r.request_id for r in replies]
    assert results[-1].frame.last and not any(r.frame.last for r in results[:-1])
    assert results[3].frame == frame("cam-1", 3)
    # On the requests topic: every frame keyed by principal and stream, on one partition,
    # in sequence order.
    messages = consume_until(
        topics.bootstrap, topics.requests, topics.partitions, lambda m: len(m) >= count, 30
    )
    records = [records_pb2.ImageSubmitted.FromString(m.value()) for m in messages]
    assert {m.key() for m in messages} == {f"{records[0].principal}/cam-1".encode()}
    assert len({m.partition() for m in messages}) == 1
    assert [r.frame.sequence for r in records] == list(range(count))
    beta_watch.cancel()
    reader.join(10)
    assert beta_results == []


def test_frames_that_break_the_order_get_typed_refusals_and_the_stream_goes_on(
    topics, two_principals
):
    _server, alpha, _beta = two_principals
    sent = [
        frame_request("cam-2", 0),
        frame_request("cam-2", 0),  # repeated
        frame_request("cam-2", 2),  # a gap
        frame_request("cam-2", 1 + 2**31),  # a jump
        frame_request("cam-2", 1, image=b"not an image at all"),  # refused image
        frame_request("cam-2", 2, last=True),
        frame_request("bad id!", 0),
    ]
    watch = alpha.watch_stream("cam-2", timeout=60)
    replies = list(alpha.submit_stream(sent, timeout=30))
    assert [r.error.code for r in replies] == [
        "",
        "frame.repeated",
        "frame.sequence_gap",
        "frame.sequence_gap",
        "image.not_an_image",
        "",
        "frame.bad_stream_id",
    ]
    # The refused image still has its place: a stand-in answers it, so the watch goes on.
    results = list(watch)
    assert [r.frame.sequence for r in results] == [0, 1, 2]
    assert results[1].request_id == replies[4].request_id
    messages = consume_until(
        topics.bootstrap, topics.requests, topics.partitions, lambda m: len(m) >= 3, 30
    )
    stand_ins = [
        record
        for record in (records_pb2.ImageSubmitted.FromString(m.value()) for m in messages)
        if record.HasField("refusal")
    ]
    assert [(s.frame.sequence, s.refusal.code, s.image) for s in stand_ins] == [
        (1, "image.not_an_image", b"")
    ]


def test_many_streams_in_one_call_are_refused_beyond_the_cap(two_principals):
    _server, alpha, _beta = two_principals
    count = 10_000
    image = jpeg()
    replies = list(
        alpha.submit_stream(
            (frame_request(f"s{n}", 0, image=image) for n in range(count)), timeout=120
        )
    )
    codes = [r.error.code for r in replies]
    assert codes[:MAX_STREAMS_PER_CALL] == [""] * MAX_STREAMS_PER_CALL
    assert set(codes[MAX_STREAMS_PER_CALL:]) == {"stream.too_many"}


def test_frames_outside_submit_stream_and_bad_watches_are_refused(two_principals):
    _server, alpha, _beta = two_principals
    for call in (
        lambda: alpha._stub.Submit(frame_request("cam", 0), timeout=5, metadata=alpha._metadata),
        lambda: alpha._stub.Analyze(frame_request("cam", 0), timeout=5, metadata=alpha._metadata),
    ):
        assert_status(call, grpc.StatusCode.INVALID_ARGUMENT, "SubmitStream")
    assert_status(
        lambda: list(alpha.watch_stream("two words", timeout=5)),
        grpc.StatusCode.INVALID_ARGUMENT,
        "stream id 'two words' is not valid",
    )


def test_a_watcher_of_everything_still_sees_no_other_principals_stream(topics, tmp_path):
    auth = credentials_file(tmp_path / "principals.toml")
    seen: list[records_pb2.AnalysisResult] = []
    with (
        serving_with_credentials(topics, auth) as server,
        server.client(token=TOKENS["team-a"]) as owner,
        server.client(token=TOKENS["watcher"]) as everything,
    ):
        # Its WatchResults sees every result; its WatchStream, only its own streams.
        foreign = everything.watch_stream("cam-9", timeout=30)
        all_results = everything.watch(timeout=30)
        reader = threading.Thread(target=lambda: seen.extend(_until_cancelled(foreign)))
        reader.start()
        # Both watches wait before the frame is sent (a watch of everything gets no
        # earlier results).
        wait_until(lambda: server.listener.waiter_count == 2, 30, "the two watches to wait")
        own = owner.watch_stream("cam-9", timeout=60)
        list(owner.submit_stream([frame_request("cam-9", 0, last=True)], timeout=30))
        assert [r.frame.sequence for r in own] == [0]
        assert next(iter(all_results)).frame.stream_id == "cam-9"
        all_results.cancel()
        foreign.cancel()
        reader.join(10)
    assert seen == []


def test_a_stream_whose_watch_is_refused_ends_with_that_refusal(topics, tmp_path):
    auth = credentials_file(
        tmp_path / "principals.toml", scopes={"team-a": '["analyze:submit"]'}
    )  # it may submit, not read results
    video = compose_demo_video(tmp_path / "clip.avi", seconds=2)
    with (
        serving_with_credentials(topics, auth) as server,
        server.client(token=TOKENS["team-a"]) as client,
        open_video_source(str(video.path)) as source,
        pytest.raises(grpc.RpcError) as refused,
    ):
        VideoStream(client, source, "no-read", lambda _answer: None, timeout=60).run()
    assert refused.value.code() == grpc.StatusCode.PERMISSION_DENIED
    assert "results:read" in refused.value.details()


def _until_cancelled(results):
    try:
        yield from results
    except grpc.RpcError as error:
        assert error.code() == grpc.StatusCode.CANCELLED, error
