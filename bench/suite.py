"""`make bench`: facestream against the ceiling and against DeepFace's own gRPC server, side
by side in one run, on the same images, weights and load generator.

- ceiling: in-process decode + extraction + batched analysis, no Kafka or gRPC;
- peer: DeepFace's gRPC server (deepface 0.0.103) on 127.0.0.1, its Analyze RPC;
- facestream: Analyze end to end (gRPC -> Kafka -> Bytewax -> results -> reply) with
  `-w 1`, `-w 2`, 2 processes and `-w 4`, with each dataflow process's peak RSS;
- latency: p50/p99 of the peer and of facestream `-w 2` at half the peer's saturated
  faces/s, each run one pass over the images at a fixed rate (open loop);
- ingest: `python -m bench.submit_throughput` (Submit and SubmitStream vs a raw producer);
- DI: what an operator pays per message to reach its singletons, against a direct call.

Writes bench/results/latest.json and prints a markdown table with the targets.
Usage: python -m bench.suite [--repeat N] [--rounds N] [--concurrency C]
"""

from __future__ import annotations

import argparse
import json
import logging
import statistics
import subprocess
import sys
import time
import timeit
from collections.abc import Callable, Sequence
from functools import partial
from pathlib import Path
from typing import Any

from bench.load import LoadRun, median_run, offer, saturate
from bench.machine import cpu_flags, describe_machine
from bench.peer_server import peer_analyze, peer_stub
from bench.pipeline_parts import extract_and_analyze, in_process_steps, submissions
from bench.system_under_test import cluster_args
from di import Settings, build_container, child_environment, load_settings
from facestream.broker import free_port
from facestream.demo import LocalSystem, wait_first_result, wait_serving
from facestream.image_sources import demo_images
from facestream.models import ACTIONS
from facestream.processes import ChildProcess, memory_mb
from grpc_server.client import AnalyzeClient

ROOT = Path(__file__).resolve().parent.parent
RESULTS = ROOT / "bench" / "results"
SHARED_FACES = ROOT.parent / "shared" / "data" / "faces"
# The shared photos with faces that DeepFace's default detector finds at full size
# (MANIFEST.md); the 14 Mpx photo is left out: the peer would spend its time detecting it.
SHARED_PHOTOS = (
    "single_woman_astronaut.png",
    "single_woman_blonde.jpg",
    "single_woman_darkhair.jpg",
    "single_man_glasses.jpg",
    "single_man_bald.jpg",
    "single_man_beard.jpg",
    "single_man_greyhair.jpg",
    "single_man_smallface_2048w.jpg",
    "multi_2_couple.jpg",
    "multi_7_selfie.jpg",
    "edge_webp_named_jpg.jpg",
)
LOUD_CHILDREN = {"TF_CPP_MIN_LOG_LEVEL": "3", "FACESTREAM_LOG_LEVEL": "WARNING"}


def bench_images() -> tuple[str, list[bytes]]:
    """The shared photos with faces when they are here, else the public demo set."""
    if all((SHARED_FACES / name).is_file() for name in SHARED_PHOTOS):
        return "shared photos", [(SHARED_FACES / name).read_bytes() for name in SHARED_PHOTOS]
    return "public demo set", [image.data for image in demo_images()]


def say(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


def ceiling(settings: Settings, images: Sequence[bytes], repeat: int) -> dict[str, Any]:
    """Faces/s of decode + extraction + batched analysis in this process, as the dataflow's
    own steps do it, with no Kafka or gRPC around them."""
    analyzer, logger, limits = in_process_steps(settings)
    jobs = submissions(images)
    extract_and_analyze(jobs, analyzer, limits, logger, settings.batch_size)  # warm-up
    rates: list[float] = []
    for _ in range(repeat):
        started = time.perf_counter()
        faces = extract_and_analyze(jobs, analyzer, limits, logger, settings.batch_size)
        rates.append(faces / (time.perf_counter() - started))
    return {
        "faces_per_s": statistics.median(rates),
        "faces_per_run": faces,
        "runs": repeat,
        "synthetic_weights": analyzer.synthetic_weights,
    }


def peer(
    home: Path, images: Sequence[bytes], faces_per_image: float, args: argparse.Namespace
) -> dict[str, Any]:
    """DeepFace's gRPC server, saturated, then at half its saturated faces/s."""
    port = free_port()
    env = child_environment(DEEPFACE_HOME=str(home), **LOUD_CHILDREN)
    server = ChildProcess(
        "peer",
        [sys.executable, "-m", "bench.peer_server", str(port), str(args.peer_workers)],
        env,
        cwd=ROOT,
    )
    try:
        stub = peer_stub(f"127.0.0.1:{port}")
        service = partial(_peer_call, stub)
        _retry_until_ready(lambda: service(images[0]), server)
        runs = [
            saturate(service, images, args.rounds, args.concurrency) for _ in range(args.repeat)
        ]
        saturated = median_run(runs)
        say("bench: peer at half its saturated load")
        half_load = _half_load(
            service, images, saturated["faces_per_s"] / 2, faces_per_image, args.repeat
        )
        return {
            "workers": args.peer_workers,
            "saturated": saturated,
            "half_load": half_load,
            "peak_rss_mb": memory_mb(server.pid, "VmHWM"),
        }
    finally:
        server.stop()


def _peer_call(stub: Any, image: bytes) -> int:
    return peer_analyze(stub, image, list(ACTIONS))


def _retry_until_ready(call: Callable[[], int], server: ChildProcess, timeout: float = 300) -> None:
    import grpc

    deadline = time.monotonic() + timeout
    while True:
        if not server.running():
            raise SystemExit(f"{server.name} exited:\n{server.log_tail()}")
        try:
            call()
            return
        except grpc.RpcError:
            if time.monotonic() > deadline:
                raise
            time.sleep(0.5)


def facestream_shape(
    settings: Settings,
    home: Path,
    dataflows: Sequence[Sequence[str]],
    images: Sequence[bytes],
    args: argparse.Namespace,
    half_load: tuple[float, float] | None = None,
) -> dict[str, Any]:
    """Analyze end to end at saturation with these dataflow processes, their peak RSS, and
    with `half_load` = (faces/s, faces per image) the latency at that offered load."""
    system = LocalSystem(settings, home, dataflows, LOUD_CHILDREN)
    with system.running(), AnalyzeClient(system.address) as client:
        wait_serving(system, client)
        wait_first_result(system, client, f"bench-{time.time_ns()}")

        def service(image: bytes) -> int:
            return len(client.analyze(image, timeout=900).faces)

        service(images[0])  # every worker's models are warm after the first batch
        result: dict[str, Any] = {"dataflows": [" ".join(d) for d in dataflows]}
        runs = [
            system.supervise(
                partial(saturate, service, images, args.rounds, args.concurrency),
                3600,
                "a saturated run",
            )
            for _ in range(args.repeat)
        ]
        result["saturated"] = median_run(runs)
        if half_load:
            result["half_load"] = _half_load(service, images, *half_load, args.repeat)
        dataflow_pids = [c.pid for c in system.children if c.name.startswith("dataflow")]
        result["peak_rss_mb"] = [memory_mb(pid, "VmHWM") for pid in dataflow_pids]
    return result


def _half_load(
    service: Callable[[bytes], int],
    images: Sequence[bytes],
    faces_per_s: float,
    faces_per_image: float,
    repeat: int,
) -> dict[str, Any]:
    # Each run offers every image once, in the same order for both systems, so that their
    # p99s are over the same requests.
    rate = faces_per_s / faces_per_image
    runs: list[LoadRun] = [offer(service, images, rate, len(images)) for _ in range(repeat)]
    return {"offered_faces_per_s": faces_per_s, "images_per_s": rate, **median_run(runs)}


def di_cost(settings: Settings, per_face_s: float) -> dict[str, Any]:
    """Per message: the operator's partial (singletons bound when the flow is built) vs a
    direct call, and what resolving from the container per message would cost instead."""
    container = build_container(settings)
    logger = container[logging.Logger]

    def step(item: int, logger: logging.Logger) -> int:
        return item

    bound = partial(step, logger=logger)
    number = 200_000
    direct = min(timeit.repeat(lambda: step(1, logger), number=number, repeat=5)) / number
    via_partial = min(timeit.repeat(lambda: bound(1), number=number, repeat=5)) / number
    resolved = min(
        timeit.repeat(lambda: step(1, container[logging.Logger]), number=number // 20, repeat=5)
    ) / (number // 20)
    extra = max(0.0, via_partial - direct)
    return {
        "direct_call_us": direct * 1e6,
        "bound_at_build_us": via_partial * 1e6,
        "resolve_per_message_us": resolved * 1e6,
        "extra_per_message_us": extra * 1e6,
        "share_of_per_face_time": extra / per_face_s,
        "resolve_share_of_per_face_time": max(0.0, resolved - direct) / per_face_s,
    }


def ingest() -> dict[str, Any]:
    """`python -m bench.submit_throughput`, whose own JSON is read back."""
    subprocess.run(
        [sys.executable, "-m", "bench.submit_throughput"],
        cwd=ROOT,
        env=child_environment(**LOUD_CHILDREN),
        check=True,
        stdout=sys.stderr,
    )
    return json.loads((RESULTS / "submit.json").read_text())


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeat", type=int, default=3, help="runs per figure (median)")
    # Three passes per saturated run: with one, the ramp-up and the drain at the ends of a
    # run (a first call alone, the last ones in small batches) weigh more than saturation.
    parser.add_argument("--rounds", type=int, default=3, help="passes over the images per run")
    parser.add_argument("--concurrency", type=int, default=8, help="calls in flight")
    # DeepFace's server gives wrong answers and errors with 2 worker threads (its detector
    # is shared and not thread-safe; DESIGN.md), so its best setting is 1.
    parser.add_argument("--peer-workers", type=int, default=1)
    args = parser.parse_args()

    settings = load_settings()
    home = settings.deepface_home
    image_set, images = bench_images()
    report: dict[str, Any] = {
        "machine": describe_machine(),
        "cpu_flags": cpu_flags(),
        "images": image_set,
        "image_count": len(images),
        "actions": list(ACTIONS),
        "repeat": args.repeat,
        "rounds": args.rounds,
        "concurrency": args.concurrency,
        "batch_size": settings.batch_size,
    }
    started = time.monotonic()
    say("bench: ceiling (in process)")
    report["ceiling"] = ceiling(settings, images, args.repeat)
    report["synthetic_weights"] = report["ceiling"]["synthetic_weights"]
    say(f"bench: ceiling {report['ceiling']['faces_per_s']:.2f} faces/s")
    faces_per_image = report["ceiling"]["faces_per_run"] / len(images)
    say("bench: peer (DeepFace's gRPC server)")
    report["peer"] = peer(home, images, faces_per_image, args)
    save(report)
    say(f"bench: peer {report['peer']['saturated']} half load {report['peer']['half_load']}")
    half = report["peer"]["half_load"]["offered_faces_per_s"]
    shapes = {
        "w1": [["-w", "1"]],
        "w2": [["-w", "2"]],
        "p2": cluster_args(2, 1),
        "w4": [["-w", "4"]],
    }
    report["facestream"] = {}
    for name, dataflows in shapes.items():
        say(f"bench: facestream {name}")
        report["facestream"][name] = facestream_shape(
            settings,
            home,
            dataflows,
            images,
            args,
            (half, faces_per_image) if name == "w2" else None,
        )
        save(report)
        say(f"bench: facestream {name} {report['facestream'][name]}")
    say("bench: ingest")
    report["ingest"] = ingest()
    per_face = 1 / report["ceiling"]["faces_per_s"]
    report["di"] = di_cost(settings, per_face)
    report["seconds"] = time.monotonic() - started
    report["ratios"] = ratios(report)
    save(report)
    print(table(report))


def save(report: dict[str, Any]) -> None:
    """Write the report so far to bench/results/latest.json (a crash keeps what was done)."""
    RESULTS.mkdir(parents=True, exist_ok=True)
    (RESULTS / "latest.json").write_text(json.dumps(report, indent=2) + "\n")


def ratios(report: dict[str, Any]) -> dict[str, float]:
    """The targets' ratios, all from this run."""
    fs = report["facestream"]
    best = max(fs.values(), key=lambda shape: shape["saturated"]["faces_per_s"])
    best_rate = best["saturated"]["faces_per_s"]
    return {
        "best_vs_peer": best_rate / report["peer"]["saturated"]["faces_per_s"],
        "best_vs_ceiling": best_rate / report["ceiling"]["faces_per_s"],
        "half_load_p99_vs_peer": fs["w2"]["half_load"]["p99_s"]
        / report["peer"]["half_load"]["p99_s"],
        "submit_vs_raw": report["ingest"]["submit_vs_raw"],
        "di_share": report["di"]["share_of_per_face_time"],
        "rss_w4_vs_w1": fs["w4"]["peak_rss_mb"][0] / fs["w1"]["peak_rss_mb"][0],
    }


def table(report: dict[str, Any]) -> str:
    """The run as a markdown table: figures, then each target with its ratio."""
    fs, peer_report, r = report["facestream"], report["peer"], report["ratios"]

    def rate(entry: dict[str, Any]) -> str:
        s = entry["saturated"]
        return f"{s['faces_per_s']:.2f} faces/s (p50 {s['p50_s']:.1f} s, p99 {s['p99_s']:.1f} s)"

    def met(ok: bool) -> str:
        return "met" if ok else "NOT met"

    ingest_report, di = report["ingest"], report["di"]
    weights = "synthetic (same architecture and cost)" if report["synthetic_weights"] else "real"
    lines = [
        f"Machine: {report['machine']}; weights: {weights}; images: {report['image_count']} "
        f"{report['images']} ({report['ceiling']['faces_per_run']} faces), all four actions; "
        f"medians of {report['repeat']} runs of {report['rounds']} passes, "
        f"{report['concurrency']} calls in flight.",
        "",
        "| measure | value |",
        "|---|---|",
        f"| ceiling: in-process extraction + batched analysis | "
        f"{report['ceiling']['faces_per_s']:.2f} faces/s |",
        f"| peer: DeepFace gRPC server, {peer_report['workers']} worker | {rate(peer_report)} |",
        f"| facestream -w 1 | {rate(fs['w1'])} |",
        f"| facestream -w 2 | {rate(fs['w2'])} |",
        f"| facestream 2 processes x -w 1 | {rate(fs['p2'])} |",
        f"| facestream -w 4 | {rate(fs['w4'])} |",
        f"| latency at {peer_report['half_load']['offered_faces_per_s']:.2f} faces/s "
        f"(half the peer's): peer p50 / p99 | {peer_report['half_load']['p50_s']:.2f} / "
        f"{peer_report['half_load']['p99_s']:.2f} s |",
        f"| same load: facestream -w 2 p50 / p99 | {fs['w2']['half_load']['p50_s']:.2f} / "
        f"{fs['w2']['half_load']['p99_s']:.2f} s |",
        f"| Submit, {ingest_report['image_bytes'] // 1024} KB images | "
        f"{ingest_report['submit_req_per_s']:.0f} req/s (p50 {ingest_report['submit_p50_ms']:.1f}"
        f" ms, p99 {ingest_report['submit_p99_ms']:.1f} ms) |",
        f"| SubmitStream (bulk), {ingest_report['streams']} streams | "
        f"{ingest_report['submit_stream_req_per_s']:.0f} req/s |",
        f"| raw confluent-kafka producer, same records | "
        f"{ingest_report['raw_producer_records_per_s']:.0f} records/s |",
        f"| DI: operator's bound singletons vs direct call, per message | "
        f"+{di['extra_per_message_us']:.3f} us (container lookup per message would be "
        f"{di['resolve_per_message_us']:.1f} us) |",
        f"| peak RSS per dataflow process: -w 1 / -w 4 | {fs['w1']['peak_rss_mb'][0]:.0f} / "
        f"{fs['w4']['peak_rss_mb'][0]:.0f} MB |",
        f"| peak RSS: peer | {peer_report['peak_rss_mb']:.0f} MB |",
        "",
        "| target | ratio in this run | |",
        "|---|---|---|",
        f"| best facestream >= 2.0x peer | {r['best_vs_peer']:.2f}x | "
        f"{met(r['best_vs_peer'] >= 2.0)} |",
        f"| best facestream >= 0.8x ceiling | {r['best_vs_ceiling']:.2f}x | "
        f"{met(r['best_vs_ceiling'] >= 0.8)} |",
        f"| p99 at half the peer's load <= peer's | {r['half_load_p99_vs_peer']:.2f}x | "
        f"{met(r['half_load_p99_vs_peer'] <= 1.0)} |",
        f"| Submit >= 1000 req/s | {ingest_report['submit_req_per_s']:.0f} req/s | "
        f"{met(ingest_report['submit_req_per_s'] >= 1000)} |",
        f"| Submit >= 0.5x raw producer | {r['submit_vs_raw']:.2f}x | "
        f"{met(r['submit_vs_raw'] >= 0.5)} |",
        f"| DI < 1% of per-face time | {100 * r['di_share']:.5f}% | {met(r['di_share'] < 0.01)} |",
        f"| -w 4 RSS <= 1.2x -w 1 RSS | {r['rss_w4_vs_w1']:.2f}x | "
        f"{met(r['rss_w4_vs_w1'] <= 1.2)} |",
        "",
        f"({report['seconds'] / 60:.0f} min; bench/results/latest.json has every figure.)",
    ]
    return "\n".join(lines)


if __name__ == "__main__":
    main()
