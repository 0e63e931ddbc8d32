"""Authorization for the whole life of a call, over a real channel: a principal removed
from the credentials file, or stripped of a scope, loses the calls it has open (watches,
Analyze waits, SubmitStream's next request); and the file is judged by its content, so no
edit is missed, and a deleted file fails closed."""

from __future__ import annotations

import logging
import os
import queue
from collections.abc import Iterator
from concurrent.futures import Future, ThreadPoolExecutor

import grpc
import pytest

from apps.processes import wait_until
from facestream.client import request
from facestream.v1 import analyze_service_pb2, records_pb2
from grpc_server.principals import RELOAD_CHECK_SECONDS, Authenticator, hash_token
from tests.credentials import (
    TOKENS,
    credentials_file,
    serving_with_credentials,
    submit_refused,
)
from tests.grpc_helpers import SERVING, ServerThread, health_of, server_settings
from tests.pipeline import Topics, consume_until
from tests.test_grpc_server import jpeg

# A change of the file is loaded on the second check that sees it (a write caught half-way
# waits for the next): within a second at RELOAD_CHECK_SECONDS.
CHECKS_TO_LOAD = 2
assert CHECKS_TO_LOAD * RELOAD_CHECK_SECONDS <= 1.0


@pytest.fixture
def idle_server(topics, auth_file):
    """A server with credentials and no dataflow: Analyze and watches by id keep waiting."""
    with serving_with_credentials(topics, auth_file, dataflow=False) as running:
        yield running


def ended_with(future: Future) -> grpc.StatusCode:
    """The status a call running in `future` ended with (it must end within 15 s)."""
    with pytest.raises(grpc.RpcError) as ended:
        future.result(15)
    return ended.value.code()


def applied(server: ServerThread, generation: int) -> bool:
    """True once the server loaded a change of the credentials after `generation`."""
    return server.server.authenticator.generation > generation


def test_an_open_watch_of_everything_ends_when_its_principal_is_removed(secured_server, auth_file):
    watcher = secured_server.client(token=TOKENS["watcher"])
    team_a = secured_server.client(token=TOKENS["team-a"])
    watch = watcher.watch(timeout=60)  # watch-all: no ids
    with ThreadPoolExecutor(1) as pool:
        first = pool.submit(next, watch)
        wait_until(lambda: secured_server.listener.waiter_count == 1, 10, "the watch open")
        team_a.submit(jpeg(), request_id="seen-by-watcher", timeout=10)
        assert first.result(15).request_id == "seen-by-watcher"
        credentials_file(auth_file, revoked=("watcher",))
        rest = pool.submit(list, watch)
        assert ended_with(rest) == grpc.StatusCode.UNAUTHENTICATED
    assert secured_server.listener.waiter_count == 0


def test_an_open_watch_by_id_and_an_analyze_wait_end_when_revoked(idle_server, auth_file):
    team_b = idle_server.client(token=TOKENS["team-b"])
    with ThreadPoolExecutor(2) as pool:
        watch = pool.submit(list, team_b.watch(["never-answered"], timeout=60))
        analyze = pool.submit(team_b.analyze, jpeg(), request_id="waits", timeout=60)
        wait_until(lambda: idle_server.listener.waiter_count == 2, 10, "both calls waiting")
        credentials_file(auth_file, revoked=("team-b",))
        assert ended_with(watch) == grpc.StatusCode.UNAUTHENTICATED
        assert ended_with(analyze) == grpc.StatusCode.UNAUTHENTICATED


def test_a_watch_ends_when_its_principal_loses_the_scope(secured_server, auth_file):
    watcher = secured_server.client(token=TOKENS["watcher"])
    team_a = secured_server.client(token=TOKENS["team-a"])
    with ThreadPoolExecutor(2) as pool:
        watch_all = pool.submit(list, watcher.watch(timeout=60))
        # By id, someone else's request: allowed by watch-all only.
        by_id = pool.submit(list, watcher.watch(["team-a-never"], timeout=60))
        wait_until(lambda: secured_server.listener.waiter_count == 2, 10, "both watches open")
        credentials_file(auth_file, scopes={"watcher": '["results:read"]'})
        assert ended_with(watch_all) == grpc.StatusCode.PERMISSION_DENIED
        assert ended_with(by_id) == grpc.StatusCode.PERMISSION_DENIED
    # Others are untouched.
    assert team_a.submit(jpeg(), request_id="after-scope-change", timeout=10)


def test_a_submit_stream_refuses_the_next_request_once_revoked(embedded_broker, auth_file):
    # One partition: every record published before the marker is read before it.
    topics = Topics(embedded_broker.bootstrap, partitions=1)
    settings = server_settings(topics, FACESTREAM_AUTH_FILE=str(auth_file))
    with ServerThread(settings) as server:
        server.wait_serving()
        team_b = server.client(token=TOKENS["team-b"])
        outgoing: queue.Queue[analyze_service_pb2.SubmitRequest | None] = queue.Queue()

        def requests() -> Iterator[analyze_service_pb2.SubmitRequest]:
            while (item := outgoing.get(timeout=30)) is not None:
                yield item

        replies = team_b.submit_stream(requests(), timeout=60)
        outgoing.put(request(jpeg(seed=1), request_id="before-revocation"))
        assert next(replies).request_id == "before-revocation"
        generation = server.server.authenticator.generation
        credentials_file(auth_file, revoked=("team-b",))
        wait_until(lambda: applied(server, generation), 10, "the revocation loaded")
        outgoing.put(request(jpeg(seed=2), request_id="after-revocation"))
        with pytest.raises(grpc.RpcError) as ended:
            next(replies)
        assert ended.value.code() == grpc.StatusCode.UNAUTHENTICATED
        outgoing.put(None)
        server.client(token=TOKENS["team-a"]).submit(jpeg(), request_id="marker", timeout=10)
        records = consume_until(
            topics.bootstrap,
            topics.requests,
            1,
            lambda got: b"marker" in {m.key() for m in got},
            30,
        )
        published = [records_pb2.ImageSubmitted.FromString(m.value()) for m in records]
        assert [r.request_id for r in published if r.principal == "team-b"] == ["before-revocation"]


def test_a_same_size_edit_in_the_same_instant_is_loaded(tmp_path):
    path = credentials_file(tmp_path / "credentials.toml")
    authenticator = Authenticator(path, (), logging.getLogger("test"))
    before = path.stat()
    # team-a's token rotated: a 64-hex hash for another, the same size, the same mtime.
    text = path.read_text().replace(hash_token(TOKENS["team-a"]), hash_token("rotated-a-0000"))
    path.write_text(text)
    os.utime(path, ns=(before.st_atime_ns, before.st_mtime_ns))
    assert path.stat().st_size == before.st_size
    for _ in range(CHECKS_TO_LOAD):
        authenticator.check_file()
    assert authenticator.identify(bearer("rotated-a-0000")).name == "team-a"
    assert authenticator.identify(bearer(TOKENS["team-a"])) is None


def test_a_write_caught_half_way_is_not_loaded_and_its_end_is(tmp_path):
    path = credentials_file(tmp_path / "credentials.toml")
    authenticator = Authenticator(path, (), logging.getLogger("test"))
    whole = credentials_file(tmp_path / "next.toml", revoked=("reader",)).read_text()
    # Half of the new file: valid TOML that names only the first principals.
    half = whole[: whole.index("[principals.team-b]")]
    path.write_text(half)
    authenticator.check_file()  # reads the half-written file
    path.write_text(whole)  # the write ends
    assert authenticator.identify(bearer(TOKENS["team-b"])).name == "team-b"
    for _ in range(CHECKS_TO_LOAD):
        authenticator.check_file()
    assert authenticator.identify(bearer(TOKENS["team-b"])).name == "team-b"
    assert authenticator.identify(bearer(TOKENS["reader"])) is None


def test_a_deleted_or_unreadable_file_refuses_every_call_but_health(idle_server, auth_file):
    team_a = idle_server.client(token=TOKENS["team-a"])
    assert team_a.submit(jpeg(), timeout=10)
    text = auth_file.read_text()
    auth_file.unlink()
    wait_until(lambda: submit_refused(team_a), 10, "calls refused once the file is gone")
    assert "cannot read the credentials file" in idle_server.server.authenticator.refusing
    assert health_of(team_a) == SERVING
    auth_file.mkdir()  # a path that cannot be read as a file
    assert submit_refused(team_a)
    auth_file.rmdir()
    auth_file.write_text(text)
    wait_until(lambda: not submit_refused(team_a), 10, "calls served once the file is back")


def test_a_deleted_file_is_logged_with_the_reason(tmp_path, caplog):
    path = credentials_file(tmp_path / "credentials.toml")
    authenticator = Authenticator(path, (), logging.getLogger("facestream.test"))
    path.unlink()
    with caplog.at_level(logging.ERROR, logger="facestream.test"):
        authenticator.check_file()
    assert authenticator.identify(bearer(TOKENS["team-a"])) is None
    assert f"cannot read the credentials file {path}" in caplog.text
    assert "refusing every call but health" in caplog.text


def bearer(token: str) -> tuple[tuple[str, str], ...]:
    return (("authorization", f"Bearer {token}"),)
