"""What every reliability scenario is made of: how much it does (`Size`: `FULL` for
`make reliability`, `SHORT` for `make test`), what it reports (`Target`s in a `Scenario`),
the images it sends, the system it runs against (`running_system`), and counting the
results that reached the other end.
"""

from __future__ import annotations

import tempfile
from collections.abc import Callable, Iterator, Sequence
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar

import cv2
import numpy as np

from apps.gallery_database import EmbeddedPostgres
from bench.system_under_test import SystemUnderTest
from facestream.v1 import records_pb2

# Emotion only: what is measured is delivery, typing and memory, which do not depend on
# which models run, and the three VGG models would make each scenario several times longer.
SCENARIO_ENV = {"FACESTREAM_ACTIONS": "emotion"}
TYPED_RESULT_STATUSES = {
    records_pb2.ANALYSIS_STATUS_OK,
    records_pb2.ANALYSIS_STATUS_NO_FACE,
    records_pb2.ANALYSIS_STATUS_INVALID_IMAGE,
    records_pb2.ANALYSIS_STATUS_FAILED,
}


T = TypeVar("T")


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
    tracked_frames: int  # frames of the composed video in the tracking kill scenario
    broker_budget_mib: int  # the embedded broker's budget in the broker-full scenario
    gallery_requests: int  # identified requests in the gallery outage scenario
    enrolments: int  # enrolment records in the enrolment kills scenario
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
    tracked_frames=50,
    broker_budget_mib=16,
    gallery_requests=200,
    enrolments=120,
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
    tracked_frames=30,
    broker_budget_mib=2,
    gallery_requests=40,
    enrolments=24,
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


# The system and what reached it


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


# Recognition's scenarios need the embedding model, and identify faces against a gallery in
# an embedded PostgreSQL of their own.
RECOGNITION_ENV = {"FACESTREAM_ACTIONS": "emotion,embedding"}


@contextmanager
def gallery_database() -> Iterator[EmbeddedPostgres]:
    """An embedded PostgreSQL in a fresh folder, stopped by pid on the way out."""
    with tempfile.TemporaryDirectory(prefix="facestream-galleries-") as folder:
        database = EmbeddedPostgres(Path(folder) / "postgres")
        database.start()
        try:
            yield database
        finally:
            database.stop()


def part_size(items: int, kills: int) -> int:
    """How many of `items` each part of `kill_between_parts` holds (the last may hold
    fewer)."""
    return -(-items // (kills + 1))


def kill_between_parts(
    system: SystemUnderTest,
    items: Sequence[T],
    kills: int,
    send: Callable[[Sequence[T]], set[str]],
    patience: float,
    **dataflow: Any,
) -> list[list[int]]:
    """Send `items` in `kills + 1` parts to a running dataflow; after each part but the last,
    wait until half of its requests (the ids `send` returns) are answered, SIGKILL the
    dataflow and start it again with `dataflow`'s arguments. The exit codes, kill by kill.

    Sending the next part only after a kill makes every kill land mid-stream, however fast
    the dataflow answers; the other half of a part may still be in flight.
    """
    size = part_size(len(items), kills)
    exit_codes = []
    for kill in range(kills + 1):
        sent = send(items[kill * size : (kill + 1) * size])
        if kill == kills:
            break
        system.read_results(
            lambda got, sent=sent: 2 * len(sent & got.keys()) >= len(sent), patience
        )
        exit_codes.append(system.kill_dataflow(index=kill % dataflow.get("processes", 1)))
        system.start_dataflow(**dataflow)
    return exit_codes


def init_recovery(folder: Path, partitions: int) -> Path:
    """A Bytewax recovery store of `partitions` partitions in `folder`."""
    from bytewax.recovery import init_db_dir

    folder.mkdir(parents=True, exist_ok=True)
    init_db_dir(folder, partitions)
    return folder


def count_results(
    results: dict[str, list[records_pb2.AnalysisResult]], ids: set[str]
) -> dict[str, int]:
    """Missing and duplicate results of `ids`."""
    return {
        "missing": len(ids - results.keys()),
        "duplicates": sum(len(results[i]) - 1 for i in ids & results.keys()),
    }
