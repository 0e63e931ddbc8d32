"""Poison quarantine: a record that crashes the dataflow every time it is read.

Breaks: the fail point FACESTREAM_FAILPOINT_CRASH_ON crashes the dataflow on one record
among `size.poison_neighbours` good ones; the restarts a supervisor would do are done here.
Checks: the record is quarantined after FACESTREAM_MAX_ATTEMPTS crashes: FAILED with
request.poison, in the dead-letter topic, and the stream goes on.
"""

from __future__ import annotations

import time
from pathlib import Path

from bench.reliability import scenario as kit
from bench.system_under_test import ScenarioError
from facestream.kafka_records import image_submitted
from facestream.v1 import records_pb2


def run(home: Path, size: kit.Size) -> kit.Scenario:
    """Crash the dataflow on the poison record until it is quarantined."""
    scenario = kit.Scenario("poison record quarantine")
    images = kit.ScenarioImages.make()
    max_attempts = 3
    env = {"FACESTREAM_FAILPOINT_CRASH_ON": "poison-", "FACESTREAM_MAX_ATTEMPTS": "3"}
    with kit.running_system(home, env) as system:
        recovery = kit.init_recovery(system.workdir / "recovery", 1)
        neighbours = [f"neighbour-{i}" for i in range(size.poison_neighbours)]
        ids = [*neighbours[: len(neighbours) // 2], "poison-1", *neighbours[len(neighbours) // 2 :]]
        system.produce(
            system.settings.kafka.topic_requests,
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

        reader = system.reader(system.settings.kafka.topic_results)
        reader.read_until(
            lambda got: b"poison-1" in {m.key() for m in got}, size.patience, restart_after_crash
        )
        results = system.results(ids, size.patience)
        dead = system.reader(system.settings.kafka.topic_dead_letter)
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
        kit.at_most("crashes before quarantine", len(exit_codes), max_attempts),
        kit.at_least(
            "crashes before quarantine (the fail point fired)", len(exit_codes), max_attempts
        ),
        kit.Target(
            "poison result is FAILED request.poison",
            float(poison.error.code == "request.poison"),
            "== 1",
            poison.status == records_pb2.ANALYSIS_STATUS_FAILED
            and poison.error.code == "request.poison",
        ),
        kit.Target(
            "poison record in the dead-letter topic with its reason",
            float(reason.startswith(b"request.poison")),
            "== 1",
            reason.startswith(b"request.poison"),
        ),
        kit.at_most(
            "other records without a result",
            sum(1 for rid in neighbours if rid not in results),
            0,
        ),
    ]
    return scenario
