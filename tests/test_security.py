"""Clients isolated from each other, over a real channel: principals from a credentials
file (token hashes only), per-method scopes, owner-only results, revocation without a
restart, mTLS, and logs that never hold a token."""

from __future__ import annotations

import subprocess
import time
import urllib.request
from pathlib import Path

import grpc
import pytest

from apps.broker import free_port
from apps.processes import wait_until
from facestream.v1 import records_pb2
from grpc_server.admission import Admission, Shares
from grpc_server.errors import RequestRejectedError
from grpc_server.principals import Credentials, CredentialsError, hash_token
from tests.commands import PROJECT_ROOT
from tests.credentials import TOKENS, credentials_file, submit_refused
from tests.grpc_helpers import (
    SERVING,
    ServerThread,
    health_of,
    server_settings,
    stand_in_dataflow,
)
from tests.pipeline import consume_until
from tests.test_grpc_server import assert_status, jpeg

TLS_DIR = PROJECT_ROOT / "tests" / "data" / "tls"


def clients(server):
    return {name: server.client(token=token) for name, token in TOKENS.items()}


def test_another_principal_never_receives_a_result(secured_server, topics):
    c = clients(secured_server)
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
    wait_until(
        lambda: ("team-a", "only-a") in secured_server.listener._recent, 30, "A's result to arrive"
    )
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


def test_each_method_needs_its_scope(secured_server):
    c = clients(secured_server)
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
    with secured_server.client(token="not-a-known-token") as stranger:
        assert_status(lambda: stranger.submit(jpeg(), timeout=5), grpc.StatusCode.UNAUTHENTICATED)
        assert health_of(stranger) == SERVING  # probes need no credentials


def test_reflection_needs_a_credential_when_auth_is_on(secured_server):
    from grpc_reflection.v1alpha import reflection_pb2, reflection_pb2_grpc

    def services(metadata):
        with grpc.insecure_channel(secured_server.address) as channel:
            stub = reflection_pb2_grpc.ServerReflectionStub(channel)
            ask = reflection_pb2.ServerReflectionRequest(list_services="")
            [reply] = list(stub.ServerReflectionInfo(iter([ask]), metadata=metadata, timeout=5))
            return {s.name for s in reply.list_services_response.service}

    with pytest.raises(grpc.RpcError) as caught:
        services(())
    assert caught.value.code() == grpc.StatusCode.UNAUTHENTICATED
    known = services((("authorization", f"Bearer {TOKENS['reader']}"),))
    assert "facestream.v1.AnalyzeService" in known


def test_a_revoked_token_is_refused_without_a_restart(secured_server, auth_file):
    with secured_server.client(token=TOKENS["team-b"]) as team_b:
        assert team_b.submit(jpeg(), request_id="before-revocation", timeout=10)
        credentials_file(auth_file, revoked=("team-b",))
        wait_until(lambda: submit_refused(team_b), 15, "the revoked token to be refused")
    with secured_server.client(token=TOKENS["team-a"]) as team_a:  # the others are untouched
        assert team_a.submit(jpeg(), request_id="after-revocation", timeout=10)


def test_the_file_holds_hashes_and_no_log_line_holds_a_token(secured_server, auth_file):
    c = clients(secured_server)
    c["team-a"].submit(jpeg(), timeout=10)
    with pytest.raises(grpc.RpcError):
        c["reader"].submit(jpeg(), timeout=5)
    with secured_server.client(token="a-wrong-token-123") as stranger, pytest.raises(grpc.RpcError):
        stranger.submit(jpeg(), timeout=5)
    text = auth_file.read_text()
    logged = "\n".join(secured_server.kept_logs.lines)
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


HASH = "0" * 64
UNUSABLE_FILES = {
    "no principals": ("x = 1\n", "no [principals.NAME] tables"),
    "a bad name": (
        f'[principals."two words"]\ntoken_sha256 = "{HASH}"\nscopes = ["admin"]\n',
        "principal 'two words': use 1-128 letters",
    ),
    "no proof": ('[principals.a]\nscopes = ["admin"]\n', "give token_sha256 and/or"),
    "an unknown key": (
        f'[principals.a]\ntoken_sha256 = "{HASH}"\nscopes = ["admin"]\ncolour = 1\n',
        "principal 'a': unknown key colour",
    ),
    "not a table": ("principals = { a = 3 }\n", "principal 'a': expected a table"),
    "a name that is no string": (
        '[principals.a]\ncertificate_names = [3]\nscopes = ["admin"]\n',
        "certificate_names must be a string or a list of strings",
    ),
    "a shared token": (
        f'[principals.a]\ntoken_sha256 = "{HASH}"\nscopes = ["admin"]\n'
        f'[principals.b]\ntoken_sha256 = "{HASH}"\nscopes = ["admin"]\n',
        "two principals share a token",
    ),
    "no TOML": ("principals = [\n", "not valid TOML"),
}


@pytest.mark.parametrize("case", sorted(UNUSABLE_FILES))
def test_an_unusable_credentials_file_says_where_and_why(case):
    text, reason = UNUSABLE_FILES[case]
    with pytest.raises(CredentialsError) as refused:
        Credentials.parse(text, "principals.toml")
    assert str(refused.value).startswith("principals.toml: ")
    assert reason in str(refused.value)


def test_a_token_or_a_name_may_be_one_string_or_a_list():
    parsed = Credentials.parse(
        f'[principals.a]\ntoken_sha256 = "{HASH}"\ncertificate_names = ["x", "y"]\n'
        'scopes = ["results:read"]\n',
        "test",
    )
    assert parsed.by_token_hash[HASH].name == "a"
    assert set(parsed.by_certificate_name) == {"x", "y"}


def test_one_principal_cannot_take_every_publish():
    admission = Admission(1 << 30, 10, Shares(1 << 30, 10, 10, publishes=2))
    with admission.publishing("team-a"), admission.publishing("team-a"):
        with pytest.raises(RequestRejectedError) as caught, admission.publishing("team-a"):
            pass
        assert caught.value.status == grpc.StatusCode.RESOURCE_EXHAUSTED
        assert "FACESTREAM_MAX_IN_FLIGHT_PER_PRINCIPAL" in caught.value.message
        with admission.publishing("team-b"):  # another principal still gets in
            assert admission.publishes.held == {"team-a": 2, "team-b": 1}
    assert not admission.publishes.held


def openssl(*args: str, cwd: Path) -> None:
    subprocess.run(["openssl", *args], cwd=cwd, check=True, capture_output=True, timeout=60)


@pytest.fixture(scope="module")
def client_certificates(tmp_path_factory):
    """A client CA and certificates it issued (made with openssl): `client` for
    CN=client-c.test, `uri` and `dns` with other CNs and the SAN URI:... or DNS:client-c.test."""
    folder = tmp_path_factory.mktemp("client-tls")
    openssl(
        "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-keyout", "ca.key", "-out", "ca.pem",
        "-days", "2", "-subj", "/CN=facestream test client CA", cwd=folder,
    )  # fmt: skip
    issue_client_certificate(folder, "client", "/CN=client-c.test")
    issue_client_certificate(
        folder, "uri", "/CN=uri-only.test", "URI:spiffe://facestream.test/service-u"
    )
    issue_client_certificate(folder, "dns", "/CN=dns-only.test", "DNS:client-c.test")
    return folder


def issue_client_certificate(folder: Path, name: str, subject: str, san: str = "") -> None:
    """NAME.pem and NAME.key: a client certificate for `subject`, with the SAN `san` if
    given, issued by the test CA in `folder`."""
    openssl(
        "req", "-newkey", "rsa:2048", "-nodes", "-keyout", f"{name}.key",
        "-out", f"{name}.csr", "-subj", subject, cwd=folder,
    )  # fmt: skip
    extensions = ()
    if san:
        (folder / f"{name}.ext").write_text(f"subjectAltName={san}\n")
        extensions = ("-extfile", f"{name}.ext")
    openssl(
        "x509", "-req", "-in", f"{name}.csr", "-CA", "ca.pem", "-CAkey", "ca.key",
        "-CAcreateserial", "-out", f"{name}.pem", "-days", "2", *extensions, cwd=folder,
    )  # fmt: skip


def mtls_settings(topics, auth_file: Path, client_certificates: Path):
    """A server's settings: TLS, client certificates of the test CA required, `auth_file`."""
    return server_settings(
        topics,
        FACESTREAM_AUTH_FILE=str(auth_file),
        FACESTREAM_TLS_CERT=str(TLS_DIR / "server.pem"),
        FACESTREAM_TLS_KEY=str(TLS_DIR / "server.key"),
        FACESTREAM_TLS_CLIENT_CA=str(client_certificates / "ca.pem"),
    )


def test_a_certificate_names_its_principal_by_cn_or_dns_san_never_by_uri_san(
    topics, auth_file, client_certificates
):
    settings = mtls_settings(topics, auth_file, client_certificates)
    folder = client_certificates
    with ServerThread(settings) as server:
        server.wait_serving()
        dns = (folder / "dns.pem", folder / "dns.key")
        with server.client(ca_cert=TLS_DIR / "server.pem", client_certificate=dns) as c:
            assert c.submit(jpeg(), request_id="by-dns-san", timeout=10) == "by-dns-san"
        # The credentials file names "spiffe://facestream.test/service-u", but a URI SAN
        # names no principal (docs/security.md).
        uri = (folder / "uri.pem", folder / "uri.key")
        with server.client(ca_cert=TLS_DIR / "server.pem", client_certificate=uri) as c:
            assert_status(lambda: c.submit(jpeg(), timeout=10), grpc.StatusCode.UNAUTHENTICATED)


def test_mutual_tls_maps_a_client_certificate_to_its_principal(
    topics, auth_file, client_certificates
):
    settings = mtls_settings(topics, auth_file, client_certificates)
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


def test_a_share_larger_than_the_servers_whole_is_cut_to_it_with_a_warning(caplog):
    import logging

    from di.server_root import principal_shares
    from di.settings import ServerProcessSettings

    limits = ServerProcessSettings.from_env({"FACESTREAM_MAX_WATCHERS": "8"}).limits
    assert limits.max_watchers_per_principal == 64  # the default share, above the whole
    logger = logging.getLogger("test-shares")
    with caplog.at_level(logging.WARNING, logger.name):
        shares = principal_shares(limits, authentication=True, logger=logger)
    assert shares.watchers == 8
    assert shares.image_bytes == limits.max_held_image_bytes_per_principal  # within: kept
    (warning,) = caplog.records
    assert "FACESTREAM_MAX_WATCHERS_PER_PRINCIPAL=64" in warning.getMessage()
    assert "FACESTREAM_MAX_WATCHERS=8" in warning.getMessage()
