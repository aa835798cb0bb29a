"""``queue_health``: what the alerts watch besides the depth, on a real Postgres."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime, timedelta
from typing import Any

import psycopg
import pytest

from vidjobs.db.jobs import job_insert, queue_health
from vidjobs.db.leases import job_claim, job_complete
from vidjobs.db.webhooks import endpoint_add

pytestmark = [pytest.mark.integration, pytest.mark.anyio]

Conn = psycopg.AsyncConnection[Any]


async def _job(conn: Conn, *, ago_s: float) -> uuid.UUID:
    job_id = uuid.uuid4()
    at = datetime.now(UTC) - timedelta(seconds=ago_s)
    await job_insert(conn, job_id=job_id, tenant="acme", pipeline="noop", params={}, now=at)
    return job_id


async def test_an_empty_queue_is_all_zeros(conn: Conn) -> None:
    health = await queue_health(conn)
    assert (health.oldest_pending_s, health.lease_expired) == (0, 0)
    assert (health.webhook_pending, health.webhook_oldest_s) == (0, 0)


async def test_oldest_due_job_stuck_jobs_and_the_webhook_backlog(conn: Conn) -> None:
    await _job(conn, ago_s=600)  # claimed below (the oldest), its lease long expired
    await _job(conn, ago_s=120)
    await _job(conn, ago_s=5)
    future = uuid.uuid4()  # not due yet: not "waiting"
    await job_insert(conn, job_id=future, tenant="acme", pipeline="noop", params={},
                     run_after=datetime.now(UTC) + timedelta(hours=1))  # fmt: skip
    (stuck,) = await job_claim(
        conn, worker_id="w", batch_size=1, lease_seconds=1,
        now=datetime.now(UTC) - timedelta(seconds=300),
    )  # fmt: skip
    health = await queue_health(conn)
    assert 119 <= health.oldest_pending_s < 180
    assert health.lease_expired == 1
    assert health.webhook_pending == 0
    # A completion with an endpoint registered: one pending delivery, a few ms old. (The claim
    # takes the stuck job back first.)
    await endpoint_add(conn, "acme", "https://example.com/hooks")
    (held,) = await job_claim(conn, worker_id="w2", batch_size=1, lease_seconds=60)
    assert held.job_id == stuck.job_id
    assert held.lease_token is not None
    await job_complete(conn, held.job_id, held.lease_token, output_key="out")
    health = await queue_health(conn)
    assert health.webhook_pending == 1
    assert 0 < health.webhook_oldest_s < 60
    assert health.lease_expired == 0
