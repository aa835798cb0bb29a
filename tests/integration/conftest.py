"""Fixtures of the integration tests: a connection to the test's database, the app, API keys.

The app runs in-process behind Litestar's test client; tests that need the real ``vidjobs api``
process start it with the ``processes`` fixture (``tests/conftest.py``).
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator

import psycopg
import pytest
from litestar import Litestar
from litestar.testing import TestClient

from tests.support.api import MAX_UPLOAD
from tests.support.db import Conn
from tests.support.keys import Keys
from vidjobs.api.app import create_app
from vidjobs.api.settings import ApiSettings
from vidjobs.blobs import BlobSettings
from vidjobs.db.settings import DatabaseSettings


@pytest.fixture
async def conn(database_url: str) -> AsyncIterator[Conn]:
    """An open autocommit connection to this test's database (``anyio`` tests)."""
    async with await psycopg.AsyncConnection.connect(database_url, autocommit=True) as c:
        yield c


@pytest.fixture
def api_settings(database_url: str, s3_settings: BlobSettings) -> ApiSettings:
    """Settings of an app on this test's database and a fresh S3 bucket."""
    return ApiSettings(
        database=DatabaseSettings(url=database_url, pool_max_size=4, connect_timeout_s=2.0),
        blobs=s3_settings,
        max_upload_bytes=MAX_UPLOAD,
    )


@pytest.fixture
def client(api_settings: ApiSettings) -> Iterator[TestClient[Litestar]]:
    """The app behind Litestar's test client (lifespan run: pool and store opened)."""
    with TestClient(create_app(api_settings)) as c:
        yield c


@pytest.fixture
def keys(database_url: str) -> Keys:
    """Keys for tenants ``acme`` and ``globex``."""
    return Keys(database_url)
