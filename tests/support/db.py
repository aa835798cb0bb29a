"""Reading and writing a test's database around the code under test.

Tests may look at the tables directly (that is how they check what the product wrote); these
helpers open a connection of their own for each call, so they work while the product's
processes hold theirs, and from sync tests too (:func:`run_db` runs one coroutine).
"""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import Awaitable, Callable
from typing import Any, TypeVar

import psycopg

from vidjobs.db.jobs import NewJob, job_insert_many

__all__ = ["Conn", "count_jobs", "insert_jobs", "run_db", "sql", "states"]

T = TypeVar("T")

Conn = psycopg.AsyncConnection[Any]
"""An async connection, as the product's ``db`` functions take it."""


def sql(url: str, query: str, *params: Any) -> list[tuple[Any, ...]]:
    """Run one statement on its own autocommit connection; its rows (none for a command).

    Without ``params`` the text is sent as it is, so a script with ``%`` in it (``format('%I')``
    in deploy/sql/roles.sql) is not read as placeholders.
    """
    with psycopg.connect(url, autocommit=True, connect_timeout=5) as conn:
        cur = conn.execute(query, params or None)  # type: ignore[arg-type]
        return cur.fetchall() if cur.description else []


def run_db(url: str, fn: Callable[[Conn], Awaitable[T]]) -> T:
    """Await ``fn(conn)`` on a fresh autocommit connection, from sync code."""

    async def go() -> T:
        async with await psycopg.AsyncConnection.connect(url, autocommit=True) as conn:
            return await fn(conn)

    return asyncio.run(go())


def count_jobs(url: str) -> int:
    """Rows in the queue table."""
    ((n,),) = sql(url, "SELECT count(*) FROM vidjobs.jobs")
    return int(n)


def states(url: str) -> dict[str, int]:
    """Job count per state (states with no job are absent)."""
    return dict(sql(url, "SELECT state::text, count(*) FROM vidjobs.jobs GROUP BY 1"))


def insert_jobs(
    url: str,
    n: int = 1,
    *,
    pipeline: str = "noop",
    params: dict[str, Any] | None = None,
    tenant: str = "acme",
    max_attempts: int = 3,
) -> list[uuid.UUID]:
    """Queue ``n`` like jobs now through the db API (one statement, one NOTIFY); their ids."""
    job = NewJob(tenant=tenant, pipeline=pipeline, params=params or {}, max_attempts=max_attempts)
    return run_db(url, lambda conn: job_insert_many(conn, [job] * n))
