"""Admission control at submit: a tenant's submit rate, pending jobs and stored bytes.

One statement per submit (``tenant_submit_admit`` in ``db/sql/tenants.sql``) locks the tenant's
row in ``vidjobs.tenants``, refills its token bucket, counts its pending jobs and compares its
stored bytes, and takes a token only if every limit allows the submit. Postgres is the shared
state, so the rate holds across any number of API processes, with no other service.
"""

from __future__ import annotations

import math
from datetime import datetime

import msgspec

from vidjobs.db.settings import TenantDefaults
from vidjobs.db.statements import Conn, fetch, fetch_rows

__all__ = [
    "Admission",
    "TenantSubmitAdmitParams",
    "seconds_until_token",
    "tenant_submit_admit",
]

RATE = "submit_rate_per_min"
PENDING = "max_pending"
STORED_BYTES = "max_stored_bytes"


class TenantSubmitAdmitParams(msgspec.Struct, frozen=True, kw_only=True):
    """Parameters of ``tenant_submit_admit``: the tenant, the defaults, the upload's size."""

    tenant: str
    rate_per_min: float | None
    burst: int | None
    max_pending: int | None
    max_stored_bytes: int | None
    incoming_bytes: int | None
    now: datetime | None = None


class Admission(msgspec.Struct, frozen=True, kw_only=True):
    """The verdict on one submit, with each limit in force and the tenant's usage of it.

    ``None`` for a limit means there is none; ``tokens`` is the bucket's level before this
    submit (``None`` without a rate).
    """

    tenant: str
    refused_by: str | None
    """``submit_rate_per_min``, ``max_pending`` or ``max_stored_bytes``; ``None``: admitted."""
    tokens: float | None
    rate_per_min: float | None
    burst: int | None
    pending: int
    max_pending: int | None
    stored_bytes: int
    max_stored_bytes: int | None

    @property
    def retry_after_s(self) -> int:
        """Seconds until the bucket holds a token again (0 when it holds one now)."""
        if self.tokens is None or self.rate_per_min is None:
            return 0
        return seconds_until_token(self.tokens, self.rate_per_min)

    @property
    def stored_bytes_left(self) -> int | None:
        """Bytes the tenant may still store (``None``: no limit); the upload stops beyond it."""
        if self.max_stored_bytes is None:
            return None
        return max(0, self.max_stored_bytes - self.stored_bytes)


def seconds_until_token(tokens: float, rate_per_min: float) -> int:
    """Whole seconds until a bucket at ``tokens`` refills to one token, rounded up.

    The bucket gains ``rate_per_min / 60`` tokens a second; 0 when it already holds one. A hair
    of float error (``0.9999999999`` tokens) must not add a whole second, hence the tolerance.
    """
    missing = 1.0 - tokens
    if missing <= 0:
        return 0
    return max(1, math.ceil(missing * 60.0 / rate_per_min - 1e-9))


async def tenant_submit_admit(
    conn: Conn,
    tenant: str,
    defaults: TenantDefaults,
    *,
    incoming_bytes: int | None = None,
    now: datetime | None = None,
) -> Admission:
    """Admit one submit of ``tenant`` (taking a token) or say which limit refuses it.

    Args:
        conn: an autocommit connection (the statement is its own transaction).
        tenant: the submitting tenant.
        defaults: the limits of a tenant whose row leaves one NULL.
        incoming_bytes: the request's ``Content-Length``, when the client sent one; counted
            against ``max_stored_bytes`` before a byte is read.
        now: the statement's clock (tests).
    """
    params = TenantSubmitAdmitParams(
        tenant=tenant,
        rate_per_min=defaults.submit_rate_per_min,
        burst=defaults.submit_burst,
        max_pending=defaults.max_pending,
        max_stored_bytes=defaults.max_stored_bytes,
        incoming_bytes=incoming_bytes,
        now=now,
    )
    rows = await fetch_rows(conn, "tenant_submit_admit", params)
    if not rows:
        # A tenant whose key was made after 0012 and that never had a job has no row yet.
        await fetch(conn, "tenant_submit_row", {"tenant": tenant})
        rows = await fetch_rows(conn, "tenant_submit_admit", params)
    return msgspec.convert(rows[0], Admission)
