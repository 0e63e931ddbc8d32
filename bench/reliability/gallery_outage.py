"""Gallery outage: the galleries' PostgreSQL stops mid-stream and comes back.

Breaks: sends identified requests (each face matched against a gallery of one enrolled
subject) in three phases of `size.gallery_requests / 3`: with the store up, with it
stopped, and with it started again; and enrols a second subject while it is down.
Checks: every acknowledged request gets its result with its attributes; every face's
identity is matches (store up) or the typed error `gallery.unavailable` (store down),
never an untyped failure; identification works again after the restart; the enrolment
sent during the outage is retried by the dataflow and written once the store is back
(never lost once acknowledged).

The phases follow each other on conditions (every result of a phase in, the dataflow
saying it retries the enrolment), not on time, so that what is checked does not depend
on how fast the machine is.
"""

from __future__ import annotations

import threading
import time
from pathlib import Path
from typing import Any

from bench.reliability import scenario as kit
from bench.system_under_test import Server, SystemUnderTest
from facestream.client import identify_in
from facestream.gallery_store import GalleryStore, connection_pool
from facestream.v1 import records_pb2

TYPED = {"gallery.unavailable"}
# What the dataflow logs when it retries an enrolment's write (dataflow/recognition_steps.py).
RETRYING = r"gallery store unreachable; enrolment \S+ retried"


def run(home: Path, size: kit.Size) -> kit.Scenario:
    """Stop and restart the gallery store under a stream of identified requests."""
    scenario = kit.Scenario("gallery store stopped and restarted mid-stream")
    images = kit.ScenarioImages.make()
    per_phase = max(1, size.gallery_requests // 3)
    with kit.gallery_database() as database:
        env = {**kit.RECOGNITION_ENV, "FACESTREAM_GALLERY_DSN": database.dsn}
        with kit.running_system(home, env) as system:
            server = system.start_server()
            (dataflow,) = system.start_dataflow(workers=1)
            server.client.enroll("staff", "Eileen", [images.face], timeout=size.patience)
            started = time.monotonic()
            up = identified(system, server, images.face, "up", per_phase, size.patience)
            database.stop()
            down = identified(system, server, images.face, "down", per_phase, size.patience)
            # Sent while the store is down: the dataflow retries its write until it is back.
            enrolling = threading.Thread(
                target=lambda: server.client.enroll(
                    "staff", "Second", [images.face], timeout=size.patience
                ),
                name="enrol",
            )
            enrolling.start()
            retried = bool(dataflow.wait_for_output(RETRYING, size.patience))
            database.start()  # from this thread: the store must outlive the outage
            again = identified(system, server, images.face, "again", per_phase, size.patience)
            enrolling.join(size.patience)
            with connection_pool(database.dsn, max_size=1) as pool:
                subjects = [s.subject for s in GalleryStore(pool).subjects("", "staff")]
            phases = {"up": up, "down": down, "again": again}
            faces = [f for phase in phases.values() for f in phase["identities"]]
            untyped = sum(1 for i in faces if not i.matches and i.error.code not in TYPED)
            scenario.figures = {
                **{
                    f"{name}_{key}": value
                    for name, phase in phases.items()
                    for key, value in phase.items()
                    if key != "identities"
                },
                "faces_untyped": untyped,
                "enrolment_retried_while_down": retried,
                "enrolled_during_outage": "Second" in subjects,
                "seconds": round(time.monotonic() - started, 1),
            }
    missing = sum(phase["missing"] for phase in phases.values())
    scenario.targets = [
        kit.at_most("acknowledged requests without a result", missing, 0),
        kit.at_least("faces identified with the store up", up["identified"], per_phase),
        kit.at_least("faces with gallery.unavailable, store down", down["typed"], per_phase),
        kit.at_most("faces with an untyped identity failure", untyped, 0),
        kit.at_least("faces identified after the restart", again["identified"], per_phase),
        kit.at_least("enrolment sent during the outage, written", int("Second" in subjects), 1),
    ]
    return scenario


def identified(
    system: SystemUnderTest, server: Server, face: bytes, phase: str, count: int, patience: float
) -> dict[str, Any]:
    """Send `count` identified requests and wait for their results: how many were
    acknowledged, missing, identified and answered with a typed error, and the faces'
    identities."""
    ask = identify_in("staff")
    acked = set()
    for index in range(count):
        request_id = f"{phase}-{index}"
        server.client.submit(
            kit.tagged(face, request_id), request_id=request_id, identify=ask, timeout=30
        )
        acked.add(request_id)
    results = system.results(acked, patience)
    identities: list[records_pb2.Identity] = [
        face.identity for rid in acked & results.keys() for face in results[rid][0].faces
    ]
    return {
        "acknowledged": len(acked),
        "missing": len(acked - results.keys()),
        "identified": sum(1 for i in identities if i.matches),
        "typed": sum(1 for i in identities if i.error.code in TYPED),
        "identities": identities,
    }
