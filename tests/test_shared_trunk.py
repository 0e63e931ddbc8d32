"""One VGG-Face trunk for age, gender and race: shared only when the weights are equal,
and then giving the same numbers as DeepFace's models one by one: to the bit on the
TensorFlow engine, within the fp32 contract on OpenVINO."""

from __future__ import annotations

import numpy as np
import pytest

from facestream.analyzer import deepface_model
from facestream.engines import ENGINES, ModelSource, TensorFlowEngine
from facestream.shared_trunk import SharedTrunk, same_trunk, split_trunk


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


def test_equal_trunks_are_shared_and_give_each_models_own_outputs():
    models = {
        "age": tiny_vgg(5, trunk_seed=7, head_seed=1),
        "gender": tiny_vgg(2, trunk_seed=7, head_seed=2),
        "race": tiny_vgg(6, trunk_seed=7, head_seed=3),
    }
    shared = SharedTrunk.of(models)
    assert shared is not None and shared.actions == ("age", "gender", "race")
    batch = np.random.default_rng(0).random((3, 8, 8, 3), dtype=np.float32)
    forward = TensorFlowEngine().load(ModelSource("shared", (), lambda: shared.model))
    for rows in (batch[:1], batch):
        outputs = dict(zip(shared.actions, forward(rows), strict=True))
        for action, model in models.items():
            expected = (
                model(rows, training=False).numpy()
                if len(rows) == 1
                else model.predict_on_batch(rows)
            )
            np.testing.assert_array_equal(outputs[action], expected.reshape(len(rows), -1))


def test_one_differing_trunk_weight_means_nothing_is_shared():
    age, gender = tiny_vgg(5, trunk_seed=7, head_seed=1), tiny_vgg(2, trunk_seed=7, head_seed=2)
    assert same_trunk([age, gender])
    conv = split_trunk(gender)[0][1]
    kernel, bias = conv.get_weights()
    kernel.flat[0] = np.nextafter(kernel.flat[0], np.float32(np.inf))  # one ulp
    conv.set_weights([kernel, bias])
    assert not same_trunk([age, gender])
    assert SharedTrunk.of({"age": age, "gender": gender}) is None


def test_one_vgg_model_alone_is_not_wrapped():
    assert SharedTrunk.of({"age": tiny_vgg(5, trunk_seed=7, head_seed=1)}) is None


@pytest.mark.models
def test_synthetic_weights_share_the_trunk_and_not_the_heads(synthetic_home):
    models = [deepface_model(action).model for action in ("age", "gender", "race")]
    assert same_trunk(models)
    first_head_kernels = [split_trunk(model)[1][0].get_weights()[0] for model in models]
    assert not np.array_equal(first_head_kernels[0], first_head_kernels[1])
    assert not np.array_equal(first_head_kernels[1], first_head_kernels[2])


def assert_deepfaces_numbers(engine, ours, theirs, atol=1e-5):
    """TensorFlow: DeepFace's numbers to the bit. OpenVINO fp32: within `atol`, by default
    1e-5 (probabilities within 1e-3 percentage points; README, Performance)."""
    if engine == "tensorflow":
        np.testing.assert_array_equal(ours, theirs)
    else:
        np.testing.assert_allclose(ours, theirs, rtol=0, atol=atol)


@pytest.mark.models
@pytest.mark.parametrize("engine", ENGINES)
def test_the_analyzer_runs_one_trunk_with_deepfaces_own_numbers(analyzer_for, engine):
    analyzer = analyzer_for(engine)
    assert analyzer.shared_actions == ("age", "gender", "race")
    faces = np.random.default_rng(2).random((3, 224, 224, 3), dtype=np.float32)
    for rows in (faces[:1], faces):
        outputs = analyzer.predict(rows)
        for action in ("age", "gender", "race", "emotion"):
            # DeepFace's own model object for the action, as DeepFace.analyze calls it.
            expected = np.asarray(deepface_model(action).predict(rows)).reshape(len(rows), -1)
            ours = outputs[action].reshape(len(rows), -1)
            # Apparent ages within 1e-3 years.
            assert_deepfaces_numbers(engine, ours, expected, 1e-3 if action == "age" else 1e-5)


@pytest.mark.models
@pytest.mark.parametrize("engine", ENGINES)
def test_one_action_alone_gives_its_own_models_numbers(analyzer_for, engine):
    analyzer = analyzer_for(engine)
    faces = np.random.default_rng(3).random((2, 224, 224, 3), dtype=np.float32)
    [only] = analyzer.predict(faces, ["gender"]).values()
    assert_deepfaces_numbers(engine, only, deepface_model("gender").predict(faces))
