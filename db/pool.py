"""Database settings and the async connection pool.

Pool connections are in autocommit mode: every db/jobs.py call is one statement, hence one
transaction with one durable commit and one round trip. A caller needing several calls to
commit together wraps them in ``async with conn.transaction():``.
"""

from __future__ import annotations

import contextlib
import dataclasses
import os
from collections.abc import AsyncIterator
from typing import Any

import psycopg
import psycopg_pool

from db.errors import DatabaseUnavailable

__all__ = ["DatabaseSettings", "acquire", "open_pool"]


@dataclasses.dataclass(frozen=True, kw_only=True)
class DatabaseSettings:
    """How to reach Postgres."""

    url: str
    """libpq URL or key=value DSN (``DATABASE_URL``)."""
    pool_min_size: int = 1
    """Connections kept open even when idle (``VIDJOBS_DB_POOL_MIN``)."""
    pool_max_size: int = 10
    """Most connections the pool opens (``VIDJOBS_DB_POOL_MAX``)."""
    connect_timeout_s: float = 5.0
    """How long to wait for a connection before reporting the database unavailable."""

    @classmethod
    def from_env(cls, env: dict[str, str] | None = None) -> DatabaseSettings:
        """Read ``DATABASE_URL``, ``VIDJOBS_DB_POOL_MIN`` and ``VIDJOBS_DB_POOL_MAX``."""
        env = dict(os.environ) if env is None else env
        url = env.get("DATABASE_URL")
        if not url:
            raise ValueError("DATABASE_URL is not set (e.g. postgresql://user@host:5432/vidjobs)")
        return cls(
            url=url,
            pool_min_size=int(env.get("VIDJOBS_DB_POOL_MIN", "1")),
            pool_max_size=int(env.get("VIDJOBS_DB_POOL_MAX", "10")),
        )


async def open_pool(settings: DatabaseSettings) -> psycopg_pool.AsyncConnectionPool[Any]:
    """An opened pool of autocommit connections; the caller closes it.

    ``check`` tests a connection before lending it, so connections killed by a Postgres restart
    are replaced instead of failing the first request after it.

    Raises:
        DatabaseUnavailable: the first connections could not be made within the timeout.
    """
    pool: psycopg_pool.AsyncConnectionPool[Any] = psycopg_pool.AsyncConnectionPool(
        settings.url,
        min_size=settings.pool_min_size,
        max_size=settings.pool_max_size,
        kwargs={"autocommit": True, "connect_timeout": max(1, round(settings.connect_timeout_s))},
        check=psycopg_pool.AsyncConnectionPool.check_connection,
        timeout=settings.connect_timeout_s,
        # psycopg_pool retries a failed connect with a doubling delay (1, 2, 4, 8 s ...) for
        # reconnect_timeout (default 5 min), and no new attempt starts meanwhile. After an
        # outage of N seconds the pool then stayed empty for up to ~N more seconds after
        # Postgres was back (measured: 13 s after a 15 s restart). Giving up early lets the
        # next request start a fresh attempt at once, so recovery takes about a second.
        reconnect_timeout=settings.connect_timeout_s,
        open=False,
    )
    try:
        await pool.open(wait=True, timeout=settings.connect_timeout_s)
    except (psycopg_pool.PoolTimeout, psycopg.OperationalError) as exc:
        await pool.close()
        raise DatabaseUnavailable(f"cannot connect to Postgres: {exc}") from exc
    return pool


@contextlib.asynccontextmanager
async def acquire(
    pool: psycopg_pool.AsyncConnectionPool[Any],
) -> AsyncIterator[psycopg.AsyncConnection[Any]]:
    """Borrow a connection; connection failures surface as ``DatabaseUnavailable``."""
    try:
        async with pool.connection() as conn:
            yield conn
    except (psycopg_pool.PoolTimeout, psycopg.OperationalError) as exc:
        raise DatabaseUnavailable(f"Postgres unavailable: {exc}") from exc
