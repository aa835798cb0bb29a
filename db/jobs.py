"""The jobs API: one async function per named query in ``db/queries/jobs.sql``.

Each function is one statement (one round trip, one transaction on an autocommit connection,
which is what ``db.pool.open_pool`` hands out). Worker writes are fenced by the lease token: a
worker whose lease was lost gets ``LeaseLost`` (or a status saying so) and never overwrites a
newer attempt. Every function depending on the clock takes ``now`` so tests control time.
"""

from __future__ import annotations

import base64
import binascii
import enum
import uuid
from collections.abc import Mapping, Sequence
from datetime import datetime, timedelta
from typing import Any, LiteralString

import msgspec
import psycopg

from db.errors import DatabaseUnavailable, InvalidCursor, LeaseLost
from db.queries import load_queries
from schema import Job, JobState

__all__ = [
    "HeartbeatStatus",
    "InsertResult",
    "JobEvent",
    "JobPage",
    "NewJob",
    "job_cancel",
    "job_claim",
    "job_complete",
    "job_complete_many",
    "job_count_by_state",
    "job_delete",
    "job_event_list",
    "job_fail",
    "job_get",
    "job_get_by_idempotency_key",
    "job_heartbeat",
    "job_insert",
    "job_insert_many",
    "job_list",
    "job_progress",
    "job_prune",
    "job_release",
    "job_retry_later",
]

_Q = load_queries()
_JOB_FIELDS = frozenset(Job.__struct_fields__)
_Conn = psycopg.AsyncConnection[Any]


class HeartbeatStatus(enum.StrEnum):
    """What a heartbeat found: keep going, stop because cancelled, or stop because lost."""

    OK = "ok"
    CANCELLED = "cancelled"
    LEASE_LOST = "lease_lost"


class NewJob(msgspec.Struct, frozen=True, kw_only=True):
    """One job for ``job_insert_many``; ``job_id`` is generated when omitted."""

    tenant: str
    pipeline: str
    params: dict[str, Any] = msgspec.field(default_factory=dict)
    priority: int = 0
    run_after: datetime | None = None
    max_attempts: int = 3
    input_key: str | None = None
    job_id: uuid.UUID | None = None


class InsertResult(msgspec.Struct, frozen=True):
    """The job and whether this call created it (False: an idempotent retry found it)."""

    job: Job
    created: bool


class JobPage(msgspec.Struct, frozen=True):
    """One page of ``job_list``; pass ``next_cursor`` back for the next (None: last page)."""

    jobs: list[Job]
    next_cursor: str | None


class JobEvent(msgspec.Struct, frozen=True, kw_only=True):
    """One row of the audit trail ``vidjobs.job_events``."""

    event_id: int
    job_id: uuid.UUID
    at: datetime
    actor: str
    from_state: JobState | None
    to_state: JobState
    attempt: int
    error_kind: str | None
    error_message: str | None


def _to_job(names: Sequence[str], row: Sequence[Any]) -> Job:
    fields = {n: v for n, v in zip(names, row, strict=True) if n in _JOB_FIELDS}
    fields["state"] = JobState(fields["state"])
    return Job(**fields)


async def _fetch(
    conn: _Conn, name: LiteralString, params: Mapping[str, Any]
) -> psycopg.AsyncCursor[Any]:
    try:
        return await conn.execute(_Q[name], params)
    except psycopg.OperationalError as exc:
        raise DatabaseUnavailable(f"{name}: {exc}") from exc


async def _jobs(conn: _Conn, name: LiteralString, params: Mapping[str, Any]) -> list[Job]:
    cur = await _fetch(conn, name, params)
    names = [d.name for d in cur.description or ()]
    return [_to_job(names, row) for row in await cur.fetchall()]


def _json(params: Mapping[str, Any]) -> str:
    return msgspec.json.encode(params).decode()


async def job_insert(
    conn: _Conn,
    *,
    job_id: uuid.UUID,
    tenant: str,
    pipeline: str,
    params: Mapping[str, Any],
    priority: int = 0,
    run_after: datetime | None = None,
    max_attempts: int = 3,
    input_key: str | None = None,
    idempotency_key: str | None = None,
    now: datetime | None = None,
) -> InsertResult:
    """Submit a job and wake idle workers (NOTIFY in the same transaction).

    With an idempotency key the tenant already used, nothing is inserted and that earlier job
    comes back with ``created=False``, so a client may safely retry a submit.
    """
    args = {
        "job_id": job_id, "tenant": tenant, "pipeline": pipeline, "params": _json(params),
        "priority": priority, "run_after": run_after, "max_attempts": max_attempts,
        "input_key": input_key, "idempotency_key": idempotency_key, "now": now,
    }  # fmt: skip
    cur = await _fetch(conn, "job_insert", args)
    names = [d.name for d in cur.description or ()]
    row = await cur.fetchone()
    if row is not None:
        return InsertResult(_to_job(names, row), bool(row[names.index("created")]))
    # The twin was committed by a concurrent submit after this statement's snapshot was taken:
    # a fresh statement sees it.
    twin = await job_get_by_idempotency_key(conn, tenant, idempotency_key or "")
    if twin is None:
        raise RuntimeError(f"job {job_id}: insert neither created nor found a job")
    return InsertResult(twin, False)


async def job_insert_many(
    conn: _Conn, jobs: Sequence[NewJob], now: datetime | None = None
) -> list[uuid.UUID]:
    """Submit many jobs in one statement (arrays + unnest) with one NOTIFY; ids in input order."""
    ids = [j.job_id or uuid.uuid4() for j in jobs]
    args = {
        "job_ids": ids,
        "tenants": [j.tenant for j in jobs],
        "pipelines": [j.pipeline for j in jobs],
        "params": [_json(j.params) for j in jobs],
        "priorities": [j.priority for j in jobs],
        "run_afters": [j.run_after for j in jobs],
        "max_attempts": [j.max_attempts for j in jobs],
        "input_keys": [j.input_key for j in jobs],
        "now": now,
    }
    if jobs:
        await _fetch(conn, "job_insert_many", args)
    return ids


async def job_get(conn: _Conn, job_id: uuid.UUID, *, tenant: str | None = None) -> Job | None:
    """The job, or None (unknown, or owned by another tenant when ``tenant`` is given)."""
    found = await _jobs(conn, "job_get", {"job_id": job_id, "tenant": tenant})
    return found[0] if found else None


async def job_get_by_idempotency_key(conn: _Conn, tenant: str, key: str) -> Job | None:
    """The job ``tenant`` submitted under idempotency key ``key``, if any."""
    found = await _jobs(
        conn, "job_get_by_idempotency_key", {"tenant": tenant, "idempotency_key": key}
    )
    return found[0] if found else None


def _encode_cursor(job: Job) -> str:
    raw = f"{job.created_at.isoformat()}|{job.job_id}".encode()
    return base64.urlsafe_b64encode(raw).decode().rstrip("=")


def _decode_cursor(cursor: str) -> tuple[datetime, uuid.UUID]:
    try:
        raw = base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4)).decode()
        created, job_id = raw.split("|")
        return datetime.fromisoformat(created), uuid.UUID(job_id)
    except (ValueError, binascii.Error, UnicodeDecodeError) as exc:
        raise InvalidCursor(f"not a cursor from this API: {cursor!r}") from exc


async def job_list(
    conn: _Conn,
    *,
    tenant: str,
    state: JobState | None = None,
    limit: int = 50,
    cursor: str | None = None,
) -> JobPage:
    """One page of a tenant's jobs, newest first (keyset pagination: stable under inserts).

    Raises:
        InvalidCursor: ``cursor`` was not produced by this function.
    """
    after_created, after_id = _decode_cursor(cursor) if cursor else (None, None)
    args = {
        "tenant": tenant, "state": state.value if state else None, "limit": limit + 1,
        "after_created_at": after_created, "after_job_id": after_id,
    }  # fmt: skip
    found = await _jobs(conn, "job_list", args)
    page = found[:limit]
    more = len(found) > limit and bool(page)
    return JobPage(page, _encode_cursor(page[-1]) if more else None)


async def job_claim(
    conn: _Conn,
    *,
    worker_id: str,
    batch_size: int,
    lease_seconds: float,
    now: datetime | None = None,
) -> list[Job]:
    """Claim up to ``batch_size`` jobs (THE claim statement); each is running under a new lease.

    Also takes back running jobs whose lease expired (and fails for good those that were on their
    last attempt, ``error_kind='lease_expired'``).
    """
    args = {"worker_id": worker_id, "batch_size": batch_size,
            "lease_seconds": lease_seconds, "now": now}  # fmt: skip
    return await _jobs(conn, "job_claim", args)


async def job_heartbeat(
    conn: _Conn,
    job_id: uuid.UUID,
    lease_token: uuid.UUID,
    *,
    lease_seconds: float,
    now: datetime | None = None,
) -> HeartbeatStatus:
    """Extend the lease; CANCELLED or LEASE_LOST tell the worker to stop working on the job."""
    args = {"job_id": job_id, "lease_token": lease_token,
            "lease_seconds": lease_seconds, "now": now}  # fmt: skip
    row = await (await _fetch(conn, "job_heartbeat", args)).fetchone()
    return HeartbeatStatus(row[0] if row else HeartbeatStatus.LEASE_LOST)


async def _fenced(
    conn: _Conn, name: LiteralString, job_id: uuid.UUID, args: dict[str, Any]
) -> None:
    row = await (await _fetch(conn, name, {"job_id": job_id, **args})).fetchone()
    if row is None:
        raise LeaseLost(job_id)


async def job_progress(
    conn: _Conn,
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
    conn: _Conn,
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
    conn: _Conn,
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
    rows = await (await _fetch(conn, "job_complete_many", args)).fetchall()
    return {row[0] for row in rows}


async def job_fail(
    conn: _Conn,
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
    found = await _jobs(conn, "job_fail", args)
    if not found:
        raise LeaseLost(job_id)
    return found[0]


async def job_release(
    conn: _Conn, job_id: uuid.UUID, lease_token: uuid.UUID, now: datetime | None = None
) -> None:
    """Hand a held job back (graceful shutdown): pending, attempt not counted. Raises LeaseLost."""
    await _fenced(conn, "job_release", job_id, {"lease_token": lease_token, "now": now})


async def job_retry_later(
    conn: _Conn,
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
    found = await _jobs(conn, "job_retry_later", args)
    if not found:
        raise LeaseLost(job_id)
    return found[0]


async def job_cancel(
    conn: _Conn, job_id: uuid.UUID, *, tenant: str | None = None, now: datetime | None = None
) -> Job | None:
    """Cancel a pending or running job; a terminal job comes back unchanged (check ``state``).

    None: unknown job, or another tenant's. A running job's worker learns of it at its next
    heartbeat (CANCELLED) and its fenced writes fail with LeaseLost.
    """
    found = await _jobs(conn, "job_cancel", {"job_id": job_id, "tenant": tenant, "now": now})
    return found[0] if found else None


async def job_delete(conn: _Conn, job_id: uuid.UUID, *, tenant: str | None) -> Job | None:
    """Delete a terminal job and its events; returns the row (the caller removes its blobs).

    A non-terminal job is returned unchanged and not deleted (check ``state``); None: unknown.
    """
    found = await _jobs(conn, "job_delete", {"job_id": job_id, "tenant": tenant})
    return found[0] if found else None


async def job_prune(
    conn: _Conn, *, older_than: timedelta, limit: int = 10_000, now: datetime | None = None
) -> list[Job]:
    """Delete up to ``limit`` jobs finished before now - ``older_than`` (and their events).

    Returns the deleted rows so the caller can remove their blobs; call again while it returns
    ``limit`` rows.
    """
    args = {"older_than": older_than, "limit": limit, "now": now}
    return await _jobs(conn, "job_prune", args)


async def job_count_by_state(conn: _Conn) -> dict[JobState, int]:
    """Jobs per state, every state present (0 when none)."""
    rows = await (await _fetch(conn, "job_count_by_state", {})).fetchall()
    counts = dict.fromkeys(JobState, 0)
    counts.update({JobState(state): int(n) for state, n in rows})
    return counts


async def job_event_list(conn: _Conn, job_id: uuid.UUID) -> list[JobEvent]:
    """A job's audit trail, oldest first."""
    rows = await (await _fetch(conn, "job_event_list", {"job_id": job_id})).fetchall()
    return [
        JobEvent(
            event_id=r[0],
            job_id=r[1],
            at=r[2],
            actor=r[3],
            from_state=JobState(r[4]) if r[4] else None,
            to_state=JobState(r[5]),
            attempt=r[6],
            error_kind=r[7],
            error_message=r[8],
        )
        for r in rows
    ]
