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
from typing import Any, LiteralString

from vidjobs.db.errors import LeaseLost
from vidjobs.db.statements import Conn, fetch, fetch_jobs
from vidjobs.schema import Job

__all__ = [
    "HeartbeatStatus",
    "job_claim",
    "job_complete",
    "job_complete_many",
    "job_fail",
    "job_heartbeat",
    "job_progress",
    "job_release",
    "job_retry_later",
]


class HeartbeatStatus(enum.StrEnum):
    """What a heartbeat found: keep going, stop because cancelled, or stop because lost."""

    OK = "ok"
    CANCELLED = "cancelled"
    LEASE_LOST = "lease_lost"


async def job_claim(
    conn: Conn,
    *,
    worker_id: str,
    batch_size: int,
    lease_seconds: float,
    pipelines: Sequence[str] | None = None,
    now: datetime | None = None,
) -> list[Job]:
    """Claim up to ``batch_size`` jobs (THE claim statement); each is running under a new lease.

    Also takes back running jobs whose lease expired (and fails for good those that were on their
    last attempt, ``error_kind='lease_expired'``).

    Args:
        pipelines: take only jobs of these pipelines (pending and expired alike), so a worker
            never claims a job it cannot run and others can; None takes every pipeline.
    """
    if isinstance(pipelines, str):
        raise TypeError("pipelines is a sequence of names, not one name")
    args = {"worker_id": worker_id, "batch_size": batch_size, "lease_seconds": lease_seconds,
            "pipelines": None if pipelines is None else list(pipelines), "now": now}  # fmt: skip
    return await fetch_jobs(conn, "job_claim", args)


async def job_heartbeat(
    conn: Conn,
    job_id: uuid.UUID,
    lease_token: uuid.UUID,
    *,
    lease_seconds: float,
    now: datetime | None = None,
) -> HeartbeatStatus:
    """Extend the lease; CANCELLED or LEASE_LOST tell the worker to stop working on the job."""
    args = {"job_id": job_id, "lease_token": lease_token,
            "lease_seconds": lease_seconds, "now": now}  # fmt: skip
    row = await (await fetch(conn, "job_heartbeat", args)).fetchone()
    return HeartbeatStatus(row[0] if row else HeartbeatStatus.LEASE_LOST)


async def _fenced(conn: Conn, name: LiteralString, job_id: uuid.UUID, args: dict[str, Any]) -> None:
    """Run a write conditioned on the lease token; no row back means the lease was lost."""
    row = await (await fetch(conn, name, {"job_id": job_id, **args})).fetchone()
    if row is None:
        raise LeaseLost(job_id)


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
    args = {"lease_token": lease_token, "frames_done": frames_done,
            "frames_total": frames_total, "now": now}  # fmt: skip
    await _fenced(conn, "job_progress", job_id, args)


async def job_complete(
    conn: Conn,
    job_id: uuid.UUID,
    lease_token: uuid.UUID,
    *,
    output_key: str | None,
    now: datetime | None = None,
) -> None:
    """Complete a held job (fenced). Raises LeaseLost."""
    args = {"lease_token": lease_token, "output_key": output_key, "now": now}
    await _fenced(conn, "job_complete", job_id, args)


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
    args = {
        "job_id": job_id, "lease_token": lease_token, "error_kind": error_kind,
        "error_message": error_message, "permanent": permanent,
        "backoff_base_s": backoff_base_s, "backoff_max_s": backoff_max_s, "now": now,
    }  # fmt: skip
    found = await fetch_jobs(conn, "job_fail", args)
    if not found:
        raise LeaseLost(job_id)
    return found[0]


async def job_release(
    conn: Conn, job_id: uuid.UUID, lease_token: uuid.UUID, now: datetime | None = None
) -> None:
    """Hand a held job back (graceful shutdown): pending, attempt not counted. Raises LeaseLost."""
    await _fenced(conn, "job_release", job_id, {"lease_token": lease_token, "now": now})


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
    args = {
        "job_id": job_id, "lease_token": lease_token, "error_kind": error_kind,
        "error_message": error_message, "backoff_base_s": backoff_base_s,
        "backoff_max_s": backoff_max_s, "max_infra_retries": max_infra_retries, "now": now,
    }  # fmt: skip
    found = await fetch_jobs(conn, "job_retry_later", args)
    if not found:
        raise LeaseLost(job_id)
    return found[0]
