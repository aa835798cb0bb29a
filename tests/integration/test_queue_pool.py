"""The pool and settings the API and worker open: autocommit connections, clear failures."""

from __future__ import annotations

import pytest

from tests.support.queue import submit
from vidjobs.db.errors import DatabaseUnavailable
from vidjobs.db.jobs import job_count_by_state
from vidjobs.db.pool import connection, open_pool
from vidjobs.db.settings import DatabaseSettings
from vidjobs.devstack.embedded import free_port
from vidjobs.schema import JobState

pytestmark = [pytest.mark.integration, pytest.mark.anyio]


async def test_pool_connections_commit_each_call(database_url: str) -> None:
    pool = await open_pool(DatabaseSettings(url=database_url, pool_max_size=2))
    try:
        async with connection(pool) as conn:
            assert conn.autocommit
            await submit(conn)
        # Another connection sees it at once: the insert committed by itself.
        async with connection(pool) as conn, connection(pool) as other:
            assert conn is not other
            assert (await job_count_by_state(other))[JobState.PENDING] == 1
    finally:
        await pool.close()


async def test_unreachable_database_is_reported_as_unavailable() -> None:
    url = f"postgresql://postgres@127.0.0.1:{free_port()}/nothing"
    with pytest.raises(DatabaseUnavailable):
        await open_pool(DatabaseSettings(url=url, connect_timeout_s=1.0))
