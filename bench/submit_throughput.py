"""Benchmark of ingestion: gRPC `Submit` with ~100 KB images against the real server
(`python -m grpc_server`, a child process) and the embedded broker, next to a raw
confluent-kafka producer sending the same records, side by side in one run.

Reports Submit req/s at saturation (C concurrent calls) with p50/p99 latency, SubmitStream
req/s (bulk ingestion over a few streams), the raw producer's records/s, and the ratio of
Submit to it; medians over repeated runs.
Usage: python -m bench.submit_throughput [--requests N] [--concurrency C] [--repeat R]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import statistics
import time
from collections.abc import AsyncIterator, Awaitable, Iterable
from contextlib import asynccontextmanager

import cv2
import grpc
import numpy as np
from confluent_kafka import Producer

from apps.launch import PROJECT_ROOT
from apps.local_system import LocalSystem, wait_serving
from bench import RESULTS
from di import Settings
from facestream.client import AnalyzeClient
from facestream.kafka_config import producer_config
from facestream.kafka_records import image_submitted
from facestream.v1 import analyze_service_pb2, analyze_service_pb2_grpc

TARGET_IMAGE_BYTES = 100 * 1024
QUIET = {"FACESTREAM_LOG_LEVEL": "WARNING"}
# Bulk ingestion: a few long streams instead of one call per image.
STREAMS = 4


def image_of_about(target: int) -> bytes:
    """A JPEG of noise close to `target` bytes (noise does not compress)."""
    rng = np.random.default_rng(7)
    side = 64
    while True:
        pixels = rng.integers(0, 256, (side, side, 3), dtype=np.uint8)
        encoded = cv2.imencode(".jpg", pixels, [cv2.IMWRITE_JPEG_QUALITY, 90])[1].tobytes()
        if len(encoded) >= target:
            return encoded
        side += 8


@asynccontextmanager
async def analyze_stub(address: str) -> AsyncIterator[analyze_service_pb2_grpc.AnalyzeServiceStub]:
    """An asyncio AnalyzeService stub on a channel that admits ~100 KB requests and more."""
    async with grpc.aio.insecure_channel(
        address, options=[("grpc.max_send_message_length", 64 * 1024 * 1024)]
    ) as channel:
        yield analyze_service_pb2_grpc.AnalyzeServiceStub(channel)


async def seconds_to_run(calls: Iterable[Awaitable[None]]) -> float:
    """Wall-clock seconds until all `calls`, run concurrently, are done."""
    started = time.perf_counter()
    await asyncio.gather(*calls)
    return time.perf_counter() - started


async def submit_load(address: str, image: bytes, requests: int, concurrency: int) -> dict:
    """`requests` Submit calls, `concurrency` at a time; req/s and latency percentiles."""
    latencies: list[float] = []
    message = analyze_service_pb2.SubmitRequest(image=image)
    remaining = iter(range(requests))
    async with analyze_stub(address) as stub:

        async def caller() -> None:
            for _ in remaining:
                start = time.perf_counter()
                await stub.Submit(message, timeout=30)
                latencies.append(time.perf_counter() - start)

        elapsed = await seconds_to_run(caller() for _ in range(concurrency))
    return {
        "req_per_s": requests / elapsed,
        "p50_ms": 1000 * float(np.percentile(latencies, 50)),
        "p99_ms": 1000 * float(np.percentile(latencies, 99)),
    }


async def stream_load(address: str, image: bytes, requests: int, streams: int) -> dict:
    """`requests` publishes over `streams` SubmitStream calls; req/s (every reply checked)."""
    message = analyze_service_pb2.SubmitRequest(image=image)
    share = requests // streams
    async with analyze_stub(address) as stub:

        async def one_stream() -> None:
            replies = 0
            async for reply in stub.SubmitStream(iter([message] * share), timeout=120):
                assert reply.request_id and not reply.HasField("error"), reply.error
                replies += 1
            assert replies == share

        elapsed = await seconds_to_run(one_stream() for _ in range(streams))
    return {"req_per_s": share * streams / elapsed}


def raw_producer_rate(bootstrap: str, topic: str, image: bytes, records: int, limit: int) -> float:
    """Records/s of a bare producer (same config as the server's) sending the same records."""
    producer = Producer(producer_config(bootstrap, limit))
    values = [image_submitted(f"raw-{i}", image).SerializeToString() for i in range(records)]
    started = time.perf_counter()
    for i, value in enumerate(values):
        while True:
            try:
                producer.produce(topic, key=f"raw-{i}".encode(), value=value)
                break
            except BufferError:
                producer.poll(0.01)
        producer.poll(0)
    assert producer.flush(60) == 0
    return records / (time.perf_counter() - started)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--requests", type=int, default=3000)
    parser.add_argument("--concurrency", type=int, default=64)
    parser.add_argument("--repeat", type=int, default=3)
    args = parser.parse_args()

    image = image_of_about(TARGET_IMAGE_BYTES)
    settings = Settings.from_env(QUIET)
    # The bench is the server's one client (the anonymous principal): its share of the
    # publishes is the whole server's, or its streams' windows would be refused beyond it.
    env = {**QUIET, "FACESTREAM_MAX_IN_FLIGHT_PER_PRINCIPAL": str(settings.limits.max_in_flight)}
    system = LocalSystem(settings, settings.models.deepface_home, dataflows=(), env=env)
    with system.running(), AnalyzeClient(system.address) as client:
        wait_serving(system, client)
        asyncio.run(submit_load(system.address, image, 200, args.concurrency))  # warm-up
        # Interleaved, so both see the broker in the same state (it fills up as it goes).
        runs, streamed, raw = [], [], []
        for _ in range(args.repeat):
            runs.append(
                asyncio.run(submit_load(system.address, image, args.requests, args.concurrency))
            )
            streamed.append(asyncio.run(stream_load(system.address, image, args.requests, STREAMS)))
            raw.append(
                raw_producer_rate(
                    system.bootstrap,
                    settings.kafka.topic_requests,
                    image,
                    args.requests,
                    settings.kafka_max_message_bytes,
                )
            )

    report = {
        "image_bytes": len(image),
        "requests_per_run": args.requests,
        "concurrency": args.concurrency,
        "repeat": args.repeat,
        "submit_req_per_s": statistics.median(r["req_per_s"] for r in runs),
        "submit_p50_ms": statistics.median(r["p50_ms"] for r in runs),
        "submit_p99_ms": statistics.median(r["p99_ms"] for r in runs),
        "raw_producer_records_per_s": statistics.median(raw),
        "submit_stream_req_per_s": statistics.median(r["req_per_s"] for r in streamed),
        "streams": STREAMS,
    }
    report["submit_vs_raw"] = report["submit_req_per_s"] / report["raw_producer_records_per_s"]
    out = RESULTS / "submit.json"
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(report, indent=2) + "\n")
    print(
        f"| ingestion ({len(image) // 1024} KB images, {args.concurrency} concurrent, "
        f"median of {args.repeat}) | value |"
    )
    print("|---|---|")
    print(f"| Submit | {report['submit_req_per_s']:.0f} req/s |")
    print(
        f"| Submit latency p50 / p99 | {report['submit_p50_ms']:.1f} / "
        f"{report['submit_p99_ms']:.1f} ms |"
    )
    print(f"| SubmitStream, {STREAMS} streams | {report['submit_stream_req_per_s']:.0f} req/s |")
    print(
        f"| raw confluent-kafka producer, same records | "
        f"{report['raw_producer_records_per_s']:.0f} records/s |"
    )
    print(f"| Submit / raw producer | {report['submit_vs_raw']:.2f}x |")
    print(f"written to {out.relative_to(PROJECT_ROOT)}")


if __name__ == "__main__":
    main()
