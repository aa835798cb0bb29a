"""A tenant's policy and usage, as ``vidjobs tenants show`` and the DBA view show them."""

from __future__ import annotations

from datetime import datetime

import msgspec

__all__ = ["LIMITS", "Tenant"]

LIMITS = (
    "weight",
    "max_running",
    "max_pending",
    "submit_rate_per_min",
    "submit_burst",
    "max_stored_bytes",
)
"""What an operator may set per tenant, in the order the CLI shows them."""


class Tenant(msgspec.Struct, frozen=True, kw_only=True):
    """One row of ``vidjobs.tenant_usage``: each limit as set on the tenant's row (``None`` =
    the deployment default), then what the tenant uses now."""

    tenant: str
    weight: int | None
    max_running: int | None
    max_pending: int | None
    submit_rate_per_min: float | None
    submit_burst: int | None
    max_stored_bytes: int | None
    running: int
    pending: int
    stored_bytes: int
    last_claimed_at: datetime | None
    created_at: datetime
    updated_at: datetime
