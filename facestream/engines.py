"""Engines: what runs the forward passes of the loaded Keras models.

DeepFace builds and loads its models as Keras models; an engine turns a `ModelSource` (what
the model is, its weight files, and how to build it) into a `Forward`, a callable from a
batch of model inputs to the model's outputs. The analyzer depends on the `Engine` protocol
only; which engine runs is bound at the composition root (di/container.py) from
FACESTREAM_ENGINE and FACESTREAM_PRECISION.

- `TensorFlowEngine`: the Keras model itself, called the way DeepFace calls it.
- `OpenVINOEngine`: the Keras model converted by `openvino.convert_model` (no other weight
  files), fp32 or bf16. Conversions take seconds and are cached on disk, keyed by the weight
  files' hashes, the model's role and the versions that shape a conversion; with the
  conversion cached, the Keras model is not even built. int8 is the fp32 conversion
  quantized by NNCF's post-training quantization, calibrated on a set of face crops
  (facestream/calibration.py), and cached too, keyed by the set's digest as well. An
  analyzer has its models converted ahead (`convert_ahead`) in child processes, one model
  at a time (the shared trunk part by part: trunk_parts.py), so that its own process never
  holds a Keras model or TensorFlow.
"""

from __future__ import annotations

import functools
import hashlib
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, ClassVar, Protocol

import numpy as np

from facestream.mapped_pages import releasing_mapped_pages
from facestream.model_source import ModelSource
from facestream.openvino_conversion import cache_entry, from_keras, save_fp32
from facestream.quantization import QUANTIZATION_LAYOUT, quantize
from facestream.worker_process import WorkerProcess

if TYPE_CHECKING:
    from facestream.calibration import CalibrationSet

ENGINES: tuple[str, ...] = ("openvino", "tensorflow")
PRECISIONS: tuple[str, ...] = ("fp32", "bf16", "int8")

# A batch of model inputs -> the model's outputs, one (n, ...) array per output.
Forward = Callable[[np.ndarray], list[np.ndarray]]


class EngineError(RuntimeError):
    """The configured engine cannot run here (e.g. bf16 on a CPU without bf16)."""


# Bumped when facestream changes how it composes a model it converts (shared_trunk.py):
# conversions cached by an older layout are not read. 2: heads as matrix products.
CONVERSION_LAYOUT = 2


class Engine(Protocol):
    """Turns models into forward passes."""

    name: str
    precision: str
    # True: the shared trunk's heads are built as matrix products (shared_trunk.apply_head),
    # faster here, equal to DeepFace's numbers within the fp32 contract but not to the bit.
    dense_heads: bool

    def load(self, source: ModelSource) -> Forward:
        """A forward pass of the model `source` describes."""
        ...

    def has_cached(self, role: str, weight_files: Sequence[Path]) -> bool:
        """True when this model can be loaded without building it as a Keras model."""
        ...

    def convert_ahead(
        self, shared_role: str, shared: Sequence[ModelSource], alone: Sequence[ModelSource]
    ) -> None:
        """Convert, before they are loaded, the models the cache lacks: the heads of
        `shared` on the first one's trunk (as `shared_role`, when their trunks are equal)
        and each of `alone`, each in a child process of its own. Their sources must cross
        to a child by pickle (module-level functions and plain data)."""
        ...


def _output_list(outputs: Any, rows: int) -> list[np.ndarray]:
    if not isinstance(outputs, list | tuple):
        outputs = [outputs]
    # One row per face, whatever the model does with a batch of one.
    return [np.asarray(output).reshape(rows, -1) for output in outputs]


class TensorFlowEngine:
    """The Keras models as DeepFace runs them: eagerly for one face, `predict_on_batch` for
    several. The two paths can differ in the last bits on some CPUs (the traced graph fuses
    operations), so each size takes DeepFace's own path and results are DeepFace's to the bit.
    """

    name = "tensorflow"
    precision = "fp32"
    dense_heads = False  # DeepFace's own layers, to the bit

    def has_cached(self, role: str, weight_files: Sequence[Path]) -> bool:
        return False

    def convert_ahead(
        self, shared_role: str, shared: Sequence[ModelSource], alone: Sequence[ModelSource]
    ) -> None:
        """Nothing to convert: TensorFlow runs the Keras models themselves."""

    def load(self, source: ModelSource) -> Forward:
        model = source.build()

        def forward(batch: np.ndarray) -> list[np.ndarray]:
            outputs = (
                model(batch, training=False) if len(batch) == 1 else model.predict_on_batch(batch)
            )
            return _output_list(outputs, len(batch))

        return forward


def cpu_supports_bf16() -> bool:
    """True when OpenVINO's CPU plugin can compute in bf16 here (AVX-512 BF16 or AMX)."""
    import openvino as ov

    return "BF16" in ov.Core().get_property("CPU", "OPTIMIZATION_CAPABILITIES")


def _file_digest(path: Path) -> str:
    stat = path.stat()
    return _digest_of(path.resolve(), stat.st_size, stat.st_mtime_ns)


@functools.cache
def _digest_of(path: Path, size: int, mtime_ns: int) -> str:
    # Keyed by size and modification time too: a replaced file is hashed again.
    with path.open("rb") as file:
        return hashlib.file_digest(file, "sha256").hexdigest()


@dataclass(frozen=True)
class OpenVINOEngine:
    """Keras models converted to OpenVINO and compiled for the CPU.

    fp32 keeps DeepFace's results (outputs within ~1e-6 of TensorFlow's); bf16 trades a
    bounded deviation (docs/performance.md) for about twice the speed where the CPU has bf16
    arithmetic, and is refused at start-up where it has not.
    """

    cache_dir: Path
    precision: str = "fp32"
    threads: int = 0  # 0: every core this process may use
    calibration: CalibrationSet | None = None  # int8's
    name: str = "openvino"
    dense_heads: ClassVar[bool] = True

    def __post_init__(self) -> None:
        if self.precision not in PRECISIONS:
            raise EngineError(f"unknown precision {self.precision!r}: expected one of {PRECISIONS}")
        if self.precision == "int8" and (self.calibration is None or not self.calibration.exists()):
            raise EngineError(
                "FACESTREAM_PRECISION=int8 needs a calibration set of face crops: build it "
                "with `facestream models calibrate DIR`"
            )
        if self.precision == "bf16" and not cpu_supports_bf16():
            raise EngineError(
                "FACESTREAM_PRECISION=bf16 needs a CPU with bf16 arithmetic (AVX-512 BF16 or "
                "AMX), and this one has none: use FACESTREAM_PRECISION=fp32."
            )

    def cache_key(self, role: str, weight_files: Sequence[Path]) -> str:
        """The conversion's cache key: the role, the weights' SHA-256 and the versions that
        shape a conversion (OpenVINO, DeepFace's model code, facestream's layout)."""
        import deepface
        import openvino as ov

        digest = hashlib.sha256(
            f"{ov.__version__}|{deepface.__version__}|{CONVERSION_LAYOUT}".encode()
        )
        for path in weight_files:
            digest.update(_file_digest(path).encode())
        return f"{role}-{digest.hexdigest()[:24]}"

    def _cached(self, role: str, weight_files: Sequence[Path], quantized: bool = False) -> Path:
        key = self.cache_key(role, weight_files)
        if quantized:
            assert self.calibration is not None  # __post_init__ refuses int8 without one
            key += f"-int8-q{QUANTIZATION_LAYOUT}-{self.calibration.digest}"
        return self.cache_dir / key / "model.xml"

    def has_cached(self, role: str, weight_files: Sequence[Path]) -> bool:
        return self._cached(role, weight_files, self.precision == "int8").is_file()

    def convert_ahead(
        self, shared_role: str, shared: Sequence[ModelSource], alone: Sequence[ModelSource]
    ) -> None:
        """Each conversion the cache lacks, in child processes: TensorFlow keeps what it
        allocated until its process ends, and converting in this one left GBs here for
        as long as it ran (docs/performance.md, cameras per machine)."""
        from facestream import trunk_parts

        files = tuple(path for source in shared for path in source.weight_files)
        if len(shared) > 1 and not self.has_cached(shared_role, files):
            trunk_parts.convert_shared_trunk(self, shared_role, shared, files)
        for source in alone:
            if not self.has_cached(source.role, source.weight_files):
                with WorkerProcess(f"converting {source.role}") as child:
                    child.call(_prepare, self, source)

    def save_cached(
        self, build: Callable[[], Any], role: str, weight_files: Sequence[Path], quantized: bool
    ) -> None:
        """Keep the model `build` gives in the cache as the conversion (`quantized`: int8's)
        of `role`, unless the cache holds it already (then it is not built)."""
        path = self._cached(role, weight_files, quantized)
        if not path.is_file():
            self._save(build(), path)

    def _save(self, model: Any, path: Path) -> None:
        with cache_entry(path.parent) as staging:
            save_fp32(model, staging / path.name)

    def quantized(self, source: ModelSource) -> Any:
        """The model quantized to int8 on the calibration set, from the cache when done."""
        import openvino as ov

        assert self.calibration is not None  # __post_init__ refuses int8 without one
        path = self._cached(source.role, source.weight_files, quantized=True)
        if path.is_file():
            return ov.Core().read_model(path)
        model = quantize(self.convert(source), source.inputs_of(self.calibration.model_inputs()))
        self._save(model, path)
        del model  # compiled from the file, as every later start does: its weights are mapped
        return ov.Core().read_model(path)

    def convert(self, source: ModelSource) -> Any:
        """The model as an OpenVINO model, from the cache when this conversion was done."""
        import openvino as ov

        path = self._cached(source.role, source.weight_files)
        if path.is_file():
            return ov.Core().read_model(path)
        model = source.build()
        converted = from_keras(model)
        self._save(converted, path)
        # Compiled from the saved file, as every later start does: its weights are then
        # mapped from the file instead of held twice in memory beside DeepFace's models.
        del converted, model
        return ov.Core().read_model(path)

    def prepare(self, source: ModelSource) -> Any:
        """The model at this engine's precision as OpenVINO reads it, converted (and
        quantized) first when the cache lacks it."""
        return self.quantized(source) if self.precision == "int8" else self.convert(source)

    def load(self, source: ModelSource) -> Forward:
        import openvino as ov

        # int8: the layers NNCF left in floating point stay in fp32.
        config = {"INFERENCE_PRECISION_HINT": "bf16" if self.precision == "bf16" else "f32"}
        if self.threads:
            # A process given a share of the cores: pinned, every process's threads would
            # take the same first cores (docs/operations.md).
            config |= {"INFERENCE_NUM_THREADS": self.threads, "ENABLE_CPU_PINNING": False}
        int8 = self.precision == "int8"
        model = self.prepare(source)
        weights = self._cached(source.role, source.weight_files, int8).with_suffix(".bin")
        # The plugin repacks the mapped weights at the first inference, then computes from
        # its own copy: the mapped pages are let go meanwhile (facestream/mapped_pages.py).
        with releasing_mapped_pages(weights):
            compiled = ov.Core().compile_model(model, "CPU", config)
            del model
            _run_once(compiled)

        def forward(batch: np.ndarray) -> list[np.ndarray]:
            # One infer request per call: a request is not safe to share between the
            # worker threads of a process, the compiled model is.
            outputs = compiled.create_infer_request().infer([batch])
            return _output_list(list(outputs.values()), len(batch))

        return forward


def _prepare(engine: OpenVINOEngine, source: ModelSource) -> None:
    """`engine.prepare(source)` in a child process: the conversion into the cache."""
    engine.prepare(source)


def _run_once(compiled: Any) -> None:
    """One inference of a compiled model on zeros, one row (a dynamic batch taken as 1)."""
    inputs = [
        np.zeros(
            [1 if dim.is_dynamic else dim.get_length() for dim in port.get_partial_shape()]
        ).astype(np.float32)
        for port in compiled.inputs
    ]
    compiled.create_infer_request().infer(inputs)


def resolve_precision(requested: str, engine: str, mode: str) -> str:
    """FACESTREAM_PRECISION with "auto" resolved: in fast mode on OpenVINO int8, the fastest
    on every CPU measured (docs/performance.md); fp32 otherwise (exact mode promises
    DeepFace's results). The composition root falls back to `float_precision` when int8
    has no calibration set."""
    if requested != "auto":
        return requested
    if mode == "fast" and engine == "openvino":
        return "int8"
    return "fp32"


def float_precision(engine: str, mode: str) -> str:
    """auto's choice without int8: bf16 in fast mode on OpenVINO where the CPU has it, fp32
    otherwise."""
    if mode == "fast" and engine == "openvino" and cpu_supports_bf16():
        return "bf16"
    return "fp32"


def check_precision(engine: str, precision: str) -> None:
    """EngineError when `engine` cannot compute in `precision` ("auto" always can)."""
    if engine == "tensorflow" and precision not in ("auto", "fp32"):
        raise EngineError(
            f"FACESTREAM_PRECISION={precision} needs FACESTREAM_ENGINE=openvino: the "
            "TensorFlow engine computes in fp32 only."
        )


def make_engine(
    name: str,
    precision: str,
    cache_dir: Path,
    threads: int = 0,
    calibration: CalibrationSet | None = None,
) -> Engine:
    """The engine `name` at `precision` on `threads` threads (0: every core this process may
    use; TensorFlow takes its own), int8 calibrated on `calibration`; EngineError when it
    cannot run here."""
    check_precision(name, precision)
    if name == "tensorflow":
        return TensorFlowEngine()
    if name == "openvino":
        return OpenVINOEngine(cache_dir, precision, threads, calibration)
    raise EngineError(f"unknown engine {name!r}: expected one of {ENGINES}")
