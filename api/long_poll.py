"""``GET /video/status/{id}?wait=S``: answer when the job's state changes, or after S seconds.

A waiting request holds no database connection: it sleeps to the next tick of a clock shared
by every waiter of the process (``tick_s``, 50 ms by default), then reads its job through
``StatusReads``, so all the waiters of one tick share one batched statement (up to 100 jobs
each) and a connection is borrowed only for that statement. 200 clients waiting cost about
2 x 20 short reads a second, whatever their number within a batch, and a change is seen
within one tick.

Why not LISTEN/NOTIFY: a NOTIFY in the completion path would put every claim and completion
batch of every worker behind the database-wide lock Postgres takes for a notifying commit
(``PreCommit_Notify`` holds it until the commit is flushed), the kind of serialisation the
queue just shed (docs/architecture.md, "Queue throughput"). Polling the jobs that someone waits
for, in batches, costs the workers nothing.
"""

from __future__ import annotations

import asyncio
import math
import uuid

from vidjobs.api.status_reads import StatusReads
from vidjobs.schema import Job, JobState

__all__ = ["LongPoll"]


class LongPoll:
    """Waits for a job's state to change, in ticks shared by every waiter of the process.

    Args:
        reads: the status route's batched reads (one statement per tick for every waiter).
        tick_s: seconds between reads; a change is seen at most this long after it happened.
    """

    def __init__(self, reads: StatusReads, tick_s: float) -> None:
        self._reads = reads
        self._tick_s = tick_s

    async def until_changed(
        self, key_hash: bytes, job_id: uuid.UUID, state: JobState, wait_s: float
    ) -> tuple[str | None, Job | None]:
        """Read the job each tick until its state is not ``state`` or ``wait_s`` passed.

        Returns the last read, as ``StatusReads.get`` answers it: the tenant (None: the key
        was revoked meanwhile) and the job (None: deleted meanwhile).
        """
        loop = asyncio.get_running_loop()
        deadline = loop.time() + wait_s
        while True:
            now = loop.time()
            # The next tick of the shared clock, so the waiters of a process read together.
            tick = (math.floor(now / self._tick_s) + 1) * self._tick_s
            await asyncio.sleep(max(0.0, min(tick, deadline) - now))
            tenant, job = await self._reads.get(key_hash, job_id)
            if tenant is None or job is None or job.state is not state:
                return tenant, job
            if loop.time() >= deadline:
                return tenant, job
