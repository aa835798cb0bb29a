"""Shared pieces of the API tests: app settings, a running app, keys, videos, what is stored.

Fixtures here are imported by the ``test_api_*`` modules (explicit imports, no conftest magic),
so each module says which real services it uses.
"""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import Iterator
from dataclasses import replace
from pathlib import Path
from typing import NamedTuple

import msgspec
import psycopg
import pytest
from litestar import Litestar
from litestar.testing import TestClient

from tests.harness.s3 import S3Server
from vidjobs.api.app import create_app
from vidjobs.api.settings import ApiSettings
from vidjobs.blobs import BlobSettings, open_blob_store, results_key
from vidjobs.db.api_keys import api_key_create, api_key_revoke
from vidjobs.db.leases import job_claim, job_complete, job_progress
from vidjobs.db.pool import DatabaseSettings

__all__ = [
    "MAX_UPLOAD",
    "Claimed",
    "Keys",
    "api_settings",
    "client",
    "count_jobs",
    "keys",
    "mp4_bytes",
    "stand_in_worker_claims",
    "stand_in_worker_completes",
    "stored_blobs",
    "with_limit",
]

MAX_UPLOAD = 256 * 1024
"""The tests' upload limit: small, so the oversize case is cheap."""

MP4_HEAD = b"\x00\x00\x00\x18ftypisom\x00\x00\x02\x00isomiso2"


def mp4_bytes(size: int = 4096, seed: int = 0) -> bytes:
    """An ``ftyp`` header followed by garbage: passes the API's check (the worker would fail it)."""
    body = bytes((i * 31 + seed) % 251 for i in range(max(0, size - len(MP4_HEAD))))
    return MP4_HEAD + body


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


class Claimed(NamedTuple):
    """A job the stand-in worker holds."""

    job_id: uuid.UUID
    lease_token: uuid.UUID


class Keys:
    """API keys of two tenants; ``acme`` is who most tests act as."""

    def __init__(self, database_url: str) -> None:
        self._url = database_url
        self.acme_id, self.acme = self.create("acme")
        self.other_id, self.other = self.create("globex")

    def create(self, tenant: str) -> tuple[uuid.UUID, str]:
        """A fresh key for ``tenant``."""

        async def go() -> tuple[uuid.UUID, str]:
            async with await psycopg.AsyncConnection.connect(self._url, autocommit=True) as conn:
                return await api_key_create(conn, tenant, "test")

        return asyncio.run(go())

    def revoke(self, key_id: uuid.UUID) -> None:
        """Revoke a key."""

        async def go() -> None:
            async with await psycopg.AsyncConnection.connect(self._url, autocommit=True) as conn:
                await api_key_revoke(conn, key_id)

        asyncio.run(go())

    @staticmethod
    def auth(key: str) -> dict[str, str]:
        """The header that presents ``key``."""
        return {"Authorization": f"Bearer {key}"}


@pytest.fixture
def keys(database_url: str) -> Keys:
    """Keys for tenants ``acme`` and ``globex``."""
    return Keys(database_url)


def count_jobs(database_url: str) -> int:
    """Rows in the queue table."""
    with psycopg.connect(database_url) as conn:
        row = conn.execute("SELECT count(*) FROM vidjobs.jobs").fetchone()
        assert row is not None
        return int(row[0])


def stored_blobs(settings: BlobSettings, server: S3Server | None = None) -> list[str]:
    """Every key in the store, read around the code under test (SDK listing or a dir walk)."""
    if settings.backend == "local":
        root = Path(settings.directory)
        if not root.exists():
            return []
        return sorted(
            str(p.relative_to(root))
            for p in root.rglob("*")
            if p.is_file() and not p.name.startswith(".")
        )
    assert server is not None, "pass the S3 server to list an S3 bucket"
    s3 = server.client()
    if not s3.bucket_exists(settings.s3_bucket):
        return []
    return sorted(
        o.object_name
        for o in s3.list_objects(settings.s3_bucket, recursive=True)
        if o.object_name is not None
    )


def stand_in_worker_claims(database_url: str, frames_done: int, frames_total: int) -> Claimed:
    """STAND-IN FOR THE WORKER: claim one job and report progress on it."""

    async def go() -> Claimed:
        async with await psycopg.AsyncConnection.connect(database_url, autocommit=True) as c:
            (job,) = await job_claim(c, worker_id="stand-in", batch_size=1, lease_seconds=60)
            assert job.lease_token is not None
            await job_progress(
                c, job.job_id, job.lease_token, frames_done=frames_done, frames_total=frames_total
            )
            return Claimed(job.job_id, job.lease_token)

    return asyncio.run(go())


def stand_in_worker_completes(
    database_url: str, settings: BlobSettings, claimed: Claimed, document: dict[str, object]
) -> None:
    """STAND-IN FOR THE WORKER: write the results document, then complete the job (fenced)."""

    async def go() -> None:
        store = open_blob_store(settings)
        try:
            key = results_key(claimed.job_id)
            store.put_bytes(key, msgspec.json.encode(document), content_type="application/json")
            async with await psycopg.AsyncConnection.connect(database_url, autocommit=True) as c:
                await job_complete(c, claimed.job_id, claimed.lease_token, output_key=key)
        finally:
            store.close()

    asyncio.run(go())


def with_limit(settings: ApiSettings, limit: int) -> ApiSettings:
    """``settings`` with another upload limit."""
    return replace(settings, max_upload_bytes=limit)
