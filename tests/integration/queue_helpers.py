"""Shared bits of the queue tests: a fixed clock and job submission shortcuts."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime, timedelta
from typing import Any

import psycopg

from vidjobs.db.jobs import job_insert
from vidjobs.schema import Job

T0 = datetime(2030, 1, 1, 12, 0, tzinfo=UTC)


def at(seconds: float) -> datetime:
    """T0 plus ``seconds``: the tests' clock."""
    return T0 + timedelta(seconds=seconds)


async def submit(conn: psycopg.AsyncConnection[Any], tenant: str = "acme", **kw: Any) -> Job:
    """Insert one noop job at T0 (unless ``now`` is given) and return it."""
    kw.setdefault("now", T0)
    result = await job_insert(
        conn, job_id=uuid.uuid4(), tenant=tenant, pipeline="noop", params={"n": 1}, **kw
    )
    assert result.created
    return result.job
