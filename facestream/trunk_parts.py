"""The shared trunk (shared_trunk.py) converted for OpenVINO one DeepFace model at a time.

Building DeepFace's VGG models in one process, joining them and converting (in int8, also
quantizing) the whole peaked at 7.7 GB, and TensorFlow keeps what it allocated until its
process ends. Here each step runs in a child process of its own (worker_process.py), whose
memory returns when it ends, and holds one model's weights at most:

1. per model, a child builds it with DeepFace's own code, converts its head (the layers
   after the trunk, as `shared_trunk.head_model` makes them) and, for the first model, its
   trunk, and keeps them with its trunk's digest in the engine's cache as that model's
   part: the heads are joined only on equal trunks. A part already cached is not built
   again, so int8 after fp32, or another set of actions on the same trunk, converts only
   the models it has not seen;
2. in int8, one child quantizes the trunk on the calibration faces, then each head on the
   trunk's features of those faces, the statistics NNCF gathers on the joined model;
3. one child joins the trunk and the heads into one model, the shared trunk's conversion,
   in the engine's cache, where `OpenVINOEngine.load` (engines.py) finds it.
"""

from __future__ import annotations

import shutil
import tempfile
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol

import numpy as np

from facestream.model_source import ModelSource
from facestream.openvino_conversion import cache_entry, from_keras, save_fp32
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
        self, build: Callable[[], Any], role: str, weight_files: Sequence[Path], quantized: bool
    ) -> None: ...


TRUNK = "trunk"
HEAD = "head"
DIGEST = "trunk-digest"
# The parts' folder in the engine's cache: a model's part is read by every role that joins
# that model's head at that place.
PARTS = "parts"


def _head(index: int) -> str:
    return f"{HEAD}{index}"


def part_dir(engine: ConversionCache, index: int, source: ModelSource) -> Path:
    """Where the part of `source` as the `index`th head is cached (with the trunk, the first)."""
    key = engine.cache_key(f"{index}-{source.role}", source.weight_files)
    return engine.cache_dir / PARTS / key


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
    parts = [part_dir(engine, index, source) for index, source in enumerate(sources)]
    digests = {}
    for index, (source, part) in enumerate(zip(sources, parts, strict=True)):
        if not part.is_dir():
            with WorkerProcess(f"converting {source.role} for {role}") as child:
                child.call(convert_part, source, index, part, engine.dense_heads)
        digests[source.role] = (part / DIGEST).read_text()
    if len(sharing_group(digests)) != len(sources):
        differ.touch()
        for part in parts:  # never joined in this order: not worth their disk
            shutil.rmtree(part, ignore_errors=True)
        return False
    with tempfile.TemporaryDirectory(prefix=".int8-parts-", dir=engine.cache_dir) as scratch:
        int8 = Path(scratch) if engine.precision == "int8" else None
        if int8 is not None:
            with WorkerProcess(f"quantizing {role}") as child:
                child.call(quantize_parts, engine, sources[0], parts, int8)
        with WorkerProcess(f"joining {role}") as child:
            child.call(join_parts, engine, role, files, parts, int8)
    return True


def convert_part(source: ModelSource, index: int, part: Path, dense: bool) -> None:
    """In a child: build the model of `source`, convert its head (and, the first model, its
    trunk) into the cache entry `part`, with the digest of its trunk."""
    model = source.build()
    features = trunk_model(model)
    head = head_model(model, index, source.role, features.outputs[0].shape[1:], dense)
    with cache_entry(part) as staging:
        if index == 0:
            _save(from_keras(features), staging / TRUNK)
        _save(from_keras(head), staging / HEAD)
        (staging / DIGEST).write_text(trunk_digest(model))


def quantize_parts(
    engine: ConversionCache, first: ModelSource, parts: Sequence[Path], staging: Path
) -> None:
    """In a child: the trunk (in the first of `parts`) quantized on the calibration faces,
    each head on the fp32 trunk's features of those faces, into `staging`."""
    import openvino as ov

    assert engine.calibration is not None  # OpenVINOEngine refuses int8 without one
    faces = first.inputs_of(engine.calibration.model_inputs())
    core = ov.Core()
    trunk = core.read_model(parts[0] / f"{TRUNK}.xml")
    compiled = core.compile_model(trunk, "CPU", {"INFERENCE_PRECISION_HINT": "f32"})
    features = np.concatenate([compiled([face[None]])[0] for face in faces])
    del compiled
    _save(quantize(trunk, faces), staging / TRUNK)
    for index, part in enumerate(parts):
        head = core.read_model(part / f"{HEAD}.xml")
        _save(quantize(head, features), staging / _head(index))


def join_parts(
    engine: ConversionCache,
    role: str,
    files: Sequence[Path],
    parts: Sequence[Path],
    int8: Path | None,
) -> None:
    """In a child: the trunk and the heads of `parts` joined into one model (one output per
    head, in order), cached as `role`'s fp32 conversion of `files` and, when the int8 parts
    are in the folder `int8`, as its int8 one too."""
    heads = [part / f"{HEAD}.xml" for part in parts]
    engine.save_cached(
        lambda: joined_model(parts[0] / f"{TRUNK}.xml", heads), role, files, quantized=False
    )
    if int8 is not None:
        int8_heads = [int8 / f"{_head(index)}.xml" for index in range(len(parts))]
        engine.save_cached(
            lambda: joined_model(int8 / f"{TRUNK}.xml", int8_heads), role, files, quantized=True
        )


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


def _save(model: Any, path: Path) -> None:
    save_fp32(model, path.with_suffix(".xml"))
