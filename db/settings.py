"""How to reach Postgres: ``DatabaseSettings``, shared by the API, the worker and the CLI."""

from __future__ import annotations

from vidjobs.settings import Settings, setting

__all__ = ["DatabaseSettings"]


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
