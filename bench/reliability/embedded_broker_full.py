"""Embedded broker full: the byte budget is reached in the middle of a Submit load and a
stream of frames.

Breaks: a server writing to the embedded broker with a small FACESTREAM_EMBEDDED_BROKER_BUDGET
(`size.broker_budget_mib`), two Submit clients and one SubmitStream of frames sending until
each has been refused `REFUSALS_EACH` times.
Checks: every refusal is RESOURCE_EXHAUSTED with broker.full (a stream's frames carry the
code, a unary call's message says it), every acknowledged request and frame is answered,
the server stays SERVING and the dataflow runs on.
"""

from __future__ import annotations

import threading
from collections import Counter
from collections.abc import Iterator
from pathlib import Path

import grpc

from bench.reliability import scenario as kit
from bench.system_under_test import SERVING
from facestream.client import request
from facestream.v1 import analyze_service_pb2, records_pb2

# Refusals each client takes before it stops: the budget stays reached, each is typed.
REFUSALS_EACH = 5
# Requests one client sends at most (bounded loop; the budget is reached long before).
MAX_REQUESTS = 20_000
UNARY_REFUSAL = "the embedded broker is full"


def run(home: Path, size: kit.Size) -> kit.Scenario:
    """Fill the budget with two Submit loads and a stream, then count what was answered."""
    scenario = kit.Scenario("embedded broker full: the budget reached mid-stream")
    images = kit.ScenarioImages.make()
    acked: set[str] = set()
    refusals: Counter[str] = Counter()  # "STATUS code", typed or not
    lock = threading.Lock()
    with kit.running_system(home) as system:
        system.start_dataflow()
        server = system.start_server(
            {
                # No Kafka named: the server writes to the embedded broker, by its port.
                "FACESTREAM_KAFKA_BOOTSTRAP": "",
                "FACESTREAM_EMBEDDED_BROKER_PORT": str(system.broker.port),
                "FACESTREAM_EMBEDDED_BROKER_BUDGET": f"{size.broker_budget_mib}MiB",
            }
        )

        def submit_load(name: str) -> None:
            refused = 0
            for index in range(MAX_REQUESTS):
                request_id = f"{name}-{index}"
                try:
                    server.client.submit(
                        kit.tagged(images.face, request_id), request_id=request_id, timeout=30
                    )
                except grpc.RpcError as error:
                    typed = error.code() == grpc.StatusCode.RESOURCE_EXHAUSTED and (
                        UNARY_REFUSAL in (error.details() or "")
                    )
                    with lock:
                        refusals[f"{error.code().name} {'broker.full' if typed else '?'}"] += 1
                    refused += 1
                    if refused >= REFUSALS_EACH:
                        return
                    continue
                with lock:
                    acked.add(request_id)

        def frames() -> Iterator[analyze_service_pb2.SubmitRequest]:
            for sequence in range(MAX_REQUESTS):
                request_id = f"frame-{sequence}"
                yield request(
                    kit.tagged(images.face, request_id),
                    request_id=request_id,
                    frame=records_pb2.StreamFrame(stream_id="camera", sequence=sequence),
                )

        def stream_load() -> None:
            refused = 0
            replies = server.client.submit_stream(frames(), timeout=600)
            try:
                for reply in replies:
                    with lock:
                        if reply.error.code:
                            refusals[f"RESOURCE_EXHAUSTED {reply.error.code}"] += 1
                            refused += 1
                        else:
                            acked.add(reply.request_id)
                    if refused >= REFUSALS_EACH:
                        return
            finally:
                replies.cancel()  # the frames not yet sent are not sent

        threads = [
            threading.Thread(target=submit_load, args=(f"submit{n}",), daemon=True)
            for n in range(2)
        ]
        threads.append(threading.Thread(target=stream_load, daemon=True))
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(size.patience)
        serving = server.health() == SERVING
        results = system.results(acked, size.patience)
        counts = kit.count_results(results, acked)
        scenario.figures = {
            "budget_mib": size.broker_budget_mib,
            "acknowledged": len(acked),
            "acknowledged_frames": sum(1 for i in acked if i.startswith("frame-")),
            "refusals": dict(refusals),
            "server_serving_after": serving,
            "dataflow_running": all(c.running() for c in system.dataflows),
            **counts,
        }
    typed = sum(n for kind, n in refusals.items() if kind == "RESOURCE_EXHAUSTED broker.full")
    scenario.targets = [
        kit.at_least("refusals once the budget was reached", typed, 3 * REFUSALS_EACH),
        kit.at_most(
            "refusals not RESOURCE_EXHAUSTED broker.full", sum(refusals.values()) - typed, 0
        ),
        kit.at_most("acknowledged requests and frames without a result", counts["missing"], 0),
        kit.at_least("server SERVING after", int(serving), 1),
    ]
    return scenario
