"""Dead pooled connections (Postgres restarted, backends terminated) never reach a caller.

The pool checks a connection's socket, not the server, before lending it (no round trip per
checkout); these tests kill real backends with ``pg_terminate_backend`` and show that callers
still get live connections at once, and that ``run_read`` retries a read whose connection died
under it exactly once.
"""

from __future__ import annotations

import asyncio
import time
from typing import Any

import psycopg
import pytest

from vidjobs.db.errors import DatabaseUnavailable
from vidjobs.db.jobs import job_count_by_state
from vidjobs.db.pool import connection, open_pool, run_read
from vidjobs.db.settings import DatabaseSettings
from vidjobs.schema import JobState

pytestmark = [pytest.mark.integration, pytest.mark.anyio]


async def _terminate_others(database_url: str) -> int:
    """Terminate every other backend of this database, as a restart would; how many."""
    async with await psycopg.AsyncConnection.connect(database_url, autocommit=True) as admin:
        cur = await admin.execute(
            "SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity"
            " WHERE datname = current_database() AND pid <> pg_backend_pid()"
        )
        row = await cur.fetchone()
        assert row is not None
        return int(row[0])


async def test_killed_idle_connections_are_replaced_without_waiting(database_url: str) -> None:
    pool = await open_pool(DatabaseSettings(url=database_url, pool_min_size=3, pool_max_size=3))
    try:
        await pool.wait()
        before = pool.get_stats()["pool_available"]
        assert before == 3
        assert await _terminate_others(database_url) == 3
        await asyncio.sleep(0.2)  # the FATAL message and EOF reach the idle sockets
        started = time.monotonic()
        for _ in range(3):  # every idle connection is dead: each checkout must skip them all
            async with connection(pool) as conn:
                assert (await job_count_by_state(conn))[JobState.PENDING] == 0
        # psycopg_pool's own check slept 1 s, then 2 s ... after each dead connection.
        assert time.monotonic() - started < 1.0
        assert pool.get_stats().get("returns_bad", 0) >= 1  # discarded, not lent
    finally:
        await pool.close()


async def test_run_read_retries_once_when_the_connection_dies_under_it(database_url: str) -> None:
    pool = await open_pool(DatabaseSettings(url=database_url, pool_max_size=2))
    calls: list[int] = []

    async def read_dying_once(conn: psycopg.AsyncConnection[Any]) -> int:
        calls.append(conn.info.backend_pid)
        if len(calls) == 1:  # the backend goes away mid-request, as in a restart
            await conn.execute("SELECT pg_terminate_backend(pg_backend_pid())")
        cur = await conn.execute("SELECT 42")
        row = await cur.fetchone()
        assert row is not None
        return int(row[0])

    try:
        assert await run_read(pool, read_dying_once) == 42
        assert len(calls) == 2
        assert calls[0] != calls[1]  # the retry ran on another backend

        async def read_always_dying(conn: psycopg.AsyncConnection[Any]) -> None:
            calls.append(conn.info.backend_pid)
            await conn.execute("SELECT pg_terminate_backend(pg_backend_pid())")

        calls.clear()
        with pytest.raises(DatabaseUnavailable):
            await run_read(pool, read_always_dying)
        assert len(calls) == 2  # once more, not forever

        async def read_timing_out(conn: psycopg.AsyncConnection[Any]) -> None:
            calls.append(conn.info.backend_pid)
            await conn.execute("SET statement_timeout = 1")
            try:
                await conn.execute("SELECT pg_sleep(1)")
            finally:
                await conn.execute("RESET statement_timeout")

        calls.clear()
        with pytest.raises(DatabaseUnavailable):  # Postgres answered: nothing to retry
            await run_read(pool, read_timing_out)
        assert len(calls) == 1
    finally:
        await pool.close()


async def test_connection_does_not_retry_what_may_have_changed_something(database_url: str) -> None:
    pool = await open_pool(DatabaseSettings(url=database_url, pool_max_size=2))
    try:
        with pytest.raises(DatabaseUnavailable):
            async with connection(pool) as conn:
                await conn.execute("SELECT pg_terminate_backend(pg_backend_pid())")
        async with connection(pool) as conn:  # and the pool lends a live one afterwards
            assert not conn.closed
            await conn.execute("SELECT 1")
    finally:
        await pool.close()
