"""Infrastructure hand-backs (``job_retry_later``) on a real Postgres.

A blob-store or database outage is not the job's fault: the job goes back to pending after a
growing delay without using up an attempt, up to a limit; a genuine failure still counts.
"""

from __future__ import annotations

from datetime import timedelta
from typing import Any

import psycopg
import pytest

from tests.support.queue import T0, at, submit
from vidjobs.db.errors import LeaseLost
from vidjobs.db.jobs import job_event_list, job_get
from vidjobs.db.leases import job_claim, job_complete, job_fail, job_retry_later
from vidjobs.schema import Job, JobState

pytestmark = [pytest.mark.integration, pytest.mark.anyio]

Conn = psycopg.AsyncConnection[Any]
S = JobState


async def _claim(conn: Conn, seconds: float) -> Job:
    [job] = await job_claim(conn, worker_id="w", batch_size=1, lease_seconds=30, now=at(seconds))
    assert job.lease_token is not None
    return job


async def _infra_retries(conn: Conn, job: Job) -> int:
    cur = await conn.execute(
        "SELECT infra_retries FROM vidjobs.jobs WHERE job_id = %s", (job.job_id,)
    )
    row = await cur.fetchone()
    assert row is not None
    return int(row[0])


def _seconds(t: Any) -> float:
    return float((t - T0).total_seconds())


async def test_outage_hands_back_without_counting_then_a_real_failure_counts(conn: Conn) -> None:
    # max_attempts 1: any counted failure would fail the job for good.
    job = await submit(conn, max_attempts=1)
    now = 0.0
    delays = []
    for n in range(6):
        held = await _claim(conn, now)
        assert (held.job_id, held.attempts) == (job.job_id, 1)
        assert held.lease_token
        back = await job_retry_later(conn, job.job_id, held.lease_token,
                                     error_kind="blob_unavailable", error_message=f"S3 down {n}",
                                     backoff_base_s=1, backoff_max_s=10, now=at(now))  # fmt: skip
        assert (back.state, back.attempts, back.lease_token, back.lease_expires_at) == (
            S.PENDING, 0, None, None)  # fmt: skip
        assert (back.error_kind, back.error_message) == ("blob_unavailable", f"S3 down {n}")
        assert back.finished_at is None
        assert await _infra_retries(conn, job) == n + 1
        delay = _seconds(back.run_after) - now
        d = min(10, 2**n)
        assert d / 2 <= delay <= d, (n, delay)
        delays.append(delay)
        # Not claimable before its delay ends; the stale token is refused.
        assert await job_claim(conn, worker_id="w", batch_size=1, lease_seconds=30,
                               now=back.run_after - timedelta(milliseconds=1)) == []  # fmt: skip
        with pytest.raises(LeaseLost):
            await job_retry_later(conn, job.job_id, held.lease_token, error_kind="x",
                                  error_message="stale", now=at(now))  # fmt: skip
        now = _seconds(back.run_after)
    assert delays[-1] >= 5, "the delay grows up to its cap"

    # The store is back but the job itself breaks: that attempt counts, and it was the last.
    held = await _claim(conn, now)
    assert held.attempts == 1
    assert held.lease_token
    final = await job_fail(conn, job.job_id, held.lease_token, error_kind="unexpected_error",
                           error_message="ValueError: boom", permanent=False,
                           now=at(now))  # fmt: skip
    assert (final.state, final.attempts, final.error_kind) == (S.FAILED, 1, "unexpected_error")
    events = await job_event_list(conn, job.job_id)
    trail = [(e.from_state, e.to_state, e.attempt, e.error_kind) for e in events]
    assert trail == [(None, S.PENDING, 0, None)] + [
        (S.PENDING, S.RUNNING, 1, None),
        (S.RUNNING, S.PENDING, 0, "blob_unavailable"),
    ] * 6 + [(S.PENDING, S.RUNNING, 1, None), (S.RUNNING, S.FAILED, 1, "unexpected_error")]
    assert [e.error_message for e in events if e.error_kind][:2] == ["S3 down 0", "S3 down 1"]


async def test_a_job_completes_after_the_outage(conn: Conn) -> None:
    job = await submit(conn, max_attempts=1)
    held = await _claim(conn, 0)
    assert held.lease_token
    back = await job_retry_later(conn, job.job_id, held.lease_token,
                                 error_kind="database_unavailable", error_message="pg down",
                                 now=at(1))  # fmt: skip
    assert 0.5 <= _seconds(back.run_after) - 1 <= 1.0  # defaults: base 1 s
    again = await _claim(conn, 5)
    assert again.lease_token
    assert again.attempts == 1
    await job_complete(conn, job.job_id, again.lease_token, output_key="out.json", now=at(6))
    done = await job_get(conn, job.job_id)
    assert done is not None
    assert (done.state, done.attempts, done.error_kind) == (S.COMPLETED, 1, None)
    assert await _infra_retries(conn, job) == 1, "kept as history, like attempts"


async def test_past_the_limit_hand_backs_count_and_exhaust_the_attempts(conn: Conn) -> None:
    job = await submit(conn, max_attempts=2)
    outcomes = []
    now = 0.0
    for _ in range(4):
        held = await _claim(conn, now)
        assert held.lease_token
        after = await job_retry_later(conn, job.job_id, held.lease_token,
                                      error_kind="blob_unavailable", error_message="S3 down",
                                      max_infra_retries=2, now=at(now))  # fmt: skip
        outcomes.append((after.state, after.attempts))
        if after.state is S.FAILED:
            break
        now = _seconds(after.run_after)
    # Two free hand-backs, then each one counts: attempt 1 retried, attempt 2 fails for good.
    assert outcomes == [(S.PENDING, 0), (S.PENDING, 0), (S.PENDING, 1), (S.FAILED, 2)]
    failed = await job_get(conn, job.job_id)
    assert failed is not None
    assert (failed.error_kind, failed.finished_at) == ("blob_unavailable", at(now))
    assert failed.lease_token is not None, "the last token stays, as with job_fail"
    assert await _infra_retries(conn, job) == 4
    assert await job_claim(conn, worker_id="w", batch_size=1, lease_seconds=30, now=at(9999)) == []


async def test_delays_stay_capped_however_many_retries(conn: Conn) -> None:
    # A long-lived job: 2^n must neither overflow nor pass the cap.
    job = await submit(conn, max_attempts=2000)
    await conn.execute(
        "UPDATE vidjobs.jobs SET infra_retries = 5000, attempts = 1500 WHERE job_id = %s",
        (job.job_id,),
    )
    held = await _claim(conn, 0)
    assert held.lease_token
    later = await job_retry_later(conn, job.job_id, held.lease_token, error_kind="blob_unavailable",
                                  error_message="S3 down", max_infra_retries=10_000,
                                  now=at(0))  # fmt: skip
    assert 30 <= _seconds(later.run_after) <= 60
    again = await _claim(conn, 60)
    assert again.lease_token
    failed = await job_fail(conn, job.job_id, again.lease_token, error_kind="io",
                            error_message="x", permanent=False, now=at(60))  # fmt: skip
    assert 300 <= _seconds(failed.run_after) - 60 <= 600


async def test_negative_infra_retries_are_refused(conn: Conn) -> None:
    await submit(conn)
    with pytest.raises(psycopg.errors.CheckViolation):
        await conn.execute("UPDATE vidjobs.jobs SET infra_retries = -1")
