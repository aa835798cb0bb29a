"""What the operator dashboard (``/ui``) reads: every tenant's queue, in a few small statements.

The overview reads the DBA views (``vidjobs.queue_overview``, ``vidjobs.throughput_per_minute``)
so the dashboard and psql show the same numbers; the jobs table pages with the same keyset
cursor as ``job_list``.
"""

from __future__ import annotations

import uuid
from datetime import datetime

import msgspec

from vidjobs.db.jobs import JobPage, _decode_cursor, _encode_cursor
from vidjobs.db.statements import Conn, fetch_jobs, fetch_rows
from vidjobs.schema import JobState

__all__ = [
    "Overview",
    "ThroughputMinute",
    "WorkerSeen",
    "ui_job_list",
    "ui_overview",
]


class ThroughputMinute(msgspec.Struct, frozen=True, kw_only=True):
    """One minute of ``vidjobs.throughput_per_minute``."""

    minute: datetime
    submitted: int
    claimed: int
    completed: int
    failed: int
    retried: int


class WorkerSeen(msgspec.Struct, frozen=True, kw_only=True):
    """A worker holding at least one running job."""

    worker_id: str
    last_heartbeat: datetime | None
    running: int
    current_job: uuid.UUID | None


class Overview(msgspec.Struct, frozen=True, kw_only=True):
    """The dashboard's first page."""

    states: dict[str, int]
    """Jobs per state (``queue_overview``), plus ``pending_due`` and ``leases_expired``."""
    oldest_pending_s: float
    """How long the oldest due pending job has waited (0: none)."""
    tenants: dict[str, dict[str, int]]
    """Jobs per tenant and state (states absent count 0)."""
    throughput: list[ThroughputMinute]
    workers: list[WorkerSeen]


async def ui_overview(conn: Conn) -> Overview:
    """Counts, per-tenant counts, throughput and live workers (four statements, one connection)."""
    (row,) = await fetch_rows(conn, "ui_overview")
    oldest = float(row.pop("oldest_pending_s"))
    tenants: dict[str, dict[str, int]] = {}
    for r in await fetch_rows(conn, "ui_tenant_states"):
        tenants.setdefault(r["tenant"], {})[r["state"]] = int(r["n"])
    return Overview(
        states={k: int(v) for k, v in row.items()},
        oldest_pending_s=oldest,
        tenants=tenants,
        throughput=[ThroughputMinute(**r) for r in await fetch_rows(conn, "ui_throughput")],
        workers=[WorkerSeen(**r) for r in await fetch_rows(conn, "ui_workers")],
    )


async def ui_job_list(
    conn: Conn,
    *,
    state: JobState | None = None,
    tenant: str | None = None,
    pipeline: str | None = None,
    limit: int = 50,
    cursor: str | None = None,
) -> JobPage:
    """One page of every tenant's jobs, newest first (keyset, like ``job_list``).

    Raises:
        InvalidCursor: ``cursor`` was not produced by this function or ``job_list``.
    """
    after_created, after_id = _decode_cursor(cursor) if cursor else (None, None)
    args = {
        "state": state.value if state else None, "tenant": tenant or None,
        "pipeline": pipeline or None, "limit": limit + 1,
        "after_created_at": after_created, "after_job_id": after_id,
    }  # fmt: skip
    found = await fetch_jobs(conn, "ui_job_list", args)
    page = found[:limit]
    more = len(found) > limit and bool(page)
    return JobPage(page, _encode_cursor(page[-1]) if more else None)
