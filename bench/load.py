"""One load generator for every service benchmarked, so their figures compare.

A service is a function that analyses one image and returns how many faces it found.
`saturate` keeps `concurrency` calls in flight (closed loop) to find the most faces/s;
`offer` sends images at a fixed rate (open loop), whatever the answers do, to measure the
latency a given load gets.
"""

from __future__ import annotations

import itertools
import statistics
import threading
import time
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass

import numpy as np

Service = Callable[[bytes], int]


@dataclass(frozen=True)
class LoadRun:
    """What one run of a load gave."""

    images: int
    faces: int
    seconds: float
    latencies: list[float]

    @property
    def faces_per_s(self) -> float:
        return self.faces / self.seconds

    @property
    def p50(self) -> float:
        return float(np.percentile(self.latencies, 50))

    @property
    def p99(self) -> float:
        return float(np.percentile(self.latencies, 99))


def saturate(service: Service, images: Sequence[bytes], rounds: int, concurrency: int) -> LoadRun:
    """Each image `rounds` times, `concurrency` calls in flight at once."""
    work = iter(list(images) * rounds)
    lock = threading.Lock()
    latencies: list[float] = []
    faces = 0

    def caller() -> None:
        nonlocal faces
        while True:
            with lock:
                image = next(work, None)
            if image is None:
                return
            started = time.perf_counter()
            found = service(image)
            elapsed = time.perf_counter() - started
            with lock:
                latencies.append(elapsed)
                faces += found

    started = time.perf_counter()
    with ThreadPoolExecutor(concurrency) as pool:
        for future in [pool.submit(caller) for _ in range(concurrency)]:
            future.result()
    return LoadRun(len(images) * rounds, faces, time.perf_counter() - started, latencies)


def offer(service: Service, images: Sequence[bytes], rate: float, calls: int) -> LoadRun:
    """Start one call every 1/`rate` s, `calls` in all (images in turn), however long the
    calls take; latency counts from each call's scheduled start."""
    count = max(1, calls)
    latencies: list[float] = []
    faces: list[int] = []
    lock = threading.Lock()

    def call(scheduled: float, image: bytes) -> None:
        found = service(image)
        with lock:
            latencies.append(time.perf_counter() - scheduled)
            faces.append(found)

    started = time.perf_counter()
    with ThreadPoolExecutor(max(4, count)) as pool:
        futures = []
        for index, image in zip(range(count), itertools.cycle(images), strict=False):
            scheduled = started + index / rate
            time.sleep(max(0.0, scheduled - time.perf_counter()))  # the open loop's clock
            futures.append(pool.submit(call, scheduled, image))
        for future in futures:
            future.result()
    return LoadRun(count, sum(faces), time.perf_counter() - started, latencies)


def median_run(runs: Sequence[LoadRun]) -> dict[str, float]:
    """Medians over repeated runs of faces/s and latency percentiles (seconds)."""
    return {
        "faces_per_s": statistics.median(r.faces_per_s for r in runs),
        "p50_s": statistics.median(r.p50 for r in runs),
        "p99_s": statistics.median(r.p99 for r in runs),
        "runs": len(runs),
        "images_per_run": runs[0].images,
        "faces_per_run": runs[0].faces,
    }
