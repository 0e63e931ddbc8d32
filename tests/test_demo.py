"""`facestream demo` end to end: the embedded broker, `bytewax.run dataflow -w 2` and the
gRPC server as its children, the public demo images, the printed table and summary, the
report folder, and every child stopped on exit, Ctrl-C included."""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
from collections.abc import Iterator
from contextlib import contextmanager, suppress
from pathlib import Path

import cv2
import numpy as np
import pytest

from apps.broker import free_port
from apps.image_sources import PUBLIC_PHOTOS, demo_images
from apps.processes import ChildProcess, wait_until
from apps.report import BOX_COLOR
from facestream.models import SYNTHETIC_WARNING
from facestream.worker_process import process_alive
from tests.commands import PROJECT_ROOT, cli_env, facestream_command

CHILD_LINE = re.compile(r"^(broker|galleries|dataflow|grpc-server): .*\(pid (\d+)", re.MULTILINE)


class DemoRun(ChildProcess):
    """`facestream demo ARGS` (or another command that starts the local system, such as
    `up`) as a child process, its stdout and stderr kept apart."""

    def __init__(
        self, args: list[str], env: dict[str, str], cwd: Path, command: str = "demo"
    ) -> None:
        super().__init__(
            command, facestream_command(command, *args), env, cwd, separate_errors=True
        )

    @property
    def stdout(self) -> str:
        return self.output()

    @property
    def stderr(self) -> str:
        return self.errors()

    def child_pids(self) -> dict[str, int]:
        return {name: int(pid) for name, pid in CHILD_LINE.findall(self.stdout)}

    def wait(self, timeout: float) -> int:
        return self.process.wait(timeout)


@contextmanager
def demo_run(
    args: list[str], env: dict[str, str], cwd: Path, command: str = "demo"
) -> Iterator[DemoRun]:
    """Run the demo (or `command`); whatever happens, its process and every child it
    started are stopped by pid before the test ends."""
    run = DemoRun(args, env, cwd, command)
    try:
        yield run
    finally:
        pids = run.child_pids()
        run.stop(signal.SIGKILL)
        for pid in pids.values():
            if process_alive(pid):
                with suppress(ProcessLookupError):
                    os.kill(pid, signal.SIGKILL)


def demo_env(tmp_path: Path, **overrides: str) -> dict[str, str]:
    """Free loopback ports, a galleries' folder of the test's own, and a DEEPFACE_HOME
    without real weights (as on this machine)."""
    return cli_env(
        FACESTREAM_EMBEDDED_BROKER_PORT=str(free_port()),
        FACESTREAM_GRPC_ADDRESS=f"127.0.0.1:{free_port()}",
        FACESTREAM_GALLERY_DIR=str(tmp_path / "galleries"),
        DEEPFACE_HOME=str(tmp_path / "no-weights-here"),
        **overrides,
    )


@pytest.mark.models
@pytest.mark.timeout(1200)  # above the 900 s it gives the demo
def test_demo_runs_the_whole_system_and_writes_a_marked_report(synthetic_home, tmp_path):
    report = tmp_path / "report"
    metrics = {"grpc-server": free_port(), "dataflow": free_port()}
    env = demo_env(
        tmp_path,
        FACESTREAM_METRICS_PORT=str(metrics["grpc-server"]),
        FACESTREAM_DATAFLOW_METRICS_PORT=str(metrics["dataflow"]),
    )
    env.pop("TF_CPP_MIN_LOG_LEVEL", None)  # TensorFlow as loud as it is by default
    args = ["--no-download", "--report", str(report), "--view"]
    with demo_run(args, env, tmp_path) as run:
        code = run.wait(900)
        pids = run.child_pids()
    out = run.stdout
    assert code == 0, f"{out}\n{run.stderr}"
    # --view: the page's address said at the start, and again as the video begins.
    view = re.search(r"^view: (http://127\.0\.0\.1:\d+/)$", out, re.MULTILINE)
    assert view and out.index(view.group(0)) < out.index("broker: embedded"), out
    assert f"video: live at {view.group(1)}" in out

    # Only the demo's own lines: TensorFlow's and absl's start-up noise stays in the
    # children's logs.
    noise = re.compile(r"tensorflow|absl|oneDNN|cuda|I0000|W0000|E0000", re.IGNORECASE)
    assert not noise.search(out), out
    assert not noise.search(run.stderr), run.stderr
    for child, port in metrics.items():
        assert f"{child}: metrics on http://127.0.0.1:{port}/metrics" in out, out

    # Four children were started, and none outlives the demo.
    assert set(pids) == {"broker", "galleries", "dataflow", "grpc-server"}, out
    assert not [name for name, pid in pids.items() if process_alive(pid)]
    assert "python -m bytewax.run dataflow -w 2" in out
    for name in pids:
        assert re.search(rf"^{name}: stopped \(pid {pids[name]}", out, re.MULTILINE), out

    # Weights: said plainly, and every output is marked synthetic.
    assert "downloading is off (--no-download)" in out
    assert f"using SYNTHETIC weights from {synthetic_home}" in out
    assert f"Results ({SYNTHETIC_WARNING})" in out
    summary = out[out.index("\nSummary\n") :]
    assert f"!! {SYNTHETIC_WARNING}" in summary

    # The table: real detection on the public images (astronaut 1 face, the group 2).
    names = [*PUBLIC_PHOTOS, "group.jpg"]
    rows = {name: [line.split() for line in out.splitlines() if line.startswith(name)]
            for name in names}  # fmt: skip
    assert [row[1] for row in rows["astronaut.png"]] == ["OK"]
    # Recognition: the astronaut enrolled from her photo, and found in it (distance 0).
    assert "recognition: Eileen Collins enrolled from astronaut.png into gallery demo" in out
    assert "recognition: with SYNTHETIC weights different faces are close" in out
    (astronaut_line,) = [line for line in out.splitlines() if line.startswith("astronaut.png")]
    assert astronaut_line.endswith("Eileen Collins 0.000 ✓"), astronaut_line
    assert [row[1:3] for row in rows["group.jpg"]] == [["OK", "1"], ["OK", "2"]]
    for name in ("coffee.png", "rocket.jpg", "chelsea.png"):
        assert [row[1] for row in rows[name]] == ["NO_FACE"], rows[name]
    faces = sum(1 for name in names for row in rows[name] if row[1] == "OK")
    assert f"images: {len(names)} ({len(names)} answered)" in summary
    assert f"faces: {faces}" in summary
    throughput = re.search(r"throughput: ([\d.]+) faces/s", summary)
    latency = re.search(r"latency per image: p50 ([\d.]+) s, p99 ([\d.]+) s", summary)
    assert throughput and float(throughput.group(1)) > 0
    assert latency and 0 < float(latency.group(1)) <= float(latency.group(2))
    assert "analyze" in run.stderr  # the progress bar

    # The report: a gallery of annotated images, the results and the summary, all marked.
    index = (report / "index.html").read_text()
    assert f"report: {(report / 'index.html').resolve()}" in out
    assert 'class="warning"' in index and SYNTHETIC_WARNING in index
    shown = re.findall(r'<img src="images/([^"]+)"', index)
    assert len(shown) == len(names)
    assert all((report / "images" / image).is_file() for image in shown)
    records = [json.loads(line) for line in (report / "results.jsonl").read_text().splitlines()]
    assert [r["image"] for r in records] == names
    assert all(r["result"]["syntheticWeights"] for r in records)
    stats = json.loads((report / "summary.json").read_text())
    assert stats["faces"] == faces == sum(len(r["result"].get("faces", [])) for r in records)
    assert stats["synthetic_weights"] is True

    # The video: every frame answered, shown as an animated WebP with a row per frame.
    assert "video: 50 frames composed from the public photos" in out
    assert "50 frame(s) sent, 50 answered, 0 refused, 0 dropped" in out
    assert '<img src="video.webp"' in index
    frame_rows = re.findall(
        r'<tr class="frame"><td>(\d+)</td>.*?<td>(\w+)</td><td>(\d+)</td><td>([^<]*)</td>',
        index,
    )
    assert [int(row[0]) for row in frame_rows] == list(range(50))
    # Two faces at first, one while the other is away, two once it is back.
    counts = [row[1:3] for row in frame_rows]
    assert counts[0] == counts[-1] == ("OK", "2") and ("OK", "1") in counts[1:-1]
    # Each face followed as a track: both analysed when first seen, carried after.
    tracks = [row[3].split("; ") for row in frame_rows]
    assert sorted(tracks[0]) == ["t1 analysed", "t2 analysed"], tracks[0]
    assert any(track.endswith(" carried") for frame in tracks for track in frame)
    ok, animation = cv2.imreadanimation(str(report / "video.webp"))
    assert ok and len(animation.frames) == 50

    # Boxes are drawn where the faces are: the box colour lies on the astronaut's box.
    (astronaut,) = [r for r in records if r["image"] == "astronaut.png"]
    region = astronaut["result"]["faces"][0]["region"]
    drawn = cv2.imread(str(report / "images" / shown[0]))
    edge = drawn[region["y"] + region["h"] // 2, region["x"]].astype(int)
    assert np.abs(edge - BOX_COLOR).max() < 60, edge


def test_ctrl_c_stops_the_demo_and_every_child(synthetic_home, tmp_path):
    folder = tmp_path / "mine"
    folder.mkdir()
    (folder / "astronaut.png").write_bytes(demo_images()[0].data)
    args = ["--no-download", "--images", str(folder), "--report", str(tmp_path / "r")]
    with demo_run(args, demo_env(tmp_path), tmp_path) as run:
        wait_until(lambda: "grpc-server" in run.child_pids(), 60, "the demo to start its children")
        pids = run.child_pids()
        assert all(process_alive(pid) for pid in pids.values())
        run.process.send_signal(signal.SIGINT)
        code = run.wait(120)
    assert code == 130, run.stdout + run.stderr
    assert "interrupted: every child process was stopped" in run.stdout
    assert "images: 1 from" in run.stdout
    assert set(pids) == {"broker", "galleries", "dataflow", "grpc-server"}
    assert not [name for name, pid in pids.items() if process_alive(pid)]


@pytest.mark.models
def test_a_child_that_dies_stops_the_demo_with_its_log(synthetic_home, tmp_path):
    # The fail point crashes the dataflow (SIGSEGV) on the demo's first request, which the
    # server accepted: only the dataflow can end this run.
    env = demo_env(tmp_path, FACESTREAM_FAILPOINT_CRASH_ON="demo-", FACESTREAM_ACTIONS="emotion")
    args = ["--no-download", "--report", str(tmp_path / "r")]
    with demo_run(args, env, tmp_path) as run:
        code = run.wait(600)
        pids = run.child_pids()
    assert code == 1
    assert re.search(r"error: the dataflow \(pid \d+\) exited with code -11", run.stderr), (
        run.stderr
    )
    assert "dataflow built; reading" in run.stderr  # its last lines, from its own log
    assert not [name for name, pid in pids.items() if process_alive(pid)]
    assert not (tmp_path / "r").exists()


def test_a_detector_that_cannot_run_stops_the_demo_with_the_reason(synthetic_home, tmp_path):
    # retinaface needs a weight file that is not here. Two parts see it at once: the
    # dataflow refuses to start, and the server refuses the warm-up request. Whichever
    # comes first, the demo stops with that reason and every child is stopped.
    env = demo_env(tmp_path, FACESTREAM_DETECTOR_BACKEND="retinaface")
    args = ["--no-download", "--report", str(tmp_path / "r")]
    with demo_run(args, env, tmp_path) as run:
        code = run.wait(300)
        pids = run.child_pids()
    assert code == 1
    dataflow_died = re.search(r"error: the dataflow \(pid \d+\) exited with code", run.stderr)
    if dataflow_died:
        assert "retinaface.h5" in run.stderr, run.stderr  # the dataflow's own reason
    else:
        assert "detector backend 'retinaface' is not installed here" in run.stderr, run.stderr
    assert not [name for name, pid in pids.items() if process_alive(pid)]
    assert not (tmp_path / "r").exists()


def test_make_demo_passes_images_to_the_command():
    dry = subprocess.run(
        ["make", "-n", "demo", "IMAGES=some folder"],
        cwd=PROJECT_ROOT,
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
    )
    assert '.venv/bin/facestream demo --images "some folder"' in dry.stdout
