"""Session-wide test harness: a real Postgres (and, in tests/harness/s3.py, a real S3 server).

Migrations run once into a template database per session; each test that asks for
``database_url`` gets its own ``CREATE DATABASE ... TEMPLATE`` copy, so tests never share rows.
"""

from __future__ import annotations

import os
import tempfile
import uuid
from collections.abc import Iterator

import pytest

from tests.harness.postgres import (
    clone_database,
    create_empty_database,
    drop_database,
    postgres_server_url,
)

# Ultralytics must never try the network in tests, nor write settings into the home directory.
os.environ.setdefault("YOLO_OFFLINE", "1")
os.environ.setdefault("YOLO_CONFIG_DIR", tempfile.mkdtemp(prefix="vidjobs-yolo-cfg-"))

_TEMPLATE = f"vidjobs_template_{os.getpid()}"


@pytest.fixture(scope="session")
def pg_server_url() -> Iterator[str]:
    """Superuser URL of the session's Postgres server."""
    with postgres_server_url() as url:
        yield url


@pytest.fixture(scope="session")
def pg_template(pg_server_url: str) -> Iterator[str]:
    """Name of a template database with every migration applied."""
    from db.migrate import migrate

    url = create_empty_database(pg_server_url, _TEMPLATE)
    migrate(url)
    yield _TEMPLATE
    drop_database(pg_server_url, _TEMPLATE)


@pytest.fixture
def database_url(pg_server_url: str, pg_template: str) -> Iterator[str]:
    """URL of a fresh, migrated database for this test alone."""
    name = f"vidjobs_t_{uuid.uuid4().hex[:12]}"
    url = clone_database(pg_server_url, pg_template, name)
    yield url
    drop_database(pg_server_url, name)


@pytest.fixture
def empty_database_url(pg_server_url: str) -> Iterator[str]:
    """URL of a fresh database with no migrations applied."""
    name = f"vidjobs_e_{uuid.uuid4().hex[:12]}"
    url = create_empty_database(pg_server_url, name)
    yield url
    drop_database(pg_server_url, name)
