"""Fuzz: mutated inputs at both doors.

Breaks: sends mutated images through the front and writes mutated records straight onto
the requests topic.
Checks: every reply and every result typed, every unusable record dead-lettered with its
reason, no process dies.
"""

from __future__ import annotations

import threading
from collections import Counter
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import grpc

from bench.mutations import mutated_images, mutated_records, seed_images
from bench.reliability import scenario as kit
from facestream.kafka_records import NotASubmissionError, parse_submission
from facestream.v1 import records_pb2

# Codes a refused image may get from the front: anything else is a failure to type it.
IMAGE_REFUSALS = {grpc.StatusCode.INVALID_ARGUMENT, grpc.StatusCode.RESOURCE_EXHAUSTED}


def run(home: Path, size: kit.Size) -> kit.Scenario:
    """Send the mutated images and records; count what is typed and dead-lettered."""
    scenario = kit.Scenario("fuzz: mutated images and records")
    images = kit.ScenarioImages.make()
    seeds = seed_images(images.small_face_picture())
    mutants = mutated_images(seeds, size.fuzz_images)
    records = mutated_records(seeds, size.fuzz_records)
    with kit.running_system(home) as system:
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
        system.produce(system.settings.kafka.topic_requests, records)
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
            if result.status not in kit.TYPED_RESULT_STATUSES
            or (
                result.status
                not in (records_pb2.ANALYSIS_STATUS_OK, records_pb2.ANALYSIS_STATUS_NO_FACE)
                and not (result.error.code and result.error.message)
            )
        ]
        dead = system.reader(system.settings.kafka.topic_dead_letter)
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
        kit.at_least("mutated images sent through the front", len(mutants), size.fuzz_images),
        kit.at_least(
            "mutated records written to the requests topic", len(records), size.fuzz_records
        ),
        kit.at_most("replies without a typed status", len(untyped_replies), 0),
        kit.at_most("results without a typed status and error code", len(untyped_results), 0),
        kit.at_most("requests without a result", len(to_answer - results.keys()), 0),
        kit.at_most(
            "unusable records not in the dead-letter topic with a reason",
            sum(1 for key in to_dead_letter if not reasons.get(key)),
            0,
        ),
        kit.at_most("processes that died", len(deaths), 0),
    ]
    return scenario
