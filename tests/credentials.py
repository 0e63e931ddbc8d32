"""Principals of the security tests: their tokens, the credentials file that names them,
and a server (with or without a stand-in dataflow) that reads it."""

from __future__ import annotations

import logging
from collections.abc import Iterator, Mapping
from contextlib import contextmanager, nullcontext
from pathlib import Path

import grpc

from facestream.client import AnalyzeClient
from grpc_server.principals import hash_token
from tests.grpc_helpers import ServerThread, server_settings, stand_in_dataflow
from tests.pipeline import Topics
from tests.test_grpc_server import KeptRecords, jpeg

TOKENS = {
    "team-a": "token-a-7f3k",
    "team-b": "token-b-9q2m",
    "reader": "token-r-4d8s",
    "watcher": "token-w-1x5z",
}
SCOPES = {
    "team-a": '["analyze:submit", "results:read"]',
    "team-b": '["analyze:submit", "results:read"]',
    "reader": '["results:read"]',
    "watcher": '["results:watch-all"]',
}


def credentials_file(
    path: Path, revoked: tuple[str, ...] = (), scopes: Mapping[str, str] | None = None
) -> Path:
    """Write the principals of TOKENS (less `revoked`, with `scopes` changed) and one that
    proves itself by a client certificate (CN or DNS SAN client-c.test) to `path`."""
    scopes = {**SCOPES, **(scopes or {})}
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
        "",
        "[principals.service-u]",
        'certificate_names = ["spiffe://facestream.test/service-u"]',
        'scopes = ["analyze:submit", "results:read"]',
    ]
    path.write_text("\n".join(lines) + "\n")
    return path


def submit_refused(client: AnalyzeClient) -> bool:
    """True when a Submit of `client` is refused with UNAUTHENTICATED now."""
    try:
        client.submit(jpeg(), timeout=5)
    except grpc.RpcError as error:
        return error.code() == grpc.StatusCode.UNAUTHENTICATED
    return False


@contextmanager
def serving_with_credentials(
    topics: Topics, auth_file: Path, dataflow: bool = True, **overrides: str
) -> Iterator[ServerThread]:
    """A serving server that reads `auth_file`, its log lines kept in `kept_logs`; with a
    stand-in dataflow that answers every request, or none (calls waiting for a result wait);
    `overrides` are more settings."""
    kept = KeptRecords()
    logging.getLogger("facestream").addHandler(kept)
    try:
        with (
            stand_in_dataflow(topics) if dataflow else nullcontext(),
            ServerThread(
                server_settings(topics, FACESTREAM_AUTH_FILE=str(auth_file), **overrides)
            ) as running,
        ):
            running.wait_serving()
            running.kept_logs = kept
            yield running
    finally:
        logging.getLogger("facestream").removeHandler(kept)
