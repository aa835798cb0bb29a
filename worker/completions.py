"""Batched, fenced job completions: one ``job_complete_many`` commit for many finished jobs.

A durable commit costs a WAL flush; with short jobs that flush, not the work, bounds the
drain rate. Finished jobs queue here; one flusher writes everything queued so far in one
statement while the next ones queue up behind it (group commit), so batches grow exactly
when the database is the bottleneck and single jobs are written at once when it is not.
"""

from __future__ import annotations

import asyncio
import logging
import uuid
from collections.abc import Sequence
from typing import Any

from psycopg_pool import AsyncConnectionPool

from db.errors import DatabaseUnavailable
from db.jobs import job_complete_many
from worker.dbconn import DedicatedConnection

__all__ = ["Completer"]

log = logging.getLogger(__name__)

_Item = tuple[uuid.UUID, uuid.UUID, str | None]


class Completer:
    """Writes completions in batches; ``complete()`` resolves once the batch committed.

    Args:
        pool: connections for the flusher.
        batch_size: most jobs per statement.
        retries: attempts per batch while the database is unavailable; after that the jobs'
            leases are left to expire and another worker re-runs them (at-least-once).
    """

    def __init__(
        self, pool: AsyncConnectionPool[Any], *, batch_size: int, retries: int = 5
    ) -> None:
        self._conn = DedicatedConnection(pool)
        self._batch_size = batch_size
        self._retries = retries
        self._queue: list[tuple[_Item, asyncio.Future[bool]]] = []
        self._wake = asyncio.Event()
        self._task: asyncio.Task[None] | None = None
        self._closing = False

    @property
    def pending(self) -> int:
        """Completions queued and not yet committed."""
        return len(self._queue)

    def start(self) -> None:
        """Start the flusher task on the running loop."""
        self._task = asyncio.create_task(self._flush_loop(), name="vidjobs-completer")

    def submit(
        self, job_id: uuid.UUID, lease_token: uuid.UUID, output_key: str | None
    ) -> asyncio.Future[bool]:
        """Queue one completion; the future is True if committed, False if the lease was lost."""
        fut: asyncio.Future[bool] = asyncio.get_running_loop().create_future()
        self._queue.append(((job_id, lease_token, output_key), fut))
        self._wake.set()
        return fut

    async def close(self) -> None:
        """Write everything still queued, then stop the flusher."""
        self._closing = True
        self._wake.set()
        if self._task is not None:
            await self._task
            self._task = None

    async def _flush_loop(self) -> None:
        while True:
            if not self._queue:
                if self._closing:
                    await self._conn.close()
                    return
                self._wake.clear()
                await self._wake.wait()
                continue
            batch = self._queue[: self._batch_size]
            del self._queue[: self._batch_size]
            await self._flush(batch)

    async def _flush(self, batch: Sequence[tuple[_Item, asyncio.Future[bool]]]) -> None:
        items = [item for item, _ in batch]
        delay = 0.05
        for attempt in range(1, self._retries + 1):
            try:
                async with self._conn.use() as conn:
                    done = await job_complete_many(conn, items)
            except DatabaseUnavailable as exc:
                if attempt == self._retries:
                    log.error(
                        "giving up on %d completions (leases will expire): %s", len(items), exc
                    )
                    for _, fut in batch:
                        if not fut.done():
                            fut.set_exception(exc)
                    return
                log.warning("completions failed (%s), retrying in %.2fs", exc, delay)
                await asyncio.sleep(delay)
                delay = min(delay * 2, 2.0)
                continue
            except Exception as exc:
                # A bug or an unexpected server error: report it to the waiting jobs and keep
                # the flusher alive for the next batch.
                log.exception("completing %d jobs failed", len(items))
                for _, fut in batch:
                    if not fut.done():
                        fut.set_exception(exc)
                return
            for (job_id, _, _), fut in batch:
                if not fut.done():
                    fut.set_result(job_id in done)
            return
