"""Fixtures only: synthetic DeepFace weights (cached outside git), the embedded broker,
the test photos, fresh topics, and the model worker of tests marked `model_process` with
their analyzers (tests/model_process.py). Helpers live in modules of their own
(tests/commands.py, pipeline.py, grpc_helpers.py, photos.py, images.py); the suite's memory
bound is the plugin tests/memory_bound.py."""

from __future__ import annotations

import inspect
import os
from collections.abc import Iterator
from pathlib import Path

import pytest

from apps.broker import EmbeddedBroker, free_port
from bench.system_under_test import SHARED_FACES
from tests.commands import SYNTHETIC_HOME
from tests.model_process import InWorker, ModelWorker, prepare_models, stand_in

pytest_plugins = ["tests.memory_bound"]

# DeepFace reads DEEPFACE_HOME when it loads weights; point it at the synthetic cache
# before anything imports DeepFace, so no test can reach for a download.
os.environ["DEEPFACE_HOME"] = str(SYNTHETIC_HOME)
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")


@pytest.fixture(scope="session")
def synthetic_home() -> Path:
    """DEEPFACE_HOME holding synthetic weights for every action (generated if missing), with
    the engine conversions the tests use most in the engine cache; each made in a process of
    its own, which exits with the gigabytes that takes (tests/model_process.py)."""
    prepare_models(SYNTHETIC_HOME)
    return SYNTHETIC_HOME


@pytest.fixture(scope="module")
def model_worker(synthetic_home) -> Iterator[ModelWorker]:
    """The process this module's model tests run in; it exits, models and all, after the
    module, or after a test that left it holding more than an analyzer
    (tests/model_process.py)."""
    worker = ModelWorker()
    try:
        yield worker
    finally:
        worker.close()


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    for item in items:
        if item.get_closest_marker("model_process") and isinstance(item, pytest.Function):
            item.fixturenames.extend(["synthetic_home", "model_worker"])


@pytest.hookimpl(tryfirst=True)
def pytest_pyfunc_call(pyfuncitem: pytest.Function) -> bool | None:
    """Call a `model_process` test in its module's model worker."""
    if pyfuncitem.get_closest_marker("model_process") is None:
        return None
    parameters = inspect.signature(pyfuncitem.obj).parameters
    arguments = {name: stand_in(pyfuncitem.funcargs[name], name) for name in parameters}
    pyfuncitem.funcargs["model_worker"].run(
        pyfuncitem.module.__name__,
        pyfuncitem.originalname,
        arguments,
        str(pyfuncitem.funcargs["synthetic_home"]),
    )
    return True


@pytest.fixture(scope="session")
def public_photos(tmp_path_factory) -> Path:
    """The repository's own test photos (tests/photos.py), written once per session."""
    from tests.photos import write_public_photos

    folder = tmp_path_factory.mktemp("public-photos")
    write_public_photos(folder)
    return folder


@pytest.fixture(scope="session")
def test_photos(public_photos) -> list[Path]:
    """Every test photo: the public set, and the optional shared photos when they are
    beside the repository."""
    folders = [public_photos, *([SHARED_FACES] if SHARED_FACES.is_dir() else [])]
    return [
        path
        for folder in folders
        for path in sorted(folder.rglob("*.*"))
        if path.suffix.lower() != ".md"
    ]


@pytest.fixture(scope="session")
def embedded_broker() -> Iterator[EmbeddedBroker]:
    """One embedded broker for the session, on a free loopback port; stopped by pid."""
    broker = EmbeddedBroker(free_port())
    broker.start()
    try:
        yield broker
    finally:
        broker.stop()


@pytest.fixture
def topics(embedded_broker):
    """A fresh set of facestream topics on the session's broker (tests.pipeline.Topics)."""
    from tests.pipeline import Topics  # it imports this module: not at the top

    return Topics(embedded_broker.bootstrap)


@pytest.fixture(scope="session")
def analyzer_for() -> InWorker:
    """analyzer_for(engine, mode="exact", precision="auto", actions=None): the FaceAnalyzer on
    that engine with `actions` (None: the default four attributes). In model_process tests
    only: it is built in the module's worker (tests/model_process.py)."""
    return InWorker("analyzer_for")


@pytest.fixture(scope="session")
def analyzer() -> InWorker:
    """The default FaceAnalyzer (default engine, exact mode), in model_process tests only."""
    return InWorker("analyzer")


@pytest.fixture
def auth_file(tmp_path):
    """A credentials file naming the principals of tests.credentials."""
    from tests.credentials import credentials_file

    return credentials_file(tmp_path / "credentials.toml")


@pytest.fixture
def secured_server(topics, auth_file):
    """A serving server that reads `auth_file`, with a stand-in dataflow answering every
    request."""
    from tests.credentials import serving_with_credentials

    with serving_with_credentials(topics, auth_file) as running:
        yield running
