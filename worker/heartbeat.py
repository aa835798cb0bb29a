"""Keeps the leases of held jobs alive and writes their progress, from one task per worker.

One task for every job (not one per job) because the queue benchmark holds thousands of
no-op jobs a second that finish long before their first heartbeat is due; this task only
wakes when some lease is actually due, or every progress interval while jobs run.

Each lease also carries when it expires as far as this worker knows (the start of its last
successful claim or heartbeat plus ``lease_seconds``): until then no other worker can take
the job, so a final write that meets an unreachable database is worth retrying until then.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass

from vidjobs.db.errors import DatabaseUnavailable, LeaseLost
from vidjobs.db.leases import HeartbeatStatus
from vidjobs.worker.jobqueue import JobQueue
from vidjobs.worker.pipelines.contract import JobContext
from vidjobs.worker.settings import WorkerSettings

__all__ = ["Heartbeater", "Lease"]

log = logging.getLogger(__name__)

# After a failed heartbeat (database unreachable), try again this soon.
_RETRY_S = 1.0


@dataclass(eq=False)
class Lease:
    """A job this worker holds: its fencing token and when its lease was last renewed.

    Attributes:
        last_beat: when the next heartbeat is scheduled from (monotonic; moved on a failure
            to retry sooner, so it is not the renewal time).
        expires_at: when the lease expires as this worker believes it (monotonic): the start
            of the last claim or heartbeat the database answered, plus ``lease_seconds``.
            The server's expiry is no earlier, so before this no one else can take the job.
        finishing: the pipeline returned and the worker is writing its outcome (completion,
            failure or hand-back); shutdown lets that write finish instead of releasing.
    """

    ctx: JobContext
    token: uuid.UUID
    last_beat: float
    expires_at: float
    last_progress: float = 0.0
    finishing: bool = False

    @property
    def job_id(self) -> uuid.UUID:
        """The held job's id."""
        return self.ctx.job.job_id


class Heartbeater:
    """Renews every held lease each ``heartbeat_interval_s`` and flushes throttled progress.

    A heartbeat that finds the job cancelled, or the lease taken by another worker, asks the
    job to stop (``ctx.request_stop``), so a cancelled job stops within one interval.

    Args:
        queue: where the heartbeats go.
        settings: the interval, the lease and the progress throttle.
        on_lag: called with how many seconds after it was due each heartbeat was sent (a
            busy event loop shows here before leases start to expire).
    """

    def __init__(
        self,
        queue: JobQueue,
        settings: WorkerSettings,
        *,
        on_lag: Callable[[float], None] | None = None,
    ) -> None:
        self._queue = queue
        self._on_lag = on_lag
        self._interval = settings.heartbeat_interval_s
        self._lease_s = settings.lease_seconds
        self._progress_s = settings.progress_interval_s
        self._leases: dict[uuid.UUID, Lease] = {}
        self._wake = asyncio.Event()
        self._task: asyncio.Task[None] | None = None

    def start(self) -> None:
        """Start the heartbeat task on the running loop."""
        self._task = asyncio.create_task(self._loop(), name="vidjobs-heartbeat")

    async def close(self) -> None:
        """Stop the task; held leases are the caller's to complete or release."""
        if self._task is not None:
            self._task.cancel()
            await asyncio.gather(self._task, return_exceptions=True)
            self._task = None

    def track(self, ctx: JobContext, token: uuid.UUID, *, claimed_at: float | None = None) -> Lease:
        """Start renewing the lease of a freshly claimed job.

        Args:
            ctx: the job.
            token: its lease token.
            claimed_at: ``time.monotonic()`` taken before the claim statement was sent (the
                lease runs from the server's ``now()``, which is no earlier); default now.
        """
        at = time.monotonic() if claimed_at is None else claimed_at
        lease = Lease(ctx=ctx, token=token, last_beat=at, expires_at=at + self._lease_s)
        was_empty = not self._leases
        self._leases[ctx.job.job_id] = lease
        if was_empty:
            self._wake.set()
        return lease

    def untrack(self, job_id: uuid.UUID) -> None:
        """Stop renewing (the job completed, failed, was released or given up)."""
        self._leases.pop(job_id, None)

    def lease_left(self, job_id: uuid.UUID) -> float:
        """Seconds until the job's lease surely expired, as this worker knows it (0 if not held)."""
        lease = self._leases.get(job_id)
        return 0.0 if lease is None else max(0.0, lease.expires_at - time.monotonic())

    @property
    def held(self) -> list[Lease]:
        """Every lease this worker holds right now."""
        return list(self._leases.values())

    async def _loop(self) -> None:
        while True:
            if not self._leases:
                self._wake.clear()
                await self._wake.wait()
                continue
            now = time.monotonic()
            work = [self._beat(x) for x in self.held if self._beat_due(x, now)]
            work += [self._progress(x) for x in self.held if self._progress_due(x, now)]
            if work:
                await asyncio.gather(*work)
            now = time.monotonic()
            deadlines = [x.last_beat + self._interval for x in self.held if self._beats(x)]
            deadlines.append(now + self._progress_s)
            self._wake.clear()
            timeout = max(0.0, min(deadlines) - now)
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._wake.wait(), timeout)

    @staticmethod
    def _beats(lease: Lease) -> bool:
        # A job that was cancelled or lost is not ours: renewing it would be pointless.
        return lease.ctx.stop_reason not in ("cancelled", "lease_lost")

    def _beat_due(self, lease: Lease, now: float) -> bool:
        return self._beats(lease) and now - lease.last_beat >= self._interval

    def _progress_due(self, lease: Lease, now: float) -> bool:
        return (
            lease.ctx.progress_dirty
            and self._beats(lease)
            and now - lease.last_progress >= self._progress_s
        )

    async def _beat(self, lease: Lease) -> None:
        started = time.monotonic()
        if self._on_lag is not None:
            self._on_lag(max(0.0, started - (lease.last_beat + self._interval)))
        try:
            status = await self._queue.job_heartbeat(
                lease.job_id, lease.token, lease_seconds=self._lease_s
            )
        except DatabaseUnavailable as exc:
            log.warning("heartbeat of job %s failed, retrying: %s", lease.job_id, exc)
            lease.last_beat = started - self._interval + _RETRY_S
            return
        except Exception:
            log.exception("heartbeat of job %s failed", lease.job_id)
            lease.last_beat = started - self._interval + _RETRY_S
            return
        lease.last_beat = started
        self._renewed(lease, started, status)

    async def renew(self, job_id: uuid.UUID) -> bool:
        """Heartbeat one held job now (before a results upload); True if still held.

        Raises:
            DatabaseUnavailable: Postgres did not answer; the lease is unconfirmed.
        """
        lease = self._leases.get(job_id)
        if lease is None or not self._beats(lease):
            return False
        started = time.monotonic()
        status = await self._queue.job_heartbeat(job_id, lease.token, lease_seconds=self._lease_s)
        lease.last_beat = started
        self._renewed(lease, started, status)
        return status is HeartbeatStatus.OK

    def _renewed(self, lease: Lease, started: float, status: HeartbeatStatus) -> None:
        if status is HeartbeatStatus.OK:
            lease.expires_at = started + self._lease_s
        elif status is HeartbeatStatus.CANCELLED:
            log.info("job %s was cancelled; stopping it", lease.job_id)
            lease.ctx.request_stop("cancelled")
        elif status is HeartbeatStatus.LEASE_LOST:
            log.warning("job %s: lease lost to another worker; stopping it", lease.job_id)
            lease.ctx.request_stop("lease_lost")

    async def flush_progress(self, job_id: uuid.UUID) -> None:
        """Write the job's last progress now if the throttle still holds it back.

        Called when the pipeline returned, before the completion: a job shorter than one
        progress interval (a 1-frame video) would otherwise complete with ``frames_done`` 0
        and ``frames_total`` unknown. Failures are logged as for any progress write; the
        completion that follows decides the job.
        """
        lease = self._leases.get(job_id)
        if lease is not None and lease.ctx.progress_dirty and self._beats(lease):
            await self._progress(lease)

    async def _progress(self, lease: Lease) -> None:
        ctx = lease.ctx
        ctx.progress_dirty = False
        lease.last_progress = time.monotonic()
        try:
            await self._queue.job_progress(
                lease.job_id,
                lease.token,
                frames_done=ctx.frames_done,
                frames_total=ctx.frames_total,
            )
        except LeaseLost:
            # Cancelled or taken back: either way the job is no longer ours to run.
            log.info("job %s: no longer held (cancelled or lease lost); stopping it", lease.job_id)
            ctx.request_stop("lease_lost")
        except DatabaseUnavailable as exc:
            ctx.progress_dirty = True
            log.warning("progress of job %s not written: %s", lease.job_id, exc)
        except Exception:
            log.exception("progress of job %s not written", lease.job_id)
