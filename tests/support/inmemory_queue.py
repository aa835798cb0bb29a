"""An in-memory ``JobQueue`` and notifier, so the worker loop's fast tests need no Postgres.

It keeps the promises of ``vidjobs.worker.jobqueue`` the way ``db/sql/jobs.sql`` does, on a dict:
a claim takes expired leases first (failing for good those on their last attempt), then due
pending jobs by priority, ``run_after`` and age, and gives each a fresh lease token and an
attempt; every write after the claim is fenced by that token (``LeaseLost``, or left out of
``job_complete_many``); a heartbeat answers ok, cancelled (a cancelled job keeps its token) or
lease lost; ``job_fail``, ``job_retry_later`` and ``job_release`` move the job as their
statements do, with backoffs that are parameters (0 by default: a retry is due at once).
Setting ``down`` makes every call raise ``DatabaseUnavailable``, as an outage would.

This is the model of the queue that the fast tier runs the real ``Worker`` against, in the
spirit of Procrastinate's ``InMemoryConnector``; the integration tests hold Postgres itself
to the same rules, so neither replaces the other.
"""

from __future__ import annotations

import asyncio
import contextlib
import uuid
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

import msgspec

from vidjobs.db.errors import DatabaseUnavailable, LeaseLost
from vidjobs.db.leases import HeartbeatStatus
from vidjobs.schema import Job, JobState
from vidjobs.worker.jobqueue import Completion, Segment

__all__ = ["Event", "InMemoryQueue"]

RUNNING, PENDING = JobState.RUNNING, JobState.PENDING


@dataclass(frozen=True)
class Event:
    """One transition, as ``vidjobs.job_events`` records it."""

    job_id: uuid.UUID
    from_state: JobState | None
    to_state: JobState
    attempt: int
    error_kind: str | None = None
    error_message: str | None = None


@dataclass
class InMemoryQueue:
    """``JobQueue`` and ``Notifier`` on a dict (one event loop; no locking needed).

    Attributes:
        fail_backoff_s: delay before a transient failure's next attempt (``job_fail``).
        retry_later_s: delay before a handed-back job is due again (``job_retry_later``).
        max_infra_retries: hand-backs before one counts the attempt after all.
        down: every call raises ``DatabaseUnavailable`` while set.
        calls: how many times each method ran (outage or not).
    """

    fail_backoff_s: float = 0.0
    retry_later_s: float = 0.0
    max_infra_retries: int = 100
    down: bool = False
    jobs: dict[uuid.UUID, Job] = field(default_factory=dict)
    events: list[Event] = field(default_factory=list)
    calls: Counter[str] = field(default_factory=Counter)
    _infra_retries: Counter[uuid.UUID] = field(default_factory=Counter)
    _wake: asyncio.Event = field(default_factory=asyncio.Event)

    # -- what a producer, the API or another worker does ------------------------------------

    def insert(
        self,
        pipeline: str = "noop",
        params: dict[str, Any] | None = None,
        *,
        max_attempts: int = 3,
        priority: int = 0,
    ) -> Job:
        """Submit a job, due now (``job_insert``), and wake the idle workers."""
        now = _now()
        job = Job(
            job_id=uuid.uuid4(), tenant="acme", state=PENDING, pipeline=pipeline,
            params=params or {}, priority=priority, run_after=now, attempts=0,
            max_attempts=max_attempts, lease_token=None, lease_expires_at=None, worker_id=None,
            heartbeat_at=None, progress=0.0, frames_done=0, frames_total=None, input_key=None,
            output_key=None, error_kind=None, error_message=None, idempotency_key=None,
            created_at=now, updated_at=now, started_at=None, finished_at=None,
        )  # fmt: skip
        self.jobs[job.job_id] = job
        self._event(job, None)
        self._wake.set()
        return job

    def cancel(self, job_id: uuid.UUID) -> Job:
        """``job_cancel``: pending or running becomes cancelled; the lease token is kept."""
        job = self.jobs[job_id]
        if job.state in (PENDING, RUNNING):
            self._set(job, state=JobState.CANCELLED, lease_expires_at=None, finished_at=_now())
        return self.jobs[job_id]

    def expire(self, job_id: uuid.UUID) -> None:
        """The lease runs out, as if its worker had paused past ``lease_seconds``."""
        self._set(self.jobs[job_id], lease_expires_at=_now() - timedelta(seconds=1), quiet=True)

    def make_due(self, job_id: uuid.UUID) -> None:
        """Let a backoff pass (the tests' shortcut for waiting seconds)."""
        self._set(self.jobs[job_id], run_after=_now(), quiet=True)

    def get(self, job_id: uuid.UUID) -> Job:
        """The job as it is now."""
        return self.jobs[job_id]

    def states(self) -> dict[str, int]:
        """How many jobs are in each state."""
        return dict(Counter(str(j.state) for j in self.jobs.values()))

    def trail(self, job_id: uuid.UUID) -> list[tuple[JobState | None, JobState]]:
        """The job's transitions, oldest first."""
        return [(e.from_state, e.to_state) for e in self.events if e.job_id == job_id]

    # -- Notifier ----------------------------------------------------------------------------

    async def wait(self, timeout: float) -> bool:  # noqa: ASYNC109 - the Notifier's signature
        """True once something was submitted or released, False after ``timeout`` seconds."""
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self._wake.wait(), timeout)
            self._wake.clear()
            return True
        return False

    # -- JobQueue ----------------------------------------------------------------------------

    async def job_claim(
        self, *, worker_id: str, batch_size: int, lease_seconds: float, pipelines: Sequence[str]
    ) -> list[Job]:
        """THE claim: expired leases first, then due pending jobs, best first."""
        self._call("job_claim")
        now = _now()
        mine = [j for j in self.jobs.values() if j.pipeline in pipelines]
        expired = sorted(
            (j for j in mine if j.state is RUNNING and _before(j.lease_expires_at, now)),
            key=lambda j: j.lease_expires_at or now,
        )[:batch_size]
        due = sorted(
            (j for j in mine if j.state is PENDING and j.run_after <= now),
            key=lambda j: (-j.priority, j.run_after, j.created_at),
        )[: max(batch_size - len(expired), 0)]
        claimed = []
        for job in expired:
            if job.attempts >= job.max_attempts:
                self._set(job, state=JobState.FAILED, lease_expires_at=None, finished_at=now,
                          error_kind="lease_expired",
                          error_message=f"worker {job.worker_id} stopped heartbeating")  # fmt: skip
            else:
                claimed.append(job)
        claimed += due
        for job in claimed:
            self._set(
                job, state=RUNNING, attempts=job.attempts + 1, lease_token=uuid.uuid4(),
                lease_expires_at=now + timedelta(seconds=lease_seconds), worker_id=worker_id,
                heartbeat_at=now, started_at=now, progress=0.0, frames_done=0, frames_total=None,
            )  # fmt: skip
        got = [self.jobs[j.job_id] for j in claimed]
        return sorted(got, key=lambda j: (-j.priority, j.run_after, j.created_at))

    async def job_heartbeat(
        self, job_id: uuid.UUID, lease_token: uuid.UUID, *, lease_seconds: float
    ) -> HeartbeatStatus:
        """Extend the lease of the holder of ``lease_token``; else say why not."""
        self._call("job_heartbeat")
        job = self.jobs.get(job_id)
        if job is None or job.lease_token != lease_token:
            return HeartbeatStatus.LEASE_LOST
        if job.state is JobState.CANCELLED:
            return HeartbeatStatus.CANCELLED
        if job.state is not RUNNING:
            return HeartbeatStatus.LEASE_LOST
        now = _now()
        self._set(job, lease_expires_at=now + timedelta(seconds=lease_seconds), heartbeat_at=now,
                  quiet=True)  # fmt: skip
        return HeartbeatStatus.OK

    async def job_progress(
        self,
        job_id: uuid.UUID,
        lease_token: uuid.UUID,
        *,
        frames_done: int,
        frames_total: int | None,
    ) -> None:
        """Record progress (fenced)."""
        self._call("job_progress")
        job = self._held(job_id, lease_token)
        total = max(frames_total if frames_total is not None else job.frames_total or 0,
                    frames_done)  # fmt: skip
        progress = min(1.0, frames_done / total) if total > 0 else job.progress
        self._set(job, frames_done=frames_done, frames_total=total, progress=progress, quiet=True)

    async def job_complete_many(self, items: Sequence[Completion]) -> set[uuid.UUID]:
        """Complete every job still held by its token; the others are left out."""
        self._call("job_complete_many")
        done = set()
        for job_id, token, output_key in items:
            job = self.jobs.get(job_id)
            if job is None or job.lease_token != token or job.state is not RUNNING:
                continue
            self._set(job, state=JobState.COMPLETED, progress=1.0, output_key=output_key,
                      frames_done=job.frames_total or job.frames_done, lease_expires_at=None,
                      error_kind=None, error_message=None, finished_at=_now())  # fmt: skip
            done.add(job_id)
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
        """Fail the attempt (fenced): pending after the backoff, or failed for good."""
        self._call("job_fail")
        job = self._held(job_id, lease_token)
        self._fail_attempt(job, error_kind, error_message, permanent, self.fail_backoff_s)

    async def job_retry_later(
        self, job_id: uuid.UUID, lease_token: uuid.UUID, *, error_kind: str, error_message: str
    ) -> None:
        """Hand back after an infrastructure error (fenced), the attempt not counted."""
        self._call("job_retry_later")
        job = self._held(job_id, lease_token)
        self._infra_retries[job_id] += 1
        if self._infra_retries[job_id] > self.max_infra_retries:
            self._fail_attempt(job, error_kind, error_message, False, self.retry_later_s)
            return
        self._set(job, state=PENDING, attempts=job.attempts - 1, lease_token=None,
                  lease_expires_at=None, error_kind=error_kind, error_message=error_message,
                  run_after=_now() + timedelta(seconds=self.retry_later_s))  # fmt: skip

    async def job_release(self, job_id: uuid.UUID, lease_token: uuid.UUID) -> None:
        """Hand back at shutdown (fenced): pending, the attempt not counted; wakes workers."""
        self._call("job_release")
        job = self._held(job_id, lease_token)
        self._set(job, state=PENDING, attempts=job.attempts - 1, lease_token=None,
                  lease_expires_at=None)  # fmt: skip
        self._wake.set()

    async def job_split(
        self, job_id: uuid.UUID, lease_token: uuid.UUID, segments: Sequence[Segment]
    ) -> None:
        """Split (fenced): the segments pending, the parent never due, its attempt not counted.

        The fan-in (the last segment's completion makes the parent due) is migration 0018's
        trigger, tested on Postgres; here a test calls ``make_due``.
        """
        self._call("job_split")
        job = self._held(job_id, lease_token)
        self._set(job, state=PENDING, attempts=job.attempts - 1, lease_token=None,
                  lease_expires_at=None, run_after=datetime(9999, 1, 1, tzinfo=UTC),
                  segments=len(segments), frames_total=sum(s[3] for s in segments))  # fmt: skip
        now = _now()
        for index, (child_id, start_ms, end_ms, samples) in enumerate(segments):
            child = msgspec.structs.replace(
                job, job_id=child_id, state=PENDING, run_after=now, attempts=0, segments=None,
                lease_token=None, lease_expires_at=None, worker_id=None, heartbeat_at=None,
                parent_id=job_id, segment_index=index, segment_start_ms=start_ms,
                segment_end_ms=end_ms, frames_total=samples, frames_done=0, progress=0.0,
                created_at=now, updated_at=now, started_at=None,
            )  # fmt: skip
            self.jobs[child_id] = child
            self._event(child, None)
        self._wake.set()

    # -- the row updates ---------------------------------------------------------------------

    def _call(self, name: str) -> None:
        self.calls[name] += 1
        if self.down:
            raise DatabaseUnavailable("Postgres unavailable: the in-memory queue is down")

    def _held(self, job_id: uuid.UUID, lease_token: uuid.UUID) -> Job:
        job = self.jobs.get(job_id)
        if job is None or job.lease_token != lease_token or job.state is not RUNNING:
            raise LeaseLost(job_id)
        return job

    def _fail_attempt(
        self, job: Job, kind: str, message: str, permanent: bool, backoff_s: float
    ) -> None:
        final = permanent or job.attempts >= job.max_attempts
        if final:
            self._set(job, state=JobState.FAILED, lease_expires_at=None, finished_at=_now(),
                      error_kind=kind, error_message=message)  # fmt: skip
        else:
            self._set(job, state=PENDING, lease_token=None, lease_expires_at=None,
                      run_after=_now() + timedelta(seconds=backoff_s), error_kind=kind,
                      error_message=message)  # fmt: skip

    def _set(self, job: Job, *, quiet: bool = False, **changes: Any) -> None:
        new = msgspec.structs.replace(job, updated_at=_now(), **changes)
        self.jobs[job.job_id] = new
        if not quiet:
            self._event(new, job.state)

    def _event(self, job: Job, from_state: JobState | None) -> None:
        self.events.append(
            Event(
                job.job_id, from_state, job.state, job.attempts, job.error_kind, job.error_message
            )
        )


def _now() -> datetime:
    return datetime.now(UTC)


def _before(at: datetime | None, now: datetime) -> bool:
    return at is not None and at < now
