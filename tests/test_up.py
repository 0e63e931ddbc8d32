"""`facestream up`: the whole local system in the foreground (embedded broker, dataflow,
gRPC server), answering images and video from other terminals until SIGTERM or Ctrl-C."""

from __future__ import annotations

import os
import re
import signal

import grpc
import pytest

from apps.broker import free_port
from apps.demo_video import compose_demo_video
from apps.image_sources import demo_images
from apps.processes import wait_until
from facestream.client import AnalyzeClient
from facestream.v1 import records_pb2
from facestream.worker_process import process_alive
from tests.commands import PROJECT_ROOT, run_facestream
from tests.test_demo import demo_env, demo_run

MIB = 1024 * 1024
TOKEN = "up-s3cret-token"
CERTIFICATE = PROJECT_ROOT / "tests" / "data" / "tls" / "server.pem"  # for 127.0.0.1, self-signed
TLS = {
    "FACESTREAM_TLS_CERT": str(CERTIFICATE),
    "FACESTREAM_TLS_KEY": str(CERTIFICATE.with_suffix(".key")),
}


@pytest.mark.models
def test_up_serves_images_and_video_until_sigterm(synthetic_home, tmp_path):
    metrics = {"grpc-server": free_port(), "dataflow": free_port()}
    env = demo_env(
        tmp_path,
        FACESTREAM_METRICS_PORT=str(metrics["grpc-server"]),
        FACESTREAM_DATAFLOW_METRICS_PORT=str(metrics["dataflow"]),
    )
    with demo_run(["--no-download"], env, tmp_path, command="up") as run:
        wait_until(lambda: "facestream is up" in run.stdout, 600, "facestream up to be ready")
        out = run.stdout
        address = re.search(r"grpc-server: SERVING on (\S+)", out)
        assert address, out
        for child, port in metrics.items():
            assert f"{child}: metrics on http://127.0.0.1:{port}/metrics" in out, out
        # Used from "another terminal": a client, and the video command.
        with AnalyzeClient(address.group(1)) as client:
            result = client.analyze(demo_images()[0].data, timeout=300)
        assert result.status == records_pb2.ANALYSIS_STATUS_OK and len(result.faces) == 1
        video = compose_demo_video(tmp_path / "clip.mp4", seconds=2)
        sent = run_facestream(
            "video", str(video.path), env={**env, "FACESTREAM_GRPC_ADDRESS": address.group(1)},
            timeout=300,
        )  # fmt: skip
        assert sent.returncode == 0, sent.stderr
        assert "10 frame(s) sent, 10 answered" in sent.stderr
        pids = run.child_pids()
        assert set(pids) == {"broker", "galleries", "dataflow", "grpc-server"}
        run.process.send_signal(signal.SIGTERM)  # Ctrl-C takes the same way out
        code = run.wait(120)
    assert code == 0, run.stdout + run.stderr
    assert "stopped: every child process was stopped" in run.stdout
    assert not [name for name, pid in pids.items() if process_alive(pid)]


@pytest.mark.models
def test_up_with_auth_and_tls_says_when_the_broker_is_full_and_stops_when_it_dies(
    synthetic_home, tmp_path
):
    # Authentication and TLS on: the warm-up call uses the configured token and CA.
    env = demo_env(
        tmp_path,
        FACESTREAM_ACTIONS="emotion",
        FACESTREAM_METRICS_PORT=str(free_port()),
        FACESTREAM_EMBEDDED_BROKER_BUDGET="1MiB",
        FACESTREAM_AUTH_TOKENS=TOKEN,
        FACESTREAM_CLIENT_TOKEN=TOKEN,
        **TLS,
    )
    env["FACESTREAM_TLS_CA"] = str(CERTIFICATE)
    with demo_run(["--no-download"], env, tmp_path, command="up") as run:
        wait_until(lambda: "facestream is up" in run.stdout, 600, "facestream up to be ready")
        address = re.search(r"grpc-server: SERVING on (\S+)", run.stdout)
        assert address, run.stdout
        image = demo_images()[0].data
        refused = None
        with AnalyzeClient(address.group(1), token=TOKEN, ca_cert=CERTIFICATE) as client:
            for index in range(1 + MIB // len(image)):  # bounded: the budget is reached first
                try:
                    client.submit(image, request_id=f"fill-{index}", timeout=30)
                except grpc.RpcError as error:
                    refused = error
                    break
        assert refused is not None and refused.code() == grpc.StatusCode.RESOURCE_EXHAUSTED
        assert "embedded broker is full" in refused.details()
        wait_until(lambda: "broker: FULL" in run.stdout, 60, "facestream up to say so")
        pids = run.child_pids()
        os.kill(pids["broker"], signal.SIGKILL)
        code = run.wait(120)
    assert code == 1, run.stdout + run.stderr
    assert re.search(r"error: the embedded broker \(pid \d+\) exited with code -9", run.stderr)
    assert "requests not yet answered" in run.stderr
    assert not [name for name, pid in pids.items() if process_alive(pid)]


def test_up_without_the_client_credentials_it_needs_says_what_to_set_before_starting(tmp_path):
    env = demo_env(tmp_path, FACESTREAM_AUTH_TOKENS=TOKEN)
    run = run_facestream("up", "--no-download", env=env, timeout=120)
    assert run.returncode == 1
    assert "set FACESTREAM_CLIENT_TOKEN" in run.stderr and "analyze:submit" in run.stderr
    assert "broker: embedded" not in run.stdout  # nothing was started
    assert TOKEN not in run.stdout + run.stderr
    tls = run_facestream("up", "--no-download", env=demo_env(tmp_path, **TLS), timeout=120)
    assert tls.returncode == 1
    assert "set FACESTREAM_TLS_CA" in tls.stderr and "broker: embedded" not in tls.stdout
