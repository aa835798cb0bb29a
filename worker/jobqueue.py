"""The database as the worker loop sees it: the claim, the writes fenced by the lease token.

The loop (``runner.py``), the heartbeats (``heartbeat.py``) and the completion flusher
(``completions.py``) call a ``JobQueue``, never SQL or a connection. ``PostgresQueue`` is
the real one: each method runs the ``vidjobs.db.leases`` function of the same name on the
connection its path needs. The loop's fast tests run the same loop code on an in-memory
queue (``tests/support/inmemory_queue.py``) that keeps the same promises; the integration
tests run it on Postgres.

The promises: every method raises ``DatabaseUnavailable`` when the database cannot be
reached; the fenced writes (progress, fail, retry later, release, split) raise ``LeaseLost`` when
the token no longer holds the job (taken back, cancelled), ``job_heartbeat`` answers with a
``HeartbeatStatus`` and ``job_complete_many`` leaves such jobs out of its result.
"""

from __future__ import annotations

import uuid
from collections.abc import Callable, Sequence
from typing import Any, Protocol

from psycopg_pool import AsyncConnectionPool

from vidjobs.db.leases import (
    HeartbeatStatus,
    job_claim,
    job_complete_many,
    job_fail,
    job_heartbeat,
    job_progress,
    job_release,
    job_retry_later,
    job_split,
)
from vidjobs.db.pool import connection
from vidjobs.db.settings import TenantDefaults
from vidjobs.schema import Job
from vidjobs.worker.dbconn import ASYNC_COMMIT_OPTIONS, DedicatedConnection

__all__ = ["Completion", "JobQueue", "Notifier", "PostgresQueue", "Segment"]

#: One finished job for ``job_complete_many``: job id, lease token, output key.
Completion = tuple[uuid.UUID, uuid.UUID, str | None]
#: One segment for ``job_split``: its job id, start and end (ms), planned samples.
Segment = tuple[uuid.UUID, int, int, int]


class JobQueue(Protocol):
    """What the worker loop asks of the database (``vidjobs.db.leases``, less the connection)."""

    async def job_claim(
        self, *, worker_id: str, batch_size: int, lease_seconds: float, pipelines: Sequence[str]
    ) -> list[Job]:
        """Claim up to ``batch_size`` jobs of ``pipelines``, each under a new lease token."""
        ...

    async def job_heartbeat(
        self, job_id: uuid.UUID, lease_token: uuid.UUID, *, lease_seconds: float
    ) -> HeartbeatStatus:
        """Extend the lease: OK, or CANCELLED / LEASE_LOST (stop working on the job)."""
        ...

    async def job_progress(
        self,
        job_id: uuid.UUID,
        lease_token: uuid.UUID,
        *,
        frames_done: int,
        frames_total: int | None,
    ) -> None:
        """Record how far the job got (fenced)."""
        ...

    async def job_complete_many(self, items: Sequence[Completion]) -> set[uuid.UUID]:
        """Complete held jobs in one commit; returns the ids completed (the rest were lost)."""
        ...

    async def job_fail(
        self,
        job_id: uuid.UUID,
        lease_token: uuid.UUID,
        *,
        error_kind: str,
        error_message: str,
        permanent: bool,
    ) -> None:
        """Fail the attempt (fenced): retried with backoff while attempts are left, unless
        ``permanent``."""
        ...

    async def job_retry_later(
        self, job_id: uuid.UUID, lease_token: uuid.UUID, *, error_kind: str, error_message: str
    ) -> None:
        """Hand the job back after an infrastructure error (fenced), the attempt not counted."""
        ...

    async def job_release(self, job_id: uuid.UUID, lease_token: uuid.UUID) -> None:
        """Hand the job back at shutdown (fenced): pending again, the attempt not counted."""
        ...

    async def job_split(
        self, job_id: uuid.UUID, lease_token: uuid.UUID, segments: Sequence[Segment]
    ) -> None:
        """Split the held job into segment jobs (fenced); it waits for them, attempt not
        counted."""
        ...


class Notifier(Protocol):
    """Wakes an idle worker: ``db.notify.JobNotifier`` (LISTEN with a poll fallback)."""

    async def wait(self, timeout: float) -> bool:  # noqa: ASYNC109 - the db API's signature
        """True on a notification, False when ``timeout`` seconds passed without one."""
        ...


class PostgresQueue:
    """``JobQueue`` on Postgres, with the connection each path needs.

    Heartbeats and failures borrow a pool connection per call (``vidjobs.db.pool.connection``),
    but the claim loop and the completion flusher run thousands of statements a second, so
    ``job_claim`` and ``job_complete_many`` each keep one connection (call each
    from one task at a time, as the worker does). ``close()`` gives them back.

    Args:
        pool: the worker's connections.
        durable_claims: False runs claims with ``synchronous_commit=off`` (see
            ``WorkerSettings.durable_claims``).
        tenants: the defaults the claim applies to tenants whose row leaves weight or
            max_running NULL (``WorkerSettings.tenants``).
        on_finished: called after a completion, failure or infrastructure hand-back commits
            (any of them may have written webhook outbox rows): the process's webhook
            dispatcher's ``poke``, so its events go out at once instead of at its next poll.
    """

    def __init__(
        self,
        pool: AsyncConnectionPool[Any],
        *,
        durable_claims: bool = True,
        tenants: TenantDefaults | None = None,
        on_finished: Callable[[], None] | None = None,
    ) -> None:
        self._pool = pool
        self._on_finished = on_finished or _nothing
        self._tenants = tenants or TenantDefaults()
        self._claims = DedicatedConnection(
            pool, options=None if durable_claims else ASYNC_COMMIT_OPTIONS
        )
        self._completions = DedicatedConnection(pool)

    async def job_claim(
        self, *, worker_id: str, batch_size: int, lease_seconds: float, pipelines: Sequence[str]
    ) -> list[Job]:
        """``db.leases.job_claim`` on the claim loop's own connection."""
        async with self._claims.use() as conn:
            return await job_claim(
                conn,
                worker_id=worker_id,
                batch_size=batch_size,
                lease_seconds=lease_seconds,
                pipelines=pipelines,
                default_max_running=self._tenants.max_running,
                default_weight=self._tenants.weight,
            )

    async def job_heartbeat(
        self, job_id: uuid.UUID, lease_token: uuid.UUID, *, lease_seconds: float
    ) -> HeartbeatStatus:
        """``db.leases.job_heartbeat`` on a pool connection."""
        async with connection(self._pool) as conn:
            return await job_heartbeat(conn, job_id, lease_token, lease_seconds=lease_seconds)

    async def job_progress(
        self,
        job_id: uuid.UUID,
        lease_token: uuid.UUID,
        *,
        frames_done: int,
        frames_total: int | None,
    ) -> None:
        """``db.leases.job_progress`` on a pool connection."""
        async with connection(self._pool) as conn:
            await job_progress(
                conn, job_id, lease_token, frames_done=frames_done, frames_total=frames_total
            )

    async def job_complete_many(self, items: Sequence[Completion]) -> set[uuid.UUID]:
        """``db.leases.job_complete_many`` on the flusher's own connection."""
        async with self._completions.use() as conn:
            done = await job_complete_many(conn, items)
        if done:
            self._on_finished()
        return done

    async def job_fail(
        self,
        job_id: uuid.UUID,
        lease_token: uuid.UUID,
        *,
        error_kind: str,
        error_message: str,
        permanent: bool,
    ) -> None:
        """``db.leases.job_fail`` on a pool connection."""
        async with connection(self._pool) as conn:
            await job_fail(
                conn,
                job_id,
                lease_token,
                error_kind=error_kind,
                error_message=error_message,
                permanent=permanent,
            )
        self._on_finished()

    async def job_retry_later(
        self, job_id: uuid.UUID, lease_token: uuid.UUID, *, error_kind: str, error_message: str
    ) -> None:
        """``db.leases.job_retry_later`` on a pool connection."""
        async with connection(self._pool) as conn:
            await job_retry_later(
                conn, job_id, lease_token, error_kind=error_kind, error_message=error_message
            )
        self._on_finished()

    async def job_release(self, job_id: uuid.UUID, lease_token: uuid.UUID) -> None:
        """``db.leases.job_release`` on a pool connection."""
        async with connection(self._pool) as conn:
            await job_release(conn, job_id, lease_token)

    async def job_split(
        self, job_id: uuid.UUID, lease_token: uuid.UUID, segments: Sequence[Segment]
    ) -> None:
        """``db.leases.job_split`` on a pool connection."""
        async with connection(self._pool) as conn:
            await job_split(conn, job_id, lease_token, segments=segments)

    async def close(self) -> None:
        """Give the kept connections back (before the pool closes)."""
        await self._claims.close()
        await self._completions.close()


def _nothing() -> None:
    return None
