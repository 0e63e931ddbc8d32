"""The face analyzer: DeepFace's detector and attribute models, built and warmed once.

One instance per process is shared by every worker thread. DeepFace's attribute models
give correct answers when called concurrently; its OpenCV detector does not
(docs/dataflow.md), so `find_faces` runs on one thread. When the age, gender, race and
VGG-Face (embedding) weights share their VGG-Face trunk, it runs once per face
(shared_trunk.py).
The forward passes run on an `Engine` (engines.py) chosen at the composition root.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from functools import partial
from pathlib import Path
from typing import Any

import numpy as np

from facestream import deepface_internals
from facestream.engines import Engine, Forward, ModelSource
from facestream.faces import FACE_SIZE, Face, Region, crop_faces, find_faces, locate_faces
from facestream.models import ACTION_MODELS, require_weights
from facestream.shared_trunk import VGG_ACTIONS, SharedTrunk
from facestream.tracking import Box

LABELS: dict[str, list[str]] = deepface_internals.attribute_labels()


def deepface_model(action: str) -> Any:
    """DeepFace's own model object for `action` (its `.model` is the Keras model), from
    DeepFace's cache, which `DeepFace.analyze` and `DeepFace.represent` share; loads the
    weights the first time."""
    # DeepFace's cache is not locked: the container builds the analyzer under lagom's
    # singleton lock, and other detectors are built under the detection lock.
    return deepface_internals.build_model(ACTION_MODELS[action].model_name)


def keras_model(action: str) -> Any:
    """The Keras model of DeepFace's model for `action` (deepface_model)."""
    return deepface_model(action).model


def model_inputs(action: str, faces: np.ndarray) -> np.ndarray:
    """The inputs of `action`'s model for a batch of (n, 224, 224, 3) faces."""
    if action == "emotion":
        # DeepFace's emotion model reads 48x48 grey faces: its own preprocessing.
        grey = [deepface_internals.emotion_grey_face(face) for face in faces]
        return np.expand_dims(np.array(grey), -1)
    return faces


def keras_source(action: str, weight_file: Path) -> ModelSource:
    """`action`'s model as an engine's source that can cross to a child process."""
    return ModelSource(
        action, (weight_file,), partial(keras_model, action), partial(model_inputs, action)
    )


def shared_trunk_role(actions: Sequence[str]) -> str:
    """The engines' name for the shared trunk of `actions` (part of its cache key)."""
    return "shared-" + "-".join(actions)


@dataclass
class SourceOfSharedTrunk:
    """The shared trunk as an engine's model source: built from DeepFace's models only
    when the engine has no conversion of it (or already built, in `trunk`)."""

    actions: tuple[str, ...]
    weight_files: tuple[Path, ...]
    deepface_models: Callable[[Sequence[str]], dict[str, Any]]
    dense_heads: bool
    trunk: SharedTrunk | None = None

    @property
    def role(self) -> str:
        return shared_trunk_role(self.actions)

    def build(self) -> Any:
        if self.trunk is None:
            models = self.deepface_models(self.actions)
            self.trunk = SharedTrunk.of(
                {a: model.model for a, model in models.items()}, self.dense_heads
            )
            if self.trunk is None:
                raise RuntimeError(f"the trunks of {self.role} differ: nothing to share")
        return self.trunk.model


@dataclass(frozen=True)
class FaceAttributes:
    """What the models say about one face, in DeepFace.analyze's units.

    `scores` holds, per requested action among gender/emotion/race, the percentage of
    each label; `dominant` its top label; `age` the apparent age when "age" was asked;
    `embedding` the VGG-Face embedding (4096 float32, unit L2 norm, as
    `DeepFace.represent(model_name="VGG-Face")` returns it) when "embedding" was asked.
    """

    age: float | None
    scores: dict[str, dict[str, float]]
    dominant: dict[str, str]
    embedding: np.ndarray | None = None


class FaceAnalyzer:
    """DeepFace's attribute models for `actions` plus the `detector_backend`, ready to use,
    their forward passes on `engine`; `bordered_detection=False` is fast mode's detection
    (faces.find_faces). With `proposals` (`face_proposals.FaceProposals`), a whole image
    located (`locate_faces` without regions) is searched only around the faces they propose.

    Building it checks the weights first and fails with MissingWeightsError naming the files
    and the fix, instead of letting DeepFace try to download them.
    """

    def __init__(
        self,
        actions: Sequence[str],
        detector_backend: str,
        weights_dir: Path,
        engine: Engine,
        bordered_detection: bool = True,
        proposals: Callable[[np.ndarray], list[Box]] | None = None,
    ) -> None:
        self.actions = tuple(actions)
        self.bordered_detection = bordered_detection
        self.proposals = proposals
        self.detector_backend = detector_backend
        self.synthetic_weights = require_weights(weights_dir, self.actions, detector_backend)
        files = {action: weights_dir / ACTION_MODELS[action].weight_file for action in actions}
        # DeepFace's model objects built in this process (all of them on TensorFlow; on
        # OpenVINO with cached conversions, none).
        self.models: dict[str, Any] = {}
        vgg = tuple(action for action in VGG_ACTIONS if action in self.actions)
        shared = SourceOfSharedTrunk(
            vgg, tuple(files[action] for action in vgg), self._deepface_models, engine.dense_heads
        )
        engine.convert_ahead(
            shared.role,
            [keras_source(action, files[action]) for action in vgg] if len(vgg) > 1 else [],
            [
                keras_source(action, files[action])
                for action in self.actions
                if action not in vgg or len(vgg) == 1
            ],
        )
        if len(vgg) > 1 and engine.has_cached(shared.role, shared.weight_files):
            # Converted before from these very files, whose trunks were equal then. (When
            # one trunk differs, the conversion is cached under the sharing group's role, and
            # each start finds that group again from DeepFace's models.)
            self.shared_actions = vgg
        else:
            trunk = SharedTrunk.of(
                {action: model.model for action, model in self._deepface_models(vgg).items()},
                engine.dense_heads,
            )
            self.shared_actions = trunk.actions if trunk is not None else ()
            shared.trunk = trunk
        self._shared_forward = (
            engine.load(ModelSource(shared.role, shared.weight_files, shared.build))
            if self.shared_actions
            else None
        )
        self._forward: dict[str, Forward] = {
            action: engine.load(
                ModelSource(
                    action,
                    (files[action],),
                    lambda action=action: self._deepface_models([action])[action].model,
                    partial(model_inputs, action),
                )
            )
            for action in self.actions
            if action not in self.shared_actions
        }
        # Detection and the models' forward passes take turns: each already spreads over every
        # core of the process (OpenCV's and the engine's thread pools), and the two at once
        # oversubscribe them (docs/performance.md, shapes). Detectors
        # are not thread-safe either.
        self._cores = threading.Lock()
        # Detection runs on a thread of its own, started here, so that it keeps the priority
        # of the thread that builds the analyzer, whatever the priority of its callers
        # (thread_priority.py: Bytewax's worker threads run below the computing ones).
        self._detection = ThreadPoolExecutor(1, thread_name_prefix="detection")
        blank = np.zeros((64, 64, 3), dtype=np.uint8)
        self.find_faces(blank, detector_backend, detection_max_side=0)
        self._warm()

    def _deepface_models(self, actions: Sequence[str]) -> dict[str, Any]:
        """DeepFace's model objects for `actions`, built on first use (weights loaded)."""
        for action in actions:
            if action not in self.models:
                self.models[action] = deepface_model(action)
        return {action: self.models[action] for action in actions}

    def _warm(self) -> None:
        # The first call of a Keras model traces its graph (seconds); do it now, for both the
        # single-face and the batched path, rather than on the first request.
        blank = np.zeros((2, *FACE_SIZE, 3), dtype=np.float32)
        self.predict(blank[:1])
        self.predict(blank)

    def find_faces(
        self,
        image: np.ndarray,
        detector_backend: str,
        detection_max_side: int,
    ) -> list[Face]:
        """`faces.find_faces` on the detection thread, one image at a time (DeepFace's
        detectors are not thread-safe), never while the models run."""
        return self._detect(
            find_faces, image, detector_backend, detection_max_side, self.bordered_detection
        )

    def locate_faces(
        self,
        image: np.ndarray,
        detector_backend: str,
        regions: Sequence[Region] | None,
        detection_max_side: int = 0,
    ) -> list[Face]:
        """`faces.locate_faces` (found in `regions`, or None: the whole image, around the
        proposed faces if there are `proposals`; not yet cropped), as `find_faces` runs."""
        return self._detect(
            locate_faces,
            image,
            detector_backend,
            regions,
            self.bordered_detection,
            detection_max_side,
            self.proposals,
        )

    def crop_faces(
        self, image: np.ndarray, detector_backend: str, faces: Sequence[Face]
    ) -> list[Face]:
        """`faces.crop_faces` (the located faces aligned and cropped), as `find_faces` runs."""
        return self._detect(crop_faces, image, detector_backend, faces)

    def _detect(self, work: Callable[..., list[Face]], *args: Any) -> list[Face]:
        return self._detection.submit(self._with_the_cores, work, *args).result()

    def _with_the_cores(self, work: Callable[..., list[Face]], *args: Any) -> list[Face]:
        with self._cores:
            return work(*args)

    def predict(
        self, faces: np.ndarray, actions: Sequence[str] | None = None
    ) -> dict[str, np.ndarray]:
        """Raw model outputs for a batch of model inputs of shape (n, 224, 224, 3).

        Returns, per action (default: all loaded), one row per face: apparent ages (n,) for
        "age", L2-normalised embeddings (n, 4096) in float64 for "embedding", class
        probabilities (n, classes) for the others.
        """
        if faces.ndim != 4 or faces.shape[1:] != (*FACE_SIZE, 3):
            raise ValueError(f"faces must have shape (n, 224, 224, 3), got {faces.shape}")
        actions = tuple(actions or self.actions)
        with self._cores:
            probabilities = self._forward_passes(faces, actions)
        outputs = {}
        for action in actions:
            rows = probabilities[action]
            # What DeepFace's age model does with its probabilities, row by row.
            if action == "age":
                rows = np.array([deepface_internals.apparent_age(row) for row in rows])
            # What DeepFace.represent does with VGG-Face's fc7 output, face by face.
            if action == "embedding":
                rows = np.array([deepface_internals.l2_normalize(row) for row in rows])
            outputs[action] = rows
        return outputs

    def _forward_passes(self, faces: np.ndarray, actions: Sequence[str]) -> dict[str, np.ndarray]:
        """Each action's raw model output for the faces, the shared trunk run once."""
        probabilities: dict[str, np.ndarray] = {}
        if self._shared_forward is not None and set(actions) & set(self.shared_actions):
            # Also for one VGG action alone: its head on the shared trunk is its own model.
            probabilities = dict(zip(self.shared_actions, self._shared_forward(faces), strict=True))
        for action in actions:
            if action not in probabilities:
                probabilities[action] = self._forward[action](model_inputs(action, faces))[0]
        return probabilities

    def describe(self, faces: np.ndarray, actions: Sequence[str]) -> list[FaceAttributes]:
        """Attributes of each face, computed as `DeepFace.analyze` computes them (and the
        embedding as `DeepFace.represent` does)."""
        outputs = self.predict(faces, actions)
        described = []
        for index in range(len(faces)):
            scores, dominant = {}, {}
            for action in actions:
                if action not in LABELS:
                    continue
                probabilities = outputs[action][index]
                # DeepFace rescales emotion and race to sum to 100; gender it only multiplies.
                total = 1.0 if action == "gender" else probabilities.sum()
                labels = LABELS[action]
                scores[action] = {
                    label: float(100 * probabilities[i] / total) for i, label in enumerate(labels)
                }
                dominant[action] = labels[int(np.argmax(probabilities))]
            age = float(outputs["age"][index]) if "age" in actions else None
            embedding = (
                outputs["embedding"][index].astype(np.float32) if "embedding" in actions else None
            )
            described.append(FaceAttributes(age, scores, dominant, embedding))
        return described
