"""Wake-ups for idle workers: LISTEN on ``vidjobs_jobs`` with a poll fallback.

Notifications are an optimisation, never the only signal: they are lost across a reconnect and
do not pass through PgBouncer in transaction mode. So ``wait`` always returns after ``timeout``
and the caller claims anyway (the poll); a notification only makes it return sooner.
"""

from __future__ import annotations

import asyncio
import contextlib
from types import TracebackType

import psycopg

from vidjobs.db.errors import DatabaseUnavailable
from vidjobs.db.pool import connect
from vidjobs.db.statements import Conn, fetch, unavailable_on_error

__all__ = ["JobNotifier"]


class JobNotifier:
    """An async context manager holding one LISTEN connection of its own.

    Args:
        conninfo: libpq URL or DSN of the database.
        reconnect_delay_s: pause before retrying after the connection failed.
    """

    def __init__(self, conninfo: str, *, reconnect_delay_s: float = 1.0) -> None:
        self.conninfo = conninfo
        self.reconnect_delay_s = reconnect_delay_s
        self._conn: Conn | None = None

    async def _connect(self) -> None:
        conn = await connect(self.conninfo)
        try:
            await fetch(conn, "job_listen")
        except BaseException:
            # Failed, or cancelled (a worker stopping while it reconnects after an outage):
            # close it here, or the connection is left open until garbage collection.
            await conn.close()
            raise
        self._conn = conn

    async def _drop(self) -> None:
        if self._conn is not None:
            with contextlib.suppress(psycopg.Error):
                await self._conn.close()
        self._conn = None

    async def __aenter__(self) -> JobNotifier:
        await self._connect()
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self._drop()

    async def wait(self, timeout: float) -> bool:  # noqa: ASYNC109 - the contract's signature
        """Wait for a notification; True when one came, False after ``timeout`` (poll now).

        After a lost connection it reconnects and returns True: notifications sent meanwhile
        are gone, so the caller should look at the queue at once.
        """
        if self._conn is None or self._conn.closed:
            try:
                await self._connect()
            except DatabaseUnavailable:
                await asyncio.sleep(min(timeout, self.reconnect_delay_s))
                return False
            return True
        try:
            got = False
            with unavailable_on_error("LISTEN connection lost"):
                async for _ in self._conn.notifies(timeout=timeout, stop_after=1):
                    got = True
                if got:
                    # Fold a burst (one NOTIFY per submit) into this one wake-up.
                    async for _ in self._conn.notifies(timeout=0):
                        pass
        except DatabaseUnavailable:
            await self._drop()
            with contextlib.suppress(DatabaseUnavailable):
                await self._connect()
            return True
        return got
