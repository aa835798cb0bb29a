"""The jobs API, worker side: claim, and every write fenced by the lease token.

One async function per named query in ``jobs.sql``: the claim, then heartbeat, progress,
complete, fail, hand back. Every write after the claim is conditioned on the job's lease token:
a worker whose lease was lost gets ``LeaseLost`` (or a status saying so) and never overwrites a
newer attempt. The producer and reader side is ``db/jobs.py``. Each function is one statement;
every function depending on the clock takes ``now`` so tests control time.
"""

from __future__ import annotations

import enum
import uuid
from collections.abc import Sequence
from datetime import datetime
from typing import LiteralString

import msgspec

from vidjobs.db.errors import LeaseLost
from vidjobs.db.statements import Conn, fetch, fetch_jobs
from vidjobs.schema import Job

__all__ = [
    "FencedParams",
    "HeartbeatStatus",
    "JobClaimParams",
    "JobCompleteParams",
    "JobFailParams",
    "JobHeartbeatParams",
    "JobProgressParams",
    "JobReleaseParams",
    "JobRetryLaterParams",
    "JobSplitParams",
    "job_claim",
    "job_complete",
    "job_complete_many",
    "job_fail",
    "job_heartbeat",
    "job_progress",
    "job_release",
    "job_retry_later",
    "job_split",
]


class HeartbeatStatus(enum.StrEnum):
    """What a heartbeat found: keep going, stop because cancelled, or stop because lost."""

    OK = "ok"
    CANCELLED = "cancelled"
    LEASE_LOST = "lease_lost"


# The parameters of the worker's statements, one Struct per statement, its fields named as the
# statement's placeholders (``JobClaimParams`` -> ``job_claim``; a unit test checks they agree).


class JobClaimParams(msgspec.Struct, frozen=True, kw_only=True):
    """``job_claim``: who claims, how many, for how long, which pipelines (None: all).

    ``default_max_running`` and ``default_weight`` apply to tenants whose row leaves them NULL
    (``TenantDefaults``); ``default_max_running`` None means no limit.
    """

    worker_id: str
    batch_size: int
    lease_seconds: float
    pipelines: list[str] | None
    default_max_running: int | None
    default_weight: int
    now: datetime | None


class FencedParams(msgspec.Struct, frozen=True, kw_only=True):
    """What every write conditioned on the lease token of the attempt takes."""

    job_id: uuid.UUID
    lease_token: uuid.UUID
    now: datetime | None


class JobHeartbeatParams(FencedParams, frozen=True, kw_only=True):
    """``job_heartbeat``: the lease runs ``lease_seconds`` from now."""

    lease_seconds: float


class JobProgressParams(FencedParams, frozen=True, kw_only=True):
    """``job_progress``."""

    frames_done: int
    frames_total: int | None


class JobCompleteParams(FencedParams, frozen=True, kw_only=True):
    """``job_complete``."""

    output_key: str | None


class JobReleaseParams(FencedParams, frozen=True, kw_only=True):
    """``job_release``: nothing beyond the fence."""


class JobFailParams(FencedParams, frozen=True, kw_only=True):
    """``job_fail``: the error, whether retrying is pointless, the backoff."""

    error_kind: str
    error_message: str
    permanent: bool
    backoff_base_s: float
    backoff_max_s: float


class JobRetryLaterParams(FencedParams, frozen=True, kw_only=True):
    """``job_retry_later``: the error, the backoff, how many hand-backs are free."""

    error_kind: str
    error_message: str
    backoff_base_s: float
    backoff_max_s: float
    max_infra_retries: int


class JobSplitParams(FencedParams, frozen=True, kw_only=True):
    """``job_split``: the segments (id, range, planned samples) and the video's samples."""

    child_ids: list[uuid.UUID]
    starts_ms: list[int]
    ends_ms: list[int]
    child_frames: list[int]
    frames_total: int


async def job_claim(
    conn: Conn,
    *,
    worker_id: str,
    batch_size: int,
    lease_seconds: float,
    pipelines: Sequence[str] | None = None,
    default_max_running: int | None = None,
    default_weight: int = 1,
    now: datetime | None = None,
) -> list[Job]:
    """Claim up to ``batch_size`` jobs (THE claim statement); each is running under a new lease.

    Also takes back running jobs whose lease expired (and fails for good those that were on their
    last attempt, ``error_kind='lease_expired'``). Pending jobs are served fairly: tenants take
    turns (weighted), none over its ``max_running``; priority orders a tenant's own jobs only.
    The jobs come back in that order, take-backs first.

    Args:
        pipelines: take only jobs of these pipelines (pending and expired alike), so a worker
            never claims a job it cannot run and others can; None takes every pipeline.
        default_max_running: the limit of tenants whose ``max_running`` is NULL (None: none).
        default_weight: the weight of tenants whose ``weight`` is NULL.
    """
    if isinstance(pipelines, str):
        raise TypeError("pipelines is a sequence of names, not one name")
    params = JobClaimParams(
        worker_id=worker_id,
        batch_size=batch_size,
        lease_seconds=lease_seconds,
        pipelines=None if pipelines is None else list(pipelines),
        default_max_running=default_max_running,
        default_weight=default_weight,
        now=now,
    )
    return await fetch_jobs(conn, "job_claim", params)


async def job_heartbeat(
    conn: Conn,
    job_id: uuid.UUID,
    lease_token: uuid.UUID,
    *,
    lease_seconds: float,
    now: datetime | None = None,
) -> HeartbeatStatus:
    """Extend the lease; CANCELLED or LEASE_LOST tell the worker to stop working on the job."""
    params = JobHeartbeatParams(
        job_id=job_id, lease_token=lease_token, lease_seconds=lease_seconds, now=now
    )
    row = await (await fetch(conn, "job_heartbeat", params)).fetchone()
    return HeartbeatStatus(row[0] if row else HeartbeatStatus.LEASE_LOST)


async def _fenced(conn: Conn, name: LiteralString, params: FencedParams) -> None:
    """Run a write conditioned on the lease token; no row back means the lease was lost."""
    if await (await fetch(conn, name, params)).fetchone() is None:
        raise LeaseLost(params.job_id)


async def _fenced_job(conn: Conn, name: LiteralString, params: FencedParams) -> Job:
    """:func:`_fenced` for a write that returns the job as it now is."""
    found = await fetch_jobs(conn, name, params)
    if not found:
        raise LeaseLost(params.job_id)
    return found[0]


async def job_progress(
    conn: Conn,
    job_id: uuid.UUID,
    lease_token: uuid.UUID,
    *,
    frames_done: int,
    frames_total: int | None,
    now: datetime | None = None,
) -> None:
    """Record progress (fenced). Raises LeaseLost, also when the job was cancelled."""
    params = JobProgressParams(
        job_id=job_id,
        lease_token=lease_token,
        now=now,
        frames_done=frames_done,
        frames_total=frames_total,
    )
    await _fenced(conn, "job_progress", params)


async def job_complete(
    conn: Conn,
    job_id: uuid.UUID,
    lease_token: uuid.UUID,
    *,
    output_key: str | None,
    now: datetime | None = None,
) -> None:
    """Complete a held job (fenced). Raises LeaseLost."""
    params = JobCompleteParams(
        job_id=job_id, lease_token=lease_token, now=now, output_key=output_key
    )
    await _fenced(conn, "job_complete", params)


async def job_complete_many(
    conn: Conn,
    items: Sequence[tuple[uuid.UUID, uuid.UUID, str | None]],
    now: datetime | None = None,
) -> set[uuid.UUID]:
    """Complete many held jobs in one statement; returns the ids completed.

    Ids missing from the result lost their lease (expired and taken back, or cancelled).
    """
    if not items:
        return set()
    args = {
        "job_ids": [i[0] for i in items],
        "lease_tokens": [i[1] for i in items],
        "output_keys": [i[2] for i in items],
        "now": now,
    }
    rows = await (await fetch(conn, "job_complete_many", args)).fetchall()
    return {row[0] for row in rows}


async def job_fail(
    conn: Conn,
    job_id: uuid.UUID,
    lease_token: uuid.UUID,
    *,
    error_kind: str,
    error_message: str,
    permanent: bool,
    backoff_base_s: float = 5.0,
    backoff_max_s: float = 600.0,
    now: datetime | None = None,
) -> Job:
    """Fail the current attempt (fenced); returns the job as it now is.

    Transient with attempts left: pending again, ``run_after`` = now + d/2 + random * d/2 where
    d = min(backoff_max_s, backoff_base_s * 2^(attempt-1)). Permanent, or the last attempt:
    failed for good. The error is kept on the row and in the event. Raises LeaseLost.
    """
    params = JobFailParams(
        job_id=job_id,
        lease_token=lease_token,
        now=now,
        error_kind=error_kind,
        error_message=error_message,
        permanent=permanent,
        backoff_base_s=backoff_base_s,
        backoff_max_s=backoff_max_s,
    )
    return await _fenced_job(conn, "job_fail", params)


async def job_release(
    conn: Conn, job_id: uuid.UUID, lease_token: uuid.UUID, now: datetime | None = None
) -> None:
    """Hand a held job back (graceful shutdown): pending, attempt not counted. Raises LeaseLost."""
    params = JobReleaseParams(job_id=job_id, lease_token=lease_token, now=now)
    await _fenced(conn, "job_release", params)


async def job_retry_later(
    conn: Conn,
    job_id: uuid.UUID,
    lease_token: uuid.UUID,
    *,
    error_kind: str,
    error_message: str,
    backoff_base_s: float = 1.0,
    backoff_max_s: float = 60.0,
    max_infra_retries: int = 100,
    now: datetime | None = None,
) -> Job:
    """Hand a held job back after an infrastructure error (fenced); returns the job as it now is.

    For errors of the blob store or the database, not of the job: pending again with
    ``run_after`` = now + d/2 + random * d/2, d = min(backoff_max_s, backoff_base_s * 2^n) where
    n counts the job's earlier hand-backs (column ``infra_retries``), and the attempt is not
    counted, so an outage cannot use up ``max_attempts``. Once ``max_infra_retries`` hand-backs
    were made, a further one counts the attempt (failed for good on the last one), so a job
    cannot wait forever. The error stays on the row and in the event. Raises LeaseLost.
    """
    params = JobRetryLaterParams(
        job_id=job_id,
        lease_token=lease_token,
        now=now,
        error_kind=error_kind,
        error_message=error_message,
        backoff_base_s=backoff_base_s,
        backoff_max_s=backoff_max_s,
        max_infra_retries=max_infra_retries,
    )
    return await _fenced_job(conn, "job_retry_later", params)


async def job_split(
    conn: Conn,
    job_id: uuid.UUID,
    lease_token: uuid.UUID,
    *,
    segments: Sequence[tuple[uuid.UUID, int, int, int]],
    now: datetime | None = None,
) -> Job:
    """Split a held job into segment jobs (fenced); returns the parent as it now waits.

    ``segments`` are ``(job_id, start_ms, end_ms, samples)`` in order. The parent is pending
    and never due until its last segment completes (migration 0018's trigger makes it due
    then, and its next claim merges); the attempt is not counted. Raises LeaseLost.
    """
    params = JobSplitParams(
        job_id=job_id,
        lease_token=lease_token,
        now=now,
        child_ids=[s[0] for s in segments],
        starts_ms=[s[1] for s in segments],
        ends_ms=[s[2] for s in segments],
        child_frames=[s[3] for s in segments],
        frames_total=sum(s[3] for s in segments),
    )
    return await _fenced_job(conn, "job_split", params)
