"""The shared trunk converted for OpenVINO part by part, each step in a child process: the
same numbers as the joined Keras model, nothing joined on unequal trunks, int8 the same as
the joined model quantized in one piece. (An analyzer's first start on DeepFace's models:
tests/test_engines.py.)"""

from __future__ import annotations

from dataclasses import replace
from functools import partial
from pathlib import Path

import numpy as np
import openvino as ov

from facestream import trunk_parts
from facestream.engines import ModelSource, OpenVINOEngine, TensorFlowEngine, quantize
from facestream.shared_trunk import SharedTrunk
from facestream.trunk_parts import PARTS
from tests.test_engines import calibration_set, tiny_inputs
from tests.test_shared_trunk import tiny_vgg

# Two heads join as three do (the product has three: age, gender, race); each costs a child.
HEADS = 2


def not_built():
    raise AssertionError("built again although the conversion is cached")


def tiny_sources(tmp_path: Path, trunk_seeds: tuple[int, ...]) -> list[ModelSource]:
    """Tiny VGG models (one per seed, heads of their own), each with a file standing for its
    weights; sources that cross to a child process."""
    sources = []
    for index, seed in enumerate(trunk_seeds):
        weights = tmp_path / f"tiny-{index}-{seed}.h5"
        weights.write_bytes(f"weights {index} {seed}".encode())
        build = partial(tiny_vgg, 2 + index, trunk_seed=seed, head_seed=10 + index)
        sources.append(ModelSource(f"tiny{index}", (weights,), build, tiny_inputs))
    return sources


def files_of(sources: list[ModelSource]) -> tuple[Path, ...]:
    return tuple(path for source in sources for path in source.weight_files)


def joined_keras_numbers(sources: list[ModelSource], batch: np.ndarray) -> list[np.ndarray]:
    """The outputs of the Keras models of `sources` joined on the first one's trunk."""
    joined = SharedTrunk({source.role: source.build() for source in sources}, True).model
    return TensorFlowEngine().load(ModelSource("joined", (), lambda: joined))(batch)


def cached_only(sources: list[ModelSource]) -> list[ModelSource]:
    """`sources` that fail when built: their parts must come from the cache."""
    return [replace(source, build=not_built) for source in sources]


def test_the_trunk_converted_in_parts_gives_the_joined_keras_models_numbers(tmp_path):
    sources = tiny_sources(tmp_path, (0,) * (HEADS + 1))
    engine = OpenVINOEngine(tmp_path / "cache")
    engine.convert_ahead("shared-tiny", sources[:HEADS], [])
    # One head more on the same trunk: only the new model is built, the others' parts are
    # the cache's.
    more = [*cached_only(sources[:HEADS]), sources[HEADS]]
    engine.convert_ahead("shared-more", more, [])
    batch = np.random.default_rng(0).random((4, 8, 8, 3), dtype=np.float32)
    for role, heads in (("shared-tiny", HEADS), ("shared-more", HEADS + 1)):
        assert engine.has_cached(role, files_of(sources[:heads]))
        ours = engine.load(ModelSource(role, files_of(sources[:heads]), not_built))(batch)
        theirs = joined_keras_numbers(sources[:heads], batch)
        assert [rows.shape for rows in ours] == [(4, 2 + index) for index in range(heads)]
        for mine, keras in zip(ours, theirs, strict=True):
            np.testing.assert_allclose(mine, keras, rtol=0, atol=1e-6)
    # The cache holds the joined models and one part per model, nothing half written.
    assert names_in(tmp_path / "cache") == ["parts", "shared-more", "shared-tiny"]
    assert names_in(tmp_path / "cache" / PARTS) == [f"{i}-tiny{i}" for i in range(HEADS + 1)]


def names_in(folder: Path) -> list[str]:
    """The entries of an engine cache's `folder`, without their keys' digests."""
    return sorted(entry.name.rsplit("-", 1)[0] for entry in folder.iterdir())


def test_heads_on_unequal_trunks_are_not_joined_and_not_built_again(tmp_path, monkeypatch):
    sources = tiny_sources(tmp_path, (0, 1))
    engine = OpenVINOEngine(tmp_path / "cache")
    engine.convert_ahead("shared-tiny", sources, [])
    assert not engine.has_cached("shared-tiny", files_of(sources))
    # Neither a joined model nor the parts, which no role of these models joins.
    assert [p.name for p in (tmp_path / "cache").iterdir() if not p.name.startswith(".")] == [PARTS]
    assert list((tmp_path / "cache" / PARTS).iterdir()) == []

    def no_child(name):
        raise AssertionError(f"{name}: the models were built again to compare their trunks")

    monkeypatch.setattr(trunk_parts, "WorkerProcess", no_child)
    engine.convert_ahead("shared-tiny", sources, [])
    assert not engine.has_cached("shared-tiny", files_of(sources))


def weights_are_int8(node) -> bool:
    """Whether the value of `node` is an int8 constant's (through its decompression)."""
    while node.get_type_name() != "Constant":
        node = node.input_value(0).get_node()
    return node.get_element_type() in (ov.Type.u8, ov.Type.i8)


def test_int8_parts_are_quantized_as_the_joined_model_is(tmp_path):
    sources = tiny_sources(tmp_path, (0,) * HEADS)
    calibration = calibration_set(tmp_path / "calibration", seed=0)
    fp32 = OpenVINOEngine(tmp_path / "cache")
    fp32.convert_ahead("shared-tiny", sources, [])
    int8 = OpenVINOEngine(tmp_path / "cache", "int8", calibration=calibration)
    # After fp32, int8 quantizes the cached parts: no model is built again for them.
    int8.convert_ahead("shared-tiny", cached_only(sources), [sources[0]])
    assert int8.has_cached("shared-tiny", files_of(sources))
    assert int8.has_cached("tiny0", sources[0].weight_files)  # a model alone, converted too
    assert fp32.has_cached("shared-tiny", files_of(sources))  # the fp32 conversion is kept
    [quantized] = (tmp_path / "cache").glob("shared-tiny-*-int8-*/model.xml")
    ops = ov.Core().read_model(quantized).get_ops()
    # The trunk in int8 (its inputs quantized), each head's matrix products with int8
    # weights only (facestream/quantization.py).
    assert sum(op.get_type_name() == "FakeQuantize" for op in ops) >= 1
    products = [op for op in ops if op.get_type_name() == "MatMul"]
    assert len(products) >= HEADS
    assert all(weights_are_int8(product.input_value(1).get_node()) for product in products)
    # NNCF's statistics of each part are those it gathers on the joined model: the same
    # int8 model as quantizing the joined one in one piece.
    joined = SharedTrunk({source.role: source.build() for source in sources}, True).model
    whole = quantize(
        ov.convert_model(joined, input=[ov.PartialShape([-1, 8, 8, 3])]),
        tiny_inputs(calibration.model_inputs()),
    )
    batch = np.random.default_rng(1).random((4, 8, 8, 3), dtype=np.float32)
    expected = ov.Core().compile_model(whole, "CPU", {"INFERENCE_PRECISION_HINT": "f32"})(batch)
    ours = int8.load(ModelSource("shared-tiny", files_of(sources), not_built))(batch)
    for index, rows in enumerate(ours):
        np.testing.assert_allclose(rows, expected[index].reshape(rows.shape), rtol=0, atol=1e-6)
