"""The shared trunk (shared_trunk.py) converted for OpenVINO one DeepFace model at a time.

Building DeepFace's VGG models in one process, joining them and converting (in int8, also
quantizing) the whole peaked at 7.7 GB, and TensorFlow keeps what it allocated until its
process ends. Here each step runs in a child process of its own (worker_process.py), whose
memory returns when it ends, and holds one model's weights at most:

1. per model, a child builds it with DeepFace's own code, converts its head (the layers
   after the trunk, as `shared_trunk.head_model` makes them) and, for the first model, its
   trunk, and returns its trunk's digest: the heads are joined only on equal trunks;
2. in int8, one child quantizes the trunk on the calibration faces, then each head on the
   trunk's features of those faces, the statistics NNCF gathers on the joined model;
3. one child joins the trunk and the heads into one model, the shared trunk's conversion,
   in the engine's cache, where `OpenVINOEngine.load` (engines.py) finds it.
"""

from __future__ import annotations

import shutil
import tempfile
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol

import numpy as np

from facestream.model_source import ModelSource
from facestream.openvino_conversion import from_keras, save_fp32
from facestream.quantization import quantize
from facestream.shared_trunk import head_model, sharing_group, trunk_digest, trunk_model
from facestream.worker_process import WorkerProcess

if TYPE_CHECKING:
    from facestream.calibration import CalibrationSet


class ConversionCache(Protocol):
    """What the conversion needs of its engine (engines.OpenVINOEngine): where its cache is,
    how it names and keeps a conversion there, and what it computes in."""

    cache_dir: Path
    precision: str
    calibration: CalibrationSet | None
    dense_heads: bool

    def cache_key(self, role: str, weight_files: Sequence[Path]) -> str: ...

    def save_cached(
        self, model: Any, role: str, weight_files: Sequence[Path], quantized: bool
    ) -> None: ...


TRUNK = "trunk"
FEATURES = "features.npy"


def _head(index: int) -> str:
    return f"head{index}"


def convert_shared_trunk(
    engine: ConversionCache, role: str, sources: Sequence[ModelSource], files: Sequence[Path]
) -> bool:
    """Convert the heads of `sources` on the first one's trunk, as `role` of their weight
    `files`, into `engine`'s cache (fp32, and int8 when the engine computes in it), a child
    process per step. False, and no model cached, when their trunks are not all equal (then
    the analyzer finds the models that share in process); that is kept in the cache too, so
    that later starts do not build the models again to learn it."""
    differ = engine.cache_dir / f".{engine.cache_key(role, files)}-trunks-differ"
    if differ.exists():
        return False
    engine.cache_dir.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=".parts-", dir=engine.cache_dir))
    try:
        digests = {}
        for index, source in enumerate(sources):
            with WorkerProcess(f"converting {source.role} for {role}") as child:
                digests[source.role] = child.call(
                    convert_part, source, index, staging, engine.dense_heads
                )
        if len(sharing_group(digests)) != len(sources):
            differ.touch()
            return False
        int8 = engine.precision == "int8"
        if int8:
            with WorkerProcess(f"quantizing {role}") as child:
                child.call(quantize_parts, engine, sources[0], len(sources), staging)
        with WorkerProcess(f"joining {role}") as child:
            child.call(join_parts, engine, role, files, len(sources), staging, int8)
        return True
    finally:
        shutil.rmtree(staging, ignore_errors=True)


def convert_part(source: ModelSource, index: int, staging: Path, dense: bool) -> str:
    """In a child: build the model of `source`, convert its head (and, the first model, its
    trunk) into `staging`; the digest of its trunk."""
    model = source.build()
    features = trunk_model(model)
    if index == 0:
        _save(from_keras(features), staging, TRUNK)
    head = head_model(model, index, source.role, features.outputs[0].shape[1:], dense)
    _save(from_keras(head), staging, _head(index))
    return trunk_digest(model)


def quantize_parts(engine: ConversionCache, first: ModelSource, heads: int, staging: Path) -> None:
    """In a child: the trunk quantized on the calibration faces, each head on the fp32
    trunk's features of those faces, into `staging`."""
    import openvino as ov

    assert engine.calibration is not None  # OpenVINOEngine refuses int8 without one
    faces = first.inputs_of(engine.calibration.model_inputs())
    core = ov.Core()
    trunk = core.read_model(staging / f"{TRUNK}.xml")
    compiled = core.compile_model(trunk, "CPU", {"INFERENCE_PRECISION_HINT": "f32"})
    features = np.concatenate([compiled([face[None]])[0] for face in faces])
    del compiled
    _save(quantize(trunk, faces), staging, f"{TRUNK}-int8")
    for index in range(heads):
        head = core.read_model(staging / f"{_head(index)}.xml")
        _save(quantize(head, features), staging, f"{_head(index)}-int8")


def join_parts(
    engine: ConversionCache,
    role: str,
    files: Sequence[Path],
    heads: int,
    staging: Path,
    int8: bool,
) -> None:
    """In a child: the trunk and the `heads` heads in `staging` joined into one model (one
    output per head, in order), cached as `role`'s fp32 conversion of `files` and, with
    `int8`, as its int8 one too."""
    for quantized in (False, True) if int8 else (False,):
        suffix = "-int8" if quantized else ""
        joined = joined_model(
            staging / f"{TRUNK}{suffix}.xml",
            [staging / f"{_head(index)}{suffix}.xml" for index in range(heads)],
        )
        engine.save_cached(joined, role, files, quantized)


def joined_model(trunk_file: Path, head_files: Sequence[Path]) -> Any:
    """One OpenVINO model: the trunk's output fed to every head (each read from its file,
    its input the trunk's features), the heads' outputs in order."""
    import openvino as ov

    core = ov.Core()
    trunk = core.read_model(trunk_file)
    [trunk_result] = trunk.get_results()
    features = trunk_result.input_value(0)
    results = []
    for path in head_files:
        head = core.read_model(path)
        [parameter] = head.get_parameters()
        for target in parameter.output(0).get_target_inputs():
            target.replace_source_output(features)
        results.extend(head.get_results())
    return ov.Model(results, trunk.get_parameters(), "shared_vgg_face_trunk")


def _save(model: Any, staging: Path, name: str) -> None:
    save_fp32(model, staging / f"{name}.xml")
