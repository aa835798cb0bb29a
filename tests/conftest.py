"""Fixtures of every level: the session's real Postgres and S3 servers, blobs, processes.

Migrations run once into a template database per session; each test that asks for
``database_url`` gets its own ``CREATE DATABASE ... TEMPLATE`` copy, so tests never share rows.
Where the servers come from is ``tests/support/postgres.py`` and ``tests/support/s3.py``; the
process harness is ``tests/support/processes.py``. Fixtures of one level live in that level's
``conftest.py`` (``tests/integration/conftest.py`` gives ``conn``, ``client`` and ``keys``).
"""

from __future__ import annotations

import os
import tempfile
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING

import pytest

from tests.support.postgres import (
    clone_database,
    create_empty_database,
    drop_database,
    postgres_server_url,
)
from tests.support.processes import Processes, Services

# Ultralytics must never try the network in tests, nor write settings into the home directory.
os.environ.setdefault("YOLO_OFFLINE", "1")
os.environ.setdefault("YOLO_CONFIG_DIR", tempfile.mkdtemp(prefix="vidjobs-yolo-cfg-"))

if TYPE_CHECKING:
    from tests.support.s3 import S3Server
    from vidjobs.blobs import BlobSettings, BlobStore

_TEMPLATE = f"vidjobs_template_{os.getpid()}"


@pytest.fixture(scope="session")
def anyio_backend() -> str:
    """Async tests (``@pytest.mark.anyio``) run on asyncio only: psycopg's async API needs it."""
    return "asyncio"


@pytest.fixture(scope="session")
def pg_server_url() -> Iterator[str]:
    """Superuser URL of the session's Postgres server."""
    with postgres_server_url() as url:
        yield url


@pytest.fixture(scope="session")
def pg_template(pg_server_url: str) -> Iterator[str]:
    """Name of a template database with every migration applied."""
    from vidjobs.db.migrate import migrate

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


# --- Blob storage (tests/support/s3.py): a real S3 server per session, a fresh bucket per test.


@pytest.fixture(scope="session")
def s3_server() -> Iterator[S3Server]:
    """The session's S3 server: env-named, MinIO in Docker, or embedded SeaweedFS."""
    from tests.support.s3 import s3_server as start_s3_server

    with start_s3_server() as server:
        yield server


@pytest.fixture
def s3_settings(s3_server: S3Server) -> Iterator[BlobSettings]:
    """S3 ``BlobSettings`` for a fresh bucket (not created yet), dropped after the test."""
    from tests.support.s3 import drop_bucket, s3_settings_for

    settings = s3_settings_for(s3_server)
    yield settings
    drop_bucket(s3_server, settings.s3_bucket)


@pytest.fixture
def local_blob_settings(tmp_path: Path) -> BlobSettings:
    """Local-directory ``BlobSettings`` under this test's ``tmp_path``."""
    from vidjobs.blobs import BlobSettings

    return BlobSettings(backend="local", directory=tmp_path / "blobs")


@pytest.fixture(params=["local", "s3"])
def blob_store(request: pytest.FixtureRequest) -> Iterator[BlobStore]:
    """A ready blob store, once per backend, so one test covers both."""
    from vidjobs.blobs import open_blob_store

    fixture = "local_blob_settings" if request.param == "local" else "s3_settings"
    store = open_blob_store(request.getfixturevalue(fixture))
    store.ensure_ready()
    yield store
    store.close()


# --- Processes (tests/support/processes.py): the real vidjobs processes, stopped by PID.


@pytest.fixture
def processes(tmp_path: Path) -> Iterator[Processes]:
    """Starts ``vidjobs`` processes for this test; whatever is left is stopped afterwards."""
    procs = Processes(tmp_path)
    try:
        yield procs
    finally:
        procs.close()


@pytest.fixture
def live(
    processes: Processes, database_url: str, local_blob_settings: BlobSettings, tmp_path: Path
) -> Services:
    """API and worker processes to start on this test's database and a local blob directory.

    Nothing is started yet. Offline with the project's fixture detector, an 8 MiB upload limit:
    what the robustness and acceptance tests run against.
    """
    from vidjobs.worker.pipelines.yolo_ocr.settings import FIXTURE_IMGSZ, FIXTURE_WEIGHTS

    return Services(
        processes,
        database_url,
        local_blob_settings,
        {
            "VIDJOBS_API_MAX_UPLOAD_BYTES": str(8 * 1024 * 1024),
            "VIDJOBS_DETECTOR_WEIGHTS": str(FIXTURE_WEIGHTS),
            "VIDJOBS_DETECTOR_IMGSZ": str(FIXTURE_IMGSZ),
            "YOLO_CONFIG_DIR": str(tmp_path / "ultralytics"),
        },
    )
