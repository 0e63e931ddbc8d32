"""One VGG-Face trunk for age, gender and race: shared only when the weights are equal,
and then giving the same numbers as DeepFace's models one by one: to the bit on the
TensorFlow engine, within the fp32 contract on OpenVINO."""

from __future__ import annotations

import numpy as np
import pytest

from facestream.analyzer import deepface_model
from facestream.engines import ENGINES, ModelSource, OpenVINOEngine, TensorFlowEngine
from facestream.shared_trunk import SharedTrunk, split_trunk, trunk_digest


def tiny_vgg(classes: int, trunk_seed: int, head_seed: int):
    """A VGG-shaped Keras model small enough for a unit test: conv, pool, conv head."""
    from deepface import DeepFace  # noqa: F401  (tf-keras mode, as DeepFace's own models)
    from tensorflow.keras.layers import Activation, Conv2D, Flatten, Input, MaxPooling2D
    from tensorflow.keras.models import Model

    inputs = Input((8, 8, 3))
    x = Conv2D(4, (3, 3), activation="relu")(inputs)
    x = MaxPooling2D((2, 2))(x)
    x = Conv2D(classes, (3, 3), name="predictions")(x)
    model = Model(inputs, Activation("softmax")(Flatten()(x)))
    trunk, head = split_trunk(model)
    for layers, seed in ((trunk, trunk_seed), (head, head_seed)):
        rng = np.random.default_rng(seed)
        for layer in layers:
            weights = layer.get_weights()
            layer.set_weights([rng.normal(size=w.shape).astype(w.dtype) for w in weights])
    return model


def test_split_trunk_cuts_after_the_last_pooling_layer():
    model = tiny_vgg(3, trunk_seed=0, head_seed=1)
    trunk, head = split_trunk(model)
    assert type(trunk[-1]).__name__ == "MaxPooling2D"
    assert head[0].name == "predictions"
    assert trunk + head == model.layers


def test_a_model_without_pooling_is_refused():
    from deepface import DeepFace  # noqa: F401
    from tensorflow.keras.layers import Dense, Input
    from tensorflow.keras.models import Model

    inputs = Input((4,))
    with pytest.raises(ValueError, match="no pooling layer"):
        split_trunk(Model(inputs, Dense(2)(inputs)))


def engine_named(name: str, cache_dir):
    return TensorFlowEngine() if name == "tensorflow" else OpenVINOEngine(cache_dir)


@pytest.mark.parametrize("engine", ENGINES)
def test_equal_trunks_are_shared_and_give_each_models_own_outputs(engine, tmp_path):
    models = {
        "age": tiny_vgg(5, trunk_seed=7, head_seed=1),
        "gender": tiny_vgg(2, trunk_seed=7, head_seed=2),
        "race": tiny_vgg(6, trunk_seed=7, head_seed=3),
        # Out of alphabetical order, as the actions are: each output must stay its own.
        "embedding": tiny_vgg(4, trunk_seed=7, head_seed=4),
    }
    running = engine_named(engine, tmp_path)
    # As the analyzer builds it for this engine: OpenVINO's heads as matrix products.
    shared = SharedTrunk.of(models, running.dense_heads)
    assert shared is not None and shared.actions == ("age", "gender", "race", "embedding")
    batch = np.random.default_rng(0).random((3, 8, 8, 3), dtype=np.float32)
    forward = running.load(ModelSource("shared", (), lambda: shared.model))
    for rows in (batch[:1], batch):
        outputs = dict(zip(shared.actions, forward(rows), strict=True))
        for action, model in models.items():
            expected = (
                model(rows, training=False).numpy()
                if len(rows) == 1
                else model.predict_on_batch(rows)
            )
            assert_deepfaces_numbers(engine, outputs[action], expected.reshape(len(rows), -1))


def test_dense_heads_are_the_heads_convolutions_as_matrix_products():
    models = {
        "age": tiny_vgg(5, trunk_seed=7, head_seed=1),
        "gender": tiny_vgg(2, trunk_seed=7, head_seed=2),
    }
    convolutions = SharedTrunk.of(models)
    products = SharedTrunk.of(models, dense_heads=True)
    assert convolutions is not None and products is not None

    def head_kinds(shared: SharedTrunk) -> set[str]:
        heads = [layer for layer in shared.model.layers if layer.name.startswith("head")]
        return {type(inner).__name__ for head in heads for inner in head.layers}

    assert "Conv2D" in head_kinds(convolutions) and "Dense" not in head_kinds(convolutions)
    assert "Dense" in head_kinds(products) and "Conv2D" not in head_kinds(products)
    batch = np.random.default_rng(1).random((4, 8, 8, 3), dtype=np.float32)
    for ours, theirs in zip(
        products.model.predict_on_batch(batch),
        convolutions.model.predict_on_batch(batch),
        strict=True,
    ):
        # The same function; only the order of the sums differs (fp32 rounding).
        np.testing.assert_allclose(ours, theirs, rtol=1e-5, atol=1e-6)


def test_a_model_whose_trunk_differs_runs_alone_and_the_others_still_share():
    models = {
        "age": tiny_vgg(5, trunk_seed=7, head_seed=1),
        "gender": tiny_vgg(2, trunk_seed=7, head_seed=2),
        "race": tiny_vgg(6, trunk_seed=7, head_seed=3),
        "embedding": tiny_vgg(4, trunk_seed=8, head_seed=4),  # a fine-tuned VGG-Face
    }
    shared = SharedTrunk.of(models)
    assert shared is not None and shared.actions == ("age", "gender", "race")
    # The odd one first: the larger group still wins.
    models["age"] = tiny_vgg(5, trunk_seed=9, head_seed=1)
    models["embedding"] = tiny_vgg(4, trunk_seed=7, head_seed=4)
    shared = SharedTrunk.of(models)
    assert shared is not None and shared.actions == ("gender", "race", "embedding")
    # Two against two: the first group, so that the attribute models share.
    models["race"] = tiny_vgg(6, trunk_seed=9, head_seed=3)
    shared = SharedTrunk.of(models)
    assert shared is not None and shared.actions == ("age", "race")


def test_one_differing_trunk_weight_means_nothing_is_shared():
    age, gender = tiny_vgg(5, trunk_seed=7, head_seed=1), tiny_vgg(2, trunk_seed=7, head_seed=2)
    assert trunk_digest(age) == trunk_digest(gender)
    conv = split_trunk(gender)[0][1]
    kernel, bias = conv.get_weights()
    kernel.flat[0] = np.nextafter(kernel.flat[0], np.float32(np.inf))  # one ulp
    conv.set_weights([kernel, bias])
    assert trunk_digest(age) != trunk_digest(gender)
    assert SharedTrunk.of({"age": age, "gender": gender}) is None


def test_one_vgg_model_alone_is_not_wrapped():
    assert SharedTrunk.of({"age": tiny_vgg(5, trunk_seed=7, head_seed=1)}) is None


@pytest.mark.model_process
@pytest.mark.models
def test_synthetic_weights_share_the_trunk_and_not_the_heads(synthetic_home):
    models = [deepface_model(action).model for action in ("age", "gender", "race")]
    assert len({trunk_digest(model) for model in models}) == 1
    first_head_kernels = [split_trunk(model)[1][0].get_weights()[0] for model in models]
    assert not np.array_equal(first_head_kernels[0], first_head_kernels[1])
    assert not np.array_equal(first_head_kernels[1], first_head_kernels[2])


def assert_deepfaces_numbers(engine, ours, theirs, atol=1e-5):
    """TensorFlow: DeepFace's numbers to the bit. OpenVINO fp32: within `atol`, by default
    1e-5 (probabilities within 1e-3 percentage points; docs/performance.md)."""
    if engine == "tensorflow":
        np.testing.assert_array_equal(ours, theirs)
    else:
        np.testing.assert_allclose(ours, theirs, rtol=0, atol=atol)


@pytest.mark.model_process
@pytest.mark.models
# Module-scoped: the tests run engine by engine, each engine's analyzer built once.
@pytest.mark.parametrize("engine", ENGINES, scope="module")
def test_the_analyzer_runs_one_trunk_with_deepfaces_own_numbers(analyzer_for, engine):
    analyzer = analyzer_for(engine)
    assert analyzer.shared_actions == ("age", "gender", "race")
    # TensorFlow runs DeepFace's Keras models themselves; OpenVINO, its cache warm, builds
    # none (tests/test_engines.py).
    kept = {"age", "gender", "emotion", "race"} if engine == "tensorflow" else set()
    assert set(analyzer.models) == kept
    faces = np.random.default_rng(2).random((3, 224, 224, 3), dtype=np.float32)
    for rows in (faces[:1], faces):
        outputs = analyzer.predict(rows)
        for action in ("age", "gender", "race", "emotion"):
            # DeepFace's own model object for the action, as DeepFace.analyze calls it.
            expected = np.asarray(deepface_model(action).predict(rows)).reshape(len(rows), -1)
            ours = outputs[action].reshape(len(rows), -1)
            # Apparent ages within 1e-3 years.
            assert_deepfaces_numbers(engine, ours, expected, 1e-3 if action == "age" else 1e-5)


@pytest.mark.model_process
@pytest.mark.models
# Module-scoped: the tests run engine by engine, each engine's analyzer built once.
@pytest.mark.parametrize("engine", ENGINES, scope="module")
def test_one_action_alone_gives_its_own_models_numbers(analyzer_for, engine):
    analyzer = analyzer_for(engine)
    faces = np.random.default_rng(3).random((2, 224, 224, 3), dtype=np.float32)
    [only] = analyzer.predict(faces, ["gender"]).values()
    assert_deepfaces_numbers(engine, only, deepface_model("gender").predict(faces))
