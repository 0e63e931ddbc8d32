"""Which weights the demo runs on: the user's, downloaded ones, or synthetic ones, and
downloading in a child process."""

from __future__ import annotations

import pytest

from apps import demo
from di import Settings
from facestream.models import (
    ACTIONS,
    WeightsDownloadError,
    synthetic_deepface_home,
    weights_dir_of,
)


@pytest.fixture
def no_real_weights(tmp_path) -> Settings:
    return Settings.from_env({"DEEPFACE_HOME": str(tmp_path)})


def test_weights_present_are_used_as_they_are(synthetic_home):
    settings = Settings.from_env({"DEEPFACE_HOME": str(synthetic_home)})
    home, synthetic = demo.choose_weights(settings, True, download=pytest.fail)
    assert (home, synthetic) == (synthetic_home, True)


def test_missing_weights_without_download_fall_back_to_synthetic(
    synthetic_home, no_real_weights, capsys
):
    home, synthetic = demo.choose_weights(no_real_weights, False, download=pytest.fail)
    assert (home, synthetic) == (synthetic_deepface_home(), True)
    out = capsys.readouterr().out
    assert "real DeepFace weights are missing" in out
    assert "downloading is off" in out
    assert f"using SYNTHETIC weights from {weights_dir_of(synthetic_home)}" in out
    assert not weights_dir_of(no_real_weights.models.deepface_home).exists()  # nothing mixed in


def test_a_failed_download_falls_back_to_synthetic(synthetic_home, no_real_weights, capsys):
    def offline(_folder):
        raise WeightsDownloadError("age_model_weights.h5: Failed to resolve host")

    home, synthetic = demo.choose_weights(no_real_weights, True, download=offline)
    assert (home, synthetic) == (synthetic_deepface_home(), True)
    assert "the download failed (age_model_weights.h5: Failed to resolve host)" in (
        capsys.readouterr().out
    )


def test_downloaded_weights_are_used_as_real(no_real_weights):
    fetched = []
    home, synthetic = demo.choose_weights(no_real_weights, True, download=fetched.append)
    assert fetched == [no_real_weights.models.weights_dir]
    assert (home, synthetic) == (no_real_weights.models.deepface_home, False)


def test_download_refuses_a_folder_deepface_would_not_write_to(tmp_path):
    from facestream.models import download_weights

    with pytest.raises(ValueError, match="DeepFace downloads into"):
        download_weights(tmp_path / "elsewhere", ACTIONS)


def test_download_in_child_runs_the_real_command(synthetic_home):
    # Every file is there (synthetic), so the command succeeds and downloads nothing (no
    # network): it returns, and no weight file is touched.
    weights = sorted((synthetic_home / ".deepface" / "weights").glob("*.h5"))
    before = {path: path.stat().st_mtime_ns for path in weights}
    assert len(before) == len(ACTIONS)  # one .h5 file per action
    assert demo.download_in_child(Settings.from_env({"DEEPFACE_HOME": str(synthetic_home)})) is None
    assert {path: path.stat().st_mtime_ns for path in weights} == before


def test_download_in_child_reports_the_commands_error(tmp_path):
    # A settings object whose DEEPFACE_HOME the child cannot use: the child refuses.
    not_a_folder = tmp_path / "file"
    not_a_folder.write_text("")
    settings = Settings.from_env({"DEEPFACE_HOME": str(tmp_path)})
    models = settings.models.model_copy(update={"deepface_home": not_a_folder})
    settings = settings.model_copy(update={"models": models})
    with pytest.raises(WeightsDownloadError, match="DEEPFACE_HOME="):
        demo.download_in_child(settings)
