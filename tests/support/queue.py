"""The queue tests' clock and job shortcut: every statement runs at a fixed time, passed as ``now``.

:data:`T0` lies in the future, so no real worker would claim these jobs; tests that run a real
worker loop submit at the real now with :func:`tests.support.worker.submit`.
"""

from __future__ import annotations

import uuid
from datetime import UTC, datetime, timedelta
from typing import Any

from tests.support.db import Conn
from vidjobs.db.jobs import job_insert
from vidjobs.schema import Job

__all__ = ["T0", "at", "submit"]

T0 = datetime(2030, 1, 1, 12, 0, tzinfo=UTC)


def at(seconds: float) -> datetime:
    """T0 plus ``seconds``: the tests' clock."""
    return T0 + timedelta(seconds=seconds)


async def submit(conn: Conn, tenant: str = "acme", **kw: Any) -> Job:
    """Insert one noop job at T0 (unless ``now`` is given) and return it."""
    kw.setdefault("now", T0)
    result = await job_insert(
        conn, job_id=uuid.uuid4(), tenant=tenant, pipeline="noop", params={"n": 1}, **kw
    )
    assert result.created
    return result.job
