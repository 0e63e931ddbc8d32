"""What every test directory shares (tests/ for the product, bench/tests for the
benchmarks): synthetic DeepFace weights (cached outside git), the model worker that tests
marked `model_process` run in with their analyzers (tests/model_process.py), and the
suite's memory bound (the plugin tests/memory_bound.py)."""

from __future__ import annotations

import inspect
import os
from collections.abc import Iterator
from pathlib import Path

import pytest

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
def model_worker(synthetic_home: Path) -> Iterator[ModelWorker]:
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
def analyzer_for() -> InWorker:
    """analyzer_for(engine, mode="exact", precision="auto", actions=None): the FaceAnalyzer on
    that engine with `actions` (None: the default four attributes). In model_process tests
    only: it is built in the module's worker (tests/model_process.py)."""
    return InWorker("analyzer_for")


@pytest.fixture(scope="session")
def analyzer() -> InWorker:
    """The default FaceAnalyzer (default engine, exact mode), in model_process tests only."""
    return InWorker("analyzer")
