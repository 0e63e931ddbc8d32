"""Age, gender, race and the VGG-Face embedding on one VGG-Face trunk.

DeepFace's age, gender and race models are VGG-Face with their own top layers. They were
trained with VGG-Face's convolutional layers frozen, so those layers (99% of the
arithmetic) hold the same weights in all three files and in VGG-Face's own: DeepFace's
author rebuilt the age model from VGG-Face plus the age file's last three layers (deepface
issue #925). The embedding `DeepFace.represent` returns is VGG-Face's fc7 output, so
VGG-Face's fc6 and fc7 are one more head on that trunk. When the loaded weights show this,
facestream runs the trunk once per face and every head on its output. These are the same
operations on the same values, so the outputs are the same to the bit, for a fraction of
the work. A model whose trunk differs from the others' (a fine-tuned file) runs alone.
"""

from __future__ import annotations

import hashlib
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np

# The attributes whose DeepFace models are VGG-Face with another top, and with VGG-Face
# itself (the embedding), every action whose model has VGG-Face's trunk.
VGG_ATTRIBUTES: tuple[str, ...] = ("age", "gender", "race")
VGG_ACTIONS: tuple[str, ...] = (*VGG_ATTRIBUTES, "embedding")


def split_trunk(model: Any) -> tuple[list[Any], list[Any]]:
    """A VGG-style Keras model's layers, split after its last pooling layer: (trunk, head)."""
    pools = [i for i, layer in enumerate(model.layers) if type(layer).__name__ == "MaxPooling2D"]
    if not pools:
        raise ValueError(f"{model.name} has no pooling layer: not a VGG-style model")
    return model.layers[: pools[-1] + 1], model.layers[pools[-1] + 1 :]


def trunk_digest(model: Any) -> str:
    """A digest of a VGG-style Keras model's trunk, its layers' kinds and weights: two
    trunks with equal digests hold the same layers with equal weights."""
    digest = hashlib.sha256()
    for layer in split_trunk(model)[0]:
        digest.update(type(layer).__name__.encode())
        for weights in layer.get_weights():
            digest.update(f"{weights.dtype}{weights.shape}".encode())
            digest.update(np.ascontiguousarray(weights).tobytes())
    return digest.hexdigest()


def sharing_group(digests: Mapping[str, str]) -> tuple[str, ...]:
    """The largest group of models (by name, in the mapping's order) whose trunks have equal
    digests, on a tie the first; () when no two do."""
    groups: dict[str, list[str]] = {}
    for name, digest in digests.items():
        groups.setdefault(digest, []).append(name)
    largest = max(groups.values(), key=len, default=[])
    return tuple(largest) if len(largest) > 1 else ()


def _covers_its_input(layer: Any, spatial: tuple[int, int]) -> bool:
    # A convolution whose kernel is the size of its input map, unpadded: it has one output
    # position, so it is a matrix product of the flattened input (VGG's fc6, fc7 and top).
    return (
        type(layer).__name__ == "Conv2D"
        and tuple(layer.kernel_size) == spatial
        and layer.padding == "valid"
        and tuple(layer.strides) == (1, 1)
        and tuple(layer.dilation_rate) == (1, 1)
        and layer.use_bias
    )


def apply_head(head: Sequence[Any], features: Any, dense: bool) -> Any:
    """The head's layers applied to `features` (a Keras tensor).

    With `dense`, each convolution that covers its whole input (`_covers_its_input`) runs
    as a Dense layer with the same weights reshaped, and Dropout (the identity at inference)
    is left out: the same function, as a matrix product. DeepFace builds VGG-Face's fully
    connected layers as convolutions, and OpenVINO runs a head several times faster as
    matrix products (docs/performance.md, embedding).
    The sums run in another order, so the numbers differ from the convolutions' in the last
    bits (fp32 rounding): for an engine that keeps DeepFace's numbers only within the fp32
    contract anyway (engines.py).
    """
    from tensorflow.keras.layers import Dense, Flatten

    output = features
    for layer in head:
        kind = type(layer).__name__
        spatial = tuple(output.shape[1:3]) if len(output.shape) == 4 else (1, 1)
        if dense and kind == "Dropout":
            continue
        if dense and kind == "Flatten" and len(output.shape) == 2:
            continue
        if dense and _covers_its_input(layer, spatial):
            if len(output.shape) == 4:
                output = Flatten()(output)  # (h, w, c) order, as the kernel's reshape
            kernel, bias = layer.get_weights()
            product = Dense(layer.filters, activation=layer.activation, name=layer.name)
            output = product(output)
            product.set_weights([kernel.reshape(-1, layer.filters), bias])
            continue
        output = layer(output)
    return output


def trunk_model(model: Any) -> Any:
    """The trunk of a VGG-style Keras model as a Keras model of its own, the model's layers."""
    from tensorflow.keras.models import Model

    trunk, _ = split_trunk(model)
    return Model(model.inputs, trunk[-1].output, name="trunk")


def head_model(
    model: Any, index: int, action: str, features_shape: Sequence[int], dense: bool
) -> Any:
    """The head of a VGG-style Keras model as a Keras model of its own, from the trunk's
    features (`features_shape`, without the batch) to the model's output (apply_head)."""
    from tensorflow.keras.layers import Input
    from tensorflow.keras.models import Model

    _, head = split_trunk(model)
    head_input = Input(shape=tuple(features_shape), name=f"{action}_features")
    # Its layers keep their names ("predictions" in three of the heads) without clashing
    # in a combined model. OpenVINO's converter orders a model's outputs by name, so the
    # names begin with the output's place.
    return Model(head_input, apply_head(head, head_input, dense), name=f"head{index}_{action}")


class SharedTrunk:
    """One Keras model: the trunk of `models[first]`, then each model's head on its output
    (one output per action, in `actions` order). An engine runs it (engines.py).

    The trunk and the heads are the loaded models' own layers, no weight copied; with
    `dense_heads`, the heads' fully connected layers are Dense copies (apply_head).
    """

    def __init__(self, models: Mapping[str, Any], dense_heads: bool = False) -> None:
        # DeepFace switches TensorFlow to legacy Keras on import; its models are tf-keras.
        from deepface import DeepFace  # noqa: F401
        from tensorflow.keras.models import Model

        self.actions = tuple(models)
        first = models[self.actions[0]]
        trunk, _ = split_trunk(first)
        features = trunk[-1].output
        heads = [
            head_model(model, index, action, features.shape[1:], dense_heads)(features)
            for index, (action, model) in enumerate(models.items())
        ]
        self.model = Model(first.inputs, heads, name="shared_vgg_face_trunk")

    @classmethod
    def of(cls, models: Mapping[str, Any], dense_heads: bool = False) -> SharedTrunk | None:
        """A SharedTrunk over the largest group of VGG models among `models` (Keras models
        by action) whose trunks hold equal weights, or None when no two do. The models left
        out run on their own."""
        # In VGG_ACTIONS order: on a tie, the attribute models share.
        group = sharing_group(
            {action: trunk_digest(models[action]) for action in VGG_ACTIONS if action in models}
        )
        if not group:
            return None
        return cls({action: models[action] for action in group}, dense_heads)
