"""int8's calibration set: face crops written whole or not at all, named by their digest."""

from __future__ import annotations

import cv2
import numpy as np
import pytest

from facestream.calibration import (
    MIN_FACES,
    CalibrationError,
    CalibrationSet,
    decode_photo,
    read_photos,
    write_calibration_set,
)


def crops(count: int, seed: int = 0) -> list[bytes]:
    rng = np.random.default_rng(seed)
    return [
        cv2.imencode(".png", rng.integers(0, 256, (30, 24, 3), dtype=np.uint8))[1].tobytes()
        for _ in range(count)
    ]


def test_a_set_is_written_whole_and_read_as_model_inputs(tmp_path):
    calibration = write_calibration_set(crops(MIN_FACES), tmp_path / "calibration")
    assert calibration.exists() and len(calibration.files()) == MIN_FACES
    inputs = calibration.model_inputs()
    assert inputs.shape == (MIN_FACES, 224, 224, 3) and inputs.dtype == np.float32
    assert inputs.min() >= 0 and inputs.max() <= 1  # DeepFace's /255, once
    # A new set replaces the old one, and its digest says so.
    before = calibration.digest
    replaced = write_calibration_set(crops(MIN_FACES + 2, seed=1), tmp_path / "calibration")
    assert len(replaced.files()) == MIN_FACES + 2
    assert replaced.digest != before
    assert [p.name for p in tmp_path.iterdir()] == ["calibration"]  # no leftovers


def test_too_few_faces_are_refused_and_the_set_before_is_kept(tmp_path):
    calibration = write_calibration_set(crops(MIN_FACES), tmp_path / "calibration")
    digest = calibration.digest
    with pytest.raises(CalibrationError, match="fewer than"):
        write_calibration_set(crops(MIN_FACES - 1), tmp_path / "calibration")
    assert CalibrationSet(tmp_path / "calibration").digest == digest  # read again
    (tmp_path / "small").mkdir()
    (tmp_path / "small" / "face.png").write_bytes(crops(1)[0])
    with pytest.raises(CalibrationError, match="calibrate DIR"):
        CalibrationSet(tmp_path / "small").model_inputs()


def test_unreadable_files_are_not_photos(tmp_path):
    for data in (b"", b"\x89PNG\r\n\x1a\n broken", b"text"):
        with pytest.raises(ValueError, match="not an image"):
            decode_photo(data)
    (tmp_path / "empty.jpg").write_bytes(b"")
    (tmp_path / "notes.txt").write_text("hello")
    (tmp_path / "nested").mkdir()
    (tmp_path / "nested" / "face.png").write_bytes(crops(1)[0])
    assert [image.shape for image in read_photos(tmp_path)] == [(30, 24, 3)]
