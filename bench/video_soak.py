"""A long live stream through `facestream up` with the embedded broker: does every
process's memory level off, and does the broker's budget hold?

    python -m bench.video_soak [--minutes 20] [--fps 5] [--interval 30] [--budget 64MiB]
    (make soak: 20 minutes, a 64 MiB budget)

It starts `facestream up` (the embedded broker, the dataflow and the gRPC server) with
FACESTREAM_EMBEDDED_BROKER_BUDGET=`--budget`, a camera serving the composed demo video in a
loop without end (HTTP MJPEG, `--fps` frames a second, 640x480) and `facestream video`
reading it as a live source; samples the resident memory (RSS) of each of those processes,
and the bytes the server counts in the broker, every `--interval` seconds; stops everything
by pid; and writes bench/results/soak.json with the samples, the frames sent, answered and
refused, `facestream up`'s budget lines, each process's growth over the second half of the
run (MB per 10 minutes), and the broker's RSS growth against the bytes counted.

When the budget is reached, `facestream video` is refused (broker.full) and exits 1 once the
frames it sent are answered; the soak samples on, so that the broker is seen to level off.
"""

from __future__ import annotations

import argparse
import json
import re
import signal
import sys
import time
from contextlib import ExitStack
from pathlib import Path
from typing import Any

from apps.broker import free_port
from apps.demo_video import demo_frames
from apps.launch import PROJECT_ROOT
from apps.mjpeg_camera import mjpeg_stream
from apps.processes import ChildProcess, wait_until
from apps.up import broker_use
from bench import RESULTS
from bench.machine import describe_machine
from di import child_environment, load_settings
from facestream.models import synthetic_deepface_home
from facestream.worker_process import process_alive

CHILD_LINE = re.compile(r"^(broker|galleries|dataflow|grpc-server): .*\(pid (\d+)", re.MULTILINE)
MB = 1024 * 1024
# A process levels off when, over the second half of the run, it grows by less than this
# much per 10 minutes.
LEVEL_MB_PER_10_MIN = 5.0


def rss_mb(pid: int) -> float | None:
    """The resident memory of process `pid` in MB, None once it is gone."""
    try:
        status = Path(f"/proc/{pid}/status").read_text()
    except OSError:
        return None
    match = re.search(r"^VmRSS:\s+(\d+) kB", status, re.MULTILINE)
    return int(match.group(1)) / 1024 if match else None


def growth_per_10_min(samples: list[tuple[float, float]]) -> float:
    """The least-squares slope of (seconds, MB) samples of the run's second half, in MB per
    10 minutes."""
    half = [s for s in samples if s[0] >= samples[-1][0] / 2]
    if len(half) < 2:
        return 0.0
    mean_t = sum(t for t, _ in half) / len(half)
    mean_m = sum(m for _, m in half) / len(half)
    covariance = sum((t - mean_t) * (m - mean_m) for t, m in half)
    variance = sum((t - mean_t) ** 2 for t, _ in half)
    return covariance / variance * 600 if variance else 0.0


def say(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


def counted_bytes(metrics_url: str) -> float | None:
    """The bytes the server counts in the embedded broker, from its metrics."""
    use = broker_use(metrics_url)
    return use.held if use else None


def soak(minutes: float, fps: float, interval: float, budget: str) -> dict[str, Any]:
    """Run the soak; its report."""
    settings = load_settings()
    home = settings.models.deepface_home
    if not (home / ".deepface" / "weights").is_dir():
        home = synthetic_deepface_home()
    env = child_environment(
        DEEPFACE_HOME=str(home),
        FACESTREAM_EMBEDDED_BROKER_PORT=str(free_port()),
        FACESTREAM_GRPC_ADDRESS=f"127.0.0.1:{free_port()}",
        FACESTREAM_METRICS_PORT=str(free_port()),
        FACESTREAM_DATAFLOW_METRICS_PORT="0",
        FACESTREAM_EMBEDDED_BROKER_BUDGET=budget,
    )
    command = [sys.executable, "-m", "apps.cli"]
    pictures = [frame for frame, _boxes in demo_frames(round(10 * fps), (640, 480))]
    samples: dict[str, list[tuple[float, float]]] = {}
    with ExitStack() as stack:
        up = ChildProcess("up", [*command, "up", "--no-download"], env, PROJECT_ROOT)
        stack.callback(up.stop, signal.SIGTERM)
        say("soak: facestream up ...")
        wait_until(
            lambda: "facestream is up" in up.output() or not up.running(), 900, "facestream up"
        )
        if not up.running():
            raise RuntimeError(f"facestream up exited:\n{up.log_tail()}")
        address = re.search(r"grpc-server: SERVING on (\S+)", up.output())
        assert address is not None
        pids = {name: int(pid) for name, pid in CHILD_LINE.findall(up.output())}
        metrics = re.search(r"grpc-server: metrics on (\S+)", up.output())
        assert metrics is not None
        camera = stack.enter_context(mjpeg_stream(pictures, fps))
        client_env = {**env, "FACESTREAM_GRPC_ADDRESS": address.group(1)}
        video = ChildProcess(
            "video",
            [*command, "video", camera, "--fps", str(fps), "--json", "--stream-id", "soak"],
            client_env,
            PROJECT_ROOT,
            separate_errors=True,
        )
        stack.callback(video.stop, signal.SIGKILL)
        processes = {"up": up.pid, **pids, "video": video.pid}
        say(f"soak: {minutes:g} min of a live {fps:g} fps camera; pids {processes}")
        counted: list[tuple[float, float]] = []
        started = time.monotonic()
        while (elapsed := time.monotonic() - started) < minutes * 60:
            sampled = []
            for name, pid in processes.items():
                memory = rss_mb(pid)
                if memory is None and name == "video" and not video.running():
                    continue  # refused at the budget: it answered what it sent and left
                if memory is None:
                    raise RuntimeError(f"{name} (pid {pid}) is gone:\n{up.log_tail()}")
                samples.setdefault(name, []).append((elapsed, memory))
                sampled.append(name)
            held = counted_bytes(metrics.group(1))
            if held is not None:
                counted.append((elapsed, held / MB))
            line = ", ".join(f"{name} {samples[name][-1][1]:.0f}" for name in sampled)
            in_broker = f"; counted in the broker {held / MB:.0f} MB" if held is not None else ""
            say(f"soak: {elapsed / 60:5.1f} min  RSS MB: {line}{in_broker}")
            time.sleep(interval)  # the sampling period, not a wait for anything
        if video.running():
            video.process.send_signal(signal.SIGINT)  # it answers what it sent, then says so
        video_code = video.process.wait(300)
        answered = len(video.output().splitlines())
        errors = video.errors().strip().splitlines()
        budget_lines = [line for line in up.output().splitlines() if line.startswith("broker: ")]
    assert not any(process_alive(pid) for pid in processes.values())
    growth = {name: growth_per_10_min(series) for name, series in samples.items()}
    return {
        "machine": describe_machine(),
        "minutes": minutes,
        "fps": fps,
        "budget": budget,
        "frames_answered": answered,
        "video_summary": next((e for e in errors if e.startswith("stream ")), ""),
        "video_exit_code": video_code,
        "video_error": next((e for e in errors if e.startswith("error: ")), ""),
        "up_budget_lines": budget_lines,
        "counted_mb": [[round(t), round(m, 1)] for t, m in counted],
        "broker_growth_vs_counted": broker_growth_vs_counted(samples["broker"], counted),
        "rss_mb": {name: [[round(t), round(m, 1)] for t, m in s] for name, s in samples.items()},
        "growth_mb_per_10_min": {name: round(g, 2) for name, g in growth.items()},
        "levelled_off": {name: g < LEVEL_MB_PER_10_MIN for name, g in growth.items()},
    }


def broker_growth_vs_counted(
    broker: list[tuple[float, float]], counted: list[tuple[float, float]]
) -> float | None:
    """The broker's RSS growth over the run, as a multiple of the bytes counted in it."""
    if not counted or counted[-1][1] <= 0:
        return None
    return round((broker[-1][1] - broker[0][1]) / counted[-1][1], 2)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--minutes", type=float, default=20.0)
    parser.add_argument("--fps", type=float, default=5.0, help="the camera's and the sampling rate")
    parser.add_argument("--interval", type=float, default=30.0, help="seconds between samples")
    parser.add_argument(
        "--budget", default="1GiB", help="FACESTREAM_EMBEDDED_BROKER_BUDGET (default 1GiB)"
    )
    args = parser.parse_args()
    report = soak(args.minutes, args.fps, args.interval, args.budget)
    RESULTS.mkdir(parents=True, exist_ok=True)
    (RESULTS / "soak.json").write_text(json.dumps(report, indent=2) + "\n")
    print(f"{report['machine']}: {report['minutes']:g} min, {report['frames_answered']} frames")
    print(report["video_summary"], f"(exit code {report['video_exit_code']})")
    for line in [report["video_error"], *report["up_budget_lines"]]:
        if line:
            print(line)
    ratio = report["broker_growth_vs_counted"]
    if ratio is not None:
        print(f"  broker RSS growth / bytes counted: {ratio:.2f}")
    for name, series in report["rss_mb"].items():
        first, last = series[0][1], series[-1][1]
        growth = report["growth_mb_per_10_min"][name]
        level = "levels off" if report["levelled_off"][name] else "GROWS"
        print(f"  {name:<12} {first:7.0f} -> {last:7.0f} MB   {growth:+7.2f} MB/10 min  {level}")


if __name__ == "__main__":
    main()
