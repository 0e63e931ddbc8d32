"""Soak: a long mixed load at the saturated rate.

Breaks: nothing but time: `size.soak_images` images (a third each with a face, without,
invalid) through the whole system, 4 calls in flight.
Checks: nothing lost, no process's memory growing after warm-up.
"""

from __future__ import annotations

import statistics
import threading
import time
from collections import Counter
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import grpc

from bench.reliability import scenario as kit
from bench.system_under_test import MemorySampler
from facestream.v1 import records_pb2


def run(home: Path, size: kit.Size) -> kit.Scenario:
    """Send the mixed images at the saturated rate while sampling every process's memory."""
    scenario = kit.Scenario("soak: mixed images at the saturated rate")
    images = kit.ScenarioImages.make()
    with kit.running_system(home) as system:
        system.start_dataflow()
        server = system.start_server()
        lost: list[str] = []
        outcomes: Counter[str] = Counter()
        lock = threading.Lock()

        def call(index: int) -> None:
            request_id = f"soak-{index}"
            kind = index % 3
            image = (images.face, images.no_face, images.invalid[index % 2])[kind]
            try:
                result = server.client.analyze(image, request_id=request_id, timeout=size.patience)
                outcome = records_pb2.AnalysisStatus.Name(result.status)
                ok = kind < 2 and result.status in kit.TYPED_RESULT_STATUSES
            except grpc.RpcError as error:
                outcome = error.code().name
                ok = kind == 2 and error.code() == grpc.StatusCode.INVALID_ARGUMENT
            with lock:
                outcomes[outcome] += 1
                if not ok:
                    lost.append(f"{request_id}: {outcome}")

        server.client.analyze(images.face, request_id="soak-warm-up", timeout=300)
        started = time.monotonic()
        with MemorySampler(system.pids(), 1.0) as memory, ThreadPoolExecutor(4) as pool:
            list(pool.map(call, range(size.soak_images)))
        seconds = time.monotonic() - started
        growth = {name: memory_growth(samples) for name, samples in memory.samples.items()}
        scenario.figures = {
            "images": size.soak_images,
            "seconds": round(seconds, 1),
            "images_per_s": round(size.soak_images / seconds, 2),
            "outcomes": dict(outcomes),
            "lost": lost[:5],
            "rss_mb": {
                name: [round(mb) for _t, mb in samples[:: max(1, len(samples) // 10)]]
                for name, samples in memory.samples.items()
            },
            "rss_growth_after_warm_up": {k: round(v, 4) for k, v in growth.items()},
        }
    # The embedded broker stores every record in memory by design (a real Kafka writes
    # them to disk), so its growth is the data written: reported, not a target.
    ours = {name: value for name, value in growth.items() if name != "broker"}
    scenario.targets = [
        kit.at_most("images lost (no result, no typed refusal)", len(lost), 0),
        kit.at_most(
            "largest RSS growth after warm-up (server, dataflow), %", 100 * max(ours.values()), 10
        ),
    ]
    return scenario


def memory_growth(samples: Sequence[tuple[float, float]]) -> float:
    """Growth of resident memory after warm-up: the median of the last tenth of the run
    against the median of its third tenth (the first fifth is warm-up)."""
    values = [mb for _t, mb in samples]
    tenth = max(1, len(values) // 10)
    baseline = statistics.median(values[2 * tenth : 3 * tenth] or values)
    return statistics.median(values[-tenth:]) / baseline - 1
