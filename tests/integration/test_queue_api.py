"""Submit, read, list, prune and wake-up on a real Postgres."""

from __future__ import annotations

import asyncio
import time
import uuid
from datetime import timedelta
from typing import Any

import psycopg
import pytest

from tests.support.queue import T0, at, submit
from vidjobs.db.errors import InvalidCursor
from vidjobs.db.jobs import (
    NewJob,
    job_cancel,
    job_count_by_state,
    job_delete,
    job_event_list,
    job_get,
    job_get_by_idempotency_key,
    job_insert,
    job_insert_many,
    job_list,
    job_prune,
)
from vidjobs.db.leases import job_claim, job_complete
from vidjobs.db.notify import JobNotifier
from vidjobs.schema import JobState

pytestmark = [pytest.mark.integration, pytest.mark.anyio]

Conn = psycopg.AsyncConnection[Any]


async def test_idempotency_key_per_tenant(conn: Conn) -> None:
    first = await job_insert(conn, job_id=uuid.uuid4(), tenant="a", pipeline="noop",
                             params={"x": 1}, idempotency_key="k1")  # fmt: skip
    retry = await job_insert(conn, job_id=uuid.uuid4(), tenant="a", pipeline="noop",
                             params={"x": 2}, idempotency_key="k1")  # fmt: skip
    other = await job_insert(conn, job_id=uuid.uuid4(), tenant="b", pipeline="noop",
                             params={"x": 3}, idempotency_key="k1")  # fmt: skip
    assert first.created
    assert not retry.created
    assert other.created
    assert retry.job == first.job
    assert retry.job.params == {"x": 1}
    assert other.job.job_id != first.job.job_id
    assert await job_get_by_idempotency_key(conn, "a", "k1") == first.job
    assert await job_get_by_idempotency_key(conn, "c", "k1") is None
    counts = await job_count_by_state(conn)
    assert counts[JobState.PENDING] == 2
    assert counts[JobState.RUNNING] == 0
    assert len(await job_event_list(conn, first.job.job_id)) == 1


async def test_job_fields_round_trip(conn: Conn) -> None:
    job_id = uuid.uuid4()
    result = await job_insert(
        conn, job_id=job_id, tenant="acme", pipeline="yolo_ocr", params={"fps": 2, "ocr": True},
        priority=3, run_after=at(30), max_attempts=5, input_key=f"video_jobs/{job_id}.mp4",
        now=T0,
    )  # fmt: skip
    job = result.job
    assert (job.job_id, job.state, job.pipeline, job.params) == (
        job_id, JobState.PENDING, "yolo_ocr", {"fps": 2, "ocr": True})  # fmt: skip
    assert (job.priority, job.run_after, job.max_attempts, job.attempts) == (3, at(30), 5, 0)
    assert (job.created_at, job.updated_at, job.finished_at) == (T0, T0, None)
    assert await job_get(conn, job_id, tenant="acme") == job
    assert await job_get(conn, job_id, tenant="someone-else") is None
    assert await job_get(conn, uuid.uuid4()) is None


async def test_insert_many(conn: Conn) -> None:
    fixed = uuid.uuid4()
    batch = [
        NewJob(tenant="t", pipeline="noop", params={"i": i}, priority=i % 3) for i in range(500)
    ]
    batch.append(NewJob(tenant="t", pipeline="noop", job_id=fixed, run_after=at(60), input_key="k"))
    ids = await job_insert_many(conn, batch, now=T0)
    assert len(ids) == 501
    assert ids[-1] == fixed
    assert await job_insert_many(conn, [], now=T0) == []
    cur = await conn.execute("SELECT count(*), count(DISTINCT job_id) FROM vidjobs.job_events")
    assert await cur.fetchone() == (501, 501)
    job = await job_get(conn, ids[7])
    assert job is not None
    assert (job.params, job.priority, job.run_after, job.state) == (
        {"i": 7}, 1, T0, JobState.PENDING)  # fmt: skip
    last = await job_get(conn, fixed)
    assert last is not None
    assert (last.run_after, last.input_key, last.params) == (at(60), "k", {})


async def test_list_pagination_is_tenant_scoped(conn: Conn) -> None:
    mine = [await submit(conn, "a", now=at(i)) for i in range(7)]
    for i in range(3):
        await submit(conn, "b", now=at(i))
    await job_cancel(conn, mine[2].job_id, now=at(10))

    seen = []
    cursor = None
    pages = 0
    while True:
        page = await job_list(conn, tenant="a", limit=3, cursor=cursor)
        pages += 1
        assert all(j.tenant == "a" for j in page.jobs)
        seen.extend(j.job_id for j in page.jobs)
        if page.next_cursor is None:
            break
        cursor = page.next_cursor
    assert pages == 3
    assert seen == [j.job_id for j in reversed(mine)]  # newest first, each once

    cancelled = await job_list(conn, tenant="a", state=JobState.CANCELLED)
    assert [j.job_id for j in cancelled.jobs] == [mine[2].job_id]
    assert cancelled.next_cursor is None
    assert (await job_list(conn, tenant="nobody")).jobs == []
    exact = await job_list(conn, tenant="b", limit=3)
    assert (len(exact.jobs), exact.next_cursor) == (3, None)
    with pytest.raises(InvalidCursor):
        await job_list(conn, tenant="a", cursor="not-a-cursor")


async def test_prune_deletes_only_old_finished_jobs(conn: Conn) -> None:
    old_done = await submit(conn)
    [held] = await job_claim(conn, worker_id="w", batch_size=1, lease_seconds=30, now=at(0))
    assert held.lease_token
    await job_complete(conn, held.job_id, held.lease_token, output_key="o", now=at(1))
    old_cancelled = await submit(conn)
    await job_cancel(conn, old_cancelled.job_id, now=at(2))
    old_pending = await submit(conn)
    recent = await submit(conn, now=at(86_000))
    await job_cancel(conn, recent.job_id, now=at(86_000))

    pruned = await job_prune(conn, older_than=timedelta(days=1), now=at(86_400 + 100))
    assert {j.job_id for j in pruned} == {old_done.job_id, old_cancelled.job_id}
    assert await job_get(conn, old_done.job_id) is None
    assert await job_event_list(conn, old_done.job_id) == []
    assert await job_get(conn, old_pending.job_id) is not None
    assert await job_get(conn, recent.job_id) is not None
    assert await job_prune(conn, older_than=timedelta(days=1), now=at(86_400 + 100)) == []


async def test_delete_only_terminal_jobs(conn: Conn) -> None:
    pending = await submit(conn)
    kept = await job_delete(conn, pending.job_id, tenant="acme")
    assert kept is not None
    assert kept.state is JobState.PENDING
    assert await job_get(conn, pending.job_id) is not None
    await job_cancel(conn, pending.job_id)
    assert await job_delete(conn, pending.job_id, tenant="other") is None
    gone = await job_delete(conn, pending.job_id, tenant="acme")
    assert gone is not None
    assert gone.state is JobState.CANCELLED
    assert await job_get(conn, pending.job_id) is None
    assert await job_event_list(conn, pending.job_id) == []


async def test_notifier_wakes_on_insert_and_times_out_otherwise(
    database_url: str, conn: Conn
) -> None:
    async with JobNotifier(database_url) as notifier:
        started = time.monotonic()
        assert await notifier.wait(0.3) is False
        assert time.monotonic() - started >= 0.25

        # Uncommitted inserts wake nobody: NOTIFY is delivered at commit.
        async with conn.transaction():
            await submit(conn)
            assert await notifier.wait(0.3) is False

        assert await notifier.wait(2.0) is True

        async def submit_soon() -> None:
            await asyncio.sleep(0.2)
            await submit(conn)
            await submit(conn)

        task = asyncio.create_task(submit_soon())
        started = time.monotonic()
        assert await notifier.wait(10.0) is True
        assert time.monotonic() - started < 5
        await task
        # The burst is folded into one wake-up (a second immediate wait may still see a late one).
        await job_insert_many(conn, [NewJob(tenant="t", pipeline="noop")] * 5)
        assert await notifier.wait(2.0) is True


async def test_notifier_survives_a_lost_connection(database_url: str, conn: Conn) -> None:
    async with JobNotifier(database_url, reconnect_delay_s=0.1) as notifier:
        cur = await conn.execute(
            "SELECT pid FROM pg_stat_activity WHERE query LIKE '%%LISTEN vidjobs_jobs%%'"
            " AND pid <> pg_backend_pid() AND datname = current_database()"
        )
        pids = [r[0] for r in await cur.fetchall()]
        assert len(pids) == 1
        await conn.execute("SELECT pg_terminate_backend(%s)", (pids[0],))
        # Lost connection: reported as "look now" (True), then it listens again.
        assert await notifier.wait(2.0) is True
        assert await notifier.wait(0.2) is False
        await submit(conn)
        assert await notifier.wait(2.0) is True


async def test_concurrent_submits_with_one_key_create_one_job(database_url: str) -> None:
    async def submit_with_key() -> tuple[uuid.UUID, bool]:
        async with await psycopg.AsyncConnection.connect(database_url, autocommit=True) as c:
            result = await job_insert(c, job_id=uuid.uuid4(), tenant="a", pipeline="noop",
                                      params={}, idempotency_key="same")  # fmt: skip
            return result.job.job_id, result.created

    results = await asyncio.gather(*(submit_with_key() for _ in range(8)))
    assert len({job_id for job_id, _ in results}) == 1
    assert sum(created for _, created in results) == 1
