"""Tests that load DeepFace's models run in a process of their own, one per test module,
which exits when the module is done: the models' gigabytes are returned to the machine, and
the pytest process stays small (tests/memory_bound.py holds it to its bound).

A test marked `model_process` is called in its module's worker (apps.processes.WorkerProcess)
with its fixture values, which cross by pickle. Three fixtures exist only in the worker:
`analyzer` and `analyzer_for` (analyzers built there, one alive at a time) and
`monkeypatch` (a fresh one, undone after the test); in the pytest process their values are
stand-ins that refuse to be used. A test that needs models only for an oracle (DeepFace's
own answers, say) calls it in a `WorkerProcess` of its own, in a module fixture when the
module's tests share its answers.
"""

from __future__ import annotations

import ctypes
import gc
import importlib
from collections import OrderedDict
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from apps.processes import memory_mb
from facestream.models import ACTIONS, DEFAULT_SEED, ensure_synthetic_weights, weights_dir_of
from facestream.worker_process import WorkerProcess

# Analyzers alive in a worker at once: each holds 1-3 GB, and more while it is built. A test
# comparing two holds handles: the one not in use is built again when next used.
KEPT_ANALYZERS = 1
# After a test, the worker and its analyzer stay for the module's next test unless the worker
# holds more than this: an analyzer holds 2-3 GB, and what is left beyond is not given back
# (TensorFlow keeps what Keras models built and dropped took), so the worker is replaced.
KEEP_BELOW_MB = 3.5 * 1024
WORKER_ONLY = ("analyzer", "analyzer_for", "monkeypatch")


class InWorker:
    """The pytest process's stand-in for a fixture that exists only in the model worker."""

    def __init__(self, name: str) -> None:
        self.name = name

    def __call__(self, *args: object, **kwargs: object) -> None:
        raise RuntimeError(f"the {self.name} fixture exists only in tests marked model_process")

    def __getattr__(self, attribute: str) -> None:
        raise RuntimeError(f"the {self.name} fixture exists only in tests marked model_process")

    def __reduce__(self) -> tuple[type, tuple[str]]:
        return InWorker, (self.name,)


# In the worker: the analyzers built so far, least recently used first.
_analyzers: OrderedDict[tuple[Any, ...], Any] = OrderedDict()


def free_memory() -> None:
    """Forget the models DeepFace cached (the analyzers alive keep theirs) and give the freed
    memory back to the machine."""
    from deepface.modules import modeling

    for models in getattr(modeling, "cached_models", {}).values():
        models.clear()
    gc.collect()
    ctypes.CDLL("libc.so.6").malloc_trim(0)


def _live(key: tuple[Any, ...]) -> Any:
    """The analyzer of `key` (home, engine, mode, precision, actions), built if it is not
    alive; the least recently used one is let go first."""
    from di import Settings, build_container
    from facestream.analyzer import FaceAnalyzer

    if key in _analyzers:
        _analyzers.move_to_end(key)
        return _analyzers[key]
    while len(_analyzers) >= KEPT_ANALYZERS:
        _analyzers.popitem(last=False)
        free_memory()
    home, engine, mode, precision, actions = key
    settings = Settings.from_env(
        {
            "DEEPFACE_HOME": home,
            "FACESTREAM_ENGINE": engine,
            "FACESTREAM_MODE": mode,
            "FACESTREAM_PRECISION": precision,
            **({"FACESTREAM_ACTIONS": ",".join(actions)} if actions else {}),
        }
    )
    _analyzers[key] = build_container(settings)[FaceAnalyzer]
    return _analyzers[key]


class AnalyzerHandle:
    """A FaceAnalyzer by its settings: each use reaches the live one, built again if it was
    let go for another."""

    def __init__(self, key: tuple[Any, ...]) -> None:
        self._key = key

    def __getattr__(self, name: str) -> Any:
        return getattr(_live(self._key), name)


def analyzer_for(home: Path) -> Callable[..., AnalyzerHandle]:
    """In the worker: analyzer_for(engine, mode="exact", precision="auto", actions=None), the
    FaceAnalyzer on that engine with `actions` (None: the default four attributes), built
    through the container."""

    def get(
        engine: str, mode: str = "exact", precision: str = "auto", actions: Any = None
    ) -> AnalyzerHandle:
        handle = AnalyzerHandle((str(home), engine, mode, precision, tuple(actions or ())))
        handle.actions  # noqa: B018  built now, as a fixture's analyzer is
        return handle

    return get


# The analyzers the tests and their dataflows use most, converted (and quantized) once per
# session: (engine, mode, precision, actions). bf16 compiles the fp32 conversion.
PREPARED = (
    ("openvino", "exact", "auto", ()),
    ("openvino", "fast", "auto", ()),
    ("openvino", "exact", "auto", ACTIONS),
)


def prepare_models(home: Path) -> None:
    """Once per session: synthetic weights for every action, and the OpenVINO conversions of
    PREPARED in the engine cache, so that no later process pays a first start's peak
    (DeepFace's Keras models built to be converted, int8's quantization) beside its own
    work. Each step in a worker of its own, which exits with what the step took."""
    with WorkerProcess("synthetic-weights") as worker:
        worker.call(ensure_synthetic_weights, weights_dir_of(home), ACTIONS, DEFAULT_SEED)
    for key in PREPARED:
        with WorkerProcess("engine-cache") as worker:
            worker.call(_build, (str(home), *key))


def _build(key: tuple[Any, ...]) -> None:
    _live(key)


def run_test(module: str, name: str, arguments: dict[str, Any], home: str) -> tuple[str, str]:
    """In the worker: the test function `name` of `module` called with `arguments`, the
    worker-only fixtures made here. pytest's own outcomes (skip, xfail, fail) do not cross
    by pickle: they come back as (kind, message), for `outcome` to raise again; ("passed", "")
    when the function returned."""
    from di import Settings

    function = getattr(importlib.import_module(module), name)
    if not {"analyzer", "analyzer_for"} & arguments.keys():
        # A test of its own processes or weights: the module's analyzer would only sit
        # beside what it builds.
        _analyzers.clear()
        free_memory()
    patch = pytest.MonkeyPatch()
    get = analyzer_for(Path(home))
    made = {
        "analyzer_for": lambda: get,
        "analyzer": lambda: get(Settings.from_env({}).analysis.engine),
        "monkeypatch": lambda: patch,
    }
    try:
        function(
            **{
                key: made[value.name]() if isinstance(value, InWorker) else value
                for key, value in arguments.items()
            }
        )
    except pytest.skip.Exception as skipped:
        return "skip", skipped.msg or ""
    except pytest.xfail.Exception as expected:
        return "xfail", expected.msg or ""
    except pytest.fail.Exception as failed:
        return "fail", failed.msg or ""
    finally:
        patch.undo()
        free_memory()
    return "passed", ""


class ModelWorker:
    """A module's model worker, seen from the pytest process: each test runs in it, and a
    test that leaves more than KEEP_BELOW_MB in it ends it; the next test starts a new one."""

    def __init__(self) -> None:
        self._worker: WorkerProcess | None = None

    def run(self, module: str, name: str, arguments: dict[str, Any], home: str) -> None:
        """The test `name` of `module` in the worker, its outcome raised here."""
        if self._worker is None:
            self._worker = WorkerProcess("model-worker")
        kind, message = self._worker.call(run_test, module, name, arguments, home)
        if memory_mb(self._worker.pid) > KEEP_BELOW_MB:
            self.close()
        outcome(kind, message)

    def close(self) -> None:
        if self._worker is not None:
            self._worker.close()
            self._worker = None


def outcome(kind: str, message: str) -> None:
    """Raise again, in the pytest process, the outcome `run_test` brought back."""
    raising = {"skip": pytest.skip, "xfail": pytest.xfail, "fail": pytest.fail}
    if kind in raising:
        raising[kind](message)


def stand_in(value: object, name: str) -> object:
    """The value a fixture passes to the worker: worker-only ones by name."""
    if name in WORKER_ONLY or isinstance(value, pytest.MonkeyPatch):
        return InWorker(name)
    return value
