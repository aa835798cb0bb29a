"""The fair claim on a real Postgres: tenants take turns, weights, max_running, the counters.

Every claim runs at its own ``now`` (as every real claim does: its transaction's time), since
the turn goes to the tenant served longest ago.
"""

from __future__ import annotations

import asyncio
import math
from collections import Counter
from datetime import timedelta
from typing import Any

import psycopg
import pytest

from tests.support.queue import at
from vidjobs.db.jobs import NewJob, job_cancel, job_delete, job_insert_many, job_prune
from vidjobs.db.leases import (
    job_claim,
    job_complete,
    job_fail,
    job_release,
    job_retry_later,
)

pytestmark = [pytest.mark.integration, pytest.mark.anyio]

Conn = psycopg.AsyncConnection[Any]


async def _backlog(conn: Conn, tenant: str, n: int, *, priority: int = 0, now_s: float = 0) -> None:
    await job_insert_many(
        conn, [NewJob(tenant=tenant, pipeline="noop", priority=priority)] * n, now=at(now_s)
    )


async def _set(conn: Conn, tenant: str, **limits: Any) -> None:
    sets = ", ".join(f"{name} = %({name})s" for name in limits)
    await conn.execute(
        f"UPDATE vidjobs.tenants SET {sets} WHERE tenant = %(tenant)s",
        {**limits, "tenant": tenant},
    )


async def test_one_job_behind_a_priority_backlog_is_in_the_next_claim(conn: Conn) -> None:
    await _backlog(conn, "a", 500, priority=100)
    [b_job] = await job_insert_many(
        conn, [NewJob(tenant="b", pipeline="noop", priority=0)], now=at(1)
    )
    # A claimed before (so A was served recently), then B's one job arrives: next claim has it.
    first = await job_claim(conn, worker_id="w", batch_size=10, lease_seconds=600, now=at(2))
    assert b_job in {j.job_id for j in first}
    # Even with a batch of 2, and even if A was never served before.
    [c_job] = await job_insert_many(
        conn, [NewJob(tenant="c", pipeline="noop", priority=-5)], now=at(3)
    )
    second = await job_claim(conn, worker_id="w", batch_size=2, lease_seconds=600, now=at(4))
    assert c_job in {j.job_id for j in second}
    # A's priority still orders A's own jobs: its share is its best (all priority 100 here).
    assert all(j.priority == 100 for j in first + second if j.tenant == "a")


async def test_every_tenant_is_served_within_a_bounded_number_of_claims(conn: Conn) -> None:
    tenants = [f"t{i:02}" for i in range(30)]
    for i, tenant in enumerate(tenants):  # skewed: 1 to 841 jobs, the big ones at priority 9
        await _backlog(conn, tenant, i * i + 1, priority=9 if i > 20 else 0)
    batch = 5
    bound = math.ceil(len(tenants) / batch)
    order: list[list[str]] = []
    for n in range(60):
        got = await job_claim(
            conn, worker_id="w", batch_size=batch, lease_seconds=600, now=at(10 + n)
        )
        assert len(got) == batch
        order.append([j.tenant for j in got])
    # The first `bound` claims serve every tenant once; so does every later window of `bound`
    # claims, for every tenant that still has due work.
    left = {t: i * i + 1 for i, t in enumerate(tenants)}
    for start in range(len(order) - bound + 1):
        window = {t for claim in order[start : start + bound] for t in claim}
        waiting = {t for t, n in left.items() if n > 0}
        assert waiting <= window, (start, sorted(waiting - window))
        for t in order[start]:
            left[t] -= 1


async def test_weight_two_gets_twice_the_jobs_per_round(conn: Conn) -> None:
    await _backlog(conn, "heavy", 100)
    await _backlog(conn, "light", 100)
    await _backlog(conn, "plain", 100)
    await _set(conn, "heavy", weight=2)
    got: Counter[str] = Counter()
    for n in range(10):
        for job in await job_claim(
            conn, worker_id="w", batch_size=8, lease_seconds=600, now=at(10 + n)
        ):
            got[job.tenant] += 1
    assert got["heavy"] == 2 * got["light"], got
    assert got["light"] == got["plain"], got
    # default_weight applies where the row leaves weight NULL (here: every tenant but heavy).
    got.clear()
    for n in range(5):
        for job in await job_claim(
            conn,
            worker_id="w",
            batch_size=12,
            lease_seconds=600,
            default_weight=2,
            now=at(100 + n),
        ):
            got[job.tenant] += 1
    assert got["heavy"] == got["light"] == got["plain"] == 20, got


async def test_the_remainder_of_a_round_rotates(conn: Conn) -> None:
    for tenant in ("a", "b", "c"):
        await _backlog(conn, tenant, 100)
    got: Counter[str] = Counter()
    for n in range(30):  # 4 jobs a claim over 3 tenants: one round and one job more
        for job in await job_claim(
            conn, worker_id="w", batch_size=4, lease_seconds=600, now=at(10 + n)
        ):
            got[job.tenant] += 1
    assert got == {"a": 40, "b": 40, "c": 40}, got


async def test_max_running_holds_across_concurrent_claimers(database_url: str, conn: Conn) -> None:
    await _backlog(conn, "capped", 300)
    await _backlog(conn, "defaulted", 300)
    await _backlog(conn, "free", 300)
    await _set(conn, "capped", max_running=3)
    await _set(conn, "free", max_running=10_000)

    async def claimer(n: int) -> Counter[str]:
        got: Counter[str] = Counter()
        async with await psycopg.AsyncConnection.connect(database_url, autocommit=True) as c:
            for i in range(30):
                for job in await job_claim(
                    c,
                    worker_id=f"w{n}",
                    batch_size=7,
                    lease_seconds=600,
                    default_max_running=5,
                    now=at(10 + i),
                ):
                    got[job.tenant] += 1
        return got

    totals = sum(await asyncio.gather(*(claimer(n) for n in range(8))), Counter())
    assert totals["capped"] == 3
    assert totals["defaulted"] == 5
    assert totals["free"] == 300
    cur = await conn.execute(
        "SELECT t.tenant, t.running, count(j.*) FILTER (WHERE j.state = 'running')"
        " FROM vidjobs.tenant_usage t LEFT JOIN vidjobs.jobs j USING (tenant)"
        " GROUP BY 1, 2 ORDER BY 1"
    )
    assert await cur.fetchall() == [("capped", 3, 3), ("defaulted", 5, 5), ("free", 300, 300)]
    # A freed slot is taken again, and no more than that.
    cur = await conn.execute(
        "SELECT job_id, lease_token FROM vidjobs.jobs"
        " WHERE tenant = 'capped' AND state = 'running' LIMIT 1"
    )
    job_id, token = await cur.fetchone() or (None, None)
    await job_complete(conn, job_id, token, output_key=None, now=at(50))
    got = await job_claim(
        conn, worker_id="w", batch_size=10, lease_seconds=600, default_max_running=5, now=at(51)
    )
    assert [j.tenant for j in got] == ["capped"]


async def test_a_tenant_at_its_limit_leaves_the_turn_to_others(conn: Conn) -> None:
    await _backlog(conn, "a", 50)
    await _backlog(conn, "b", 50)
    await _set(conn, "a", max_running=0)  # paused
    got = await job_claim(conn, worker_id="w", batch_size=10, lease_seconds=600, now=at(1))
    assert {j.tenant for j in got} == {"b"}
    assert len(got) == 10


async def _truth(conn: Conn) -> list[tuple[Any, ...]]:
    cur = await conn.execute(
        """
        SELECT t.tenant, t.running, t.stored_bytes,
               count(j.*) FILTER (WHERE j.state = 'running'),
               coalesce(sum(j.input_bytes), 0)
        FROM vidjobs.tenant_usage AS t LEFT JOIN vidjobs.jobs AS j USING (tenant)
        GROUP BY 1, 2, 3 ORDER BY 1
        """
    )
    return await cur.fetchall()


async def test_counters_equal_the_truth_after_a_mixed_workload(conn: Conn) -> None:
    for tenant in ("a", "b", "c"):
        await _backlog(conn, tenant, 12)
    await conn.execute(
        "UPDATE vidjobs.jobs SET input_bytes = 1000 + (random() * 1000)::int WHERE true"
    )
    await _set(conn, "b", max_running=4)
    held = await job_claim(conn, worker_id="w", batch_size=20, lease_seconds=30, now=at(1))
    by_tenant: dict[str, list[Any]] = {}
    for job in held:
        by_tenant.setdefault(job.tenant, []).append(job)
    assert len(by_tenant["b"]) == 4
    for rows in by_tenant.values():
        first, second, third, fourth, *_ = rows
        assert None not in (first.lease_token, second.lease_token)
        assert None not in (third.lease_token, fourth.lease_token)
        await job_complete(conn, first.job_id, first.lease_token, output_key=None, now=at(2))
        await job_fail(
            conn, second.job_id, second.lease_token, error_kind="x", error_message="x",
            permanent=True, now=at(2),
        )  # fmt: skip
        await job_retry_later(
            conn, third.job_id, third.lease_token, error_kind="database", error_message="x",
            now=at(2),
        )  # fmt: skip
        await job_release(conn, fourth.job_id, fourth.lease_token, now=at(2))
    assert [(t, r, s) for t, r, s, _, _ in await _truth(conn)] == [
        (t, n, s) for t, _, _, n, s in await _truth(conn)
    ]
    # Cancel pending and running jobs, delete a finished one, let leases expire (take-back and,
    # for jobs on their last attempt, lease_expired), prune what finished.
    # Three pending and three running jobs; tenant a's running jobs are kept out: they are the
    # ones whose leases expire on their last attempt below (six picked among all by random
    # job_id took all three of a's about once in 300 runs, and then none failed lease_expired).
    cancels = []
    for state in ("pending", "running"):
        cur = await conn.execute(
            "SELECT job_id FROM vidjobs.jobs WHERE state = %s AND tenant <> 'a'"
            " ORDER BY job_id LIMIT 3",
            (state,),
        )
        cancels += [job_id for (job_id,) in await cur.fetchall()]
    assert len(cancels) == 6
    for job_id in cancels:
        await job_cancel(conn, job_id, now=at(3))
    cur = await conn.execute("SELECT job_id FROM vidjobs.jobs WHERE state = 'completed' LIMIT 1")
    row = await cur.fetchone()
    assert row is not None
    await job_delete(conn, row[0], tenant=None)
    cur = await conn.execute(
        "UPDATE vidjobs.jobs SET max_attempts = attempts WHERE state = 'running' AND tenant = 'a'"
    )
    assert cur.rowcount > 0
    await job_claim(conn, worker_id="w2", batch_size=50, lease_seconds=30, now=at(100))
    await job_claim(conn, worker_id="w3", batch_size=50, lease_seconds=30, now=at(200))
    cur = await conn.execute(
        "SELECT count(*) FROM vidjobs.jobs WHERE error_kind = 'lease_expired' AND state = 'failed'"
    )
    assert (await cur.fetchone() or (0,))[0] > 0
    truth = await _truth(conn)
    assert [(t, r, s) for t, r, s, _, _ in truth] == [(t, n, s) for t, _, _, n, s in truth]
    assert any(r > 0 for _, r, _, _, _ in truth)
    assert await job_prune(conn, older_than=timedelta(seconds=0), now=at(300))
    truth = await _truth(conn)
    assert [(t, r, s) for t, r, s, _, _ in truth] == [(t, n, s) for t, _, _, n, s in truth]


async def test_the_turn_is_stamped_with_each_tenants_last_job(conn: Conn) -> None:
    await _backlog(conn, "solo", 5)
    got = await job_claim(conn, worker_id="w", batch_size=2, lease_seconds=600, now=at(1))
    # Each job starts at now plus its place in the claim (microseconds); the first at now.
    assert [j.started_at for j in got] == [at(1), at(1.000001)]
    cur = await conn.execute("SELECT last_claimed_at FROM vidjobs.tenants WHERE tenant = 'solo'")
    assert await cur.fetchone() == (at(1.000001),)
    await _backlog(conn, "other", 1, now_s=2)
    await job_claim(conn, worker_id="w", batch_size=2, lease_seconds=600, now=at(3))
    cur = await conn.execute("SELECT tenant, last_claimed_at FROM vidjobs.tenants ORDER BY 1")
    # The tenant never served goes first.
    assert await cur.fetchall() == [("other", at(3)), ("solo", at(3.000001))]
