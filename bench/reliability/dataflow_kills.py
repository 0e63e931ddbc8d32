"""Dataflow kills: a process of the dataflow dies mid-stream, again and again.

Breaks: SIGKILLs a process of a 2-process dataflow cluster (`-w 1` each) mid-stream,
`size.kills` times, restarting the cluster from its recovery snapshots each time; the
requests are submitted in parts, the next part after each kill.
Checks: every acknowledged request still gets a result.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

from bench.reliability import scenario as kit
from bench.system_under_test import Server


def run(home: Path, size: kit.Size) -> kit.Scenario:
    """Kill and restart the dataflow under a stream of acknowledged requests."""
    scenario = kit.Scenario("dataflow SIGKILL with recovery, 2 processes x -w 1")
    images = kit.ScenarioImages.make()
    with kit.running_system(home) as system:
        recovery = kit.init_recovery(system.workdir / "recovery", 2)
        server = system.start_server()
        requests = [
            (f"kill-{i}", images.face if i % 2 else images.no_face)
            for i in range(size.kill_requests)
        ]
        started = time.monotonic()
        system.start_dataflow(processes=2, workers=1, recovery=recovery)
        acked: set[str] = set()

        def send(part: Sequence[tuple[str, bytes]]) -> set[str]:
            sent = submit_all(server, part)
            acked.update(sent)
            return sent

        exit_codes = kit.kill_between_parts(
            system, requests, size.kills, send, size.patience,
            processes=2, workers=1, recovery=recovery,
        )  # fmt: skip
        kills = len(exit_codes)
        results = system.results(acked, size.patience)
        counts = kit.count_results(results, acked)
        scenario.figures = {
            "requests": len(requests),
            "acknowledged": len(acked),
            "kills": kills,
            "exit_codes": exit_codes,
            **counts,
            "seconds": round(time.monotonic() - started, 1),
        }
    scenario.targets = [
        kit.at_least("dataflow kills mid-stream", kills, size.kills),
        kit.at_most("acknowledged requests without a result", counts["missing"], 0),
    ]
    return scenario


def submit_all(server: Server, requests: Sequence[tuple[str, bytes]], threads: int = 4) -> set[str]:
    """Submit every (request id, image); the ids the server acknowledged."""
    acked: set[str] = set()

    def submit(request: tuple[str, bytes]) -> None:
        request_id, image = request
        server.client.submit(image, request_id=request_id, timeout=30)
        acked.add(request_id)

    with ThreadPoolExecutor(threads) as pool:
        list(pool.map(submit, requests))
    return acked
