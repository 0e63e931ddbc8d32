"""`make reliability`: faults and overload against the real system, with figures and targets.

Each scenario starts its own embedded broker, `bytewax.run` dataflow processes and
`python -m grpc_server` processes on 127.0.0.1 (bench/system_under_test.py), breaks
something, and counts what reached the other end; every child is stopped by its pid when
the scenario ends, whatever happened. Loads are bounded in count and time.
Weights are synthetic (made once in ~/.cache/facestream, as for the tests).

The scenarios analyse emotion only (FACESTREAM_ACTIONS=emotion) on small public images:
what is measured is delivery, typing and memory, which do not depend on which models run,
and the three VGG models would only make each scenario several times longer.

`python -m bench.reliability` runs the full sizes and writes bench/results/reliability.json
(one entry per scenario, and a top-level `targets` list); `--short` runs the small sizes
that `make test` runs (tests/test_reliability.py).
"""

from __future__ import annotations

import argparse
import hashlib
import itertools
import json
import statistics
import sys
import tempfile
import threading
import time
from collections import Counter
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from contextlib import ExitStack, contextmanager
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import cv2
import grpc
import numpy as np

from apps.processes import ChildExitedError
from bench.machine import describe_machine
from bench.mutations import mutated_images, mutated_records, seed_images
from bench.system_under_test import (
    SERVING,
    MemorySampler,
    ScenarioError,
    Server,
    SystemUnderTest,
    wait_until,
)
from facestream.models import (
    ensure_synthetic_weights,
    synthetic_deepface_home,
    weights_dir_of,
)
from facestream.records import NotASubmissionError, image_submitted, parse_submission
from facestream.v1 import records_pb2
from grpc_server.service import REQUEST_ID_METADATA

RESULTS = Path(__file__).resolve().parent / "results"
SCENARIO_ENV = {"FACESTREAM_ACTIONS": "emotion"}
TYPED_RESULT_STATUSES = {
    records_pb2.ANALYSIS_STATUS_OK,
    records_pb2.ANALYSIS_STATUS_NO_FACE,
    records_pb2.ANALYSIS_STATUS_INVALID_IMAGE,
    records_pb2.ANALYSIS_STATUS_FAILED,
}
# Codes a refused image may get from the front: anything else is a failure to type it.
IMAGE_REFUSALS = {grpc.StatusCode.INVALID_ARGUMENT, grpc.StatusCode.RESOURCE_EXHAUSTED}


@dataclass(frozen=True)
class Size:
    """How much each scenario does."""

    kills: int
    kill_requests: int
    server_requests: int
    outage_seconds: float
    saturate_calls: int
    overload_seconds: float
    fuzz_images: int
    fuzz_records: int
    soak_images: int
    poison_neighbours: int
    patience: float  # seconds to wait for results once the load is over: then they are missing


FULL = Size(
    kills=5,
    kill_requests=400,
    server_requests=400,
    outage_seconds=8,
    saturate_calls=48,
    overload_seconds=60,
    fuzz_images=1000,
    fuzz_records=240,
    soak_images=2000,
    poison_neighbours=20,
    patience=600,
)
SHORT = Size(
    kills=2,
    kill_requests=60,
    server_requests=60,
    outage_seconds=5,
    saturate_calls=16,
    overload_seconds=10,
    fuzz_images=120,
    fuzz_records=48,
    soak_images=150,
    poison_neighbours=4,
    patience=90,
)


@dataclass(frozen=True)
class Target:
    """One target: the measured value, what it must be, and whether it is."""

    name: str
    value: float
    target: str
    met: bool


def at_most(name: str, value: float, limit: float) -> Target:
    return Target(name, value, f"<= {limit:g}", value <= limit)


def at_least(name: str, value: float, limit: float) -> Target:
    return Target(name, value, f">= {limit:g}", value >= limit)


@dataclass
class Scenario:
    """What one scenario measured."""

    name: str
    figures: dict[str, Any] = field(default_factory=dict)
    targets: list[Target] = field(default_factory=list)

    @property
    def met(self) -> bool:
        return all(target.met for target in self.targets)


# Inputs


def _encode(picture: np.ndarray, suffix: str = ".jpg") -> bytes:
    ok, data = cv2.imencode(suffix, picture)
    if not ok:
        raise ValueError(f"could not encode {suffix}")
    return data.tobytes()


@dataclass(frozen=True)
class ScenarioImages:
    """Public images (scikit-image's astronaut and coffee), small so scenarios run fast."""

    face: bytes
    no_face: bytes
    large_face: bytes  # 1.4 MB: in overload, images held by waiting calls show in memory
    invalid: tuple[bytes, ...]

    @classmethod
    def make(cls) -> ScenarioImages:
        from skimage import data

        astronaut = cv2.cvtColor(data.astronaut(), cv2.COLOR_RGB2BGR)
        coffee = cv2.cvtColor(data.coffee(), cv2.COLOR_RGB2BGR)
        face = _encode(cv2.resize(astronaut, (256, 256), interpolation=cv2.INTER_AREA))
        return cls(
            face=face,
            no_face=_encode(cv2.resize(coffee, (256, 171), interpolation=cv2.INTER_AREA)),
            large_face=_encode(cv2.resize(astronaut, (1024, 1024)), ".png"),
            invalid=(b"this is not an image " * 20, face[: len(face) // 2]),
        )

    def small_face_picture(self) -> np.ndarray:
        return cv2.imdecode(np.frombuffer(self.face, np.uint8), cv2.IMREAD_COLOR)


def tagged(image: bytes, request_id: str) -> bytes:
    """A JPEG with the request id after its end: the same picture, unique bytes per id."""
    return image + f"request={request_id}".encode()


def digest(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()[:16]


# Running a scenario


@contextmanager
def running_system(
    home: Path, env: dict[str, str] | None = None, **options: Any
) -> Iterator[SystemUnderTest]:
    """A SystemUnderTest in a fresh work folder; every child stopped by pid on the way out."""
    with (
        tempfile.TemporaryDirectory(prefix="facestream-reliability-") as workdir,
        ExitStack() as stack,
    ):
        yield SystemUnderTest(
            stack, home, Path(workdir), {**SCENARIO_ENV, **(env or {})}, **options
        )


def init_recovery(folder: Path, partitions: int) -> Path:
    """A Bytewax recovery store of `partitions` partitions in `folder`."""
    from bytewax.recovery import init_db_dir

    folder.mkdir(parents=True, exist_ok=True)
    init_db_dir(folder, partitions)
    return folder


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


def count_results(
    results: dict[str, list[records_pb2.AnalysisResult]], ids: set[str]
) -> dict[str, int]:
    """Missing and duplicate results of `ids`."""
    return {
        "missing": len(ids - results.keys()),
        "duplicates": sum(len(results[i]) - 1 for i in ids & results.keys()),
    }


# Scenarios


def dataflow_kills(home: Path, size: Size) -> Scenario:
    """SIGKILL a process of a 2-process dataflow cluster mid-stream, `size.kills` times,
    restarting it from its recovery snapshots: every acknowledged request gets a result."""
    scenario = Scenario("dataflow SIGKILL with recovery, 2 processes x -w 1")
    images = ScenarioImages.make()
    with running_system(home) as system:
        recovery = init_recovery(system.workdir / "recovery", 2)
        server = system.start_server()
        requests = [
            (f"kill-{i}", images.face if i % 2 else images.no_face)
            for i in range(size.kill_requests)
        ]
        acked = submit_all(server, requests)
        started = time.monotonic()
        system.start_dataflow(processes=2, workers=1, recovery=recovery)
        step = max(1, len(acked) // (size.kills + 2))
        kills, exit_codes = 0, []
        for kill in range(size.kills):
            seen = system.read_results(
                lambda got, n=(kill + 1) * step: len(got) >= n, size.patience
            )
            if acked <= seen.keys():
                break  # the stream ended before this kill
            exit_codes.append(system.kill_dataflow(index=kill % 2))
            kills += 1
            system.start_dataflow(processes=2, workers=1, recovery=recovery)
        results = system.results(acked, size.patience)
        counts = count_results(results, acked)
        scenario.figures = {
            "requests": len(requests),
            "acknowledged": len(acked),
            "kills": kills,
            "exit_codes": exit_codes,
            **counts,
            "seconds": round(time.monotonic() - started, 1),
        }
    scenario.targets = [
        at_least("dataflow kills mid-stream", kills, size.kills),
        at_most("acknowledged requests without a result", counts["missing"], 0),
    ]
    return scenario


def server_kills(home: Path, size: Size) -> Scenario:
    """SIGKILL one of two gRPC servers under a Submit load; clients retry on the other with
    the same request id: every acknowledged id gets its result, no id is acknowledged with
    two different images."""
    scenario = Scenario("gRPC server SIGKILL, 2 servers, clients retry with the same id")
    images = ScenarioImages.make()
    with running_system(home) as system:
        system.start_dataflow()
        servers = [system.start_server(), system.start_server()]
        acked: dict[str, str] = {}
        refusals: Counter[str] = Counter()
        lock = threading.Lock()
        requests = [
            (f"srv-{i}", tagged(images.face if i % 2 else images.no_face, f"srv-{i}"))
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
        counts = count_results(results, set(acked))
        reader = system.reader(system.settings.topic_requests)
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
        at_least("calls retried on the other server", sum(refusals.values()), 1),
        at_most("requests never acknowledged", len(requests) - len(acked), 0),
        at_most("acknowledged requests without a result", counts["missing"], 0),
        at_most("ids acknowledged with two different images", len(conflicting), 0),
    ]
    return scenario


def broker_outage(home: Path, size: Size) -> Scenario:
    """Cut the broker off (every connection dropped, new ones refused) during a Submit
    load, then bring it back: no false acknowledgement, every refusal UNAVAILABLE, the same
    server SERVING again within 10 s, the dataflow going on, every acknowledged id answered."""
    scenario = Scenario("broker outage during a Submit load")
    images = ScenarioImages.make()
    with running_system(home, {"FACESTREAM_ACK_TIMEOUT": "3"}, behind_proxy=True) as system:
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
                image = tagged(images.face, request_id)
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
        reader = system.reader(system.settings.topic_requests)
        reader.read_until(lambda got: acked <= {m.key().decode() for m in got}, 60)
        on_topic = {m.key().decode() for m in reader.messages}
        results = system.results(acked, size.patience)
        counts = count_results(results, acked)
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
        at_most("false acks (acknowledged, not on the requests topic)", len(acked - on_topic), 0),
        at_least("calls refused during the outage", refusals["UNAVAILABLE"], 1),
        at_most(
            "refusals other than UNAVAILABLE",
            sum(n for code, n in refusals.items() if code != "UNAVAILABLE"),
            0,
        ),
        at_most("seconds to SERVING after the broker's return", serving_again, 10),
        at_most("acknowledged requests without a result", counts["missing"], 0),
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


def overload(home: Path, size: Size) -> Scenario:
    """Offer 4x the saturated rate of Analyze calls: the server's memory stays bounded (the
    backlog stays in Kafka), the excess is refused with RESOURCE_EXHAUSTED, and every
    accepted request gets its result."""
    scenario = Scenario("overload: 4x the saturated rate")
    images = ScenarioImages.make()
    budget_mib, concurrent_calls = 16, 32
    server_env = {
        "FACESTREAM_MAX_CONCURRENT_RPCS": str(concurrent_calls),
        "FACESTREAM_MAX_HELD_IMAGE_BYTES": f"{budget_mib}MiB",
    }
    with running_system(home, server_env) as system:
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
        counts = count_results(results, accepted)
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
        at_least("calls refused with RESOURCE_EXHAUSTED", outcomes["RESOURCE_EXHAUSTED"], 1),
        at_most("calls ending otherwise than OK or RESOURCE_EXHAUSTED", others, 0),
        at_most("server RSS growth, MB (what the caps allow)", growth, round(ceiling_mb)),
        at_most("accepted requests without a result", counts["missing"], 0),
    ]
    return scenario


def memory_until(sampler: MemorySampler, name: str, count: int) -> list[tuple[float, float]]:
    """The first `count` samples of `name`, waiting for them (bounded)."""
    wait_until(lambda: len(sampler.samples[name]) >= count, 30, f"{count} memory samples")
    return sampler.samples[name][:count]


def fuzz(home: Path, size: Size) -> Scenario:
    """Mutated images through the front, mutated records straight onto the requests topic:
    every reply and every result typed, every unusable record dead-lettered with its
    reason, no process dies."""
    scenario = Scenario("fuzz: mutated images and records")
    images = ScenarioImages.make()
    seeds = seed_images(images.small_face_picture())
    mutants = mutated_images(seeds, size.fuzz_images)
    records = mutated_records(seeds, size.fuzz_records)
    with running_system(home) as system:
        system.start_dataflow()
        server = system.start_server()
        accepted: set[str] = set()
        replies: Counter[str] = Counter()
        untyped_replies: list[str] = []
        lock = threading.Lock()

        def submit(index: int) -> None:
            request_id = f"fuzz-image-{index}"
            try:
                server.client.submit(mutants[index], request_id=request_id, timeout=30)
            except grpc.RpcError as error:
                details = error.details() or ""
                typed = error.code() in IMAGE_REFUSALS and details and "Traceback" not in details
                with lock:
                    replies[error.code().name] += 1
                    if not typed:
                        untyped_replies.append(f"{request_id}: {error.code().name} {details}")
                return
            with lock:
                replies["OK"] += 1
                accepted.add(request_id)

        with ThreadPoolExecutor(4) as pool:
            list(pool.map(submit, range(len(mutants))))
        system.produce(system.settings.topic_requests, records)
        to_answer, to_dead_letter = set(accepted), set()
        for key, value in records:
            try:
                to_answer.add(parse_submission(value).request_id)
            except NotASubmissionError:
                to_dead_letter.add(key)
        results = system.results(to_answer, size.patience)
        untyped_results = [
            rid
            for rid in to_answer & results.keys()
            for result in results[rid]
            if result.status not in TYPED_RESULT_STATUSES
            or (
                result.status
                not in (records_pb2.ANALYSIS_STATUS_OK, records_pb2.ANALYSIS_STATUS_NO_FACE)
                and not (result.error.code and result.error.message)
            )
        ]
        dead = system.reader(system.settings.topic_dead_letter)
        dead.read_until(lambda got: to_dead_letter <= {m.key() for m in got}, 120)
        reasons = {m.key(): dict(m.headers() or ()).get("facestream-error") for m in dead.messages}
        statuses = Counter(
            records_pb2.AnalysisStatus.Name(r[0].status) for r in results.values() if r
        )
        deaths = [s.process.name for s in system.servers if not s.process.running()]
        deaths += [c.name for c in system.dataflows if not c.running()]
        scenario.figures = {
            "mutated_images": len(mutants),
            "front_replies": dict(replies),
            "mutated_records": len(records),
            "records_dead_lettered": len(to_dead_letter),
            "result_statuses": dict(statuses),
            "untyped_replies": untyped_replies[:5],
            "untyped_results": untyped_results[:5],
            "processes_died": deaths,
        }
    scenario.targets = [
        at_least("mutated images sent through the front", len(mutants), size.fuzz_images),
        at_least("mutated records written to the requests topic", len(records), size.fuzz_records),
        at_most("replies without a typed status", len(untyped_replies), 0),
        at_most("results without a typed status and error code", len(untyped_results), 0),
        at_most("requests without a result", len(to_answer - results.keys()), 0),
        at_most(
            "unusable records not in the dead-letter topic with a reason",
            sum(1 for key in to_dead_letter if not reasons.get(key)),
            0,
        ),
        at_most("processes that died", len(deaths), 0),
    ]
    return scenario


def soak(home: Path, size: Size) -> Scenario:
    """`size.soak_images` images (a third each with a face, without, invalid) through the
    whole system at the saturated rate: nothing lost, no process's memory growing."""
    scenario = Scenario("soak: mixed images at the saturated rate")
    images = ScenarioImages.make()
    with running_system(home) as system:
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
                ok = kind < 2 and result.status in TYPED_RESULT_STATUSES
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
        at_most("images lost (no result, no typed refusal)", len(lost), 0),
        at_most(
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


def poison_quarantine(home: Path, size: Size) -> Scenario:
    """A record that crashes the dataflow every time it is read (the fail point
    FACESTREAM_FAILPOINT_CRASH_ON) is quarantined after FACESTREAM_MAX_ATTEMPTS crashes:
    FAILED with request.poison, in the dead-letter topic, and the stream goes on."""
    scenario = Scenario("poison record quarantine")
    images = ScenarioImages.make()
    max_attempts = 3
    env = {"FACESTREAM_FAILPOINT_CRASH_ON": "poison-", "FACESTREAM_MAX_ATTEMPTS": "3"}
    with running_system(home, env) as system:
        recovery = init_recovery(system.workdir / "recovery", 1)
        neighbours = [f"neighbour-{i}" for i in range(size.poison_neighbours)]
        ids = [*neighbours[: len(neighbours) // 2], "poison-1", *neighbours[len(neighbours) // 2 :]]
        system.produce(
            system.settings.topic_requests,
            [(rid.encode(), image_submitted(rid, images.face).SerializeToString()) for rid in ids],
        )
        system.start_dataflow(recovery=recovery)
        exit_codes: list[int] = []
        started = time.monotonic()

        def restart_after_crash() -> None:
            # A supervisor's job (compose: restart: always), bounded here.
            if system.dataflows and not system.dataflows[0].running():
                if len(exit_codes) > max_attempts + 1:
                    raise ScenarioError(f"still crashing after {exit_codes}")
                exit_codes.append(system.dataflows[0].stop())
                system.dataflows = []
                system.start_dataflow(recovery=recovery)

        reader = system.reader(system.settings.topic_results)
        reader.read_until(
            lambda got: b"poison-1" in {m.key() for m in got}, size.patience, restart_after_crash
        )
        results = system.results(ids, size.patience)
        dead = system.reader(system.settings.topic_dead_letter)
        dead.read_until(lambda got: b"poison-1" in {m.key() for m in got}, 60)
        reason = next(
            (dict(m.headers() or ()).get("facestream-error", b"") for m in dead.messages), b""
        )
        poison = results.get("poison-1", [records_pb2.AnalysisResult()])[0]
        scenario.figures = {
            "records": len(ids),
            "crashes": len(exit_codes),
            "exit_codes": exit_codes,
            "poison_status": records_pb2.AnalysisStatus.Name(poison.status),
            "poison_error": poison.error.code,
            "dead_letter_reason": reason.decode(errors="replace"),
            "neighbours_answered": sum(1 for rid in neighbours if rid in results),
            "seconds": round(time.monotonic() - started, 1),
        }
    scenario.targets = [
        at_most("crashes before quarantine", len(exit_codes), max_attempts),
        at_least("crashes before quarantine (the fail point fired)", len(exit_codes), max_attempts),
        Target(
            "poison result is FAILED request.poison",
            float(poison.error.code == "request.poison"),
            "== 1",
            poison.status == records_pb2.ANALYSIS_STATUS_FAILED
            and poison.error.code == "request.poison",
        ),
        Target(
            "poison record in the dead-letter topic with its reason",
            float(reason.startswith(b"request.poison")),
            "== 1",
            reason.startswith(b"request.poison"),
        ),
        at_most(
            "other records without a result",
            sum(1 for rid in neighbours if rid not in results),
            0,
        ),
    ]
    return scenario


SCENARIOS: dict[str, Callable[[Path, Size], Scenario]] = {
    "dataflow_kills": dataflow_kills,
    "server_kills": server_kills,
    "broker_outage": broker_outage,
    "overload": overload,
    "fuzz": fuzz,
    "soak": soak,
    "poison_quarantine": poison_quarantine,
}


def table(scenarios: Sequence[Scenario]) -> str:
    """Every target of every scenario as a markdown table."""
    lines = ["| scenario | target | value | required | |", "|---|---|---|---|---|"]
    for scenario in scenarios:
        for target in scenario.targets:
            lines.append(
                f"| {scenario.name} | {target.name} | {target.value:g} | {target.target} | "
                f"{'met' if target.met else 'NOT met'} |"
            )
    return "\n".join(lines)


def run_scenario(name: str, home: Path, size: Size) -> Scenario:
    """Run one scenario. One that cannot run to its end (a process of the system exited
    when it should not, a wait timed out) is a finding, not the end of the suite: its error
    and the process's log become the scenario's figures and an unmet target."""
    try:
        return SCENARIOS[name](home, size)
    except (ScenarioError, TimeoutError, ChildExitedError, grpc.RpcError) as error:
        scenario = Scenario(f"{name}: stopped early")
        scenario.figures = {"error": f"{type(error).__name__}: {error}"[-6000:]}
        scenario.targets = [at_least("ran to its end without an unexpected exit", 0, 1)]
        return scenario


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--short", action="store_true", help="the small sizes of make test")
    parser.add_argument("--only", nargs="*", choices=list(SCENARIOS), help="run only these")
    parser.add_argument(
        "--repeat", type=int, default=1, metavar="N", help="run each chosen scenario N times"
    )
    args = parser.parse_args()
    if args.repeat < 1:
        parser.error("--repeat must be at least 1")
    size = SHORT if args.short else FULL
    # Always synthetic weights, in the cache the tests use (never next to real ones): what
    # is measured here is delivery, not what the models say.
    home = synthetic_deepface_home()
    ensure_synthetic_weights(weights_dir_of(home), ["emotion"])
    report: dict[str, Any] = {
        "machine": describe_machine(),
        "size": asdict(size),
        "scenarios": {},
    }
    started = time.monotonic()
    done: list[Scenario] = []
    for name in args.only or SCENARIOS:
        for run in range(1, args.repeat + 1):
            label = name if args.repeat == 1 else f"{name}#{run}"
            print(f"reliability: {label} ...", file=sys.stderr, flush=True)
            scenario = run_scenario(name, home, size)
            if args.repeat > 1:
                scenario.name = f"{scenario.name} (run {run} of {args.repeat})"
            done.append(scenario)
            report["scenarios"][label] = {
                "name": scenario.name,
                "figures": scenario.figures,
                "targets": [asdict(t) for t in scenario.targets],
            }
            figures = json.dumps(scenario.figures)
            print(f"reliability: {label}: {figures}", file=sys.stderr, flush=True)
    report["targets"] = [asdict(t) for s in done for t in s.targets]
    report["seconds"] = round(time.monotonic() - started)
    RESULTS.mkdir(parents=True, exist_ok=True)
    (RESULTS / "reliability.json").write_text(json.dumps(report, indent=2) + "\n")
    print(f"Machine: {report['machine']}; sizes: {'short' if args.short else 'full'}")
    print(table(done))
    print(f"({report['seconds'] / 60:.0f} min; bench/results/reliability.json has every figure.)")
    return 0 if all(s.met for s in done) else 1


if __name__ == "__main__":
    sys.exit(main())
