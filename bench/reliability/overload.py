"""Overload: Analyze calls offered at 4x the rate the system can answer.

Breaks: measures the saturated rate of Analyze calls, then offers 4x that rate (an open
loop, large images) for `size.overload_seconds` to a server with capped calls and held
image bytes.
Checks: the server's memory stays bounded (the backlog stays in Kafka), the excess is
refused with RESOURCE_EXHAUSTED, and every accepted request gets its result.
"""

from __future__ import annotations

import statistics
import threading
import time
from collections import Counter
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import grpc

from apps.processes import wait_until
from bench.reliability import scenario as kit
from bench.system_under_test import MemorySampler, Server
from grpc_server.errors import REQUEST_ID_METADATA


def run(home: Path, size: kit.Size) -> kit.Scenario:
    """Offer 4x the saturated rate while sampling the server's memory."""
    scenario = kit.Scenario("overload: 4x the saturated rate")
    images = kit.ScenarioImages.make()
    budget_mib, concurrent_calls = 16, 32
    server_env = {
        "FACESTREAM_MAX_CONCURRENT_RPCS": str(concurrent_calls),
        "FACESTREAM_MAX_HELD_IMAGE_BYTES": f"{budget_mib}MiB",
    }
    with kit.running_system(home, server_env) as system:
        system.start_dataflow()
        server = system.start_server()
        image = images.large_face
        rate = _closed_loop_rate(server, image, size.saturate_calls, size.patience)
        offered_rate = 4 * rate
        calls = int(offered_rate * size.overload_seconds)
        outcomes: Counter[str] = Counter()
        accepted: set[str] = set()
        lock = threading.Lock()

        def call(index: int) -> None:
            request_id = f"overload-{index}"
            try:
                server.client.analyze(image, request_id=request_id, timeout=60)
                outcome = "OK"
            except grpc.RpcError as error:
                outcome = error.code().name
                trailer = dict(error.trailing_metadata() or ())
                if trailer.get(REQUEST_ID_METADATA) != request_id:
                    request_id = ""
            with lock:
                outcomes[outcome] += 1
                if outcome in ("OK", "DEADLINE_EXCEEDED") and request_id:
                    accepted.add(request_id)

        with MemorySampler({"server": server.process.pid}, 0.2) as memory:
            baseline = statistics.median(mb for _t, mb in memory_until(memory, "server", 5))
            started = time.monotonic()
            with ThreadPoolExecutor(128) as pool:
                for index in range(calls):
                    delay = started + index / offered_rate - time.monotonic()
                    if delay > 0:
                        threading.Event().wait(delay)  # the open loop's schedule
                    pool.submit(call, index)
                offered_seconds = time.monotonic() - started
            answered_seconds = time.monotonic() - started
        samples = memory.samples["server"]
        peak = max(mb for _t, mb in samples)
        results = system.results(accepted, size.patience)
        counts = kit.count_results(results, accepted)
        growth = peak - baseline
        scenario.figures = {
            "saturated_calls_per_s": round(rate, 2),
            "offered_calls_per_s": round(offered_rate, 2),
            "calls": calls,
            "offered_seconds": round(offered_seconds, 1),
            "last_answer_after_s": round(answered_seconds, 1),
            "image_bytes": len(image),
            "offered_mib": round(calls * len(image) / 2**20, 1),
            "outcomes": dict(outcomes),
            "accepted": len(accepted),
            "server_rss_before_mb": round(baseline, 1),
            "server_rss_peak_mb": round(peak, 1),
            "server_rss_mb_every_5s": [round(mb) for _t, mb in samples[::25]],
            **counts,
        }
    others = sum(n for code, n in outcomes.items() if code not in ("OK", "RESOURCE_EXHAUSTED"))
    # What the caps allow: the held-bytes budget, one message being received per admitted
    # call, and 64 MB for buffers and the allocator; an unbounded server would hold every
    # waiting image (hundreds of MB here).
    ceiling_mb = budget_mib + concurrent_calls * len(image) / 2**20 + 64  # MiB, as RSS
    scenario.figures["rss_growth_allowed_mb"] = round(ceiling_mb, 1)
    scenario.targets = [
        kit.at_least("calls refused with RESOURCE_EXHAUSTED", outcomes["RESOURCE_EXHAUSTED"], 1),
        kit.at_most("calls ending otherwise than OK or RESOURCE_EXHAUSTED", others, 0),
        kit.at_most("server RSS growth, MB (what the caps allow)", growth, round(ceiling_mb)),
        kit.at_most("accepted requests without a result", counts["missing"], 0),
    ]
    return scenario


def _closed_loop_rate(
    server: Server, image: bytes, calls: int, timeout: float, concurrency: int = 4
) -> float:
    """Analyze calls per second with `concurrency` in flight (the saturated rate)."""
    server.client.analyze(image, timeout=300)  # the models' first call is slow
    started = time.monotonic()
    with ThreadPoolExecutor(concurrency) as pool:
        list(pool.map(lambda i: server.client.analyze(image, timeout=timeout), range(calls)))
    return calls / (time.monotonic() - started)


def memory_until(sampler: MemorySampler, name: str, count: int) -> list[tuple[float, float]]:
    """The first `count` samples of `name`, waiting for them (bounded)."""
    wait_until(lambda: len(sampler.samples[name]) >= count, 30, f"{count} memory samples")
    return sampler.samples[name][:count]
