"""Leases, fencing, retries, cancel and release on a real Postgres."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

import psycopg
import pytest

from tests.support.queue import at, submit
from vidjobs.db.errors import LeaseLost
from vidjobs.db.jobs import job_cancel, job_event_list, job_get
from vidjobs.db.leases import (
    HeartbeatStatus,
    job_claim,
    job_complete,
    job_complete_many,
    job_fail,
    job_heartbeat,
    job_progress,
    job_release,
)
from vidjobs.schema import Job, JobState

pytestmark = [pytest.mark.integration, pytest.mark.anyio]

Conn = psycopg.AsyncConnection[Any]
S = JobState


async def _claim_one(conn: Conn, worker: str, seconds: float, lease: float = 30) -> Job:
    [job] = await job_claim(
        conn, worker_id=worker, batch_size=1, lease_seconds=lease, now=at(seconds)
    )
    assert job.lease_token is not None
    return job


async def _trail(conn: Conn, job: Job) -> list[tuple[S | None, S, int, str | None]]:
    events = await job_event_list(conn, job.job_id)
    return [(e.from_state, e.to_state, e.attempt, e.error_kind) for e in events]


async def test_fencing_old_holder_is_refused_new_holder_succeeds(conn: Conn) -> None:
    job = await submit(conn)
    old = await _claim_one(conn, "w1", 0)
    assert old.lease_token
    await job_progress(
        conn, job.job_id, old.lease_token, frames_done=10, frames_total=100, now=at(1)
    )
    # w1 stops heartbeating; after expiry w2 takes the job back with a new token.
    new = await _claim_one(conn, "w2", 60)
    assert new.job_id == job.job_id
    assert new.lease_token
    assert new.lease_token != old.lease_token
    assert (new.attempts, new.worker_id, new.frames_done, new.progress) == (2, "w2", 0, 0)

    with pytest.raises(LeaseLost):
        await job_complete(conn, job.job_id, old.lease_token, output_key="stale", now=at(61))
    with pytest.raises(LeaseLost):
        await job_fail(conn, job.job_id, old.lease_token, error_kind="x", error_message="stale",
                       permanent=True, now=at(61))  # fmt: skip
    with pytest.raises(LeaseLost):
        await job_progress(conn, job.job_id, old.lease_token, frames_done=99, frames_total=100)
    with pytest.raises(LeaseLost):
        await job_release(conn, job.job_id, old.lease_token, now=at(61))
    assert (
        await job_heartbeat(conn, job.job_id, old.lease_token, lease_seconds=30, now=at(61))
        is HeartbeatStatus.LEASE_LOST
    )
    assert await job_complete_many(conn, [(job.job_id, old.lease_token, "stale")]) == set()

    unchanged = await job_get(conn, job.job_id)
    assert unchanged is not None
    assert (unchanged.state, unchanged.lease_token, unchanged.frames_done) == (
        S.RUNNING, new.lease_token, 0)  # fmt: skip

    # The new holder works normally.
    assert (
        await job_heartbeat(conn, job.job_id, new.lease_token, lease_seconds=30, now=at(70))
        is HeartbeatStatus.OK
    )
    await job_progress(conn, job.job_id, new.lease_token, frames_done=50, frames_total=100)
    mid = await job_get(conn, job.job_id)
    assert mid is not None
    assert (mid.lease_expires_at, mid.heartbeat_at, mid.progress) == (at(100), at(70), 0.5)
    await job_complete(conn, job.job_id, new.lease_token, output_key="out.json", now=at(80))
    done = await job_get(conn, job.job_id)
    assert done is not None
    assert (done.state, done.output_key, done.progress, done.frames_done) == (
        S.COMPLETED, "out.json", 1.0, 100)  # fmt: skip
    assert (done.finished_at, done.lease_expires_at) == (at(80), None)
    assert await _trail(conn, job) == [
        (None, S.PENDING, 0, None),
        (S.PENDING, S.RUNNING, 1, None),
        (S.RUNNING, S.RUNNING, 2, "lease_expired"),
        (S.RUNNING, S.COMPLETED, 2, None),
    ]


async def test_expired_lease_on_last_attempt_fails_for_good(conn: Conn) -> None:
    job = await submit(conn, max_attempts=2)
    await _claim_one(conn, "w1", 0)
    await _claim_one(conn, "w2", 60)
    assert await job_claim(conn, worker_id="w3", batch_size=5, lease_seconds=30, now=at(120)) == []
    failed = await job_get(conn, job.job_id)
    assert failed is not None
    assert (failed.state, failed.error_kind, failed.attempts) == (S.FAILED, "lease_expired", 2)
    assert failed.error_message
    assert "w2" in failed.error_message
    assert failed.finished_at == at(120)
    assert (await _trail(conn, job))[-1] == (S.RUNNING, S.FAILED, 2, "lease_expired")


async def test_transient_failures_back_off_then_fail_for_good(conn: Conn) -> None:
    job = await submit(conn, max_attempts=3)
    now = 0.0
    delays = []
    for attempt in (1, 2):
        held = await _claim_one(conn, "w", now)
        assert held.attempts == attempt
        assert held.lease_token
        after = await job_fail(conn, job.job_id, held.lease_token, error_kind="io",
                               error_message=f"boom {attempt}", permanent=False,
                               backoff_base_s=10, now=at(now))  # fmt: skip
        assert after.state is S.PENDING
        assert (after.error_kind, after.error_message, after.lease_token) == (
            "io", f"boom {attempt}", None)  # fmt: skip
        delay = (after.run_after - at(now)).total_seconds()
        base = 10 * 2 ** (attempt - 1)
        assert base / 2 <= delay <= base
        delays.append(delay)
        # Not claimable before its backoff ends.
        assert await job_claim(conn, worker_id="w", batch_size=1, lease_seconds=30,
                               now=after.run_after - timedelta(seconds=1)) == []  # fmt: skip
        now = (after.run_after - at(0)).total_seconds()
    assert delays[1] >= delays[0]

    last = await _claim_one(conn, "w", now)
    assert last.lease_token
    final = await job_fail(conn, job.job_id, last.lease_token, error_kind="io",
                           error_message="boom 3", permanent=False, now=at(now))  # fmt: skip
    assert (final.state, final.attempts, final.error_message) == (S.FAILED, 3, "boom 3")
    assert final.finished_at == at(now)
    assert await job_claim(conn, worker_id="w", batch_size=1, lease_seconds=30, now=at(9999)) == []
    assert await _trail(conn, job) == [
        (None, S.PENDING, 0, None),
        (S.PENDING, S.RUNNING, 1, None),
        (S.RUNNING, S.PENDING, 1, "io"),
        (S.PENDING, S.RUNNING, 2, None),
        (S.RUNNING, S.PENDING, 2, "io"),
        (S.PENDING, S.RUNNING, 3, None),
        (S.RUNNING, S.FAILED, 3, "io"),
    ]
    messages = [e.error_message for e in await job_event_list(conn, job.job_id) if e.error_kind]
    assert messages == ["boom 1", "boom 2", "boom 3"]


async def test_permanent_failure_fails_at_once(conn: Conn) -> None:
    job = await submit(conn, max_attempts=5)
    held = await _claim_one(conn, "w", 0)
    assert held.lease_token
    after = await job_fail(conn, job.job_id, held.lease_token, error_kind="bad_video",
                           error_message="not an mp4", permanent=True, now=at(1))  # fmt: skip
    assert (after.state, after.attempts, after.error_kind) == (S.FAILED, 1, "bad_video")
    assert (await _trail(conn, job))[-1] == (S.RUNNING, S.FAILED, 1, "bad_video")


async def test_cancel_pending_and_running(conn: Conn) -> None:
    pending = await submit(conn)
    cancelled = await job_cancel(conn, pending.job_id, tenant="acme", now=at(1))
    assert cancelled is not None
    assert (cancelled.state, cancelled.finished_at) == (S.CANCELLED, at(1))

    running_job = await submit(conn)
    held = await _claim_one(conn, "w", 2)
    assert held.job_id == running_job.job_id
    assert held.lease_token
    assert await job_cancel(conn, running_job.job_id, tenant="other") is None
    stopped = await job_cancel(conn, running_job.job_id, tenant="acme", now=at(3))
    assert stopped is not None
    assert stopped.state is S.CANCELLED
    status = await job_heartbeat(conn, held.job_id, held.lease_token, lease_seconds=30, now=at(4))
    assert status is HeartbeatStatus.CANCELLED
    with pytest.raises(LeaseLost):
        await job_progress(conn, held.job_id, held.lease_token, frames_done=1, frames_total=2)
    with pytest.raises(LeaseLost):
        await job_complete(conn, held.job_id, held.lease_token, output_key="x", now=at(5))

    # Cancelling a terminal job changes nothing and says so through its state.
    again = await job_cancel(conn, running_job.job_id, now=at(9))
    assert again is not None
    assert (again.state, again.finished_at) == (S.CANCELLED, at(3))
    assert await job_claim(conn, worker_id="w", batch_size=9, lease_seconds=30, now=at(99)) == []
    assert await _trail(conn, pending) == [(None, S.PENDING, 0, None),
                                           (S.PENDING, S.CANCELLED, 0, None)]  # fmt: skip
    assert (await _trail(conn, running_job))[-1] == (S.RUNNING, S.CANCELLED, 1, None)


async def test_release_hands_back_without_counting_the_attempt(conn: Conn) -> None:
    job = await submit(conn, max_attempts=1)
    held = await _claim_one(conn, "w1", 0)
    assert held.lease_token
    await job_release(conn, job.job_id, held.lease_token, now=at(1))
    back = await job_get(conn, job.job_id)
    assert back is not None
    assert (back.state, back.attempts, back.lease_token) == (S.PENDING, 0, None)
    again = await _claim_one(conn, "w2", 2)
    assert (again.job_id, again.attempts) == (job.job_id, 1)


async def test_complete_many_completes_only_jobs_still_held(conn: Conn) -> None:
    jobs = [await submit(conn) for _ in range(3)]
    held = await job_claim(conn, worker_id="w", batch_size=3, lease_seconds=30, now=at(0))
    assert {j.job_id for j in held} == {j.job_id for j in jobs}
    lost = held[0]
    await job_cancel(conn, lost.job_id, now=at(1))
    items = [(j.job_id, j.lease_token, f"{j.job_id}.json") for j in held if j.lease_token]
    done = await job_complete_many(conn, items, now=at(2))
    assert done == {j.job_id for j in held[1:]}
    for j in held[1:]:
        row = await job_get(conn, j.job_id)
        assert row is not None
        assert (row.state, row.output_key) == (S.COMPLETED, f"{j.job_id}.json")


async def test_impossible_rows_are_refused(conn: Conn) -> None:
    job = await submit(conn)
    for bad in (
        "UPDATE vidjobs.jobs SET state = 'running'",  # no lease
        "UPDATE vidjobs.jobs SET progress = 1.5",
        "UPDATE vidjobs.jobs SET frames_done = -1",
        "UPDATE vidjobs.jobs SET frames_total = 5, frames_done = 6",
        "UPDATE vidjobs.jobs SET attempts = 4",
        "UPDATE vidjobs.jobs SET state = 'completed', finished_at = now()",  # progress < 1
        "UPDATE vidjobs.jobs SET state = 'failed', finished_at = now()",  # no error
        "UPDATE vidjobs.jobs SET state = 'cancelled'",  # no finished_at
        "UPDATE vidjobs.jobs SET finished_at = now()",  # pending yet finished
    ):
        with pytest.raises(psycopg.errors.CheckViolation):
            await conn.execute(bad)
    with pytest.raises(psycopg.errors.InsufficientPrivilege):
        await conn.execute("UPDATE vidjobs.job_events SET actor = 'x'")
    assert (await job_get(conn, job.job_id)) == job
