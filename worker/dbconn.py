"""Database connections for the worker's hot paths and for its occasional writes.

The pool checks a connection each time it lends one (a round trip that survives Postgres
restarts). That is right for a heartbeat every few seconds, but the claim loop and the
completion flusher each run thousands of statements a second, so each keeps one connection
for itself and replaces it only when it breaks.
"""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator
from typing import Any

import psycopg
import psycopg_pool

from vidjobs.db.errors import DatabaseUnavailable

__all__ = ["DedicatedConnection", "pooled"]

_BROKEN = (psycopg.OperationalError, psycopg_pool.PoolTimeout)

#: libpq ``options`` for the claim connection when claims need not wait for the WAL flush.
#: Safe: a claim lost in a server crash leaves the job pending, exactly as if this worker had
#: died right after claiming; its later fenced writes then fail with LeaseLost. And any later
#: durable commit (a completion) flushes the WAL up to itself, claim included.
ASYNC_COMMIT_OPTIONS = "-c synchronous_commit=off"


@contextlib.asynccontextmanager
async def pooled(
    pool: psycopg_pool.AsyncConnectionPool[Any],
) -> AsyncIterator[psycopg.AsyncConnection[Any]]:
    """Borrow a pool connection for one call; connection failures become DatabaseUnavailable."""
    try:
        async with pool.connection() as conn:
            yield conn
    except _BROKEN as exc:
        raise DatabaseUnavailable(f"Postgres unavailable: {exc}") from exc


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
        self._conn: psycopg.AsyncConnection[Any] | None = None

    async def _open(self) -> psycopg.AsyncConnection[Any]:
        if self._options is None:
            conn: psycopg.AsyncConnection[Any] = await self._pool.getconn()
            return conn
        conninfo = self._pool.conninfo
        if not isinstance(conninfo, str):
            raise TypeError("a dedicated connection with options needs a pool with a str conninfo")
        return await psycopg.AsyncConnection.connect(
            conninfo, autocommit=True, options=self._options, connect_timeout=5
        )

    @contextlib.asynccontextmanager
    async def use(self) -> AsyncIterator[psycopg.AsyncConnection[Any]]:
        """The kept connection; a broken one is dropped and the next call opens another."""
        try:
            if self._conn is None or self._conn.closed:
                self._conn = await self._open()
            yield self._conn
        except _BROKEN as exc:
            await self.close()
            raise DatabaseUnavailable(f"Postgres unavailable: {exc}") from exc
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
