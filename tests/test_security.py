"""Clients isolated from each other, over a real channel: principals from a credentials
file (token hashes only), per-method scopes, owner-only results, revocation without a
restart, mTLS, and logs that never hold a token."""

from __future__ import annotations

import logging
import subprocess
import time
import urllib.request
from pathlib import Path

import grpc
import pytest

from apps.broker import free_port
from apps.processes import wait_until
from facestream.v1 import records_pb2
from grpc_server.admission import Admission
from grpc_server.principals import Credentials, CredentialsError, hash_token
from grpc_server.validation import RequestRejectedError
from tests.commands import PROJECT_ROOT
from tests.grpc_helpers import (
    SERVING,
    ServerThread,
    health_of,
    server_settings,
    stand_in_dataflow,
)
from tests.pipeline import consume_until
from tests.test_grpc_server import KeptRecords, assert_status, jpeg

TLS_DIR = PROJECT_ROOT / "tests" / "data" / "tls"
TOKENS = {
    "team-a": "token-a-7f3k",
    "team-b": "token-b-9q2m",
    "reader": "token-r-4d8s",
    "watcher": "token-w-1x5z",
}


def credentials_file(path: Path, revoked: tuple[str, ...] = ()) -> Path:
    scopes = {
        "team-a": '["analyze:submit", "results:read"]',
        "team-b": '["analyze:submit", "results:read"]',
        "reader": '["results:read"]',
        "watcher": '["results:watch-all"]',
    }
    lines = []
    for name, token in TOKENS.items():
        if name in revoked:
            continue
        lines += [
            f"[principals.{name}]",
            f'token_sha256 = "{hash_token(token)}"',
            f"scopes = {scopes[name]}",
            "",
        ]
    lines += [
        "[principals.service-c]",
        'certificate_names = ["client-c.test"]',
        'scopes = ["analyze:submit", "results:read"]',
    ]
    path.write_text("\n".join(lines) + "\n")
    return path


@pytest.fixture
def auth_file(tmp_path):
    return credentials_file(tmp_path / "credentials.toml")


@pytest.fixture
def server(topics, auth_file):
    kept = KeptRecords()
    logging.getLogger("facestream").addHandler(kept)
    try:
        with (
            stand_in_dataflow(topics),
            ServerThread(server_settings(topics, FACESTREAM_AUTH_FILE=str(auth_file))) as running,
        ):
            running.wait_serving()
            running.kept_logs = kept
            yield running
    finally:
        logging.getLogger("facestream").removeHandler(kept)


def clients(server):
    return {name: server.client(token=token) for name, token in TOKENS.items()}


def test_another_principal_never_receives_a_result(server, topics):
    c = clients(server)
    mine = c["team-a"].analyze(jpeg(seed=1), request_id="shared-id", timeout=30)
    assert (mine.request_id, mine.principal) == ("shared-id", "team-a")
    # B retries "A's" id: it is B's own request, published and answered as B's.
    theirs = c["team-b"].analyze(jpeg(seed=2), request_id="shared-id", timeout=30)
    assert (theirs.request_id, theirs.principal) == ("shared-id", "team-b")
    records = consume_until(
        topics.bootstrap,
        topics.requests,
        topics.partitions,
        lambda got: len([m for m in got if m.key() == b"shared-id"]) >= 2,
        30,
    )
    published = {
        records_pb2.ImageSubmitted.FromString(m.value()).principal
        for m in records
        if m.key() == b"shared-id"
    }
    assert published == {"team-a", "team-b"}
    # B asking by id for a request only A made never gets A's result.
    c["team-a"].submit(jpeg(seed=3), request_id="only-a", timeout=10)
    wait_until(lambda: ("team-a", "only-a") in server.listener._recent, 30, "A's result to arrive")
    seen = []
    with pytest.raises(grpc.RpcError) as caught:
        seen.extend(c["team-b"].watch(["only-a"], timeout=3))
    assert caught.value.code() == grpc.StatusCode.DEADLINE_EXCEEDED
    assert seen == []
    # Nor by watching everything: that takes results:watch-all.
    assert_status(
        lambda: list(c["team-b"].watch(timeout=5)),
        grpc.StatusCode.PERMISSION_DENIED,
        "'team-b' lacks the scope 'results:watch-all'",
    )
    # A principal allowed to watch all gets A's result by id.
    [watched] = list(c["watcher"].watch(["only-a"], timeout=10))
    assert (watched.request_id, watched.principal) == ("only-a", "team-a")
    # And A reads its own.
    [own] = list(c["team-a"].watch(["only-a"], timeout=10))
    assert own.principal == "team-a"


def test_each_method_needs_its_scope(server):
    c = clients(server)
    assert_status(
        lambda: c["reader"].submit(jpeg(), timeout=5),
        grpc.StatusCode.PERMISSION_DENIED,
        "lacks the scope 'analyze:submit'",
    )
    assert_status(
        lambda: c["watcher"].analyze(jpeg(), timeout=5),
        grpc.StatusCode.PERMISSION_DENIED,
        "lacks the scope",
    )
    with server.client(token="not-a-known-token") as stranger:
        assert_status(lambda: stranger.submit(jpeg(), timeout=5), grpc.StatusCode.UNAUTHENTICATED)
        assert health_of(stranger) == SERVING  # probes need no credentials


def test_reflection_needs_a_credential_when_auth_is_on(server):
    from grpc_reflection.v1alpha import reflection_pb2, reflection_pb2_grpc

    def services(metadata):
        with grpc.insecure_channel(server.address) as channel:
            stub = reflection_pb2_grpc.ServerReflectionStub(channel)
            ask = reflection_pb2.ServerReflectionRequest(list_services="")
            [reply] = list(stub.ServerReflectionInfo(iter([ask]), metadata=metadata, timeout=5))
            return {s.name for s in reply.list_services_response.service}

    with pytest.raises(grpc.RpcError) as caught:
        services(())
    assert caught.value.code() == grpc.StatusCode.UNAUTHENTICATED
    known = services((("authorization", f"Bearer {TOKENS['reader']}"),))
    assert "facestream.v1.AnalyzeService" in known


def test_a_revoked_token_is_refused_without_a_restart(server, auth_file):
    with server.client(token=TOKENS["team-b"]) as team_b:
        assert team_b.submit(jpeg(), request_id="before-revocation", timeout=10)
        credentials_file(auth_file, revoked=("team-b",))

        def refused() -> bool:
            try:
                team_b.submit(jpeg(), timeout=5)
            except grpc.RpcError as error:
                return error.code() == grpc.StatusCode.UNAUTHENTICATED
            return False

        wait_until(refused, 15, "the revoked token to be refused")
    with server.client(token=TOKENS["team-a"]) as team_a:  # the others are untouched
        assert team_a.submit(jpeg(), request_id="after-revocation", timeout=10)


def test_the_file_holds_hashes_and_no_log_line_holds_a_token(server, auth_file):
    c = clients(server)
    c["team-a"].submit(jpeg(), timeout=10)
    with pytest.raises(grpc.RpcError):
        c["reader"].submit(jpeg(), timeout=5)
    with server.client(token="a-wrong-token-123") as stranger, pytest.raises(grpc.RpcError):
        stranger.submit(jpeg(), timeout=5)
    text = auth_file.read_text()
    logged = "\n".join(server.kept_logs.lines)
    assert "refused /facestream.v1.AnalyzeService/Submit: principal reader lacks" in logged
    assert "refused /facestream.v1.AnalyzeService/Submit: principal unknown" in logged
    for token in (*TOKENS.values(), "a-wrong-token-123"):
        assert token not in text
        assert hash_token(token) not in logged
        assert token not in logged


def test_a_credentials_file_with_a_plain_token_is_refused():
    with pytest.raises(CredentialsError, match="64 lowercase hex digits"):
        Credentials.parse(
            '[principals.x]\ntoken_sha256 = "my-plain-token"\nscopes = ["admin"]\n', "test"
        )
    with pytest.raises(CredentialsError, match="scopes must be"):
        Credentials.parse(
            f'[principals.x]\ntoken_sha256 = "{"0" * 64}"\nscopes = ["everything"]\n', "test"
        )


def test_one_principal_cannot_take_every_publish():
    admission = Admission(1 << 30, 10, max_publishes_per_principal=2)
    with admission.publishing("team-a"), admission.publishing("team-a"):
        with pytest.raises(RequestRejectedError) as caught, admission.publishing("team-a"):
            pass
        assert caught.value.status == grpc.StatusCode.RESOURCE_EXHAUSTED
        assert "FACESTREAM_MAX_IN_FLIGHT_PER_PRINCIPAL" in caught.value.message
        with admission.publishing("team-b"):  # another principal still gets in
            assert admission.publishes == {"team-a": 2, "team-b": 1}
    assert not admission.publishes


def openssl(*args: str, cwd: Path) -> None:
    subprocess.run(["openssl", *args], cwd=cwd, check=True, capture_output=True, timeout=60)


@pytest.fixture(scope="module")
def client_certificates(tmp_path_factory):
    """A client CA and a certificate it issued for CN=client-c.test (made with openssl)."""
    folder = tmp_path_factory.mktemp("client-tls")
    openssl(
        "req",
        "-x509",
        "-newkey",
        "rsa:2048",
        "-nodes",
        "-keyout",
        "ca.key",
        "-out",
        "ca.pem",
        "-days",
        "2",
        "-subj",
        "/CN=facestream test client CA",
        cwd=folder,
    )
    openssl(
        "req",
        "-newkey",
        "rsa:2048",
        "-nodes",
        "-keyout",
        "client.key",
        "-out",
        "client.csr",
        "-subj",
        "/CN=client-c.test",
        cwd=folder,
    )
    openssl(
        "x509",
        "-req",
        "-in",
        "client.csr",
        "-CA",
        "ca.pem",
        "-CAkey",
        "ca.key",
        "-CAcreateserial",
        "-out",
        "client.pem",
        "-days",
        "2",
        cwd=folder,
    )
    return folder


def test_mutual_tls_maps_a_client_certificate_to_its_principal(
    topics, auth_file, client_certificates
):
    settings = server_settings(
        topics,
        FACESTREAM_AUTH_FILE=str(auth_file),
        FACESTREAM_TLS_CERT=str(TLS_DIR / "server.pem"),
        FACESTREAM_TLS_KEY=str(TLS_DIR / "server.key"),
        FACESTREAM_TLS_CLIENT_CA=str(client_certificates / "ca.pem"),
    )
    certificate = (client_certificates / "client.pem", client_certificates / "client.key")
    with stand_in_dataflow(topics), ServerThread(settings) as server:
        server.wait_serving()
        with server.client(ca_cert=TLS_DIR / "server.pem", client_certificate=certificate) as c:
            result = c.analyze(jpeg(), request_id="by-certificate", timeout=30)
        assert (result.request_id, result.principal) == ("by-certificate", "service-c")
        started = time.monotonic()
        with server.client(ca_cert=TLS_DIR / "server.pem") as without_certificate:
            assert_status(
                lambda: without_certificate.submit(jpeg(), timeout=5),
                grpc.StatusCode.UNAVAILABLE,
            )
        assert time.monotonic() - started < 10


def test_refusals_are_counted_by_code_and_the_metrics_name_no_one(topics, auth_file):
    from tests.test_metrics import scrape, value

    port = free_port()
    settings = server_settings(
        topics, FACESTREAM_AUTH_FILE=str(auth_file), FACESTREAM_METRICS_PORT=str(port)
    )
    url = f"http://127.0.0.1:{port}/metrics"
    calls = "facestream_server_calls_total"
    service = "facestream.v1.AnalyzeService"

    def counted(code: str) -> float:
        return value(scrape(url), calls, service=service, method="Submit", code=code)

    with stand_in_dataflow(topics), ServerThread(settings) as server:
        server.wait_serving()
        c = clients(server)
        assert c["team-a"].submit(jpeg(), request_id="counted", timeout=10) == "counted"
        assert_status(
            lambda: c["reader"].submit(jpeg(), timeout=5), grpc.StatusCode.PERMISSION_DENIED
        )
        with server.client(token="not-a-known-token") as stranger:
            assert_status(
                lambda: stranger.submit(jpeg(), timeout=5), grpc.StatusCode.UNAUTHENTICATED
            )
        # A call is counted as its handler returns, a moment after the client's answer.
        for code in ("OK", "PERMISSION_DENIED", "UNAUTHENTICATED"):
            wait_until(lambda code=code: counted(code) == 1, 5, f"one Submit counted as {code}")
        with urllib.request.urlopen(url, timeout=5) as response:
            text = response.read().decode()
    # Scraping needs no credentials, so the metrics hold no principal and no token.
    for secret in (*TOKENS, *TOKENS.values(), "not-a-known-token"):
        assert secret not in text
