"""Server kills: a gRPC server dies under a Submit load.

Breaks: SIGKILLs one of two gRPC servers a third of the way through a Submit load; the
clients retry on the other server with the same request id.
Checks: calls are retried on the other server, every request is acknowledged, every
acknowledged id gets its result, and no id is acknowledged with two different images.
"""

from __future__ import annotations

import hashlib
import threading
import time
from collections import Counter
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import grpc

from bench.reliability import scenario as kit
from facestream.v1 import records_pb2


def run(home: Path, size: kit.Size) -> kit.Scenario:
    """Kill one of two servers while clients submit through both."""
    scenario = kit.Scenario("gRPC server SIGKILL, 2 servers, clients retry with the same id")
    images = kit.ScenarioImages.make()
    with kit.running_system(home) as system:
        system.start_dataflow()
        servers = [system.start_server(), system.start_server()]
        acked: dict[str, str] = {}
        refusals: Counter[str] = Counter()
        lock = threading.Lock()
        requests = [
            (f"srv-{i}", kit.tagged(images.face if i % 2 else images.no_face, f"srv-{i}"))
            for i in range(size.server_requests)
        ]

        def submit_with_retry(index: int) -> None:
            request_id, image = requests[index]
            for attempt in range(6):  # bounded: alternate servers, the same id each time
                server = servers[(index + attempt) % 2]
                try:
                    server.client.submit(image, request_id=request_id, timeout=10)
                except grpc.RpcError as error:
                    with lock:
                        refusals[error.code().name] += 1
                    continue
                with lock:
                    acked[request_id] = digest(image)
                    if len(acked) == len(requests) // 3:
                        # Killed from the load itself, so other calls are in flight.
                        servers[0].process.process.kill()
                return

        started = time.monotonic()
        with ThreadPoolExecutor(8) as pool:
            list(pool.map(submit_with_retry, range(len(requests))))
        results = system.results(acked, size.patience)
        counts = kit.count_results(results, set(acked))
        reader = system.reader(system.settings.kafka.topic_requests)
        reader.read_until(lambda got: len({m.key() for m in got}) >= len(acked), 60)
        published: dict[str, set[str]] = {}
        for message in reader.messages:
            record = records_pb2.ImageSubmitted.FromString(message.value())
            published.setdefault(record.request_id, set()).add(digest(record.image))
        conflicting = [
            rid for rid, image in acked.items() if published.get(rid, {image}) != {image}
        ]
        scenario.figures = {
            "requests": len(requests),
            "acknowledged": len(acked),
            "retried_calls": sum(refusals.values()),
            "refusals": dict(refusals),
            "ids_published_with_two_images": sum(1 for d in published.values() if len(d) > 1),
            **counts,
            "seconds": round(time.monotonic() - started, 1),
        }
    scenario.targets = [
        kit.at_least("calls retried on the other server", sum(refusals.values()), 1),
        kit.at_most("requests never acknowledged", len(requests) - len(acked), 0),
        kit.at_most("acknowledged requests without a result", counts["missing"], 0),
        kit.at_most("ids acknowledged with two different images", len(conflicting), 0),
    ]
    return scenario


def digest(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()[:16]
