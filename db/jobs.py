"""The jobs API, producer and reader side: one async function per named query in ``jobs.sql``.

Submit (``job_insert[_many]``), read (``job_get``, ``job_list``, counts, the audit trail),
cancel, delete and prune: what the API and operators do. The worker side (claim, heartbeat,
progress, complete, fail, hand back) is ``db/leases.py``. Each function is one statement (one
round trip, one transaction on an autocommit connection, which is what ``db.pool.open_pool``
hands out). Every function depending on the clock takes ``now`` so tests control time.
"""

from __future__ import annotations

import base64
import binascii
import uuid
from collections.abc import Mapping, Sequence
from datetime import datetime, timedelta
from typing import Any

import msgspec

from vidjobs.db.errors import InvalidCursor
from vidjobs.db.statements import Conn, fetch, fetch_jobs, fetch_rows, to_job
from vidjobs.schema import Job, JobState

__all__ = [
    "InsertResult",
    "JobEvent",
    "JobPage",
    "NewJob",
    "QueueHealth",
    "job_cancel",
    "job_children",
    "job_count_by_state",
    "job_count_queued",
    "job_delete",
    "job_event_list",
    "job_get",
    "job_get_by_idempotency_key",
    "job_insert",
    "job_insert_many",
    "job_list",
    "job_prune",
    "queue_health",
]


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


def _json(params: Mapping[str, Any]) -> str:
    return msgspec.json.encode(params).decode()


async def job_insert(
    conn: Conn,
    *,
    job_id: uuid.UUID,
    tenant: str,
    pipeline: str,
    params: Mapping[str, Any],
    priority: int = 0,
    run_after: datetime | None = None,
    max_attempts: int = 3,
    input_key: str | None = None,
    input_bytes: int | None = None,
    input_sha256: str | None = None,
    callback_url: str | None = None,
    trace_context: str | None = None,
    idempotency_key: str | None = None,
    now: datetime | None = None,
) -> InsertResult:
    """Submit a job and wake idle workers (NOTIFY in the same transaction).

    With an idempotency key the tenant already used, nothing is inserted and that earlier job
    comes back with ``created=False``, so a client may safely retry a submit. ``input_bytes``
    (the upload's size) is counted in the tenant's ``stored_bytes`` by 0012's trigger;
    ``input_sha256`` (its hex SHA-256) tells a repeat with another file from a true one.
    ``callback_url`` (checked by the caller) gets the job's terminal event (0016's outbox).
    ``trace_context`` is the submit span's ``traceparent`` (0017), continued by the worker.
    """
    args = {
        "job_id": job_id, "tenant": tenant, "pipeline": pipeline, "params": _json(params),
        "priority": priority, "run_after": run_after, "max_attempts": max_attempts,
        "input_key": input_key, "input_bytes": input_bytes, "input_sha256": input_sha256,
        "callback_url": callback_url, "trace_context": trace_context,
        "idempotency_key": idempotency_key, "now": now,
    }  # fmt: skip
    rows = await fetch_rows(conn, "job_insert", args)
    if rows:
        return InsertResult(to_job(rows[0]), bool(rows[0]["created"]))
    # The twin was committed by a concurrent submit after this statement's snapshot was taken:
    # a fresh statement sees it.
    twin = await job_get_by_idempotency_key(conn, tenant, idempotency_key or "")
    if twin is None:
        raise RuntimeError(f"job {job_id}: insert neither created nor found a job")
    return InsertResult(twin, False)


async def job_insert_many(
    conn: Conn, jobs: Sequence[NewJob], now: datetime | None = None
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
        await fetch(conn, "job_insert_many", args)
    return ids


async def job_get(conn: Conn, job_id: uuid.UUID, *, tenant: str | None = None) -> Job | None:
    """The job, or None (unknown, or owned by another tenant when ``tenant`` is given)."""
    found = await fetch_jobs(conn, "job_get", {"job_id": job_id, "tenant": tenant})
    return found[0] if found else None


async def job_get_by_idempotency_key(conn: Conn, tenant: str, key: str) -> Job | None:
    """The job ``tenant`` submitted under idempotency key ``key``, if any."""
    found = await fetch_jobs(
        conn, "job_get_by_idempotency_key", {"tenant": tenant, "idempotency_key": key}
    )
    return found[0] if found else None


def _encode_cursor(job: Job) -> str:
    raw = f"{job.created_at.isoformat()}|{job.job_id}".encode()
    return base64.urlsafe_b64encode(raw).decode().rstrip("=")


_CURSOR_SHOWN = 32
"""Characters of a refused cursor echoed in the error: enough to recognise, never the whole
of a 100 kB one."""


def _decode_cursor(cursor: str) -> tuple[datetime, uuid.UUID]:
    try:
        raw = base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4)).decode()
        created, job_id = raw.split("|")
        return datetime.fromisoformat(created), uuid.UUID(job_id)
    except (ValueError, binascii.Error, UnicodeDecodeError) as exc:
        shown = repr(cursor[:_CURSOR_SHOWN])
        if len(cursor) > _CURSOR_SHOWN:
            shown += f"... ({len(cursor)} characters)"
        raise InvalidCursor(f"not a cursor from this API: {shown}") from exc


async def job_list(
    conn: Conn,
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
    found = await fetch_jobs(conn, "job_list", args)
    page = found[:limit]
    more = len(found) > limit and bool(page)
    return JobPage(page, _encode_cursor(page[-1]) if more else None)


async def job_cancel(
    conn: Conn, job_id: uuid.UUID, *, tenant: str | None = None, now: datetime | None = None
) -> Job | None:
    """Cancel a pending or running job; a terminal job comes back unchanged (check ``state``).

    None: unknown job, or another tenant's. A running job's worker learns of it at its next
    heartbeat (CANCELLED) and its fenced writes fail with LeaseLost.
    """
    found = await fetch_jobs(conn, "job_cancel", {"job_id": job_id, "tenant": tenant, "now": now})
    return found[0] if found else None


async def job_delete(conn: Conn, job_id: uuid.UUID, *, tenant: str | None) -> Job | None:
    """Delete a terminal job and its events; returns the row (the caller removes its blobs).

    A split job goes with its segments (their partial results are the caller's to remove:
    ``schema.segments.segment_job_id`` names them). A non-terminal job, or a segment (which
    goes only with its parent), is returned unchanged and not deleted (check ``state`` and
    ``parent_id``); None: unknown.
    """
    found = await fetch_jobs(conn, "job_delete", {"job_id": job_id, "tenant": tenant})
    return next((job for job in found if job.job_id == job_id), None)


async def job_children(conn: Conn, job_id: uuid.UUID, *, tenant: str | None = None) -> list[Job]:
    """A split job's segments, in order (empty for any other job)."""
    return await fetch_jobs(conn, "job_children", {"job_id": job_id, "tenant": tenant})


async def job_prune(
    conn: Conn, *, older_than: timedelta, limit: int = 10_000, now: datetime | None = None
) -> list[Job]:
    """Delete up to ``limit`` jobs finished before now - ``older_than`` (and their events).

    Returns the deleted rows so the caller can remove their blobs; call again while it returns
    ``limit`` rows.
    """
    args = {"older_than": older_than, "limit": limit, "now": now}
    return await fetch_jobs(conn, "job_prune", args)


async def job_count_by_state(conn: Conn) -> dict[JobState, int]:
    """Jobs per state, every state present (0 when none)."""
    rows = await (await fetch(conn, "job_count_by_state")).fetchall()
    counts = dict.fromkeys(JobState, 0)
    counts.update({JobState(state): int(n) for state, n in rows})
    return counts


async def job_count_queued(conn: Conn) -> dict[str, dict[JobState, int]]:
    """Pending and running jobs of each tenant that has any (``job_count_queued``).

    Unlike ``job_count_by_state`` it never reads a finished row: its cost follows the backlog,
    not the table, so it stays cheap with millions of finished jobs kept.
    """
    rows = await (await fetch(conn, "job_count_queued")).fetchall()
    queued: dict[str, dict[JobState, int]] = {}
    for tenant, state, n in rows:
        queued.setdefault(tenant, dict.fromkeys((JobState.PENDING, JobState.RUNNING), 0))
        queued[tenant][JobState(state)] = int(n)
    return queued


class QueueHealth(msgspec.Struct, frozen=True, kw_only=True):
    """What the alerts watch besides the depth (``queue_health``)."""

    oldest_pending_s: float
    """Age of the oldest due pending job (now - run_after), 0 when none is due."""
    lease_expired: int
    """Running jobs whose lease expired: their worker stopped heartbeating (stuck)."""
    webhook_pending: int
    """Webhook deliveries neither delivered nor failed yet."""
    webhook_oldest_s: float
    """Age of the oldest pending webhook delivery, 0 when none."""


async def queue_health(conn: Conn) -> QueueHealth:
    """The oldest due job's age, stuck jobs and the webhook backlog, in one statement."""
    (row,) = await fetch_rows(conn, "queue_health")
    return QueueHealth(
        oldest_pending_s=float(row["oldest_pending_s"]),
        lease_expired=int(row["lease_expired"]),
        webhook_pending=int(row["webhook_pending"]),
        webhook_oldest_s=float(row["webhook_oldest_s"]),
    )


async def job_event_list(conn: Conn, job_id: uuid.UUID) -> list[JobEvent]:
    """A job's audit trail, oldest first."""
    rows = await (await fetch(conn, "job_event_list", {"job_id": job_id})).fetchall()
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
