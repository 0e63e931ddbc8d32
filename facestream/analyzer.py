"""The face analyzer: DeepFace's models for a set of actions, built and warmed once.

One instance per process is shared by every worker thread. DeepFace's attribute models
were measured correct when called concurrently; its OpenCV detector was not (4 threads:
76/120 exceptions, 31/120 wrong faces), so detection runs under `detection_lock`.
"""

from __future__ import annotations

import threading
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from facestream.models import ACTION_MODELS, require_weights

FACE_SIZE = (224, 224)


class FaceAnalyzer:
    """DeepFace's attribute models for `actions` plus the `detector_backend`, ready to use.

    Building it checks the weights first and fails with MissingWeightsError naming the files
    and the fix, instead of letting DeepFace try to download them.
    """

    def __init__(self, actions: Sequence[str], detector_backend: str, weights_dir: Path) -> None:
        self.actions = tuple(actions)
        self.detector_backend = detector_backend
        self.synthetic_weights = require_weights(weights_dir, self.actions, detector_backend)
        # DeepFace must be imported before TensorFlow: it switches TF to legacy (tf-keras) mode.
        from deepface import DeepFace  # noqa: F401
        from deepface.modules import modeling

        # modeling.build_model caches in DeepFace's own (unlocked) cache, which DeepFace.analyze
        # shares; the container builds this object under lagom's singleton lock.
        self.models: dict[str, Any] = {
            action: modeling.build_model("facial_attribute", ACTION_MODELS[action].model_name)
            for action in self.actions
        }
        if detector_backend != "skip":
            modeling.build_model("face_detector", detector_backend)
        self.detection_lock = threading.Lock()
        self._warm()

    def _warm(self) -> None:
        # The first call of a Keras model traces its graph (seconds); do it now, for both the
        # single-face and the batched path, rather than on the first request.
        blank = np.zeros((2, *FACE_SIZE, 3), dtype=np.float32)
        self.predict(blank[:1])
        self.predict(blank)

    def predict(self, faces: np.ndarray) -> dict[str, np.ndarray]:
        """Raw model outputs for a batch of preprocessed faces of shape (n, 224, 224, 3).

        Returns, per action, an array with one row per face: apparent ages (n,) for "age",
        class probabilities (n, classes) for the others.
        """
        if faces.ndim != 4 or faces.shape[1:] != (*FACE_SIZE, 3):
            raise ValueError(f"faces must have shape (n, 224, 224, 3), got {faces.shape}")
        outputs = {}
        for action, model in self.models.items():
            # DeepFace drops the batch axis when n == 1; keep one row per face.
            rows = np.asarray(model.predict(faces)).reshape(len(faces), -1)
            outputs[action] = rows[:, 0] if action == "age" else rows
        return outputs
