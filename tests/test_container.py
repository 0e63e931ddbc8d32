"""The lagom container: singletons per process, built once even when threads race."""

from __future__ import annotations

import logging
import threading

import numpy as np
import pytest

import di.container
from di import Settings, build_container
from facestream.analyzer import FaceAnalyzer
from facestream.models import MissingWeightsError


def settings_for(home, **env) -> Settings:
    return Settings.from_env({"DEEPFACE_HOME": str(home), **env})


def test_settings_sections_and_logger_are_singletons(tmp_path):
    settings = settings_for(tmp_path, FACESTREAM_LOG_LEVEL="WARNING")
    container = build_container(settings)
    for section in settings.sections():
        assert container[type(section)] is section
    logger = container[logging.Logger]
    assert logger is container[logging.Logger]
    assert logger.name == "facestream"
    assert logger.level == logging.WARNING


def test_missing_weights_fail_when_the_analyzer_is_built(tmp_path):
    container = build_container(settings_for(tmp_path))
    with pytest.raises(MissingWeightsError, match="facestream models synth"):
        container[FaceAnalyzer]


@pytest.mark.model_process
@pytest.mark.models
def test_two_threads_get_one_analyzer_built_once(synthetic_home, monkeypatch):
    builds = []
    real_make_analyzer = di.container.make_analyzer

    def counting_make_analyzer(*args, **kwargs):
        builds.append(threading.current_thread().name)
        return real_make_analyzer(*args, **kwargs)

    monkeypatch.setattr(di.container, "make_analyzer", counting_make_analyzer)
    container = build_container(settings_for(synthetic_home))
    start = threading.Barrier(2)
    resolved: list[FaceAnalyzer] = []

    def resolve() -> None:
        start.wait(timeout=10)
        resolved.append(container[FaceAnalyzer])

    threads = [threading.Thread(target=resolve, name=f"worker-{i}") for i in range(2)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=300)
    assert len(resolved) == 2
    assert resolved[0] is resolved[1]
    assert len(builds) == 1

    analyzer = resolved[0]
    assert analyzer.synthetic_weights
    assert analyzer.actions == ("age", "gender", "emotion", "race")
    assert analyzer.shared_actions == ("age", "gender", "race")
    faces = np.random.default_rng(0).random((3, 224, 224, 3), dtype=np.float32)
    outputs = analyzer.predict(faces)
    assert outputs["age"].shape == (3,)
    assert outputs["gender"].shape == (3, 2)
    assert outputs["emotion"].shape == (3, 7)
    assert outputs["race"].shape == (3, 6)
    np.testing.assert_allclose(outputs["race"].sum(axis=1), 1.0, rtol=1e-4)
