"""The status route's batched reads: polls that arrive together share one statement."""

from __future__ import annotations

import asyncio
import uuid

import psycopg
import pytest

from tests.support.queue import submit
from vidjobs.api.status_reads import StatusReads
from vidjobs.db.api_keys import api_key_create, api_key_revoke, hash_key
from vidjobs.db.errors import DatabaseUnavailable
from vidjobs.db.pool import open_pool
from vidjobs.db.settings import DatabaseSettings

pytestmark = [pytest.mark.integration, pytest.mark.anyio]


async def test_concurrent_polls_share_one_statement_and_each_gets_its_answer(
    database_url: str,
) -> None:
    async with await psycopg.AsyncConnection.connect(database_url, autocommit=True) as conn:
        _, acme = await api_key_create(conn, "acme")
        _, other = await api_key_create(conn, "other")
        revoked_id, revoked = await api_key_create(conn, "acme")
        await api_key_revoke(conn, revoked_id)
        job = await submit(conn, "acme")
    pool = await open_pool(DatabaseSettings(url=database_url, pool_max_size=2))
    try:
        reads = StatusReads(pool)
        before = pool.get_stats().get("requests_num", 0)
        unknown = uuid.uuid4()
        answers = await asyncio.gather(
            reads.get(hash_key(acme), job.job_id),
            reads.get(hash_key(other), job.job_id),  # another tenant's job: not found
            reads.get(hash_key(revoked), job.job_id),  # revoked key: no tenant
            reads.get(hash_key("vj_nobody"), job.job_id),  # unknown key: no tenant
            reads.get(hash_key(acme), unknown),
            reads.get(hash_key(acme), job.job_id),  # the same pair twice
        )
        assert pool.get_stats().get("requests_num", 0) - before == 1  # one checkout, one statement
        tenant, found = answers[0]
        assert tenant == "acme"
        assert found == job
        assert list(answers[1:5]) == [("other", None), (None, None), (None, None), ("acme", None)]
        assert answers[5] == answers[0]
        # A lone poll goes at once, alone.
        assert await reads.get(hash_key(other), unknown) == ("other", None)
    finally:
        await pool.close()


async def test_a_cancelled_poll_does_not_disturb_its_batch(database_url: str) -> None:
    async with await psycopg.AsyncConnection.connect(database_url, autocommit=True) as conn:
        _, acme = await api_key_create(conn, "acme")
        job = await submit(conn, "acme")
    pool = await open_pool(DatabaseSettings(url=database_url, pool_max_size=2))
    try:
        reads = StatusReads(pool)
        gone = asyncio.ensure_future(reads.get(hash_key(acme), job.job_id))
        stays = asyncio.ensure_future(reads.get(hash_key(acme), job.job_id))
        await asyncio.sleep(0)
        gone.cancel()  # the client went away while its poll was queued
        tenant, found = await stays
        assert (tenant, found) == ("acme", job)
        assert gone.cancelled()
    finally:
        await pool.close()


async def test_database_down_fails_every_poll_of_the_batch_as_unavailable(
    database_url: str,
) -> None:
    pool = await open_pool(DatabaseSettings(url=database_url, pool_max_size=1))
    try:
        reads = StatusReads(pool)
        await pool.close()  # nothing to borrow from any more
        results = await asyncio.gather(
            reads.get(hash_key("vj_a"), uuid.uuid4()),
            reads.get(hash_key("vj_b"), uuid.uuid4()),
            return_exceptions=True,
        )
        assert all(isinstance(r, DatabaseUnavailable) for r in results), results
    finally:
        await pool.close()
