"""Enrolment kills: the dataflow dies while it writes enrolments to the gallery store.

Breaks: puts `size.enrolments` enrolment records on the requests topic (one subject each,
as the gRPC front publishes them) and SIGKILLs the dataflow (`-w 2`, recovery on)
mid-stream, `size.kills` times (the records put in parts, the next after each kill),
restarting it from its snapshots each time; records after a snapshot are delivered again.
Checks: every enrolment has a result saying its face is in the store, and the store holds
each enrolment's face exactly once (0 lost, 0 duplicated), whatever was delivered twice.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from pathlib import Path

from bench.reliability import scenario as kit
from facestream.gallery_store import GalleryStore, connection_pool
from facestream.kafka_records import image_submitted, submission_key
from facestream.v1 import records_pb2

GALLERY = "kills"


def run(home: Path, size: kit.Size) -> kit.Scenario:
    """Kill and restart the dataflow while it enrols."""
    scenario = kit.Scenario("enrolments across dataflow SIGKILLs, -w 2 with recovery")
    images = kit.ScenarioImages.make()
    with kit.gallery_database() as database:
        env = {**kit.RECOGNITION_ENV, "FACESTREAM_GALLERY_DSN": database.dsn}
        with kit.running_system(home, env) as system:
            recovery = kit.init_recovery(system.workdir / "recovery", 2)
            records = [enrolment(index, images.face) for index in range(size.enrolments)]
            ids = {record.request_id for record in records}
            started = time.monotonic()
            system.start_dataflow(workers=2, recovery=recovery)

            def send(part: Sequence[records_pb2.ImageSubmitted]) -> set[str]:
                system.produce(
                    system.settings.kafka.topic_requests,
                    [(submission_key(r), r.SerializeToString()) for r in part],
                )
                return {record.request_id for record in part}

            exit_codes = kit.kill_between_parts(
                system, records, size.kills, send, size.patience, workers=2, recovery=recovery
            )
            kills = len(exit_codes)
            results = system.results(ids, size.patience)
            counts = kit.count_results(results, ids)
            answered = {rid: copies for rid, copies in results.items() if rid in ids}
            enrolled = {
                rid for rid, copies in answered.items() if all(c.enrolled.face_id for c in copies)
            }
            face_ids = {copies[0].enrolled.face_id for copies in answered.values()}
            # A copy delivered again names the face the first one wrote.
            inconsistent = sum(
                1 for copies in answered.values() if len({c.enrolled.face_id for c in copies}) > 1
            )
            with connection_pool(database.dsn, max_size=1) as pool:
                stored = GalleryStore(pool).subjects("", GALLERY)
            scenario.figures = {
                "enrolments": len(records),
                "kills": kills,
                "exit_codes": exit_codes,
                **counts,
                "answered_enrolled": len(enrolled),
                "distinct_face_ids": len(face_ids),
                "copies_naming_another_face": inconsistent,
                "subjects_stored": len(stored),
                "faces_stored": sum(s.faces for s in stored),
                "seconds": round(time.monotonic() - started, 1),
            }
    figures = scenario.figures
    scenario.targets = [
        kit.at_least("dataflow kills mid-stream", kills, min(1, size.kills)),
        kit.at_most("enrolments without a result", counts["missing"], 0),
        kit.at_least("enrolments answered as stored", len(enrolled), len(records)),
        kit.at_least("faces in the store", figures["faces_stored"], len(records)),
        kit.at_most("faces in the store", figures["faces_stored"], len(records)),
        kit.at_most("repeated results naming another face", inconsistent, 0),
    ]
    return scenario


def enrolment(index: int, face: bytes) -> records_pb2.ImageSubmitted:
    """The record the front publishes for one enrolment of one image (subject s<index>)."""
    request_id = f"enrol-{index}"
    return image_submitted(
        f"{request_id}:0",
        kit.tagged(face, request_id),
        enrolment=records_pb2.Enrolment(
            gallery=GALLERY, subject=f"s{index}", enrolment_id=request_id, image_index=0
        ),
    )
