"""The face analyzer: a batch gives what one face at a time gives, and wrong shapes are
refused."""

from __future__ import annotations

import numpy as np
import pytest

from di import Settings, build_container
from facestream.analyzer import FaceAnalyzer


@pytest.mark.model_process
@pytest.mark.models
def test_batched_prediction_equals_one_face_at_a_time(analyzer):
    faces = np.random.default_rng(1).random((4, 224, 224, 3), dtype=np.float32)
    batched = analyzer.predict(faces)
    for index in range(len(faces)):
        single = analyzer.predict(faces[index : index + 1])
        for action, rows in batched.items():
            np.testing.assert_allclose(single[action][0], rows[index], atol=1e-4)


@pytest.mark.model_process
@pytest.mark.models
def test_predict_refuses_wrongly_shaped_faces(synthetic_home):
    settings = Settings.from_env(
        {"DEEPFACE_HOME": str(synthetic_home), "FACESTREAM_ACTIONS": "emotion"}
    )
    analyzer = build_container(settings)[FaceAnalyzer]
    with pytest.raises(ValueError, match=r"\(n, 224, 224, 3\)"):
        analyzer.predict(np.zeros((224, 224, 3), dtype=np.float32))
