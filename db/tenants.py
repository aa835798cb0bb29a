"""Tenant policy: read and set a tenant's weight and limits (``db/sql/tenants.sql``).

A limit left NULL on the tenant's row means the deployment default (``TenantDefaults``); the
claim and the admission at submit resolve it, so changing a default needs no row update. The
counters (running, stored bytes) are kept by triggers and never written here.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import msgspec

from vidjobs.db.statements import Conn, fetch, fetch_rows
from vidjobs.schema.tenant import LIMITS, Tenant

__all__ = ["TenantSetParams", "tenant_get", "tenant_list", "tenant_set"]


class TenantSetParams(msgspec.Struct, frozen=True, kw_only=True):
    """``tenant_set``: each limit's new value (None = the default) and whether to change it."""

    tenant: str
    weight: int | None = None
    weight_set: bool = False
    max_running: int | None = None
    max_running_set: bool = False
    max_pending: int | None = None
    max_pending_set: bool = False
    submit_rate_per_min: float | None = None
    submit_rate_per_min_set: bool = False
    submit_burst: int | None = None
    submit_burst_set: bool = False
    max_stored_bytes: int | None = None
    max_stored_bytes_set: bool = False


def _tenant(row: Mapping[str, Any]) -> Tenant:
    return msgspec.convert(row, Tenant)


async def tenant_get(conn: Conn, tenant: str) -> Tenant | None:
    """The tenant's limits and usage; None when it has no row (no key, no job, never set)."""
    rows = await fetch_rows(conn, "tenant_get", {"tenant": tenant})
    return _tenant(rows[0]) if rows else None


async def tenant_list(conn: Conn) -> list[Tenant]:
    """Every tenant's limits and usage, by name."""
    return [_tenant(row) for row in await fetch_rows(conn, "tenant_list")]


async def tenant_set(conn: Conn, tenant: str, changes: Mapping[str, int | float | None]) -> None:
    """Set the limits named in ``changes`` (None: back to the default); create the row if needed.

    Raises:
        ValueError: ``changes`` names something that is not a limit.
    """
    unknown = set(changes) - set(LIMITS)
    if unknown:
        raise ValueError(f"not a tenant limit: {', '.join(sorted(unknown))}")
    values: dict[str, Any] = {"tenant": tenant}
    for name, value in changes.items():
        values[name], values[f"{name}_set"] = value, True
    await fetch(conn, "tenant_set", TenantSetParams(**values))
