"""Is this database ready for a worker? For ``vidjobs worker --check`` (a container probe).

One short connection and two catalog reads. It does not use yoyo: yoyo's status call takes its
lock table, which the least-privilege worker role (``deploy/sql/roles.sql``) may not touch, so a
probe through yoyo failed on every correctly deployed worker.
"""

from __future__ import annotations

from dataclasses import dataclass

import psycopg

from vidjobs.db.errors import SchemaNotReady, one_line
from vidjobs.db.migrate import MIGRATIONS_DIR
from vidjobs.db.pool import connect
from vidjobs.db.statements import fetch

__all__ = ["WorkerSchema", "check_worker_schema", "known_migration_ids"]


@dataclass(frozen=True)
class WorkerSchema:
    """What the check found.

    Attributes:
        migrations_applied: how many migrations yoyo records, or None when this role cannot
            read yoyo's table (the worker role): then only the tables and grants were checked.
    """

    migrations_applied: int | None


def known_migration_ids() -> list[str]:
    """The ids of the migrations this release ships (yoyo's id is the file name's stem)."""
    return sorted(
        p.name.removesuffix(".sql")
        for p in MIGRATIONS_DIR.glob("*.sql")
        if not p.name.endswith(".rollback.sql")
    )


def _no_grants(user: str, why: str = "") -> SchemaNotReady:
    because = f" ({why})" if why else ""
    return SchemaNotReady(
        f"role {user!r} lacks the worker's grants on vidjobs.jobs and vidjobs.job_events"
        f"{because}: apply deploy/sql/roles.sql as the schema owner"
    )


async def check_worker_schema(url: str, connect_timeout_s: float = 5.0) -> WorkerSchema:
    """Connect once and check what a worker needs: its tables, its grants, every migration.

    Raises:
        DatabaseUnavailable: no connection within ``connect_timeout_s``, or it was lost.
        SchemaNotReady: the tables are missing, the role lacks its grants, or (where yoyo's
            table is readable) a migration of this release is not applied.
    """
    async with await connect(url, connect_timeout_s=connect_timeout_s) as conn:
        try:
            row = await (await fetch(conn, "schema_worker_check")).fetchone()
            assert row is not None
            jobs_exists, events_exists, grants, readable = row
            if not (jobs_exists and events_exists):
                raise SchemaNotReady(
                    "the vidjobs tables do not exist: run `vidjobs db migrate` as the schema owner"
                )
            if not grants:
                raise _no_grants(conn.info.user)
            if not readable:
                return WorkerSchema(migrations_applied=None)
            rows = await (await fetch(conn, "schema_migration_ids")).fetchall()
        except psycopg.errors.InsufficientPrivilege as exc:  # e.g. no USAGE on the schema
            raise _no_grants(conn.info.user, one_line(exc)) from exc
        except psycopg.Error as exc:  # connection failures are DatabaseUnavailable by now
            raise SchemaNotReady(one_line(exc)) from exc
    applied = {r[0] for r in rows}
    pending = [m for m in known_migration_ids() if m not in applied]
    if pending:
        raise SchemaNotReady(
            f"migrations not applied: {', '.join(pending)} (run `vidjobs db migrate`)"
        )
    return WorkerSchema(migrations_applied=len(applied))
