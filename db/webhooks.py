"""The webhooks in Postgres: endpoints, signing secrets, and the outbox (``webhooks.sql``).

The outbox rows themselves are written by migration 0016's trigger on ``vidjobs.jobs``, in the
transaction of each job's terminal state change; here the dispatchers claim them
(:func:`delivery_claim`, SKIP LOCKED, a lease on ``next_attempt_at``) and record each attempt
(:func:`delivery_record`, fenced by the attempt number). Secrets are stored sealed; sealing
and opening them is ``vidjobs.webhooks.secrets``' job, not the database's.
"""

from __future__ import annotations

import uuid
from collections.abc import Mapping, Sequence
from datetime import datetime, timedelta
from typing import Any, Literal

import msgspec

from vidjobs.db.statements import Conn, fetch_rows
from vidjobs.schema import Job

__all__ = [
    "Attempt",
    "ClaimedDelivery",
    "Delivery",
    "Endpoint",
    "Outcome",
    "RetryPolicy",
    "SecretInfo",
    "attempt_list",
    "delivery_claim",
    "delivery_list",
    "delivery_prune",
    "delivery_record",
    "endpoint_add",
    "endpoint_disable",
    "endpoint_list",
    "secret_create",
    "secret_info",
    "secret_rotate",
    "snapshot_job",
]

Outcome = Literal["delivered", "gone", "retry"]
"""How an attempt ended: a 2xx; a 410 Gone; anything else (an error, a timeout, another
status, a target the policy refuses, no secret to sign with): retried."""


class Endpoint(msgspec.Struct, frozen=True, kw_only=True):
    """One row of ``vidjobs.webhook_endpoints`` (``pending``/``failed``: its deliveries)."""

    endpoint_id: int
    tenant: str
    url: str
    created_at: datetime
    disabled_at: datetime | None
    disabled_reason: str | None
    pending: int = 0
    failed: int = 0


class SecretInfo(msgspec.Struct, frozen=True, kw_only=True):
    """A signing secret, without the secret: when it was made, when it stops signing."""

    secret_id: int
    tenant: str
    created_at: datetime
    expires_at: datetime | None


class _DeliveryRow(msgspec.Struct, frozen=True, kw_only=True):
    """The columns of ``vidjobs.webhook_deliveries`` every reader of a delivery gets."""

    delivery_id: int
    webhook_id: str
    event_type: str
    job_id: uuid.UUID
    tenant: str
    url: str
    endpoint_id: int | None
    occurred_at: datetime
    attempts: int
    created_at: datetime


class ClaimedDelivery(_DeliveryRow, frozen=True, kw_only=True):
    """A delivery a dispatcher holds for one attempt, with its tenant's live sealed secrets."""

    job: dict[str, Any]
    sealed_secrets: list[str]


class Delivery(_DeliveryRow, frozen=True, kw_only=True):
    """One row of the delivery log (``vidjobs.webhook_deliveries`` without the snapshot)."""

    state: str
    last_attempt_at: datetime | None
    next_attempt_at: datetime
    last_status: int | None
    last_error: str | None
    delivered_at: datetime | None
    finished_at: datetime | None


class Attempt(msgspec.Struct, frozen=True, kw_only=True):
    """One attempt of a delivery (``vidjobs.webhook_attempts``)."""

    delivery_id: int
    attempt: int
    started_at: datetime
    duration_ms: float
    status: int | None
    error: str | None
    response_prefix: str | None
    dispatcher: str


class RetryPolicy(msgspec.Struct, frozen=True, kw_only=True):
    """When a failed attempt is tried again (the statement computes the backoff)."""

    retry_base_s: float
    retry_max_delay_s: float
    retry_for_s: float


async def endpoint_add(conn: Conn, tenant: str, url: str) -> tuple[Endpoint, bool]:
    """Register ``url`` for every terminal event of ``tenant``'s jobs; (row, created)."""
    (row,) = await fetch_rows(conn, "webhook_endpoint_add", {"tenant": tenant, "url": url})
    created = bool(row.pop("created"))
    return msgspec.convert(row, Endpoint), created


async def endpoint_list(
    conn: Conn, tenant: str | None = None, *, include_disabled: bool = False
) -> list[Endpoint]:
    """A tenant's endpoints (every tenant's with None), live first."""
    rows = await fetch_rows(
        conn, "webhook_endpoint_list", {"tenant": tenant, "include_disabled": include_disabled}
    )
    return [msgspec.convert(r, Endpoint) for r in rows]


async def endpoint_disable(
    conn: Conn,
    tenant: str,
    *,
    endpoint_id: int | None = None,
    url: str | None = None,
    reason: str = "removed by an operator",
    now: datetime | None = None,
) -> tuple[Endpoint, int] | None:
    """Disable a live endpoint; (it, how many pending deliveries failed), or None if no such."""
    rows = await fetch_rows(
        conn,
        "webhook_endpoint_disable",
        {"tenant": tenant, "endpoint_id": endpoint_id, "url": url, "reason": reason, "now": now},
    )
    if not rows:
        return None
    abandoned = int(rows[0].pop("abandoned"))
    return msgspec.convert(rows[0], Endpoint), abandoned


async def secret_info(conn: Conn, tenant: str, now: datetime | None = None) -> list[SecretInfo]:
    """``tenant``'s secrets that still sign, current first ([]: it has none)."""
    rows = await fetch_rows(conn, "webhook_secret_info", {"tenant": tenant, "now": now})
    return [msgspec.convert(r, SecretInfo) for r in rows]


async def secret_create(conn: Conn, tenant: str, sealed: str) -> SecretInfo | None:
    """Store ``tenant``'s first secret (sealed); None if it already has a current one."""
    rows = await fetch_rows(conn, "webhook_secret_insert", {"tenant": tenant, "sealed": sealed})
    return msgspec.convert(rows[0], SecretInfo) if rows else None


async def secret_rotate(
    conn: Conn, tenant: str, sealed: str, *, grace: timedelta, now: datetime | None = None
) -> tuple[SecretInfo, SecretInfo | None]:
    """Make ``sealed`` the current secret; the old one signs until ``now + grace``.

    One transaction: the old secret's expiry and the new one commit together.
    Returns (the new secret, the old one or None if there was none).
    """
    async with conn.transaction():
        old = await fetch_rows(
            conn,
            "webhook_secret_expire_current",
            {"tenant": tenant, "grace_s": grace.total_seconds(), "now": now},
        )
        rows = await fetch_rows(conn, "webhook_secret_insert", {"tenant": tenant, "sealed": sealed})
    return (
        msgspec.convert(rows[0], SecretInfo),
        msgspec.convert(old[0], SecretInfo) if old else None,
    )


async def delivery_claim(
    conn: Conn,
    *,
    limit: int,
    lease_s: float,
    tenant_cap: int | None = None,
    in_flight: Mapping[str, int] | None = None,
    now: datetime | None = None,
) -> list[ClaimedDelivery]:
    """Take up to ``limit`` due deliveries for one attempt each, leased for ``lease_s``.

    ``in_flight`` (tenant -> deliveries the caller is sending) and ``tenant_cap``: no tenant
    ends up with more than ``tenant_cap`` in flight (None: ``limit``).
    """
    flying = dict(in_flight or {})
    args = {
        "limit": limit, "lease_s": lease_s, "now": now,
        "tenant_cap": tenant_cap if tenant_cap is not None else limit,
        "in_flight_tenants": list(flying), "in_flight": list(flying.values()),
    }  # fmt: skip
    rows = await fetch_rows(conn, "webhook_delivery_claim", args)
    return [msgspec.convert(r, ClaimedDelivery) for r in rows]


async def delivery_record(
    conn: Conn,
    delivery: ClaimedDelivery,
    *,
    outcome: Outcome,
    started_at: datetime,
    duration_ms: float,
    status: int | None,
    error: str | None,
    response_prefix: str | None,
    dispatcher: str,
    retry: RetryPolicy,
    now: datetime | None = None,
) -> dict[str, Any] | None:
    """Log the attempt and decide the delivery; None if a later claim took it over (fenced)."""
    args = {
        "delivery_id": delivery.delivery_id, "attempt": delivery.attempts, "outcome": outcome,
        "started_at": started_at, "duration_ms": duration_ms, "status": status, "error": error,
        "response_prefix": response_prefix, "dispatcher": dispatcher, "now": now,
        **msgspec.structs.asdict(retry),
    }  # fmt: skip
    rows = await fetch_rows(conn, "webhook_delivery_record", args)
    return rows[0] if rows else None


async def delivery_list(
    conn: Conn,
    *,
    job_id: uuid.UUID | None = None,
    tenant: str | None = None,
    state: str | None = None,
    limit: int = 100,
) -> list[Delivery]:
    """The delivery log of a job, or a tenant's (or everyone's) latest deliveries."""
    rows = await fetch_rows(
        conn,
        "webhook_delivery_list",
        {"job_id": job_id, "tenant": tenant, "state": state, "limit": limit},
    )
    return [msgspec.convert(r, Delivery) for r in rows]


async def attempt_list(conn: Conn, delivery_ids: Sequence[int]) -> list[Attempt]:
    """Every attempt of these deliveries, in order."""
    rows = await fetch_rows(conn, "webhook_attempt_list", {"delivery_ids": list(delivery_ids)})
    return [msgspec.convert(r, Attempt) for r in rows]


async def delivery_prune(
    conn: Conn, *, older_than: timedelta, limit: int = 1000, now: datetime | None = None
) -> int:
    """Delete up to ``limit`` deliveries that ended before ``now - older_than``; how many."""
    rows = await fetch_rows(
        conn, "webhook_delivery_prune", {"older_than": older_than, "limit": limit, "now": now}
    )
    return len(rows)


_JOB_FIELDS = frozenset(Job.__struct_fields__)


def snapshot_job(snapshot: dict[str, Any]) -> Job:
    """The ``Job`` of a delivery's snapshot (``to_jsonb`` of the row the transition left, less
    its idempotency key and lease token: neither is part of a status body)."""
    fields = {"idempotency_key": None, "lease_token": None}
    fields.update((k, v) for k, v in snapshot.items() if k in _JOB_FIELDS)
    return msgspec.convert(fields, Job, strict=False)
