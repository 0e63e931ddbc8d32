"""Fixtures only: the embedded broker, the galleries' PostgreSQL, the test photos, fresh
topics, credentials. Helpers live in modules of their own (tests/commands.py, pipeline.py,
grpc_helpers.py, photos.py, images.py); what every test directory shares (synthetic
weights, the model worker, the memory bound) is in the repository's conftest.py."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

from apps.broker import EmbeddedBroker, free_port
from apps.gallery_database import EmbeddedPostgres
from apps.image_sources import SHARED_FACES
from facestream.gallery_store import GalleryStore, connection_pool


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
def valid_test_photos(test_photos) -> list[Path]:
    """The test photos that are valid images (the ones in a `bad` folder are not)."""
    return [path for path in test_photos if path.parent.name != "bad"]


@pytest.fixture(scope="session")
def embedded_broker() -> Iterator[EmbeddedBroker]:
    """One embedded broker for the session, on a free loopback port; stopped by pid."""
    broker = EmbeddedBroker(free_port())
    broker.start()
    try:
        yield broker
    finally:
        broker.stop()


@pytest.fixture(scope="session")
def gallery_database(tmp_path_factory) -> Iterator[EmbeddedPostgres]:
    """One embedded PostgreSQL for the session, in a temporary folder; stopped by pid."""
    database = EmbeddedPostgres(tmp_path_factory.mktemp("galleries") / "postgres")
    database.start()
    try:
        yield database
    finally:
        database.stop()


@pytest.fixture
def gallery_dsn(gallery_database) -> str:
    """A fresh, empty database on the session's PostgreSQL: its connection string."""
    import psycopg

    name = f"test_{uuid.uuid4().hex[:12]}"
    with psycopg.connect(gallery_database.dsn_of("postgres"), autocommit=True) as db:
        db.execute(f"create database {name}")
    return gallery_database.dsn_of(name)


@pytest.fixture
def gallery_store(gallery_dsn) -> Iterator[GalleryStore]:
    """A migrated gallery store on a fresh database."""
    with connection_pool(gallery_dsn, max_size=4) as pool:
        store = GalleryStore(pool)
        store.migrate()
        yield store


@pytest.fixture
def topics(embedded_broker):
    """A fresh set of facestream topics on the session's broker (tests.pipeline.Topics)."""
    from tests.pipeline import Topics  # it imports this module: not at the top

    return Topics(embedded_broker.bootstrap)


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
