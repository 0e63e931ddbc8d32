"""Fair shares of one server, over a real channel: a principal that floods the watchers,
the held image bytes or the concurrent calls gets RESOURCE_EXHAUSTED beyond its share, and
another principal is still served meanwhile. No dataflow runs, so calls that wait for a
result keep their share until they are cancelled."""

from __future__ import annotations

from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from pathlib import Path

import grpc
import pytest

from apps.processes import wait_until
from facestream.client import AnalyzeClient
from tests.credentials import TOKENS, serving_with_credentials
from tests.grpc_helpers import ServerThread
from tests.pipeline import Topics
from tests.test_grpc_server import assert_status, jpeg


@contextmanager
def two_principals(
    topics: Topics, auth_file: Path, **settings: str
) -> Iterator[tuple[ServerThread, AnalyzeClient, AnalyzeClient, ThreadPoolExecutor]]:
    """A server with `settings` and no dataflow, clients of team-a and team-b, and threads
    for the calls that wait."""
    with (
        serving_with_credentials(topics, auth_file, dataflow=False, **settings) as server,
        ThreadPoolExecutor(4) as pool,
    ):
        yield (
            server,
            server.client(token=TOKENS["team-a"]),
            server.client(token=TOKENS["team-b"]),
            pool,
        )


def open_watches(client, count: int, pool: ThreadPoolExecutor) -> list:
    """`count` watches by id of `client` that wait (no result comes), and their futures."""
    calls = [client.watch([f"never-{i}"], timeout=60) for i in range(count)]
    return [(call, pool.submit(list, call)) for call in calls]


def cancel(watches: list) -> None:
    for call, future in watches:
        call.cancel()
        with pytest.raises(grpc.RpcError):
            future.result(15)


def test_one_principal_cannot_take_every_watcher(topics, auth_file):
    settings = {"FACESTREAM_MAX_WATCHERS": "4", "FACESTREAM_MAX_WATCHERS_PER_PRINCIPAL": "2"}
    with two_principals(topics, auth_file, **settings) as (server, team_a, team_b, pool):
        flood = open_watches(team_a, 2, pool)
        wait_until(lambda: server.listener.waiter_count == 2, 10, "A's watches open")
        assert_status(
            lambda: list(team_a.watch(["one-more"], timeout=10)),
            grpc.StatusCode.RESOURCE_EXHAUSTED,
            "principal 'team-a'",
            "FACESTREAM_MAX_WATCHERS_PER_PRINCIPAL",
        )
        served = open_watches(team_b, 1, pool)
        wait_until(lambda: server.listener.waiter_count == 3, 10, "B's watch open")
        cancel(flood + served)


def test_one_principal_cannot_take_every_held_image_byte(topics, auth_file):
    image = jpeg(256, 256)
    settings = {
        "FACESTREAM_MAX_HELD_IMAGE_BYTES": str(len(image) * 4),
        # Room for one waiting image of a principal, not two.
        "FACESTREAM_MAX_HELD_IMAGE_BYTES_PER_PRINCIPAL": str(len(image) * 3 // 2),
        # The server ends the held Analyze itself, after freeing its bytes.
        "FACESTREAM_RESULT_TIMEOUT": "6",
    }
    with two_principals(topics, auth_file, **settings) as (server, team_a, team_b, pool):
        # No dataflow answers: this Analyze keeps its image until the result timeout.
        waiting = pool.submit(team_a.analyze, image, request_id="held", timeout=30)
        wait_until(lambda: server.listener.waiter_count == 1, 10, "A's Analyze waiting")
        assert_status(
            lambda: team_a.submit(image, request_id="refused", timeout=5),
            grpc.StatusCode.RESOURCE_EXHAUSTED,
            "principal 'team-a'",
            "FACESTREAM_MAX_HELD_IMAGE_BYTES_PER_PRINCIPAL",
        )
        assert team_b.submit(image, request_id="b-served", timeout=10) == "b-served"
        with pytest.raises(grpc.RpcError) as timed_out:
            waiting.result(30)
        assert timed_out.value.code() == grpc.StatusCode.DEADLINE_EXCEEDED
        assert team_a.submit(image, request_id="after", timeout=10) == "after"


def test_one_principal_cannot_take_every_concurrent_call(topics, auth_file):
    settings = {"FACESTREAM_MAX_CALLS_PER_PRINCIPAL": "2"}
    with two_principals(topics, auth_file, **settings) as (server, team_a, team_b, pool):
        flood = open_watches(team_a, 2, pool)
        wait_until(lambda: server.listener.waiter_count == 2, 10, "A's calls running")
        assert_status(
            lambda: team_a.submit(jpeg(), request_id="third", timeout=5),
            grpc.StatusCode.RESOURCE_EXHAUSTED,
            "principal 'team-a'",
            "FACESTREAM_MAX_CALLS_PER_PRINCIPAL",
        )
        assert team_b.submit(jpeg(), request_id="b-served", timeout=10) == "b-served"
        cancel(flood)
        wait_until(lambda: server.listener.waiter_count == 0, 10, "A's calls ended")
        assert team_a.submit(jpeg(), request_id="a-again", timeout=10) == "a-again"
