"""The one place facestream reaches into DeepFace beyond its public API.

`DeepFace.analyze` runs detection, preprocessing and the attribute models as one call, per
image. facestream needs those steps apart (detection on one thread, batched forward passes
on another engine, synthetic weights for machines without internet), so it calls the
functions and objects DeepFace itself uses inside `analyze`. None of them is public API: a
DeepFace release may move or reshape any of them. Every such use goes through this module,
so an upgrade is checked here, and tests/test_deepface_internals.py names what moved.

`from deepface import DeepFace` (the public API) may be used anywhere; only internals
(`deepface.modules`, `deepface.models`, `deepface.commons`, private methods) come from here.

Importing this module is cheap: DeepFace, and TensorFlow with it, load only inside the
functions.
"""

from __future__ import annotations

import importlib
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import cv2
import numpy as np

# Read from deepface 0.0.103, the version pinned in pyproject.toml. Before moving the pin,
# re-read every internal in INTERNALS in the new release and run the test that checks them.
READ_FROM_DEEPFACE = "0.0.103"


@dataclass(frozen=True)
class Internal:
    """One DeepFace internal facestream relies on, and how facestream uses it."""

    module: str
    name: str  # an attribute of `module`; "Class.method" for a method
    # The parameter names facestream relies on: it passes them by keyword, or puts a
    # function of its own in the internal's place. None: a value, read and never called.
    parameters: tuple[str, ...] | None = ()


# DeepFace's TensorFlow builders of the models facestream runs, by DeepFace's model name:
# each module's load_model() builds the Keras model and its WEIGHTS_URL lists the download
# sources of the weight file.
MODEL_BUILDERS: dict[str, str] = {
    "Age": "deepface.models.demography.tf.Age",
    "Gender": "deepface.models.demography.tf.Gender",
    "Emotion": "deepface.models.demography.tf.Emotion",
    "Race": "deepface.models.demography.tf.Race",
    "VGG-Face": "deepface.models.facial_recognition.tf.VGGFace",
}
# DeepFace's task of each model (its model cache is keyed by task and name); the
# attribute models are "facial_attribute".
RECOGNITION_MODELS: tuple[str, ...] = ("VGG-Face",)
_VGG_FACE = MODEL_BUILDERS["VGG-Face"]

_DEMOGRAPHY = "deepface.models.demography.DemographyUtils"
_DETECTOR = "deepface.models.Detector"
_DETECTION = "deepface.modules.detection"
_WEIGHTS = "deepface.commons.weight_utils"

INTERNALS: tuple[Internal, ...] = (
    Internal("deepface.modules.modeling", "build_model", ("task", "model_name")),
    Internal("deepface.modules.modeling", "get_model_class", ("task", "model_name")),
    Internal(_DETECTION, "detect_faces", ("detector_backend", "img", "align", "expand_percentage")),
    Internal(
        _DETECTION,
        "extract_face",
        (
            "facial_area",
            "img",
            "align",
            "expand_percentage",
            "width_border",
            "height_border",
            "detector_backend",
        ),
    ),
    Internal(_DETECTOR, "Detector.detect_faces"),
    Internal(
        _DETECTOR,
        "FacialAreaRegion",
        (
            "x",
            "y",
            "w",
            "h",
            "left_eye",
            "right_eye",
            "confidence",
            "nose",
            "mouth_left",
            "mouth_right",
        ),
    ),
    Internal(_DETECTOR, "DetectedFace", ("img", "facial_area", "confidence")),
    Internal("deepface.modules.preprocessing", "resize_image", ("img", "target_size")),
    Internal(_DEMOGRAPHY, "find_apparent_age", ("age_predictions",)),
    Internal(_DEMOGRAPHY, "GENDER_LABELS", None),
    Internal(_DEMOGRAPHY, "EMOTION_LABELS", None),
    Internal(_DEMOGRAPHY, "RACE_LABELS", None),
    Internal(MODEL_BUILDERS["Emotion"], "EmotionClient._preprocess_image", ("img",)),
    Internal(_VGG_FACE, "base_model"),
    Internal("deepface.modules.verification", "l2_normalize", ("x", "axis", "epsilon")),
    Internal(_WEIGHTS, "download_weights_if_necessary", ("file_name", "source_url")),
    Internal(_WEIGHTS, "load_model_weights", ("model", "weight_file")),
    Internal("deepface.commons.folder_utils", "get_deepface_home"),
    *(Internal(module, "load_model") for module in MODEL_BUILDERS.values()),
    *(Internal(module, "WEIGHTS_URL", None) for module in MODEL_BUILDERS.values()),
)


def import_deepface() -> None:
    """Import DeepFace's public module, which must come before TensorFlow: it switches
    TensorFlow to legacy (tf-keras) mode, the Keras its models are built with."""
    from deepface import DeepFace  # noqa: F401


def resolve(internal: Internal) -> Any:
    """The object `internal` names, imported after DeepFace as facestream imports it."""
    import_deepface()
    target: Any = importlib.import_module(internal.module)
    for part in internal.name.split("."):
        target = getattr(target, part)
    return target


# --- Models -------------------------------------------------------------------------


def model_task(model_name: str) -> str:
    """DeepFace's task of one of MODEL_BUILDERS' models."""
    return "facial_recognition" if model_name in RECOGNITION_MODELS else "facial_attribute"


def build_model(model_name: str) -> Any:
    """DeepFace's model object for one of MODEL_BUILDERS' models ("Age", "Gender",
    "Emotion", "Race", "VGG-Face"), its `.model` the Keras model; loads the weights the
    first time.

    It comes from DeepFace's model cache, which `DeepFace.analyze` and `DeepFace.represent`
    share. The cache is not locked: callers build under a lock of their own.
    """
    import_deepface()
    from deepface.modules import modeling

    return modeling.build_model(task=model_task(model_name), model_name=model_name)


def model_class(model_name: str) -> type:
    """The class build_model(model_name) instantiates on DeepFace's current backend
    engine: facestream expects the TensorFlow one of MODEL_BUILDERS."""
    import_deepface()
    from deepface.modules import modeling

    return modeling.get_model_class(task=model_task(model_name), model_name=model_name)


def build_detector(detector_backend: str) -> Any:
    """DeepFace's detector object for `detector_backend` (cached like the models, and
    downloading its files the first time); its `detect_faces(img)` lists facial areas."""
    from deepface.modules import modeling

    return modeling.build_model(task="face_detector", model_name=detector_backend)


_builder_lock = threading.Lock()


@contextmanager
def _without_weight_loading() -> Iterator[None]:
    # DeepFace's builders fetch and load the weights inside load_model(); swapping the two
    # functions on weight_utils (the builders call them through that module) leaves the
    # bare architecture. The lock keeps two threads from restoring each other's swap.
    from deepface.commons import weight_utils

    with _builder_lock:
        download, load = weight_utils.download_weights_if_necessary, weight_utils.load_model_weights
        weight_utils.download_weights_if_necessary = lambda file_name, **_: file_name
        weight_utils.load_model_weights = lambda model, weight_file: model
        try:
            yield
        finally:
            weight_utils.download_weights_if_necessary = download
            weight_utils.load_model_weights = load


def build_architecture(model_name: str) -> Any:
    """A fresh Keras model of `model_name` as DeepFace's builder makes it, with Keras'
    initial values: no weight file is fetched or read.

    This is the model the weight file is loaded into: for "VGG-Face", the whole network
    with its 2622-class top (fc8), of which DeepFace's descriptor keeps up to fc7.
    """
    import_deepface()
    if model_name == "VGG-Face":
        return importlib.import_module(_VGG_FACE).base_model()
    with _without_weight_loading():
        return importlib.import_module(MODEL_BUILDERS[model_name]).load_model()


# --- Weight files -------------------------------------------------------------------


def deepface_home() -> Path:
    """The DEEPFACE_HOME DeepFace reads and writes in this process."""
    from deepface.commons import folder_utils

    return Path(folder_utils.get_deepface_home())


def weight_sources(model_name: str) -> list[str]:
    """The URLs DeepFace downloads `model_name`'s weight file from."""
    import_deepface()  # the builder's module imports TensorFlow
    return importlib.import_module(MODEL_BUILDERS[model_name]).WEIGHTS_URL


def download_weight_file(file_name: str, sources: list[str]) -> str:
    """Download `file_name` into DEEPFACE_HOME's weights folder from the first of `sources`
    that answers, unless it is there; its path. DeepFace's errors pass through."""
    from deepface.commons import weight_utils

    return weight_utils.download_weights_if_necessary(file_name=file_name, source_url=sources)


# --- Detection and preprocessing ----------------------------------------------------


def facial_area(
    x: int,
    y: int,
    w: int,
    h: int,
    left_eye: tuple[int, int] | None = None,
    right_eye: tuple[int, int] | None = None,
    confidence: float | None = None,
    nose: tuple[int, int] | None = None,
    mouth_left: tuple[int, int] | None = None,
    mouth_right: tuple[int, int] | None = None,
) -> Any:
    """DeepFace's FacialAreaRegion: a box and landmarks, as its detectors return them."""
    from deepface.models.Detector import FacialAreaRegion

    return FacialAreaRegion(
        x=x,
        y=y,
        w=w,
        h=h,
        left_eye=left_eye,
        right_eye=right_eye,
        confidence=confidence,
        nose=nose,
        mouth_left=mouth_left,
        mouth_right=mouth_right,
    )


def detected_face(img: np.ndarray, area: Any, confidence: float) -> Any:
    """DeepFace's DetectedFace: a face's crop (`.img`) and its FacialAreaRegion."""
    from deepface.models.Detector import DetectedFace

    return DetectedFace(img=img, facial_area=area, confidence=confidence)


def find_eyes(
    detector: Any, face: np.ndarray
) -> tuple[tuple[int, int] | None, tuple[int, int] | None] | None:
    """The eyes (left, right) `detector` finds in a face's crop, as its own detection does
    after finding the face; None when the detector finds eyes no other way than with the
    face (its landmarks come from the same model)."""
    if not hasattr(detector, "find_eyes"):
        return None
    return detector.find_eyes(img=face)


def detect_areas(detector: Any, img: np.ndarray) -> list[Any]:
    """The FacialAreaRegions `detector` (of build_detector) finds in `img`, as they are:
    no border, no alignment, no crop."""
    return detector.detect_faces(img)


def detect_faces(
    detector_backend: str, img: np.ndarray, align: bool, expand_percentage: int
) -> list[Any]:
    """DeepFace's detection as `DeepFace.analyze` runs it (on a bordered copy of `img`):
    one DetectedFace per face, aligned when `align`."""
    from deepface.modules import detection

    return detection.detect_faces(
        detector_backend=detector_backend,
        img=img,
        align=align,
        expand_percentage=expand_percentage,
    )


def extract_face(
    area: Any,
    img: np.ndarray,
    align: bool,
    expand_percentage: int,
    width_border: int,
    height_border: int,
    detector_backend: str,
) -> Any:
    """DeepFace's crop and alignment of one FacialAreaRegion of `img`: a DetectedFace.
    `width_border`/`height_border` are the border `img` was given before detection."""
    from deepface.modules import detection

    return detection.extract_face(
        facial_area=area,
        img=img,
        align=align,
        expand_percentage=expand_percentage,
        width_border=width_border,
        height_border=height_border,
        detector_backend=detector_backend,
    )


def resize_image(img: np.ndarray, target_size: tuple[int, int]) -> np.ndarray:
    """DeepFace's letterbox resize of a face for its models: shape (1, *target_size, 3)."""
    from deepface.modules import preprocessing

    return preprocessing.resize_image(img=img, target_size=target_size)


def emotion_grey_face(face: np.ndarray) -> np.ndarray:
    """The (48, 48) grey face DeepFace's emotion model reads, from a (224, 224, 3) BGR
    model input: its `_preprocess_image`, written out so that a process whose emotion model
    is converted never imports TensorFlow for it (a test holds the two equal)."""
    return cv2.resize(cv2.cvtColor(face, cv2.COLOR_BGR2GRAY), (48, 48))


# --- Attribute outputs --------------------------------------------------------------


def attribute_labels() -> dict[str, list[str]]:
    """DeepFace's labels of the classes of the gender, emotion and race models, in the
    order of the models' outputs."""
    from deepface.models.demography.DemographyUtils import (
        EMOTION_LABELS,
        GENDER_LABELS,
        RACE_LABELS,
    )

    return {"gender": GENDER_LABELS, "emotion": EMOTION_LABELS, "race": RACE_LABELS}


def apparent_age(probabilities: np.ndarray) -> np.float64:
    """The age DeepFace reports for one face from the age model's 101 probabilities."""
    from deepface.models.demography.DemographyUtils import find_apparent_age

    return find_apparent_age(age_predictions=probabilities)


def l2_normalize(embedding: np.ndarray) -> np.ndarray:
    """One face's embedding divided by its L2 norm, in float64, as `DeepFace.represent`
    normalises VGG-Face's fc7 output (VggFaceClient.forward; not part of the model)."""
    from deepface.modules import verification

    return verification.l2_normalize(np.asarray(embedding, dtype=np.float64), axis=None)
