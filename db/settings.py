"""Postgres settings shared by the API, the worker and the CLI.

``DatabaseSettings`` says how to reach Postgres; ``TenantDefaults`` is the deployment's default
policy for a tenant whose ``vidjobs.tenants`` row leaves a limit NULL (the worker's claim reads
``weight`` and ``max_running``, the API's admission the submit limits).
"""

from __future__ import annotations

from vidjobs.settings import Settings, setting

__all__ = ["DatabaseSettings", "TenantDefaults"]


class DatabaseSettings(Settings):
    """Where Postgres is and how many connections a process keeps to it."""

    url: str = setting(
        env="DATABASE_URL",
        flag="--database-url",
        min_length=1,
        help="Postgres URL or key=value DSN of the vidjobs database "
        "(e.g. postgresql://user@host:5432/vidjobs).",
    )
    pool_min_size: int = setting(
        1, env="VIDJOBS_DB_POOL_MIN", ge=0, help="Connections kept open even when idle."
    )
    pool_max_size: int = setting(
        10, env="VIDJOBS_DB_POOL_MAX", ge=1, help="Most connections the pool opens."
    )
    connect_timeout_s: float = setting(
        5.0,
        env=None,
        gt=0,
        help="How long to wait for a connection before reporting the database unavailable.",
    )


class TenantDefaults(Settings):
    """What a tenant gets where its row in ``vidjobs.tenants`` leaves a limit NULL.

    A row's own value always wins; these apply to every tenant that has none, so an operator sets
    a deployment-wide policy once and exceptions per tenant (``vidjobs tenants set``). ``None``
    means no limit.
    """

    weight: int = setting(
        1,
        env="VIDJOBS_TENANT_DEFAULT_WEIGHT",
        ge=1,
        le=100,
        help="Share of the workers, when tenants compete for them, of a tenant whose row leaves "
        "weight NULL: a tenant of weight 2 gets about twice the jobs per claim round of one of "
        "weight 1.",
    )
    max_running: int | None = setting(
        None,
        env="VIDJOBS_TENANT_DEFAULT_MAX_RUNNING",
        ge=0,
        help="Most jobs of one tenant running at once across all workers, for tenants whose "
        "row leaves max_running NULL; unset = no limit. The claim holds it exactly.",
    )
    max_pending: int | None = setting(
        None,
        env="VIDJOBS_TENANT_DEFAULT_MAX_PENDING",
        ge=0,
        help="Most pending jobs one tenant may have (a submit beyond it is refused), for "
        "tenants whose row leaves max_pending NULL; unset = no limit.",
    )
    submit_rate_per_min: float | None = setting(
        None,
        env="VIDJOBS_TENANT_DEFAULT_SUBMIT_RATE_PER_MIN",
        gt=0,
        help="Submits per minute one tenant may make on average (token bucket), for tenants "
        "whose row leaves it NULL; unset = no rate limit.",
    )
    submit_burst: int | None = setting(
        None,
        env="VIDJOBS_TENANT_DEFAULT_SUBMIT_BURST",
        ge=1,
        help="Submits allowed at once above the average rate (the bucket's size), for tenants "
        "whose row leaves it NULL; unset = the API's rule (docs/operations.md).",
    )
    max_stored_bytes: int | None = setting(
        None,
        env="VIDJOBS_TENANT_DEFAULT_MAX_STORED_BYTES",
        ge=0,
        help="Most bytes of uploaded video one tenant may store, for tenants whose row leaves "
        "max_stored_bytes NULL; unset = no limit.",
    )
