"""Running the named statements of ``db/sql/*.sql``: one call, one round trip.

Shared by the two halves of the jobs API (``db/jobs.py``, ``db/leases.py``) and nothing else:
the query dictionary, the mapping of a row to ``schema.Job``, and turning a lost connection
into ``DatabaseUnavailable`` so callers need not know psycopg.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any, LiteralString

import psycopg

from vidjobs.db.errors import DatabaseUnavailable
from vidjobs.db.sql import load_queries
from vidjobs.schema import Job, JobState

__all__ = ["QUERIES", "Conn", "fetch", "fetch_jobs", "to_job"]

QUERIES = load_queries()
_JOB_FIELDS = frozenset(Job.__struct_fields__)
Conn = psycopg.AsyncConnection[Any]


def to_job(names: Sequence[str], row: Sequence[Any]) -> Job:
    """A ``Job`` from a row of ``vidjobs.jobs`` columns (extra columns are ignored)."""
    fields = {n: v for n, v in zip(names, row, strict=True) if n in _JOB_FIELDS}
    fields["state"] = JobState(fields["state"])
    return Job(**fields)


async def fetch(
    conn: Conn, name: LiteralString, params: Mapping[str, Any]
) -> psycopg.AsyncCursor[Any]:
    """Run the named query; a lost or refused connection raises ``DatabaseUnavailable``."""
    try:
        return await conn.execute(QUERIES[name], params)
    except psycopg.OperationalError as exc:
        raise DatabaseUnavailable(f"{name}: {exc}") from exc


async def fetch_jobs(conn: Conn, name: LiteralString, params: Mapping[str, Any]) -> list[Job]:
    """Run the named query and return its rows as ``Job``s."""
    cur = await fetch(conn, name, params)
    names = [d.name for d in cur.description or ()]
    return [to_job(names, row) for row in await cur.fetchall()]
