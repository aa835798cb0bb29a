"""The async connection pool (its settings: ``vidjobs.db.settings.DatabaseSettings``).

Pool connections are in autocommit mode: every db/jobs.py and db/leases.py call is one
statement, hence one transaction with one durable commit and one round trip. A caller needing
several calls to commit together wraps them in ``async with conn.transaction():``.

Two ways to get a connection, both reporting a Postgres that cannot be reached as
``DatabaseUnavailable``: :func:`connection` borrows one from the pool (the API, the worker) and
:func:`connect` opens one of its own (LISTEN, the CLI, the readiness probe).

Dead connections (Postgres restarted, a backend terminated) are kept from callers without a
round trip per checkout: a server that ends a session sends its last message and closes the
socket, so an idle connection whose socket has nothing to read is still open, and only one
that has something to read is checked with a query before it is lent (see :class:`_Pool`).
"""

from __future__ import annotations

import contextlib
import select
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any, TypeVar

import psycopg
import psycopg_pool

from vidjobs.db.errors import DatabaseUnavailable
from vidjobs.db.settings import DatabaseSettings
from vidjobs.db.statements import Conn, unavailable_on_error

__all__ = ["borrow", "connect", "connection", "open_pool", "run_read"]

T = TypeVar("T")


def _has_input(fd: int) -> bool:
    """Whether the socket has something to read (or is closed): one poll(2), no round trip."""
    poller = select.poll()
    poller.register(fd, select.POLLIN)
    return bool(poller.poll(0))


async def _usable(conn: psycopg.AsyncConnection[Any]) -> bool:
    """Whether an idle pooled connection may be lent.

    An idle autocommit session receives nothing unasked, except when the server ends it (a
    FATAL message, then EOF) or, rarely, a notice or parameter change. So a silent socket
    means open, and only a socket with input costs a query to tell which it is.
    """
    if conn.closed:
        return False
    try:
        if not _has_input(conn.pgconn.socket):
            return True
        await psycopg_pool.AsyncConnectionPool.check_connection(conn)
    except psycopg.Error:
        return False
    return True


class _Pool(psycopg_pool.AsyncConnectionPool[psycopg.AsyncConnection[Any]]):
    """A pool that never lends a connection it can tell is dead.

    psycopg_pool's own ``check`` costs a round trip on every checkout (~15% of the status
    route's time), and after a failed check it sleeps 1, 2, 4 s before trying the next
    connection, so after a restart a request waited behind the dead ones (3.2 s measured for
    three) or timed out. Here a dead connection is returned at once (the pool discards it and
    opens a replacement) and the next one is tried without waiting. ``pool.connection()`` uses
    this too, so the worker's connections get the same care.
    """

    async def getconn(
        self,
        timeout: float | None = None,  # noqa: ASYNC109 - psycopg_pool's signature
    ) -> psycopg.AsyncConnection[Any]:
        """A connection that looks alive, within ``timeout`` (default: the pool's)."""
        deadline = time.monotonic() + (self.timeout if timeout is None else timeout)
        while True:
            conn = await super().getconn(max(0.0, deadline - time.monotonic()))
            if await _usable(conn):
                return conn
            await self.putconn(conn)  # closed: discarded, a replacement is being made


async def open_pool(
    settings: DatabaseSettings, *, wait: bool = True
) -> psycopg_pool.AsyncConnectionPool[Any]:
    """An opened pool of autocommit connections; the caller closes it.

    Args:
        settings: where Postgres is and how many connections to keep.
        wait: wait for the first connections (and fail if there are none). ``False`` returns
            at once even while Postgres is down: checkouts then fail with
            ``DatabaseUnavailable`` until it is back, and the pool recovers by itself (the
            API starts and answers 503 meanwhile).

    Raises:
        DatabaseUnavailable: ``wait`` and no connection within ``connect_timeout_s``.
    """
    pool = _Pool(
        settings.url,
        min_size=settings.pool_min_size,
        max_size=settings.pool_max_size,
        kwargs={"autocommit": True, "connect_timeout": _whole_seconds(settings.connect_timeout_s)},
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
        with unavailable_on_error("cannot connect to Postgres"):
            await pool.open(wait=wait, timeout=settings.connect_timeout_s)
    except DatabaseUnavailable:
        await pool.close()
        raise
    return pool


def _whole_seconds(timeout_s: float) -> int:
    """libpq's ``connect_timeout``: whole seconds, and 0 would mean "wait forever"."""
    return max(1, round(timeout_s))


async def connect(
    conninfo: str, *, connect_timeout_s: float = 5.0, options: str | None = None
) -> Conn:
    """A new autocommit connection outside the pool; the caller closes it (``async with``).

    Args:
        conninfo: libpq URL or key=value DSN.
        connect_timeout_s: give up connecting after this long.
        options: libpq ``options`` (server settings for this session only).

    Raises:
        DatabaseUnavailable: no connection within ``connect_timeout_s``.
    """
    timeout = _whole_seconds(connect_timeout_s)
    # libpq's message says "connection failed: ..." itself; options=None adds nothing.
    with unavailable_on_error():
        return await psycopg.AsyncConnection.connect(
            conninfo, autocommit=True, connect_timeout=timeout, options=options
        )


async def borrow(pool: psycopg_pool.AsyncConnectionPool[Any]) -> Conn:
    """A pool connection for a caller that keeps it; give it back with ``pool.putconn``.

    Raises:
        DatabaseUnavailable: none free within the pool's timeout (Postgres down or saturated).
    """
    with unavailable_on_error("Postgres unavailable"):
        conn: Conn = await pool.getconn()
    return conn


@contextlib.asynccontextmanager
async def connection(pool: psycopg_pool.AsyncConnectionPool[Any]) -> AsyncIterator[Conn]:
    """Borrow a pool connection for a block; connection failures raise ``DatabaseUnavailable``.

    ``getconn``/``putconn`` rather than ``pool.connection()``: that one also enters the
    connection's own context, a commit (under the connection lock) that an autocommit
    connection never needs; ``putconn`` still rolls back anything left open.
    """
    conn = await borrow(pool)
    try:
        with unavailable_on_error("Postgres unavailable"):
            yield conn
    finally:
        await pool.putconn(conn)


async def run_read(
    pool: psycopg_pool.AsyncConnectionPool[Any],
    read: Callable[[Conn], Awaitable[T]],
) -> T:
    """``await read(conn)`` on a pooled connection, once more on another if the first was lost.

    For statements that change nothing: repeating one is harmless, so a connection that died
    under it (a restart racing the checkout) costs a retry, not a 503. A second loss, or
    any other error, propagates (connection failures as ``DatabaseUnavailable``). No
    ``asynccontextmanager``: this is the status route's path, polled by every client.
    """
    retry = True
    while True:
        conn = await borrow(pool)
        try:
            with unavailable_on_error("Postgres unavailable"):
                return await read(conn)
        except DatabaseUnavailable:
            if not (retry and conn.closed):  # Postgres answered (e.g. a timeout), or again
                raise
            retry = False
        finally:
            await pool.putconn(conn)
