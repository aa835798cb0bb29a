"""The DBA views on a populated database: every number checked."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import psycopg
import pytest
from psycopg.rows import dict_row

from tests.support.queue import submit
from vidjobs.db.jobs import job_cancel
from vidjobs.db.leases import job_claim, job_complete, job_fail

pytestmark = [pytest.mark.integration, pytest.mark.anyio]

Conn = psycopg.AsyncConnection[Any]


async def _populate(conn: Conn) -> dict[str, Any]:
    n = datetime.now(UTC)

    def ago(minutes: float) -> datetime:
        return n - timedelta(minutes=minutes)

    async def claim(worker: str, lease: float, when: datetime) -> list[Any]:
        return await job_claim(conn, worker_id=worker, batch_size=10, lease_seconds=lease, now=when)

    jobs: dict[str, Any] = {}
    jobs["live"] = await submit(conn, now=ago(1))
    assert len(await claim("alive", 3600, ago(1))) == 1
    for name in ("done1", "done2"):
        jobs[name] = await submit(conn, now=ago(2))
    for held in await claim("w", 3600, ago(2)):
        await job_complete(conn, held.job_id, held.lease_token, output_key="o", now=ago(1))
    jobs["final"] = await submit(conn, now=ago(3))
    [held] = await claim("w", 3600, ago(3))
    await job_fail(conn, held.job_id, held.lease_token, error_kind="bad_video",
                   error_message="not an mp4", permanent=True, now=ago(1))  # fmt: skip
    jobs["retry"] = await submit(conn, now=ago(3))
    [held] = await claim("w", 3600, ago(3))
    await job_fail(conn, held.job_id, held.lease_token, error_kind="io", error_message="s3 down",
                   permanent=False, backoff_base_s=3600, now=ago(1))  # fmt: skip
    jobs["cancelled"] = await submit(conn, now=ago(1))
    await job_cancel(conn, jobs["cancelled"].job_id, now=ago(1))
    # Claimed last: any later claim would take its expired lease back.
    jobs["expired"] = await submit(conn, now=ago(10))
    assert len(await claim("dead-worker", 60, ago(10))) == 1
    jobs["old_pending"] = await submit(conn, now=ago(20))
    jobs["p1"] = await submit(conn, now=None)
    jobs["p2"] = await submit(conn, now=None)
    return jobs


async def _rows(conn: Conn, view: str) -> list[dict[str, Any]]:
    async with conn.cursor(row_factory=dict_row) as cur:
        await cur.execute(f"SELECT * FROM vidjobs.{view}")
        return await cur.fetchall()


async def test_views_on_a_populated_database(conn: Conn) -> None:
    jobs = await _populate(conn)

    [overview] = await _rows(conn, "queue_overview")
    age = overview.pop("oldest_pending_age")
    assert overview == {
        "pending": 4, "pending_due": 3, "running": 2, "leases_expired": 1,
        "completed": 2, "failed": 1, "cancelled": 1,
    }  # fmt: skip
    assert timedelta(minutes=19) < age < timedelta(minutes=22)

    stuck = await _rows(conn, "stuck_jobs")
    assert sorted((r["job_id"], r["reason"]) for r in stuck) == sorted(
        [(jobs["expired"].job_id, "lease_expired"), (jobs["old_pending"].job_id, "not_claimed")]
    )
    by_reason = {r["reason"]: r for r in stuck}
    assert by_reason["lease_expired"]["worker_id"] == "dead-worker"
    assert timedelta(minutes=8) < by_reason["lease_expired"]["overdue"] < timedelta(minutes=11)

    failures = await _rows(conn, "recent_failures")
    assert [(r["job_id"], r["final"], r["error_kind"], r["error_message"], r["worker_id"])
            for r in failures] == [
        (jobs["retry"].job_id, False, "io", "s3 down", "w"),
        (jobs["final"].job_id, True, "bad_video", "not an mp4", "w"),
    ]  # fmt: skip
    assert all(r["tenant"] == "acme" and r["pipeline"] == "noop" for r in failures)

    per_minute = await _rows(conn, "throughput_per_minute")
    totals = {k: sum(r[k] for r in per_minute)
              for k in ("submitted", "claimed", "completed", "failed", "retried")}  # fmt: skip
    assert totals == {"submitted": 10, "claimed": 6, "completed": 2, "failed": 1, "retried": 1}
    minutes = [r["minute"] for r in per_minute]
    assert minutes == sorted(minutes, reverse=True)
    assert len(minutes) >= 4


async def test_views_on_an_empty_database(conn: Conn) -> None:
    [overview] = await _rows(conn, "queue_overview")
    assert overview["pending"] == 0
    assert overview["oldest_pending_age"] is None
    for view in ("stuck_jobs", "recent_failures", "throughput_per_minute"):
        assert await _rows(conn, view) == []
