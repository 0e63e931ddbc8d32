"""The client side of the `facestream` command: `submit` and `watch`."""

from __future__ import annotations

import json
import sys
from collections.abc import Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor, as_completed
from pathlib import Path

import grpc
from tqdm import tqdm

from di import Settings
from facestream.v1 import analyze_service_pb2, records_pb2
from grpc_server.client import AnalyzeClient, request
from grpc_server.result_table import (
    SYNTHETIC_WARNING,
    format_table,
    result_json,
    result_rows,
)

IMAGE_SUFFIXES = frozenset({".jpg", ".jpeg", ".png", ".webp", ".bmp"})
SUBMIT_COLUMNS = ("image", "request id", "accepted")


def image_files(paths: Sequence[Path]) -> list[Path]:
    """The files named, and the image files (by suffix) under the folders named, sorted.
    Raises FileNotFoundError for a path that does not exist."""
    files: list[Path] = []
    for path in paths:
        if path.is_dir():
            files.extend(sorted(p for p in path.rglob("*") if p.suffix.lower() in IMAGE_SUFFIXES))
        elif path.is_file():
            files.append(path)
        else:
            raise FileNotFoundError(f"{path}: no such file or folder")
    return files


def client_for(settings: Settings) -> AnalyzeClient:
    """A client for the server at FACESTREAM_GRPC_ADDRESS, with the client token and CA."""
    return AnalyzeClient(settings.grpc_address, settings.client_token, settings.tls_ca)


def describe_rpc_error(error: grpc.RpcError) -> str:
    code = error.code() if isinstance(error, grpc.Call) else None
    details = error.details() if isinstance(error, grpc.Call) else str(error)
    return f"{code.name if code else 'ERROR'}: {details}"


def run_submit(
    settings: Settings,
    paths: Sequence[Path],
    wait: bool,
    as_json: bool,
    timeout: float,
    concurrency: int,
) -> int:
    """Send the images; print their request ids, or with `wait` their results.
    Exit code 0 when every image was accepted (and answered), 1 otherwise."""
    try:
        files = image_files(paths)
    except FileNotFoundError as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    if not files:
        print("error: no image files found (.jpg, .jpeg, .png, .webp, .bmp)", file=sys.stderr)
        return 2
    with client_for(settings) as client:
        if wait:
            return _analyze_all(client, files, as_json, timeout, concurrency)
        return _submit_all(client, files, as_json, timeout)


def _submit_all(client: AnalyzeClient, files: list[Path], as_json: bool, timeout: float) -> int:
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
            yield request(image)

    rows: list[tuple[str, str, str]] = []
    try:
        with tqdm(total=len(files), unit="img", file=sys.stderr, desc="submit") as progress:
            for reply in client.submit_stream(requests(), timeout=timeout):
                path = sent[len(rows)]
                accepted = "yes" if not reply.error.code else f"no: {reply.error.message}"
                rows.append((str(path), reply.request_id, accepted))
                progress.update(1)
    except grpc.RpcError as error:
        print(f"error: {describe_rpc_error(error)}", file=sys.stderr)
        return 1
    rows += [(str(path), "-", f"no: {reason}") for path, reason in unreadable]
    if as_json:
        print("\n".join(acceptance_json(*row) for row in rows))
    else:
        print(format_table(rows, SUBMIT_COLUMNS))
    return 0 if all(row[2] == "yes" for row in rows) else 1


def acceptance_json(image: str, request_id: str, accepted: str) -> str:
    """One JSON line saying whether an image was accepted, and under which request id."""
    return json.dumps({"image": image, "request_id": request_id, "accepted": accepted})


def _analyze_all(
    client: AnalyzeClient, files: list[Path], as_json: bool, timeout: float, concurrency: int
) -> int:
    results: dict[Path, records_pb2.AnalysisResult | str] = {}

    def analyze(path: Path) -> records_pb2.AnalysisResult | str:
        try:
            return client.analyze(path.read_bytes(), timeout=timeout)
        except OSError as error:
            return f"unreadable: {error}"
        except grpc.RpcError as error:
            return describe_rpc_error(error)

    with (
        ThreadPoolExecutor(concurrency) as pool,
        tqdm(total=len(files), unit="img", file=sys.stderr, desc="analyze") as progress,
    ):
        futures = {pool.submit(analyze, path): path for path in files}
        for future in as_completed(futures):
            results[futures[future]] = future.result()
            progress.update(1)
    rows = []
    synthetic = False
    for path in files:
        outcome = results[path]
        if isinstance(outcome, str):
            rows.append((str(path), "ERROR", "-", "-", "-", "-", "-", outcome))
            if as_json:
                print(acceptance_json(str(path), "-", f"no: {outcome}"))
            continue
        synthetic = synthetic or outcome.synthetic_weights
        rows.extend(result_rows(str(path), outcome))
        if as_json:
            print(result_json(str(path), outcome))
    if not as_json:
        if synthetic:
            print(f"!! {SYNTHETIC_WARNING}")
        print(format_table(rows))
    return 0 if not any(isinstance(o, str) for o in results.values()) else 1


def run_watch(settings: Settings, request_ids: Sequence[str], as_json: bool) -> int:
    """Print results as they arrive: for the ids given (until each has one), or all."""
    try:
        with client_for(settings) as client:
            for result in client.watch(request_ids):
                if as_json:
                    print(result_json(result.request_id, result), flush=True)
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
