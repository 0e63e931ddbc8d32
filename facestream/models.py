"""Which DeepFace models facestream uses, where their weights live, and synthetic weights.

DeepFace keeps weights in `$DEEPFACE_HOME/.deepface/weights` and downloads them on first
use. Machines without internet cannot, so `synthesize_weights` writes files of the same
architecture from DeepFace's own model builders with a seeded random init: the cost of
inference is real, the predictions are meaningless. Like the real files, the age, gender,
race and VGG-Face (embedding) files share one VGG-Face trunk (see shared_trunk.py). Every
synthetic file is tagged inside (an HDF5 attribute), so `check_weights` and anything built
on it can say "synthetic".

Importing this module is cheap: DeepFace and TensorFlow load only inside the functions.
"""

from __future__ import annotations

import importlib
import json
import os
import sys
import tempfile
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from enum import StrEnum
from pathlib import Path
from typing import Any

import numpy as np

from facestream import deepface_internals

# "embedding" last: synthetic weights are seeded by an action's place in this tuple.
ACTIONS: tuple[str, ...] = ("age", "gender", "emotion", "race", "embedding")
EMBEDDING = "embedding"  # the action identification and enrolment need
# The actions that answer with labelled scores; "age" answers a number, "embedding" a vector.
ATTRIBUTE_ACTIONS: tuple[str, ...] = ("age", "gender", "emotion", "race")
SYNTHETIC_TAG = "facestream_synthetic"
# How every output made with synthetic weights is marked.
SYNTHETIC_WARNING = "synthetic weights: attributes are not meaningful"
DEFAULT_SEED = 20261122
# Bumped when synthetic files change shape; 2: age, gender and race share their trunk.
SYNTHETIC_LAYOUT = 2


@dataclass(frozen=True)
class ActionModel:
    """The DeepFace model behind one action and its weight file."""

    action: str
    model_name: str  # DeepFace's name, as deepface_internals.build_model takes it
    weight_file: str


ACTION_MODELS: dict[str, ActionModel] = {
    "age": ActionModel("age", "Age", "age_model_weights.h5"),
    "gender": ActionModel("gender", "Gender", "gender_model_weights.h5"),
    "emotion": ActionModel("emotion", "Emotion", "facial_expression_model_weights.h5"),
    "race": ActionModel("race", "Race", "race_model_single_batch.h5"),
    # DeepFace.represent(model_name="VGG-Face"): the fc7 layer of VGG-Face, L2-normalised.
    "embedding": ActionModel("embedding", "VGG-Face", "vgg_face_weights.h5"),
}

# Detector backends facestream accepts, with the files each needs in the weights folder.
# opencv's Haar cascades ship with opencv-contrib-python-headless<5 and mtcnn's weights
# ship in its wheel, so those two work offline; the others download on first use.
DETECTOR_FILES: dict[str, tuple[str, ...]] = {
    "opencv": (),
    "mtcnn": (),
    "ssd": ("deploy.prototxt", "res10_300x300_ssd_iter_140000.caffemodel"),
    "yunet": ("face_detection_yunet_2023mar.onnx",),
    "centerface": ("centerface.onnx",),
    "retinaface": ("retinaface.h5",),
    "skip": (),
}
DETECTOR_BACKENDS: tuple[str, ...] = tuple(DETECTOR_FILES)


class WeightState(StrEnum):
    """What is known about one weight file."""

    REAL = "real"
    SYNTHETIC = "synthetic"
    BUNDLED = "bundled"  # ships inside an installed package
    MISSING = "missing"
    UNREADABLE = "unreadable"  # present but not a weights file (e.g. a truncated download)


@dataclass(frozen=True)
class WeightStatus:
    """State of the weights one action or detector needs."""

    component: str  # "action age", "detector opencv"
    path: Path
    state: WeightState

    @property
    def usable(self) -> bool:
        return self.state in (WeightState.REAL, WeightState.SYNTHETIC, WeightState.BUNDLED)


class MissingWeightsError(RuntimeError):
    """Weights the configured actions or detector need are not on disk."""


def synthetic_deepface_home() -> Path:
    """The DEEPFACE_HOME of this machine's synthetic weights (~2.2 GB): made once, in the
    user's cache, never next to real weights."""
    name = f"synthetic-deepface-home-{DEFAULT_SEED}-v{SYNTHETIC_LAYOUT}"
    return Path.home() / ".cache" / "facestream" / name


def weights_dir_of(deepface_home: Path) -> Path:
    """The folder DeepFace reads weights from, for a given DEEPFACE_HOME."""
    return deepface_home / ".deepface" / "weights"


def _file_state(path: Path) -> WeightState:
    if not path.is_file():
        return WeightState.MISSING
    if path.suffix != ".h5":
        return WeightState.REAL
    import h5py

    try:
        with h5py.File(path, "r") as weights:
            return WeightState.SYNTHETIC if SYNTHETIC_TAG in weights.attrs else WeightState.REAL
    except OSError:
        return WeightState.UNREADABLE


def _bundled_detector_files(detector: str) -> list[Path]:
    if detector == "opencv":
        import cv2

        folder = Path(cv2.data.haarcascades)
        return [folder / "haarcascade_frontalface_default.xml", folder / "haarcascade_eye.xml"]
    if detector == "mtcnn":
        spec = importlib.util.find_spec("mtcnn")
        if spec is None or spec.origin is None:
            return [Path("mtcnn (package not installed)")]
        folder = Path(spec.origin).parent / "assets" / "weights"
        return [folder / name for name in ("pnet.lz4", "rnet.lz4", "onet.lz4")]
    return []


def check_weights(
    weights_dir: Path, actions: Iterable[str] = ACTIONS, detectors: Iterable[str] = ("opencv",)
) -> list[WeightStatus]:
    """Report, file by file, whether the weights for these actions and detectors are usable."""
    report = []
    for action in actions:
        path = weights_dir / ACTION_MODELS[action].weight_file
        report.append(WeightStatus(f"action {action}", path, _file_state(path)))
    for detector in detectors:
        for path in _bundled_detector_files(detector):
            state = WeightState.BUNDLED if path.is_file() else WeightState.MISSING
            report.append(WeightStatus(f"detector {detector}", path, state))
        for name in DETECTOR_FILES[detector]:
            path = weights_dir / name
            report.append(WeightStatus(f"detector {detector}", path, _file_state(path)))
    return report


def usable_detectors(weights_dir: Path) -> tuple[str, ...]:
    """The detector backends whose files are all here, so that none of them would download.

    Detection under a request's own backend runs while holding the process's detection lock:
    a download there would stall every image, so only these backends are accepted.
    """
    return tuple(
        detector
        for detector in DETECTOR_BACKENDS
        if all(status.usable for status in check_weights(weights_dir, (), (detector,)))
    )


def require_weights(weights_dir: Path, actions: Iterable[str], detector: str) -> bool:
    """Raise MissingWeightsError naming what is missing and the fix; return True if synthetic."""
    report = check_weights(weights_dir, actions, (detector,))
    bad = [status for status in report if not status.usable]
    if bad:
        lines = "\n".join(f"  {s.component}: {s.path.name} ({s.state.value})" for s in bad)
        raise MissingWeightsError(
            f"DeepFace weights are missing or unreadable in {weights_dir}:\n{lines}\n"
            "Fix: put the real DeepFace weight files in that folder (DeepFace downloads them "
            "there on first use when it has internet access; set DEEPFACE_HOME to use another "
            "folder), or, for tests and load benchmarks only, run `facestream models synth` to "
            "write synthetic weights (predictions meaningless). "
            "`facestream models check` shows what is present."
        )
    return any(status.state is WeightState.SYNTHETIC for status in report)


def _randomize(layers: Iterable[Any], rng: np.random.Generator) -> None:
    # He-normal kernels and zero biases keep the signal alive through VGG's 16 ReLU layers;
    # with Keras' default Glorot init the outputs barely depend on the input (~1e-6).
    for layer in layers:
        weights = layer.get_weights()
        if not weights:
            continue
        kernel = weights[0]
        fan_in = int(np.prod(kernel.shape[:-1]))
        new_kernel = rng.normal(0.0, np.sqrt(2.0 / fan_in), kernel.shape).astype(kernel.dtype)
        layer.set_weights([new_kernel, *(np.zeros_like(w) for w in weights[1:])])


@contextmanager
def _native_stderr_held() -> Iterator[None]:
    # TensorFlow's native libraries write to file descriptor 2 as they load, out of
    # Python's reach: hold those lines in a file, shown only when the block fails.
    sys.stderr.flush()
    saved = os.dup(2)
    with tempfile.TemporaryFile() as held:
        os.dup2(held.fileno(), 2)
        try:
            yield
        except BaseException:
            os.dup2(saved, 2)
            held.seek(0)
            sys.stderr.write(held.read().decode(errors="replace"))
            raise
        finally:
            os.dup2(saved, 2)
            os.close(saved)


def import_deepface_quietly() -> None:
    """Import DeepFace, and TensorFlow with it, without the native libraries' start-up
    messages (oneDNN, CUDA, absl) on this process's stderr: for commands whose output is
    their own lines. Servers and the dataflow import it plainly, into their logs."""
    with _native_stderr_held():
        from deepface import DeepFace  # noqa: F401


def synthesize_weights(
    weights_dir: Path, actions: Iterable[str] = ACTIONS, seed: int = DEFAULT_SEED
) -> list[Path]:
    """Write synthetic, tagged weight files for these actions; return their paths.

    Same architecture (and so the same inference cost) as the real files, seeded random
    values, so predictions are meaningless but do depend on the input. As in the real
    files, age, gender, race and VGG-Face get the same VGG-Face trunk and heads of their
    own. The VGG-Face file holds the whole network DeepFace loads it into (fc8 included).
    """
    # DeepFace must be imported before TensorFlow: it switches TF to legacy (tf-keras) mode.
    import h5py

    import_deepface_quietly()

    from facestream.shared_trunk import VGG_ACTIONS, split_trunk

    weights_dir.mkdir(parents=True, exist_ok=True)
    written = []
    for action in actions:
        spec = ACTION_MODELS[action]
        model = deepface_internals.build_architecture(spec.model_name)
        own_rng = np.random.default_rng([seed, ACTIONS.index(action)])
        if action in VGG_ACTIONS:
            trunk, head = split_trunk(model)
            _randomize(trunk, np.random.default_rng(seed))  # the same trunk in every file
            _randomize(head, own_rng)
        else:
            _randomize(model.layers, own_rng)
        target = weights_dir / spec.weight_file
        partial = target.with_name(f".{target.stem}.partial.h5")
        model.save_weights(str(partial))
        with h5py.File(partial, "a") as weights:
            weights.attrs[SYNTHETIC_TAG] = json.dumps(
                {"seed": seed, "action": action, "layout": SYNTHETIC_LAYOUT}
            )
        os.replace(partial, target)
        written.append(target)
    return written


def ensure_synthetic_weights(
    weights_dir: Path, actions: Iterable[str] = ACTIONS, seed: int = DEFAULT_SEED
) -> list[str]:
    """Write synthetic weights for the actions whose file in `weights_dir` is not already
    synthetic; return those actions (empty when nothing had to be made)."""
    actions = list(actions)
    absent = [
        action
        for action, status in zip(actions, check_weights(weights_dir, actions, ()), strict=True)
        if status.state is not WeightState.SYNTHETIC
    ]
    if absent:
        synthesize_weights(weights_dir, absent, seed)
    return absent


class WeightsDownloadError(RuntimeError):
    """DeepFace could not download a weight file (no internet, or the source failed)."""


def download_weights(
    weights_dir: Path, actions: Iterable[str] = ACTIONS, detectors: Iterable[str] = ()
) -> list[Path]:
    """Download the real weight files of `actions` and `detectors` that are missing or
    unreadable in `weights_dir`, with DeepFace's own downloader and sources; return the
    paths fetched.

    DeepFace writes into `$DEEPFACE_HOME/.deepface/weights` of this process, so
    `weights_dir` must be that folder. Raises WeightsDownloadError when a download fails.
    """
    import_deepface_quietly()  # before TensorFlow, see synthesize_weights
    if weights_dir_of(deepface_internals.deepface_home()).resolve() != weights_dir.resolve():
        raise ValueError(f"DeepFace downloads into $DEEPFACE_HOME, not into {weights_dir}")
    fetched = []
    for status in check_weights(weights_dir, actions, ()):
        if status.state in (WeightState.REAL, WeightState.SYNTHETIC):
            continue
        spec = ACTION_MODELS[status.component.removeprefix("action ")]
        status.path.unlink(missing_ok=True)  # an unreadable file is a broken download
        sources = deepface_internals.weight_sources(spec.model_name)
        try:
            deepface_internals.download_weight_file(spec.weight_file, sources)
        except Exception as error:  # DeepFace raises ValueError, gdown and requests their own
            status.path.unlink(missing_ok=True)
            raise WeightsDownloadError(f"{spec.weight_file}: {error}") from error
        fetched.append(status.path)
    for detector in detectors:
        missing = [s.path for s in check_weights(weights_dir, (), (detector,)) if not s.usable]
        if not missing:
            continue
        try:  # building a detector is how DeepFace fetches its files
            deepface_internals.build_detector(detector)
        except Exception as error:
            raise WeightsDownloadError(f"detector {detector}: {error}") from error
        fetched += missing
    return fetched
