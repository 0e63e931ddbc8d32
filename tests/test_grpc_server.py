"""The gRPC front over a real channel: a real AnalyzeServer on 127.0.0.1, the embedded
broker, real Kafka clients. The dataflow is played by StandInDataflow here; the real one
answers in test_grpc_e2e.py."""

from __future__ import annotations

import io
import json
import logging
import os
import queue
import signal
import threading
import time
from concurrent.futures import ThreadPoolExecutor

import cv2
import grpc
import numpy as np
import pytest
from google.rpc import error_details_pb2, status_pb2
from grpc_health.v1 import health_pb2, health_pb2_grpc
from PIL import Image

from apps.broker import EmbeddedBroker, free_port
from apps.processes import wait_until
from di.settings import ServerProcessSettings
from facestream.client import (
    RETRY_POLICY,
    AnalyzeClient,
    error_reason,
    error_request_id,
    request,
)
from facestream.kafka_admin import ensure_topics
from facestream.kafka_records import result_record
from facestream.models import ATTRIBUTE_ACTIONS
from facestream.v1 import records_pb2
from grpc_server.errors import REQUEST_ID_METADATA
from grpc_server.service import SERVICE_NAME
from tests.commands import NO_METRICS, PROJECT_ROOT, SYNTHETIC_HOME, run_facestream
from tests.grpc_helpers import (
    NOT_SERVING,
    SERVING,
    ServerThread,
    health_of,
    server_process,
    server_settings,
    stand_in_dataflow,
)
from tests.images import dds_header, png_claiming
from tests.pipeline import Topics, consume_until, produce

TLS_DIR = PROJECT_ROOT / "tests" / "data" / "tls"
MIB = 1024 * 1024


def jpeg(width: int = 64, height: int = 48, seed: int = 0) -> bytes:
    pixels = np.random.default_rng(seed).integers(0, 256, (height, width, 3), dtype=np.uint8)
    ok, encoded = cv2.imencode(".jpg", pixels)
    assert ok
    return encoded.tobytes()


def gif() -> bytes:
    buffer = io.BytesIO()
    Image.new("RGB", (8, 8)).save(buffer, format="GIF")
    return buffer.getvalue()


def requests_on_topic(topics: Topics, wanted: set[str], timeout: float = 30) -> dict:
    """The ImageSubmitted records on the requests topic, by request id, once all `wanted`
    are there."""
    messages = consume_until(
        topics.bootstrap,
        topics.requests,
        topics.partitions,
        lambda got: wanted <= {m.key().decode() for m in got},
        timeout,
    )
    records = {}
    for message in messages:
        record = records_pb2.ImageSubmitted.FromString(message.value())
        assert message.key() == record.request_id.encode()
        records.setdefault(record.request_id, []).append(record)
    return records


def assert_status(call, code: grpc.StatusCode, *fragments: str) -> grpc.RpcError:
    with pytest.raises(grpc.RpcError) as caught:
        call()
    error = caught.value
    assert error.code() == code, error.details()
    for fragment in fragments:
        assert fragment in error.details(), error.details()
    assert "Traceback" not in error.details() and 'File "' not in error.details()
    return error


@pytest.fixture
def server(topics):
    with ServerThread(server_settings(topics)) as running:
        running.wait_serving()
        yield running


@pytest.fixture
def client(server):
    with server.client() as analyze_client:
        yield analyze_client


# Each invalid request: what to send, the status code, and words the message must hold.
INVALID = {
    "empty image": (request(b""), grpc.StatusCode.INVALID_ARGUMENT, "empty"),
    "not an image": (request(b"hello " * 50), grpc.StatusCode.INVALID_ARGUMENT, "not an image"),
    "unsupported format": (request(gif()), grpc.StatusCode.INVALID_ARGUMENT, "GIF"),
    "truncated image": (
        request(jpeg()[:-200]),
        grpc.StatusCode.INVALID_ARGUMENT,
        "incomplete",
    ),
    "header over max pixels": (
        request(png_claiming(20_000, 20_000)),
        grpc.StatusCode.RESOURCE_EXHAUSTED,
        "20000x20000",
    ),
    "bytes over max": (
        request(b"\xff\xd8\xff" + bytes(10 * MIB)),
        grpc.StatusCode.RESOURCE_EXHAUSTED,
        "the limit is 10485760",
    ),
    "over the gRPC message limit": (
        request(bytes(12 * MIB)),
        grpc.StatusCode.RESOURCE_EXHAUSTED,
        "larger than max",
    ),
    "unknown action": (
        request(jpeg(), actions=["age", "smile"]),
        grpc.StatusCode.INVALID_ARGUMENT,
        "unknown action(s) 'smile'",
    ),
    "unknown detector": (
        request(jpeg(), detector_backend="yolo"),
        grpc.StatusCode.INVALID_ARGUMENT,
        "unknown detector backend 'yolo'",
    ),
    "detector without its files": (
        request(jpeg(), detector_backend="retinaface"),
        grpc.StatusCode.INVALID_ARGUMENT,
        "'retinaface' is not installed here",
    ),
    "a header Pillow cannot read (NotImplementedError inside)": (
        request(dds_header()),
        grpc.StatusCode.INVALID_ARGUMENT,
        "not an image",
    ),
    "malformed request id": (
        request(jpeg(), request_id="two words"),
        grpc.StatusCode.INVALID_ARGUMENT,
        "request id 'two words' is not valid",
    ),
}


def test_invalid_requests_get_their_status_and_nothing_reaches_kafka(topics, server, client):
    stub_calls = {"Submit": client._stub.Submit, "Analyze": client._stub.Analyze}
    for name, (invalid, code, fragment) in INVALID.items():
        # The code a SubmitStream reply gives the same request is the unary calls' reason.
        if name == "over the gRPC message limit":
            reason = ""  # gRPC's own refusal, before facestream sees the call
        else:
            (reply,) = client.submit_stream([invalid], timeout=10)
            reason = reply.error.code
            assert reason.startswith(("image.", "request.")), (name, reason)
        for rpc, call in stub_calls.items():
            error = assert_status(lambda: call(invalid, timeout=10), code, fragment)  # noqa: B023
            assert error.details(), (name, rpc)
            assert error_reason(error) == reason, (name, rpc)
    sentinel = client.submit(jpeg(), request_id="sentinel")
    records = requests_on_topic(topics, {sentinel})
    assert set(records) == {"sentinel"}, "an invalid request reached Kafka"


def test_a_refusal_is_a_google_rpc_status_any_client_decodes_from_the_trailer(client):
    # As a client generated from the .proto files alone reads it (Node.js, Go): the
    # grpc-status-details-bin trailer is a google.rpc.Status with an ErrorInfo.
    error = assert_status(
        lambda: client.analyze(jpeg()[:-200], request_id="cut-1", timeout=10),
        grpc.StatusCode.INVALID_ARGUMENT,
        "incomplete",
    )
    raw = dict(error.trailing_metadata())["grpc-status-details-bin"]
    status = status_pb2.Status.FromString(raw)
    assert status.code == grpc.StatusCode.INVALID_ARGUMENT.value[0]
    assert status.message == error.details()
    (detail,) = status.details
    assert detail.type_url == "type.googleapis.com/google.rpc.ErrorInfo"
    info = error_details_pb2.ErrorInfo.FromString(detail.value)
    assert (info.reason, info.domain) == ("image.truncated", "facestream.v1")


def test_submit_replies_after_the_record_is_on_the_topic(topics, client):
    image = jpeg(seed=1)
    chosen = client.submit(image, actions=["age", "race"], request_id="client-chosen.1")
    made = client.submit(image)
    assert chosen == "client-chosen.1"
    assert len(made) == 32 and int(made, 16) >= 0
    records = requests_on_topic(topics, {chosen, made})
    assert [r.image for r in records[chosen]] == [image]
    assert list(records[chosen][0].actions) == ["age", "race"]
    assert list(records[made][0].actions) == list(ATTRIBUTE_ACTIONS)  # the server's default
    assert records[made][0].detector_backend == "opencv"
    assert records[made][0].submitted_at.seconds > 0


def test_submit_stream_replies_per_image_in_order(topics, client):
    images = [request(jpeg(seed=i), request_id=f"stream-{i}") for i in range(150)]
    images[40] = request(b"", request_id="stream-40")
    images[90] = request(jpeg(), request_id="bad id!")
    replies = list(client.submit_stream(images, timeout=60))
    assert [r.request_id for r in replies] == [r.request_id for r in images]
    rejected = {r.request_id: r.error for r in replies if r.error.code}
    assert set(rejected) == {"stream-40", "bad id!"}
    assert rejected["stream-40"].code == "image.empty"
    assert rejected["bad id!"].code == "request.bad_id"
    accepted = {r.request_id for r in replies if not r.error.code}
    assert len(accepted) == 148
    assert set(requests_on_topic(topics, accepted)) == accepted


def test_submit_stream_answers_each_request_while_the_stream_stays_open(topics, client):
    # A live client: it sends one image, waits for that reply, then sends the next.
    outgoing: queue.Queue = queue.Queue()

    def live_requests():
        while (item := outgoing.get(timeout=30)) is not None:
            yield item

    replies = client.submit_stream(live_requests(), timeout=30)
    for i in range(3):
        outgoing.put(request(jpeg(seed=i), request_id=f"live-{i}"))
        reply = next(replies)
        assert (reply.request_id, reply.error.code) == (f"live-{i}", "")
    outgoing.put(request(b"", request_id="live-empty"))  # a refusal is answered at once too
    assert next(replies).error.code == "image.empty"
    outgoing.put(None)
    assert list(replies) == []
    assert set(requests_on_topic(topics, {"live-0", "live-1", "live-2"})) == {
        "live-0",
        "live-1",
        "live-2",
    }


def test_analyze_gets_its_result_and_duplicates_reach_each_waiter_once(topics, server, client):
    with stand_in_dataflow(topics, copies=2), server.client() as watcher_client:
        ids = [f"analyze-{i}" for i in range(24)]
        watched = []
        watching = threading.Thread(
            target=lambda: watched.extend(watcher_client.watch(ids[:6], timeout=60))
        )
        watching.start()
        wait_until(lambda: server.listener.waiter_count >= 1, 10, "the watch to register")
        with ThreadPoolExecutor(8) as pool:
            results = list(
                pool.map(
                    lambda n: client.analyze(jpeg(seed=n), request_id=ids[n], timeout=30),
                    range(len(ids)),
                )
            )
        watching.join(60)
    assert [r.request_id for r in results] == ids
    assert all(r.status == records_pb2.ANALYSIS_STATUS_NO_FACE for r in results)
    assert sorted(r.request_id for r in watched) == sorted(ids[:6])  # ended, each id once
    assert server.listener.waiter_count == 0


def test_watch_all_sees_results_of_requests_from_another_client(topics, server, client):
    seen: list[records_pb2.AnalysisResult] = []
    with stand_in_dataflow(topics, copies=3), server.client() as other:
        stream = client.watch(timeout=60)
        ended: list[grpc.StatusCode] = []

        def read() -> None:
            try:
                for result in stream:
                    seen.append(result)
            except grpc.RpcError as error:
                ended.append(error.code())

        reader = threading.Thread(target=read)
        reader.start()
        wait_until(lambda: server.listener.waiter_count == 1, 10, "the watch to register")
        submitted = {other.submit(jpeg(seed=i)) for i in range(10)}
        wait_until(lambda: {r.request_id for r in seen} >= submitted, 30, "all results")
        stream.cancel()
        reader.join(10)
    assert not reader.is_alive()
    assert ended == [grpc.StatusCode.CANCELLED]  # the stream ended by the cancel, no other way
    ids = [r.request_id for r in seen]
    assert len(ids) == len(set(ids)), "a duplicate result was delivered twice"


def test_analyze_timeout_names_the_request_and_watch_gets_it_later(topics):
    # The server's result timeout ends the wait, long before the client's deadline: the
    # answer is the server's, whatever the machine's load.
    settings = server_settings(topics, FACESTREAM_RESULT_TIMEOUT="1")
    with ServerThread(settings) as server, server.client() as client:
        server.wait_serving()
        error = assert_status(
            lambda: client.analyze(jpeg(), request_id="slow-1", timeout=30),
            grpc.StatusCode.DEADLINE_EXCEEDED,
            "slow-1",
            "WatchResults",
        )
        assert (REQUEST_ID_METADATA, "slow-1") in error.trailing_metadata()
        assert error_reason(error) == "result.timeout" and error_request_id(error) == "slow-1"
        late = result_record("slow-1", records_pb2.ANALYSIS_STATUS_NO_FACE)
        produce(topics.bootstrap, topics.results, [(b"slow-1", late.SerializeToString())])
        watched = list(client.watch(["slow-1"], timeout=30))
    assert [r.request_id for r in watched] == ["slow-1"]


def test_watch_for_ids_ends_at_the_result_timeout_when_a_result_never_comes(topics):
    settings = server_settings(topics, FACESTREAM_RESULT_TIMEOUT="1")
    with ServerThread(settings) as server, server.client() as client:
        server.wait_serving()
        started = time.monotonic()
        # No deadline from the client, and a result that never arrives: it must not hang.
        assert_status(
            lambda: list(client.watch(["never-answered"])),
            grpc.StatusCode.DEADLINE_EXCEEDED,
            "1 of 1 results did not arrive in time",
        )
        assert time.monotonic() - started < 10


def test_calls_beyond_the_image_byte_budget_are_refused_until_bytes_are_freed(topics):
    image = jpeg(256, 256)
    budget = str(len(image) * 3 // 2)  # room for one waiting image, not two
    settings = server_settings(
        topics, FACESTREAM_MAX_HELD_IMAGE_BYTES=budget, FACESTREAM_RESULT_TIMEOUT="6"
    )
    with ServerThread(settings) as server, server.client() as client:
        server.wait_serving()
        with ThreadPoolExecutor(1) as pool:
            # No dataflow answers: this Analyze keeps its image until its deadline.
            # The server ends it at its result timeout, after freeing the bytes.
            waiting = pool.submit(client.analyze, image, request_id="held", timeout=30)
            wait_until(lambda: server.listener.waiter_count == 1, 10, "Analyze waiting")
            assert_status(
                lambda: client.submit(image, request_id="refused", timeout=5),
                grpc.StatusCode.RESOURCE_EXHAUSTED,
                "FACESTREAM_MAX_HELD_IMAGE_BYTES",
            )
            with pytest.raises(grpc.RpcError) as timed_out:
                waiting.result(30)
            assert timed_out.value.code() == grpc.StatusCode.DEADLINE_EXCEEDED
        assert client.submit(image, request_id="after", timeout=10) == "after"


def test_watch_streams_and_concurrent_calls_are_capped(topics):
    settings = server_settings(
        topics,
        FACESTREAM_MAX_WATCHERS="1",
        FACESTREAM_MAX_CONCURRENT_RPCS="2",
        FACESTREAM_RESULT_TIMEOUT="15",
    )
    with ServerThread(settings) as server, server.client() as client:
        server.wait_serving()
        first = client.watch(timeout=20)  # watch-all: stays open

        def read_until_cancelled():
            with pytest.raises(grpc.RpcError) as ended:
                list(first)
            return ended.value.code()

        with ThreadPoolExecutor(2) as pool:
            opened = pool.submit(read_until_cancelled)
            wait_until(lambda: server.listener.waiter_count == 1, 10, "the first watch open")
            assert_status(
                lambda: list(client.watch(timeout=10)),
                grpc.StatusCode.RESOURCE_EXHAUSTED,
                "FACESTREAM_MAX_WATCHERS",
            )
            # One RPC runs (the watch); an Analyze waiting makes two; a third is refused.
            # gRPC counts the refused watch until its handler's task ends, a moment after
            # the client saw its status: an Analyze sent meanwhile gets gRPC's own refusal,
            # so it is sent again until it waits (the server ends it at its result timeout).
            waiting = []

            def analyze_waiting() -> bool:
                if not waiting or waiting[-1].done():
                    if waiting:
                        error = waiting[-1].exception()
                        assert isinstance(error, grpc.RpcError), error
                        assert error.code() == grpc.StatusCode.RESOURCE_EXHAUSTED
                        assert "Concurrent RPC limit exceeded" in error.details()
                    waiting.append(
                        pool.submit(client.analyze, jpeg(), request_id="capped", timeout=30)
                    )
                return server.listener.waiter_count == 2

            wait_until(analyze_waiting, 10, "Analyze waiting")
            with pytest.raises(grpc.RpcError) as refused:
                client.submit(jpeg(), request_id="third", timeout=5)
            assert refused.value.code() == grpc.StatusCode.RESOURCE_EXHAUSTED
            first.cancel()
            with pytest.raises(grpc.RpcError):
                waiting[-1].result(30)
            assert opened.result(30) == grpc.StatusCode.CANCELLED


def test_a_dead_kafka_client_thread_turns_health_not_serving(topics):
    class BrokenConsumer:
        def poll(self, _timeout):
            raise ValueError("a bug, not a Kafka error")

        def close(self):
            pass

    with ServerThread(server_settings(topics)) as server, server.client() as client:
        server.wait_serving()
        server.listener._consumer = BrokenConsumer()
        wait_until(lambda: server.server.done.is_set(), 10, "the server to see the dead thread")
        assert "results-listener died: ValueError" in server.server.failure
        assert health_of(client) == NOT_SERVING


def test_the_server_process_exits_non_zero_when_a_kafka_client_thread_dies(topics, monkeypatch):
    import asyncio

    from di.server_root import serve_settings
    from grpc_server import results

    def dies(_listener):
        raise RuntimeError("a bug in the listener")

    monkeypatch.setattr(results.ResultsListener, "_serve", dies)
    # serve_settings() is what `python -m grpc_server` runs; it must stop by itself, with
    # code 1.
    code = asyncio.run(asyncio.wait_for(serve_settings(server_settings(topics)), 60))
    assert code == 1


def test_watch_rejects_a_malformed_id(client):
    assert_status(
        lambda: list(client.watch(["no spaces please"], timeout=10)),
        grpc.StatusCode.INVALID_ARGUMENT,
        "is not valid",
    )


def test_reflection_lists_the_service(server):
    from grpc_reflection.v1alpha.proto_reflection_descriptor_database import (
        ProtoReflectionDescriptorDatabase,
    )

    with grpc.insecure_channel(server.address) as channel:
        services = ProtoReflectionDescriptorDatabase(channel).get_services()
    assert "facestream.v1.AnalyzeService" in services
    assert "grpc.health.v1.Health" in services


@pytest.fixture
def own_broker():
    """A broker for this test alone, so it can be stopped, paused and restarted."""
    broker = EmbeddedBroker(free_port())
    broker.start()
    try:
        yield broker
    finally:
        if broker.running():
            os.kill(broker.pid, signal.SIGCONT)
        broker.stop()


def test_broker_down_gives_unavailable_and_the_same_server_recovers(own_broker):
    topics = Topics(own_broker.bootstrap)
    settings = server_settings(
        topics, FACESTREAM_ACK_TIMEOUT="5", FACESTREAM_METRICS_PORT=str(free_port())
    )
    with ServerThread(settings) as server:
        server.wait_serving()
        with server.client() as client:
            assert health_of(client) == SERVING
            client.submit(jpeg(), request_id="before")
            own_broker.stop()
            wait_until(lambda: not server.publisher.reachable, 30, "the broker seen gone")
            started = time.monotonic()
            error = assert_status(
                lambda: client.submit(jpeg(), request_id="during", timeout=10),
                grpc.StatusCode.UNAVAILABLE,
                "not accepted",
            )
            assert time.monotonic() - started < 10, "UNAVAILABLE came after the deadline"
            assert error_reason(error) == "kafka.unavailable"
            # The client retried the call with the same id, as its retry policy says.
            assert error_request_id(error) == "during"
            labels = {"service": SERVICE_NAME, "method": "Submit", "code": "UNAVAILABLE"}

            def attempts() -> float | None:
                # A call is counted once its handler is done: maybe just after its answer.
                calls = server.server.metrics.registry
                return calls.get_sample_value("facestream_server_calls_total", labels)

            wait_until(
                lambda: attempts() == RETRY_POLICY["maxAttempts"], 10, "every attempt counted"
            )
            wait_until(lambda: health_of(client) == NOT_SERVING, 30, "health NOT_SERVING")

            restarted = EmbeddedBroker(own_broker.port)
            restarted.start()
            try:
                ensure_topics(restarted.bootstrap, server_settings(topics).topics)
                wait_until(lambda: health_of(client) == SERVING, 30, "health SERVING again")
                assert client.submit(jpeg(), request_id="after", timeout=10) == "after"
                records = requests_on_topic(topics, {"after"})
                assert "during" not in records
            finally:
                restarted.stop()


def test_a_silent_broker_gives_unavailable_and_in_flight_limit(own_broker):
    topics = Topics(own_broker.bootstrap)
    settings = server_settings(topics, FACESTREAM_MAX_IN_FLIGHT="1", FACESTREAM_ACK_TIMEOUT="2")
    # The server's own answer to each call: the client's retries would hide it.
    with ServerThread(settings) as server, server.client(retries=False) as client:
        server.wait_serving()
        client.submit(jpeg(), request_id="warm")
        os.kill(own_broker.pid, signal.SIGSTOP)  # connections stay open, nothing answers
        try:
            with ThreadPoolExecutor(1) as pool:
                first = pool.submit(client.submit, jpeg(), request_id="stalled", timeout=10)
                wait_until(lambda: server.publisher.in_flight == 1, 10, "a publish in flight")
                assert_status(
                    lambda: client.submit(jpeg(), request_id="second", timeout=10),
                    grpc.StatusCode.RESOURCE_EXHAUSTED,
                    "already waits on 1 publishes",
                )
                started = time.monotonic()
                with pytest.raises(grpc.RpcError) as caught:
                    first.result(15)
            assert caught.value.code() == grpc.StatusCode.UNAVAILABLE
            assert "did not acknowledge the record within 2.0 s" in caught.value.details()
            # The record may still land: the client is told so, and the id to retry with.
            assert "may have been accepted: retry with the same request_id" in (
                caught.value.details()
            )
            assert (REQUEST_ID_METADATA, "stalled") in caught.value.trailing_metadata()
            assert time.monotonic() - started < 3
        finally:
            os.kill(own_broker.pid, signal.SIGCONT)
        wait_until(lambda: server.publisher.in_flight == 0, 10, "no publish in flight")
        assert client.submit(jpeg(), request_id="resumed", timeout=10) == "resumed"


def test_health_is_not_serving_until_kafka_answers():
    port = free_port()
    settings = ServerProcessSettings.from_env(
        {
            "FACESTREAM_KAFKA_BOOTSTRAP": f"127.0.0.1:{port}",
            "FACESTREAM_GRPC_ADDRESS": "127.0.0.1:0",
            "DEEPFACE_HOME": str(SYNTHETIC_HOME),
            **NO_METRICS,
        }
    )
    with ServerThread(settings) as server, server.client() as client:
        assert health_of(client) == NOT_SERVING
        assert_status(
            lambda: client.submit(jpeg(), timeout=5),
            grpc.StatusCode.UNAVAILABLE,
            "Kafka is not reachable",
        )
        with EmbeddedBroker(port):
            wait_until(lambda: health_of(client) == SERVING, 30, "health SERVING")
            assert client.submit(jpeg(), request_id="first", timeout=10) == "first"


def test_shutdown_finishes_in_flight_acks_and_reports_not_serving(own_broker):
    topics = Topics(own_broker.bootstrap)
    server = ServerThread(server_settings(topics, FACESTREAM_ACK_TIMEOUT="20"))
    try:
        server.wait_serving()
        client = server.client()
        statuses: list[int] = []
        health_watch = health_pb2_grpc.HealthStub(client._channel).Watch(
            health_pb2.HealthCheckRequest(service=""), timeout=60
        )
        watcher = threading.Thread(
            target=lambda: statuses.extend(r.status for r in _until_error(health_watch))
        )
        watcher.start()
        wait_until(lambda: SERVING in statuses, 10, "the health watch")
        os.kill(own_broker.pid, signal.SIGSTOP)
        with ThreadPoolExecutor(1) as pool:
            in_flight = pool.submit(client.submit, jpeg(), request_id="in-flight", timeout=30)
            wait_until(lambda: server.publisher.in_flight == 1, 10, "a publish in flight")
            stopped = server.start(server.server.stop(15))
            wait_until(lambda: NOT_SERVING in statuses, 10, "health NOT_SERVING on shutdown")
            with server.client() as late:
                assert_status(lambda: late.submit(jpeg(), timeout=5), grpc.StatusCode.UNAVAILABLE)
            os.kill(own_broker.pid, signal.SIGCONT)
            assert in_flight.result(30) == "in-flight"
        stopped.result(30)
        health_watch.cancel()
        watcher.join(10)
        client.close()
        assert set(requests_on_topic(topics, {"in-flight"})) == {"in-flight"}
    finally:
        os.kill(own_broker.pid, signal.SIGCONT)
        server.stop()


def _until_error(stream):
    try:
        yield from stream
    except grpc.RpcError:
        return


class KeptRecords(logging.Handler):
    """Keeps what facestream's logger says (it does not propagate to pytest's caplog)."""

    def __init__(self) -> None:
        super().__init__(logging.DEBUG)
        self.lines: list[str] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.lines.append(record.getMessage())


def test_bearer_tokens(topics):
    settings = server_settings(topics, FACESTREAM_AUTH_TOKENS="alpha,beta")
    kept = KeptRecords()
    logging.getLogger("facestream").addHandler(kept)
    try:
        with ServerThread(settings) as server:
            server.wait_serving()
            for token in ("", "wrong", "alph"):
                with server.client(token=token) as client:
                    assert health_of(client) == SERVING  # probes need no token
                    for call in (
                        lambda c=client: c.submit(jpeg(), timeout=5),
                        lambda c=client: c.analyze(jpeg(), timeout=5),
                        lambda c=client: list(c.watch(["x"], timeout=5)),
                        lambda c=client: list(c.submit_stream([request(jpeg())], timeout=5)),
                    ):
                        assert_status(
                            call, grpc.StatusCode.UNAUTHENTICATED, "authorization: Bearer"
                        )
            with server.client(token="beta") as client:
                assert client.submit(jpeg(), request_id="with-token", timeout=10) == "with-token"
    finally:
        logging.getLogger("facestream").removeHandler(kept)
    refusals = [line for line in kept.lines if line.startswith("refused")]
    assert "refused /facestream.v1.AnalyzeService/Submit: principal unknown (no token)" in (
        refusals
    )
    assert any("(invalid token)" in line for line in refusals)
    logged = "\n".join(kept.lines)
    for token in ("alpha", "beta", "wrong", "alph"):
        assert token not in logged  # never a token, valid or not


def test_tls(topics):
    settings = server_settings(
        topics,
        FACESTREAM_TLS_CERT=str(TLS_DIR / "server.pem"),
        FACESTREAM_TLS_KEY=str(TLS_DIR / "server.key"),
    )
    with ServerThread(settings) as server:
        server.wait_serving()
        with server.client(ca_cert=TLS_DIR / "server.pem") as client:
            assert client.submit(jpeg(), request_id="over-tls", timeout=10) == "over-tls"
        with server.client() as plaintext:
            assert_status(lambda: plaintext.submit(jpeg(), timeout=5), grpc.StatusCode.UNAVAILABLE)
    assert set(requests_on_topic(topics, {"over-tls"})) == {"over-tls"}


def test_server_process_stops_cleanly_on_sigterm(topics):
    port = free_port()
    env = topics.env(SYNTHETIC_HOME, FACESTREAM_GRPC_ADDRESS=f"127.0.0.1:{port}")
    with server_process(env) as server, AnalyzeClient(f"127.0.0.1:{port}") as client:
        wait_until(lambda: health_of(client) == SERVING, 60, "the server process to serve")
        assert client.submit(jpeg(), request_id="from-process") == "from-process"
        assert server.stop(signal.SIGTERM, timeout=30) == 0, server.output()
        assert "AnalyzeService stopped" in server.output()
    assert set(requests_on_topic(topics, {"from-process"})) == {"from-process"}


def test_submit_and_watch_commands(topics, server, tmp_path):
    folder = tmp_path / "images"
    folder.mkdir()
    for i in range(3):
        (folder / f"img{i}.jpg").write_bytes(jpeg(seed=i))
    (folder / "notes.txt").write_text("not an image, skipped by suffix")
    (folder / "broken.png").write_bytes(b"not a png")
    env = topics.env(SYNTHETIC_HOME, FACESTREAM_GRPC_ADDRESS=server.address)

    submitted = run_facestream("submit", str(folder), env=env)
    assert submitted.returncode == 1, submitted.stderr  # broken.png was refused
    lines = submitted.stdout.splitlines()
    assert lines[0].split() == ["image", "request", "id", "accepted"]
    assert sum(line.endswith(" yes") for line in lines) == 3
    assert any("broken.png" in line and "no: image.not_an_image: " in line for line in lines)

    with stand_in_dataflow(topics):
        waited = run_facestream("submit", str(folder / "img0.jpg"), "--wait", "--json", env=env)
        assert waited.returncode == 0, waited.stderr
        (line,) = waited.stdout.splitlines()
        record = json.loads(line)
        assert record["status"] == "ANALYSIS_STATUS_NO_FACE"
        assert record["image"].endswith("img0.jpg")
        watched = run_facestream("watch", record["requestId"], env=env, timeout=60)
    assert watched.returncode == 0, watched.stderr
    assert watched.stdout.split()[:2] == [record["requestId"], "NO_FACE"]


def test_submit_command_explains_a_missing_path_a_down_server_and_a_refusal(topics, tmp_path):
    missing = run_facestream("submit", str(tmp_path / "nope.jpg"))
    assert missing.returncode == 2
    assert "no such file or folder" in missing.stderr
    image = tmp_path / "a.jpg"
    image.write_bytes(jpeg())
    env = {**os.environ, "FACESTREAM_GRPC_ADDRESS": f"127.0.0.1:{free_port()}"}
    down = run_facestream("submit", str(image), "--timeout", "3", env=env)
    assert down.returncode == 1
    assert "UNAVAILABLE" in down.stderr and "Traceback" not in down.stderr

    # A refusal the server typed: the command prints its status and facestream's code.
    with ServerThread(server_settings(topics)) as server:
        server.wait_serving()
        broken = tmp_path / "broken.jpg"
        broken.write_bytes(jpeg()[:-200])
        env = topics.env(SYNTHETIC_HOME, FACESTREAM_GRPC_ADDRESS=server.address)
        waited = run_facestream("submit", str(broken), "--wait", env=env)
    assert waited.returncode == 1
    assert "INVALID_ARGUMENT image.truncated: " in waited.stdout + waited.stderr
