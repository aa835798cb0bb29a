"""The claim statement on a real Postgres: exactly-once under concurrency, order, index use."""

from __future__ import annotations

import asyncio
import re
import uuid
from collections import Counter
from typing import Any

import psycopg
import pytest
from psycopg import sql

from tests.support.queue import T0, at, submit
from vidjobs.db.jobs import NewJob, job_event_list, job_insert_many
from vidjobs.db.leases import job_claim
from vidjobs.db.sql import QUERIES
from vidjobs.schema import JobState

pytestmark = [pytest.mark.integration, pytest.mark.anyio]

Conn = psycopg.AsyncConnection[Any]


async def test_eight_connections_claim_every_job_exactly_once(
    database_url: str, conn: Conn
) -> None:
    ids = await job_insert_many(conn, [NewJob(tenant="acme", pipeline="noop")] * 2000, now=T0)
    assert len(set(ids)) == 2000

    async def claimer(n: int) -> list[uuid.UUID]:
        got: list[uuid.UUID] = []
        async with await psycopg.AsyncConnection.connect(database_url, autocommit=True) as c:
            while batch := await job_claim(
                c, worker_id=f"w{n}", batch_size=7, lease_seconds=60, now=at(1)
            ):
                assert all(j.state is JobState.RUNNING and j.worker_id == f"w{n}" for j in batch)
                got.extend(j.job_id for j in batch)
        return got

    results = await asyncio.gather(*(claimer(n) for n in range(8)))
    claimed = [job_id for r in results for job_id in r]
    assert len(claimed) == 2000
    assert set(claimed) == set(ids)
    assert sum(1 for r in results if r) >= 2, "claims were not actually concurrent"

    cur = await conn.execute(
        "SELECT state::text, attempts, count(*) FROM vidjobs.jobs GROUP BY 1, 2"
    )
    assert await cur.fetchall() == [("running", 1, 2000)]
    cur = await conn.execute(
        "SELECT job_id, count(*) FROM vidjobs.job_events WHERE to_state = 'running'"
        " GROUP BY job_id HAVING count(*) <> 1"
    )
    assert await cur.fetchall() == []


async def test_order_is_priority_then_run_after_then_age(conn: Conn) -> None:
    old_low = await submit(conn, priority=0, now=at(0))
    new_low = await submit(conn, priority=0, now=at(1))
    high_late = await submit(conn, priority=5, run_after=at(3), now=at(2))
    high_early = await submit(conn, priority=5, run_after=at(2), now=at(3))
    urgent = await submit(conn, priority=9, now=at(4))
    future = await submit(conn, priority=99, run_after=at(3600), now=at(4))

    first = await job_claim(conn, worker_id="w", batch_size=2, lease_seconds=86400, now=at(10))
    rest = await job_claim(conn, worker_id="w", batch_size=10, lease_seconds=86400, now=at(10))
    assert [j.job_id for j in first] == [urgent.job_id, high_early.job_id]
    assert [j.job_id for j in rest] == [high_late.job_id, old_low.job_id, new_low.job_id]

    # Not due yet: untouched until its run_after.
    assert (
        await job_claim(conn, worker_id="w", batch_size=10, lease_seconds=86400, now=at(60)) == []
    )
    late = await job_claim(conn, worker_id="w", batch_size=10, lease_seconds=86400, now=at(3600))
    assert [j.job_id for j in late] == [future.job_id]


async def test_claim_sets_a_fresh_lease_and_logs_it(conn: Conn) -> None:
    job = await submit(conn)
    [claimed] = await job_claim(conn, worker_id="w1", batch_size=5, lease_seconds=30, now=at(5))
    assert claimed.job_id == job.job_id
    assert claimed.lease_token is not None
    assert claimed.lease_expires_at == at(35)
    assert (claimed.attempts, claimed.started_at, claimed.heartbeat_at) == (1, at(5), at(5))
    events = await job_event_list(conn, job.job_id)
    assert [(e.from_state, e.to_state, e.actor, e.attempt) for e in events] == [
        (None, JobState.PENDING, "acme", 0),
        (JobState.PENDING, JobState.RUNNING, "w1", 1),
    ]


async def test_claim_takes_back_expired_leases_first(conn: Conn) -> None:
    stale = await submit(conn, now=at(0))
    await job_claim(conn, worker_id="dead", batch_size=1, lease_seconds=30, now=at(0))
    fresh = await submit(conn, priority=9, now=at(1))

    batch = await job_claim(conn, worker_id="w2", batch_size=1, lease_seconds=30, now=at(60))
    assert [j.job_id for j in batch] == [stale.job_id]
    assert (batch[0].attempts, batch[0].worker_id) == (2, "w2")
    batch = await job_claim(conn, worker_id="w2", batch_size=5, lease_seconds=30, now=at(61))
    assert [j.job_id for j in batch] == [fresh.job_id]


def _cte(plan: str, name: str) -> str:
    """The lines of one CTE's subplan in an EXPLAIN text."""
    lines = plan.splitlines()
    start = next(i for i, line in enumerate(lines) if line.strip() == f"CTE {name}")
    depth = len(lines[start]) - len(lines[start].lstrip())
    end = start + 1
    while end < len(lines) and len(lines[end]) - len(lines[end].lstrip()) > depth:
        end += 1
    return "\n".join(lines[start:end])


def _sorts(text: str) -> list[str]:
    """The sort keys of every Sort node in a plan text."""
    return [
        line.split("Sort Key:", 1)[1].strip() for line in text.splitlines() if "Sort Key:" in line
    ]


@pytest.mark.parametrize("pipelines", [None, ["noop"], ["noop", "yolo_ocr"]])
async def test_explain_claim_uses_the_partial_indexes(
    conn: Conn, pipelines: list[str] | None
) -> None:
    # 100k finished rows, and a backlog of 100k pending jobs over 1,000 tenants.
    await conn.execute(
        """
        INSERT INTO vidjobs.jobs (job_id, tenant, state, pipeline, attempts, lease_token,
                                  worker_id, progress, created_at, run_after, started_at,
                                  finished_at)
        SELECT gen_random_uuid(), 'bulk', 'completed', 'noop', 1, gen_random_uuid(), 'w', 1,
               now() - make_interval(secs => g), now() - make_interval(secs => g),
               now() - make_interval(secs => g), now() - make_interval(secs => g)
        FROM generate_series(1, 100000) AS g
        """
    )
    await conn.execute(
        """
        INSERT INTO vidjobs.jobs (job_id, tenant, pipeline, priority, created_at, run_after)
        SELECT gen_random_uuid(), 't' || (g % 1000), 'noop', g % 7,
               now() - make_interval(secs => g), now() - make_interval(secs => g)
        FROM generate_series(1, 100000) AS g
        """
    )
    await conn.execute("ANALYZE vidjobs.jobs")
    await conn.execute("ANALYZE vidjobs.tenants")
    query = QUERIES["job_claim"]
    args = {"worker_id": "w", "batch_size": 100, "lease_seconds": 30.0, "now": None,
            "pipelines": pipelines, "default_max_running": None,
            "default_weight": 1}  # fmt: skip
    cur = await conn.execute("EXPLAIN " + query, args)
    plan = "\n".join(row[0] for row in await cur.fetchall())
    assert "Seq Scan on jobs" not in plan, plan
    due, turn = _cte(plan, "due"), _cte(plan, "turn")
    # Each tenant's head is read from the per-tenant partial index, in its order: no sort.
    assert "Index Scan using jobs_tenant_pending_idx" in due, plan
    assert "Sort" not in due, plan
    assert "LockRows" in due, plan
    # The turn probes the same index once per tenant and sorts tenants, never jobs.
    assert "jobs_tenant_pending_idx" in turn, plan
    assert all("last_claimed_at" in key for key in _sorts(turn)), plan
    # The round-robin sorts only the rows taken (the CTE due), never the backlog.
    assert "CTE Scan on due" in _cte(plan, "pick"), plan
    assert "Index" not in _cte(plan, "pick"), plan
    assert "Seq Scan" not in _cte(plan, "pick"), plan
    assert "Index Scan using jobs_running_lease_idx" in _cte(plan, "expired"), plan
    # A custom plan folds the NULL test away: no filter at all, or just the pipeline list.
    pipeline_filters = [line for line in plan.splitlines() if "pipeline" in line]
    assert not any("IS NULL" in line for line in pipeline_filters), plan
    assert ("pipeline = ANY" in plan) is (pipelines is not None), plan
    # With a generic plan too: what a prepared statement may run after 5 uses (psycopg prepares
    # the claim after 5 executions). EXPLAIN with bound parameters plans for their values, so
    # the statement is PREPAREd under its own name and EXPLAIN EXECUTEd with a forced generic plan.
    names: list[str] = []

    def number(m: re.Match[str]) -> str:
        if m[1] not in names:
            names.append(m[1])
        return f"${names.index(m[1]) + 1}"

    await conn.execute("PREPARE claim AS " + re.sub(r"%\((\w+)\)s", number, query))
    await conn.execute("SET plan_cache_mode = force_generic_plan")
    values = sql.SQL(", ").join(sql.Literal(args[n]) for n in names)
    cur = await conn.execute(sql.SQL("EXPLAIN EXECUTE claim({})").format(values))
    generic = "\n".join(row[0] for row in await cur.fetchall())
    due = _cte(generic, "due")
    assert "IS NULL" in due, "not a generic plan: " + generic
    assert "Index Scan using jobs_tenant_pending_idx" in due, generic
    assert "Sort" not in due, generic
    assert all("last_claimed_at" in key for key in _sorts(_cte(generic, "turn"))), generic
    assert "Index Scan using jobs_running_lease_idx" in _cte(generic, "expired"), generic
    assert "Seq Scan on jobs" not in generic, generic


async def test_explain_claim_on_a_fresh_backlog_reads_no_heap_in_order(conn: Conn) -> None:
    # One tenant, every row pending, stats taken then (a new deployment's first big submit, or
    # the queue benchmark): an EXISTS probe was planned as a semi join over a seq scan of jobs,
    # which through a drain passes every row finished so far before it finds a pending one.
    await conn.execute(
        """
        INSERT INTO vidjobs.jobs (job_id, tenant, pipeline, created_at, run_after)
        SELECT gen_random_uuid(), 'bench', 'noop', now() - make_interval(secs => g),
               now() - make_interval(secs => g)
        FROM generate_series(1, 50000) AS g
        """
    )
    await conn.execute("ANALYZE vidjobs.jobs")
    await conn.execute("ANALYZE vidjobs.tenants")
    args = {"worker_id": "w", "batch_size": 200, "lease_seconds": 30.0, "now": None,
            "pipelines": ["noop"], "default_max_running": None,
            "default_weight": 1}  # fmt: skip
    cur = await conn.execute("EXPLAIN " + QUERIES["job_claim"], args)
    plan = "\n".join(row[0] for row in await cur.fetchall())
    assert "Seq Scan on jobs" not in plan, plan
    assert "Index Scan using jobs_tenant_pending_idx" in _cte(plan, "turn"), plan


async def test_claim_takes_only_the_pipelines_given(conn: Conn) -> None:
    video = await job_insert_many(
        conn, [NewJob(tenant="acme", pipeline="yolo_ocr", priority=9)] * 3, now=T0
    )
    noop = await job_insert_many(conn, [NewJob(tenant="acme", pipeline="noop")] * 3, now=T0)

    # The video jobs are first in line, but this worker cannot run them: they stay pending.
    got = await job_claim(
        conn, worker_id="n", batch_size=10, lease_seconds=30, pipelines=["noop"], now=at(1)
    )
    assert sorted(j.job_id for j in got) == sorted(noop)
    assert (
        await job_claim(
            conn, worker_id="n", batch_size=10, lease_seconds=30, pipelines=["noop"], now=at(2)
        )
        == []
    )
    cur = await conn.execute(
        "SELECT state::text, attempts, count(*) FROM vidjobs.jobs WHERE job_id = ANY(%s)"
        " GROUP BY 1, 2",
        (video,),
    )
    assert await cur.fetchall() == [("pending", 0, 3)]
    for v in video:  # not even touched: the trail holds only the submit
        trail = [(e.from_state, e.to_state) for e in await job_event_list(conn, v)]
        assert trail == [(None, JobState.PENDING)]
    # No filter (None) takes every pipeline; an empty list takes nothing.
    assert (
        await job_claim(
            conn, worker_id="v", batch_size=10, lease_seconds=30, pipelines=[], now=at(3)
        )
        == []
    )
    got = await job_claim(conn, worker_id="v", batch_size=10, lease_seconds=30, now=at(3))
    assert sorted(j.job_id for j in got) == sorted(video)


async def test_expired_leases_are_taken_back_only_for_the_pipelines_given(conn: Conn) -> None:
    [video] = await job_insert_many(conn, [NewJob(tenant="acme", pipeline="yolo_ocr")], now=T0)
    [noop] = await job_insert_many(conn, [NewJob(tenant="acme", pipeline="noop")], now=T0)
    held = await job_claim(conn, worker_id="dead", batch_size=2, lease_seconds=30, now=at(0))
    assert {j.job_id for j in held} == {video, noop}

    # Both leases expired; a noop-only worker takes back only the noop job.
    got = await job_claim(
        conn, worker_id="n", batch_size=5, lease_seconds=30, pipelines=["noop"], now=at(60)
    )
    assert [(j.job_id, j.attempts, j.worker_id) for j in got] == [(noop, 2, "n")]
    cur = await conn.execute(
        "SELECT state::text, worker_id, attempts FROM vidjobs.jobs WHERE job_id = %s", (video,)
    )
    assert await cur.fetchone() == ("running", "dead", 1)
    got = await job_claim(
        conn, worker_id="v", batch_size=5, lease_seconds=30, pipelines=["yolo_ocr"], now=at(61)
    )
    assert [(j.job_id, j.attempts, j.worker_id) for j in got] == [(video, 2, "v")]


async def test_pipelines_must_be_a_sequence_of_names(conn: Conn) -> None:
    with pytest.raises(TypeError, match="sequence of names"):
        await job_claim(conn, worker_id="w", batch_size=1, lease_seconds=30, pipelines="noop")


async def test_claimed_batches_never_overlap_across_workers(database_url: str, conn: Conn) -> None:
    await job_insert_many(conn, [NewJob(tenant="t", pipeline="noop")] * 300, now=T0)
    holders: Counter[uuid.UUID] = Counter()

    async def worker(n: int) -> None:
        async with await psycopg.AsyncConnection.connect(database_url, autocommit=True) as c:
            for _ in range(40):
                for job in await job_claim(
                    c, worker_id=f"w{n}", batch_size=3, lease_seconds=60, now=at(1)
                ):
                    holders[job.job_id] += 1

    await asyncio.gather(*(worker(n) for n in range(4)))
    assert max(holders.values()) == 1
    assert len(holders) == 300
