"""Weights: synthetic files are tagged and reported, and DeepFace runs offline on them."""

from __future__ import annotations

import re

import cv2
import h5py
import numpy as np
import pytest

from facestream.models import (
    ATTRIBUTE_ACTIONS,
    SYNTHETIC_WARNING,
    MissingWeightsError,
    WeightState,
    check_weights,
    require_weights,
    synthesize_weights,
    usable_detectors,
    weights_dir_of,
)
from tests.commands import cli_env, run_facestream
from tests.photos import SINGLE_FACE


def states(report):
    return {(s.component, s.path.name): s.state for s in report}


def test_synthesized_file_is_tagged_and_reported_synthetic(tmp_path):
    weights_dir = weights_dir_of(tmp_path)
    [path] = synthesize_weights(weights_dir, ["emotion"], seed=1)
    assert path == weights_dir / "facial_expression_model_weights.h5"
    report = states(check_weights(weights_dir, ["emotion", "age"], ()))
    assert report == {
        ("action emotion", "facial_expression_model_weights.h5"): WeightState.SYNTHETIC,
        ("action age", "age_model_weights.h5"): WeightState.MISSING,
    }
    assert not list(weights_dir.glob(".*partial*")), "temporary files left behind"


def test_untagged_h5_counts_as_real_and_garbage_as_unreadable(tmp_path):
    weights_dir = weights_dir_of(tmp_path)
    weights_dir.mkdir(parents=True)
    with h5py.File(weights_dir / "age_model_weights.h5", "w") as real:
        real.create_dataset("kernel", data=np.zeros(3))
    (weights_dir / "gender_model_weights.h5").write_bytes(b"<html>Not Found</html>")
    report = states(check_weights(weights_dir, ["age", "gender"], ()))
    assert report[("action age", "age_model_weights.h5")] is WeightState.REAL
    assert report[("action gender", "gender_model_weights.h5")] is WeightState.UNREADABLE


def test_detectors_report_bundled_or_missing_files(tmp_path):
    report = check_weights(weights_dir_of(tmp_path), (), ("opencv", "mtcnn", "ssd"))
    by_detector = {}
    for status in report:
        by_detector.setdefault(status.component, set()).add(status.state)
    assert by_detector == {
        "detector opencv": {WeightState.BUNDLED},
        "detector mtcnn": {WeightState.BUNDLED},
        "detector ssd": {WeightState.MISSING},
    }


def test_only_detectors_with_all_their_files_are_usable(tmp_path):
    weights_dir = weights_dir_of(tmp_path)
    assert usable_detectors(weights_dir) == ("opencv", "mtcnn", "skip")
    weights_dir.mkdir(parents=True)
    (weights_dir / "deploy.prototxt").write_text("layer {}")
    assert "ssd" not in usable_detectors(weights_dir)  # one of its two files is still missing
    (weights_dir / "res10_300x300_ssd_iter_140000.caffemodel").write_bytes(b"\0" * 16)
    assert "ssd" in usable_detectors(weights_dir)


def test_require_weights_names_files_folder_and_fix(tmp_path):
    weights_dir = weights_dir_of(tmp_path)
    with pytest.raises(MissingWeightsError) as caught:
        require_weights(weights_dir, ["age", "emotion"], "opencv")
    message = str(caught.value)
    assert str(weights_dir) in message
    assert "age_model_weights.h5" in message
    assert "facial_expression_model_weights.h5" in message
    assert "facestream models synth" in message
    assert "facestream models check" in message


def test_cli_synth_says_synthetic_and_check_reports_it(tmp_path):
    env = cli_env(DEEPFACE_HOME=str(tmp_path))
    env.pop("TF_CPP_MIN_LOG_LEVEL", None)  # TensorFlow as loud as it is by default
    synth = run_facestream("models", "synth", "--actions", "emotion", env=env, timeout=300)
    assert synth.returncode == 0, synth.stderr
    # The command's own lines only: no TensorFlow, absl or DeepFace start-up messages.
    noise = re.compile(r"tensorflow|absl|oneDNN|cuda|I0000|has been created", re.IGNORECASE)
    assert not noise.search(synth.stdout + synth.stderr), synth.stdout + synth.stderr
    assert SYNTHETIC_WARNING in synth.stdout
    assert "facial_expression_model_weights.h5" in synth.stdout

    present = run_facestream("models", "check", "--actions", "emotion", env=env)
    assert present.returncode == 0, present.stdout + present.stderr
    assert "action emotion" in present.stdout and "synthetic" in present.stdout
    assert SYNTHETIC_WARNING in present.stdout

    missing = run_facestream("models", "check", "--actions", "age", "--detectors", "ssd", env=env)
    assert missing.returncode == 1
    assert "missing" in missing.stdout
    assert "3 file(s) missing or unreadable" in missing.stdout


@pytest.mark.model_process
@pytest.mark.models
def test_deepface_analyze_runs_offline_with_all_actions(synthetic_home, public_photos):
    from deepface import DeepFace

    [face] = DeepFace.analyze(
        str(public_photos / SINGLE_FACE[0]),
        actions=ATTRIBUTE_ACTIONS,
        detector_backend="opencv",
        silent=True,
    )
    assert set(face["region"]) >= {"x", "y", "w", "h"} and face["region"]["w"] > 50
    assert 0 <= face["age"] <= 100
    for action, dominant in (
        ("gender", "dominant_gender"),
        ("emotion", "dominant_emotion"),
        ("race", "dominant_race"),
    ):
        scores = face[action]
        assert sum(scores.values()) == pytest.approx(100, abs=1e-3)
        assert face[dominant] == max(scores, key=scores.get)


@pytest.mark.model_process
@pytest.mark.models
def test_synthetic_predictions_depend_on_the_face(synthetic_home, public_photos):
    from deepface import DeepFace

    faces = [
        DeepFace.analyze(str(public_photos / name), actions=ATTRIBUTE_ACTIONS, silent=True)[0]
        for name in (SINGLE_FACE[0], SINGLE_FACE[3])  # the astronaut, and in grey
    ]
    for action in ("gender", "emotion", "race"):
        first = np.array([faces[0][action][label] for label in faces[0][action]]) / 100
        second = np.array([faces[1][action][label] for label in faces[0][action]]) / 100
        assert np.abs(first - second).max() > 1e-3, action


@pytest.mark.models
def test_cli_calibrate_builds_int8_calibration_set_from_a_folder_offline(
    synthetic_home, public_photos, tmp_path
):
    from facestream.calibration import MIN_FACES

    env = cli_env(
        DEEPFACE_HOME=str(synthetic_home), FACESTREAM_ENGINE_CACHE_DIR=str(tmp_path / "engines")
    )
    done = run_facestream("models", "calibrate", str(public_photos), env=env, timeout=600)
    assert done.returncode == 0, done.stdout + done.stderr
    folder = tmp_path / "engines" / "calibration"
    crops = sorted(folder.glob("*.png"))
    assert len(crops) >= MIN_FACES
    assert f"{len(crops)} face crops" in done.stdout
    # Each face and its mirror image.
    first, mirrored = (cv2.imread(str(path)) for path in crops[:2])
    assert np.array_equal(cv2.flip(first, 1), mirrored)

    empty = tmp_path / "no-faces"
    empty.mkdir()
    (empty / "notes.txt").write_text("not a photo")
    refused = run_facestream("models", "calibrate", str(empty), env=env, timeout=300)
    assert refused.returncode == 1
    assert "fewer than" in refused.stderr
    assert sorted(folder.glob("*.png")) == crops  # the set before is kept
    missing = run_facestream("models", "calibrate", str(tmp_path / "nowhere"), env=env)
    assert missing.returncode == 2 and "not a folder" in missing.stderr
