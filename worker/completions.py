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
from collections.abc import Callable, Sequence

from vidjobs.db.errors import DatabaseUnavailable
from vidjobs.worker.jobqueue import Completion, JobQueue

__all__ = ["Completer", "CompletionNotWritten"]

log = logging.getLogger(__name__)

_Item = Completion

# Retries of a batch while the database is unreachable: first wait, doubling up to the cap
# (short enough that a completion lands within a second of Postgres answering again).
_RETRY_FIRST_S = 0.05
_RETRY_MAX_S = 1.0


class CompletionNotWritten(Exception):
    """The database stayed unreachable until the job's lease surely expired."""


class Completer:
    """Writes completions in batches; ``complete()`` resolves once the batch committed.

    While the database is unreachable a batch is retried with backoff, and completions
    queued meanwhile join it. Each job is retried for as long as its lease may still be
    valid (``lease_left``, kept alive by the heartbeats): until then nobody else can take
    the job, so the work is saved once Postgres answers. After that it is given up (its
    future raises ``CompletionNotWritten``): another worker re-runs the job, and fencing
    keeps a late write from completing it twice (at-least-once).

    Args:
        queue: where the batches go (one ``job_complete_many`` at a time).
        batch_size: most jobs per statement.
        lease_left: seconds the job's lease may still be valid, as the worker knows it.
    """

    def __init__(
        self,
        queue: JobQueue,
        *,
        batch_size: int,
        lease_left: Callable[[uuid.UUID], float],
    ) -> None:
        self._db = queue
        self._batch_size = batch_size
        self._lease_left = lease_left
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
        """Queue one completion; the future is True if committed, False if the lease was lost.

        It raises ``CompletionNotWritten`` when the database stayed unreachable past the
        lease, or the error of a failed statement.
        """
        fut: asyncio.Future[bool] = asyncio.get_running_loop().create_future()
        self._queue.append(((job_id, lease_token, output_key), fut))
        self._wake.set()
        return fut

    async def close(self) -> None:
        """Write everything still queued (retrying at most until the leases ran out), then stop."""
        self._closing = True
        self._wake.set()
        if self._task is not None:
            await self._task
            self._task = None

    async def _flush_loop(self) -> None:
        delay = _RETRY_FIRST_S
        while True:
            if not self._queue:
                if self._closing:
                    return
                self._wake.clear()
                await self._wake.wait()
                continue
            batch = self._queue[: self._batch_size]
            del self._queue[: self._batch_size]
            if await self._flush(batch):
                delay = _RETRY_FIRST_S
                continue
            await asyncio.sleep(delay)
            delay = min(delay * 2, _RETRY_MAX_S)

    async def _flush(self, batch: Sequence[tuple[_Item, asyncio.Future[bool]]]) -> bool:
        """Write one batch; False if the database was unreachable (the batch is requeued)."""
        items = [item for item, _ in batch]
        try:
            done = await self._db.job_complete_many(items)
        except DatabaseUnavailable as exc:
            self._requeue(batch, exc)
            return False
        except Exception as exc:
            # A bug or an unexpected server error: report it to the waiting jobs and keep
            # the flusher alive for the next batch.
            log.exception("completing %d jobs failed", len(items))
            for _, fut in batch:
                if not fut.done():
                    fut.set_exception(exc)
            return True
        for (job_id, _, _), fut in batch:
            if not fut.done():
                fut.set_result(job_id in done)
        return True

    def _requeue(
        self, batch: Sequence[tuple[_Item, asyncio.Future[bool]]], exc: DatabaseUnavailable
    ) -> None:
        """Put the batch back in front of the queue, less the jobs whose lease surely expired."""
        keep = []
        for entry in batch:
            (job_id, _, _), fut = entry
            if fut.done():  # the job's task was cancelled: nobody waits for this completion
                continue
            if self._lease_left(job_id) > 0:
                keep.append(entry)
                continue
            log.error(
                "job %s: completion not written, the database stayed unreachable until the "
                "lease expired (another worker will run it again): %s",
                job_id,
                exc,
            )
            fut.set_exception(CompletionNotWritten(str(exc)))
        if keep:
            log.warning("completion of %d job(s) not written yet, retrying: %s", len(keep), exc)
        self._queue[:0] = keep
