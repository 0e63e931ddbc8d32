"""Fixtures only: synthetic DeepFace weights (cached outside git), the embedded broker,
the test photos, fresh topics and the analyzers. Helpers live in modules of their own
(tests/commands.py, pipeline.py, grpc_helpers.py, photos.py, images.py)."""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import pytest

from apps.broker import EmbeddedBroker, free_port
from bench.system_under_test import SHARED_FACES
from facestream.models import ACTIONS, DEFAULT_SEED, ensure_synthetic_weights, weights_dir_of
from tests.commands import SYNTHETIC_HOME

# DeepFace reads DEEPFACE_HOME when it loads weights; point it at the synthetic cache
# before anything imports DeepFace, so no test can reach for a download.
os.environ["DEEPFACE_HOME"] = str(SYNTHETIC_HOME)
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")


@pytest.fixture(scope="session")
def synthetic_home() -> Path:
    """DEEPFACE_HOME holding synthetic weights for every action (generated if missing)."""
    ensure_synthetic_weights(weights_dir_of(SYNTHETIC_HOME), ACTIONS, DEFAULT_SEED)
    return SYNTHETIC_HOME


@pytest.fixture(scope="session")
def public_photos(tmp_path_factory) -> Path:
    """The repository's own test photos (tests/photos.py), written once per session."""
    from tests.photos import write_public_photos

    folder = tmp_path_factory.mktemp("public-photos")
    write_public_photos(folder)
    return folder


@pytest.fixture(scope="session")
def test_photos(public_photos) -> list[Path]:
    """Every test photo: the public set, and the optional shared photos when they are
    beside the repository."""
    folders = [public_photos, *([SHARED_FACES] if SHARED_FACES.is_dir() else [])]
    return [
        path
        for folder in folders
        for path in sorted(folder.rglob("*.*"))
        if path.suffix.lower() != ".md"
    ]


@pytest.fixture(scope="session")
def embedded_broker() -> Iterator[EmbeddedBroker]:
    """One embedded broker for the session, on a free loopback port; stopped by pid."""
    broker = EmbeddedBroker(free_port())
    broker.start()
    try:
        yield broker
    finally:
        broker.stop()


@pytest.fixture
def topics(embedded_broker):
    """A fresh set of facestream topics on the session's broker (tests.pipeline.Topics)."""
    from tests.pipeline import Topics  # it imports this module: not at the top

    return Topics(embedded_broker.bootstrap)


@pytest.fixture(scope="session")
def analyzer_for(synthetic_home):
    """analyzer_for(engine, mode="exact", precision="auto", actions=None): the FaceAnalyzer
    on that engine with `actions` (None: the default four attributes), built through the
    container once per session."""
    from di import Settings, build_container
    from facestream.analyzer import FaceAnalyzer

    built = {}

    def get(engine: str, mode: str = "exact", precision: str = "auto", actions=None):
        key = (engine, mode, precision, tuple(actions or ()))
        if key not in built:
            settings = Settings.from_env(
                {
                    "DEEPFACE_HOME": str(synthetic_home),
                    "FACESTREAM_ENGINE": engine,
                    "FACESTREAM_MODE": mode,
                    "FACESTREAM_PRECISION": precision,
                    **({"FACESTREAM_ACTIONS": ",".join(actions)} if actions else {}),
                }
            )
            built[key] = build_container(settings)[FaceAnalyzer]
        return built[key]

    return get


@pytest.fixture(scope="session")
def analyzer(analyzer_for):
    """The default FaceAnalyzer (default engine, exact mode)."""
    from di import Settings

    return analyzer_for(Settings.from_env({}).analysis.engine)


@pytest.fixture
def auth_file(tmp_path):
    """A credentials file naming the principals of tests.credentials."""
    from tests.credentials import credentials_file

    return credentials_file(tmp_path / "credentials.toml")


@pytest.fixture
def secured_server(topics, auth_file):
    """A serving server that reads `auth_file`, with a stand-in dataflow answering every
    request."""
    from tests.credentials import serving_with_credentials

    with serving_with_credentials(topics, auth_file) as running:
        yield running
