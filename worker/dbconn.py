"""The connections the worker's hot loops keep for themselves.

The claim loop and the completion flusher each run thousands of statements a second, so each
keeps one connection rather than borrowing one per statement, and replaces it only when it
breaks. Everything else the worker writes (heartbeats, progress, failures) borrows a pool
connection per call with ``vidjobs.db.pool.connection``.
"""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator
from typing import Any

import psycopg_pool

from vidjobs.db.errors import DatabaseUnavailable
from vidjobs.db.pool import borrow, connect
from vidjobs.db.statements import Conn, unavailable_on_error

__all__ = ["ASYNC_COMMIT_OPTIONS", "DedicatedConnection"]

#: libpq ``options`` for the claim connection when claims need not wait for the WAL flush.
#: Safe: a claim lost in a server crash leaves the job pending, exactly as if this worker had
#: died right after claiming; its later fenced writes then fail with LeaseLost. And any later
#: durable commit (a completion) flushes the WAL up to itself, claim included.
ASYNC_COMMIT_OPTIONS = "-c synchronous_commit=off"


class DedicatedConnection:
    """One connection kept by one task; replaced after a connection error.

    Args:
        pool: where the connection comes from (and goes back to).
        options: libpq ``options`` (server settings for this session). Given, the connection
            is opened on its own from the pool's conninfo rather than borrowed, so the
            settings never leak into connections other code borrows.
    """

    def __init__(
        self, pool: psycopg_pool.AsyncConnectionPool[Any], *, options: str | None = None
    ) -> None:
        self._pool = pool
        self._options = options
        self._conn: Conn | None = None

    async def _open(self) -> Conn:
        if self._options is None:
            return await borrow(self._pool)
        conninfo = self._pool.conninfo
        if not isinstance(conninfo, str):
            raise TypeError("a dedicated connection with options needs a pool with a str conninfo")
        return await connect(conninfo, options=self._options)

    @contextlib.asynccontextmanager
    async def use(self) -> AsyncIterator[Conn]:
        """The kept connection; a broken one is dropped and the next call opens another.

        Raises:
            DatabaseUnavailable: no connection, or it broke during the block.
        """
        try:
            with unavailable_on_error("Postgres unavailable"):
                if self._conn is None or self._conn.closed:
                    self._conn = await self._open()
                yield self._conn
        except DatabaseUnavailable:
            await self.close()
            raise

    async def close(self) -> None:
        """Give the connection back to the pool (or close it, if it was opened on its own)."""
        conn, self._conn = self._conn, None
        if conn is None:
            return
        with contextlib.suppress(Exception):
            if self._options is None:
                await self._pool.putconn(conn)
            else:
                await conn.close()
