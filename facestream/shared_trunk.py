"""Age, gender and race on one VGG-Face trunk.

DeepFace's age, gender and race models are VGG-Face with their own top layers. They were
trained with VGG-Face's convolutional layers frozen, so those layers (99% of the
arithmetic) hold the same weights in all three files: DeepFace's author rebuilt the age
model from VGG-Face plus the age file's last three layers (deepface issue #925). When the
loaded weights show this, facestream runs the trunk once per face and the three heads on
its output. These are the same operations on the same values, so the outputs are the
same to the bit, for about a third of the work. Weights whose trunks differ (fine-tuned
files) share nothing and run model by model.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np

# The actions whose DeepFace models are VGG-Face with another top.
VGG_ACTIONS: tuple[str, ...] = ("age", "gender", "race")


def split_trunk(model: Any) -> tuple[list[Any], list[Any]]:
    """A VGG-style Keras model's layers, split after its last pooling layer: (trunk, head)."""
    pools = [i for i, layer in enumerate(model.layers) if type(layer).__name__ == "MaxPooling2D"]
    if not pools:
        raise ValueError(f"{model.name} has no pooling layer: not a VGG-style model")
    return model.layers[: pools[-1] + 1], model.layers[pools[-1] + 1 :]


def same_trunk(models: Sequence[Any]) -> bool:
    """True when these Keras models' trunks have the same layers with equal weights."""
    trunks = [split_trunk(model)[0] for model in models]
    first = trunks[0]
    for trunk in trunks[1:]:
        if len(trunk) != len(first):
            return False
        for mine, theirs in zip(first, trunk, strict=True):
            if type(mine) is not type(theirs):
                return False
            ours, others = mine.get_weights(), theirs.get_weights()
            # array_equal is False for different shapes too.
            if len(ours) != len(others) or not all(
                np.array_equal(a, b) for a, b in zip(ours, others, strict=True)
            ):
                return False
    return True


class SharedTrunk:
    """One Keras model: the trunk of `models[first]`, then each model's head on its output
    (one output per action, in `actions` order). An engine runs it (engines.py).

    No weight is copied: the trunk and the heads are the loaded models' own layers.
    """

    def __init__(self, models: Mapping[str, Any]) -> None:
        # DeepFace switches TensorFlow to legacy Keras on import; its models are tf-keras.
        from deepface import DeepFace  # noqa: F401
        from tensorflow.keras.layers import Input
        from tensorflow.keras.models import Model

        self.actions = tuple(models)
        first = models[self.actions[0]]
        trunk, _ = split_trunk(first)
        features = trunk[-1].output
        heads = []
        for action, model in models.items():
            _, head = split_trunk(model)
            head_input = Input(shape=features.shape[1:], name=f"{action}_features")
            output = head_input
            for layer in head:
                output = layer(output)
            # Each head is a nested model: its layers keep their names ("predictions" in
            # all three) without clashing in the combined model.
            heads.append(Model(head_input, output, name=f"{action}_head")(features))
        self.model = Model(first.inputs, heads, name="shared_vgg_face_trunk")

    @classmethod
    def of(cls, models: Mapping[str, Any]) -> SharedTrunk | None:
        """A SharedTrunk over the VGG models among `models` (Keras models by action), or None
        when fewer than two are loaded or their trunks' weights differ."""
        vgg = {action: models[action] for action in VGG_ACTIONS if action in models}
        if len(vgg) < 2 or not same_trunk(list(vgg.values())):
            return None
        return cls(vgg)
