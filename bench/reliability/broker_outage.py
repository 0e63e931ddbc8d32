"""Broker outage: Kafka goes away during a Submit load, then comes back.

Breaks: cuts the broker off (every connection dropped, new ones refused) for
`size.outage_seconds`, then brings it back.
Checks: no false acknowledgement, every refusal UNAVAILABLE, the same server SERVING again
within 10 s, the dataflow going on, every acknowledged id answered.
"""

from __future__ import annotations

import itertools
import threading
from collections import Counter
from pathlib import Path

import grpc

from apps.processes import wait_until
from bench.reliability import scenario as kit
from bench.system_under_test import SERVING


def run(home: Path, size: kit.Size) -> kit.Scenario:
    """Cut the broker off behind its proxy during a Submit load, then restore it."""
    scenario = kit.Scenario("broker outage during a Submit load")
    images = kit.ScenarioImages.make()
    with kit.running_system(home, {"FACESTREAM_ACK_TIMEOUT": "3"}, behind_proxy=True) as system:
        assert system.proxy is not None
        system.start_dataflow()
        server = system.start_server()
        acked: set[str] = set()
        refusals: Counter[str] = Counter()
        stop = threading.Event()
        counter = itertools.count()

        def load() -> None:
            while not stop.is_set():
                request_id = f"outage-{next(counter)}"
                image = kit.tagged(images.face, request_id)
                try:
                    server.client.submit(image, request_id=request_id, timeout=10)
                    acked.add(request_id)
                except grpc.RpcError as error:
                    refusals[error.code().name] += 1
                    stop.wait(0.05)  # a client's back-off before its next call

        threads = [threading.Thread(target=load, daemon=True) for _ in range(4)]
        for thread in threads:
            thread.start()
        try:
            wait_until(lambda: len(acked) >= 20, 60, "the load to be acknowledged")
            system.proxy.cut()
            noticed = wait_until(lambda: server.health() != SERVING, 30, "NOT_SERVING")
            stop.wait(size.outage_seconds)
            system.proxy.restore()
            serving_again = wait_until(lambda: server.health() == SERVING, 60, "SERVING again")
            after = len(acked)
            wait_until(lambda: len(acked) >= after + 20, 60, "acknowledgements after")
        finally:
            stop.set()
            for thread in threads:
                thread.join(30)
        reader = system.reader(system.settings.kafka.topic_requests)
        reader.read_until(lambda got: acked <= {m.key().decode() for m in got}, 60)
        on_topic = {m.key().decode() for m in reader.messages}
        results = system.results(acked, size.patience)
        counts = kit.count_results(results, acked)
        scenario.figures = {
            "acknowledged": len(acked),
            "refusals": dict(refusals),
            "outage_seconds": size.outage_seconds,
            "not_serving_after_s": round(noticed, 2),
            "serving_again_after_s": round(serving_again, 2),
            "dataflow_running": all(c.running() for c in system.dataflows),
            **counts,
        }
    scenario.targets = [
        kit.at_most(
            "false acks (acknowledged, not on the requests topic)", len(acked - on_topic), 0
        ),
        kit.at_least("calls refused during the outage", refusals["UNAVAILABLE"], 1),
        kit.at_most(
            "refusals other than UNAVAILABLE",
            sum(n for code, n in refusals.items() if code != "UNAVAILABLE"),
            0,
        ),
        kit.at_most("seconds to SERVING after the broker's return", serving_again, 10),
        kit.at_most("acknowledged requests without a result", counts["missing"], 0),
    ]
    return scenario
