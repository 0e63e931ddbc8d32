"""The int8 calibration set: face crops whose activations set the quantization's ranges.

Post-training quantization (NNCF, facestream/engines.py) runs the fp32 models over sample
inputs and picks each layer's int8 range from what it sees. The samples must look like what
the models will get: aligned face crops, as exact mode extracts them. The set is a folder of
PNG crops (lossless: the crop calibrated on is the crop extracted), written whole or not at
all, and named by a digest of its files so that a quantized model cached from one set is
never read for another.

By default the set is built at first use from the public photos (the demo extra's
scikit-image photos: four faces, each mirrored and under three lightings);
`facestream models calibrate DIR` builds it from a folder of the user's own photos instead,
which matters with real weights: ranges fitted on a few public faces may clip the
activations of the faces a deployment really sees.
"""

from __future__ import annotations

import functools
import hashlib
import os
import shutil
import tempfile
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np

from facestream.faces import find_faces, model_input
from facestream.public_photos import skimage_data_dir

# NNCF's default subset: more samples cost minutes and gain little.
MAX_FACES = 300
# The default set's brightness factors: the public photos have four faces. Wider (0.6, 1.4)
# fitted coarser ranges: one dominant label of 26 faces changed on the test photos.
PUBLIC_LIGHTINGS = (0.8, 1.0, 1.25)
# Fewer faces than this give ranges fitted to a handful of activations: refused.
MIN_FACES = 8


def calibration_folder(engine_cache_dir: Path) -> Path:
    """Where the calibration set lives: beside the conversions it shapes."""
    return engine_cache_dir / "calibration"


def decode_photo(data: bytes) -> np.ndarray:
    """A photo's bytes as a BGR image (ValueError when OpenCV cannot read them)."""
    try:
        image = cv2.imdecode(np.frombuffer(data, np.uint8), cv2.IMREAD_COLOR)
    except cv2.error:  # an empty file, among others
        image = None
    if image is None:
        raise ValueError("not an image OpenCV can read")
    return image


class CalibrationError(RuntimeError):
    """The calibration set cannot be built or read (too few faces, no photos)."""


@dataclass(frozen=True)
class CalibrationSet:
    """A folder of PNG face crops (the set), read as the attribute models' inputs."""

    folder: Path

    def exists(self) -> bool:
        return self.folder.is_dir() and any(self.folder.glob("*.png"))

    def files(self) -> list[Path]:
        return sorted(self.folder.glob("*.png"))

    @functools.cached_property
    def digest(self) -> str:
        """A digest of the set's files, read once per object: the quantized models' cache keys
        include it (a process quantizes on the set it started with; recalibrating takes a
        restart)."""
        digest = hashlib.sha256()
        for path in self.files():
            digest.update(path.name.encode())
            digest.update(hashlib.sha256(path.read_bytes()).digest())
        return digest.hexdigest()[:16]

    def model_inputs(self) -> np.ndarray:
        """Each crop as the (224, 224, 3) float32 input DeepFace's models get."""
        files = self.files()
        if len(files) < MIN_FACES:
            raise CalibrationError(
                f"the calibration set {self.folder} has {len(files)} faces, fewer than "
                f"{MIN_FACES}: rebuild it with `facestream models calibrate DIR`"
            )
        return np.stack([model_input(cv2.imread(str(path), cv2.IMREAD_COLOR)) for path in files])


def calibration_crops(
    images: Iterable[np.ndarray], detector_backend: str, lightings: Sequence[float] = (1.0,)
) -> list[bytes]:
    """The faces of the BGR images as PNG crops, each also mirrored (as likely as the
    original) and under each of `lightings` (brightness factors), at most MAX_FACES."""
    crops: list[bytes] = []
    for image in images:
        for face in (found.crop for found in find_faces(image, detector_backend, 0)):
            for variant in (face, cv2.flip(face, 1)):
                for lighting in lightings:
                    lit = cv2.convertScaleAbs(variant, alpha=lighting)
                    crops.append(cv2.imencode(".png", lit)[1].tobytes())
            if len(crops) >= MAX_FACES:
                return crops[:MAX_FACES]
    return crops


def public_calibration_crops(detector_backend: str) -> list[bytes]:
    """The default set: the public photos' faces, mirrored, under three lightings.
    FileNotFoundError saying what to install when the photos are not here."""
    return calibration_crops(read_photos(skimage_data_dir()), detector_backend, PUBLIC_LIGHTINGS)


def write_calibration_set(crops: list[bytes], folder: Path) -> CalibrationSet:
    """Replace the set in `folder` with `crops`, whole or not at all; CalibrationError when
    there are fewer than MIN_FACES."""
    if len(crops) < MIN_FACES:
        raise CalibrationError(
            f"found {len(crops)} faces (mirrored included), fewer than the {MIN_FACES} a "
            "calibration needs: give photos with more faces"
        )
    folder.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=".calibration-", dir=folder.parent))
    for index, crop in enumerate(crops):
        (staging / f"face-{index:04d}.png").write_bytes(crop)
    old = folder.with_name(f".{folder.name}-old-{os.getpid()}")
    if folder.exists():
        folder.rename(old)
    staging.rename(folder)
    shutil.rmtree(old, ignore_errors=True)
    return CalibrationSet(folder)


def read_photos(folder: Path) -> Iterable[np.ndarray]:
    """The images OpenCV can read in `folder` (recursively), in name order; others skipped."""
    for path in sorted(folder.rglob("*")):
        if path.is_file():
            try:
                yield decode_photo(path.read_bytes())
            except ValueError:
                continue
