"""The worker loop against a real Postgres: drain, progress, failures, cancel, shutdown, fencing."""

from __future__ import annotations

import asyncio
import time

import pytest

from tests.support.db import Conn
from tests.support.waiting import wait_for_async
from tests.support.worker import fast_settings, job_now, running_worker, submit
from vidjobs.db.jobs import NewJob, job_cancel, job_event_list, job_insert_many
from vidjobs.db.leases import job_claim
from vidjobs.schema import JobState
from vidjobs.worker.pipelines.contract import JobContext, Pipeline
from vidjobs.worker.pipelines.noop import NoopPipeline
from vidjobs.worker.pipelines.registry import PipelineRegistry, default_registry

pytestmark = [pytest.mark.integration, pytest.mark.anyio]


async def _states(conn: Conn) -> dict[str, int]:
    rows = await (
        await conn.execute("SELECT state::text, count(*) FROM vidjobs.jobs GROUP BY 1")
    ).fetchall()
    return {s: int(n) for s, n in rows}


async def test_drain_completes_every_noop_job_once(conn: Conn, database_url: str) -> None:
    await job_insert_many(conn, [NewJob(tenant="acme", pipeline="noop")] * 600)
    async with running_worker(
        database_url, fast_settings(concurrency=8, batch_size=50, prefetch=50), drain=True
    ) as rw:
        stats = await asyncio.wait_for(rw.task, 60)
    assert stats.claimed == stats.completed == 600
    assert await _states(conn) == {"completed": 600}
    # Exactly one claim and one completion event per job: the batch paths kept the trail.
    rows = await (
        await conn.execute(
            "SELECT to_state::text, count(*), count(DISTINCT job_id) FROM vidjobs.job_events "
            "WHERE from_state IS NOT NULL GROUP BY 1"
        )
    ).fetchall()
    assert {r[0]: (r[1], r[2]) for r in rows} == {
        "running": (600, 600),
        "completed": (600, 600),
    }


async def test_two_workers_never_run_one_job_twice(conn: Conn, database_url: str) -> None:
    await job_insert_many(conn, [NewJob(tenant="acme", pipeline="noop")] * 1000)
    settings = fast_settings(concurrency=4, batch_size=20, prefetch=20)
    async with (
        running_worker(database_url, settings, drain=True) as a,
        running_worker(database_url, settings, drain=True) as b,
    ):
        sa, sb = await asyncio.wait_for(asyncio.gather(a.task, b.task), 60)
    assert sa.completed > 0, "both workers should have taken a share"
    assert sb.completed > 0, "both workers should have taken a share"
    assert sa.completed + sb.completed == 1000
    assert sa.lease_lost == sb.lease_lost == 0
    attempts = await (await conn.execute("SELECT max(attempts) FROM vidjobs.jobs")).fetchone()
    assert attempts == (1,)
    assert await _states(conn) == {"completed": 1000}


async def test_idle_worker_wakes_on_notify(conn: Conn, database_url: str) -> None:
    # A poll interval far longer than the test: only the NOTIFY can wake the worker in time.
    settings = fast_settings(poll_interval_s=30, idle_backoff_max_s=30)
    async with running_worker(database_url, settings):
        await asyncio.sleep(0.3)  # idle, waiting on LISTEN
        job = await submit(conn)
        t_commit = time.monotonic()

        async def done() -> bool:
            return (await job_now(conn, job.job_id)).state is JobState.COMPLETED

        await wait_for_async(done, within=5, every=0.005)
        assert time.monotonic() - t_commit < 2.0


async def test_progress_rises_while_the_job_runs(conn: Conn, database_url: str) -> None:
    job = await submit(conn, params={"sleep_s": 1.5})
    seen: list[float] = []
    async with running_worker(database_url):

        async def finished() -> bool:
            now = await job_now(conn, job.job_id)
            seen.append(now.progress)
            return now.state is JobState.COMPLETED

        await wait_for_async(finished, within=15, every=0.05)
    assert seen == sorted(seen), f"progress went down: {seen}"
    assert any(0 < p < 1 for p in seen), f"no intermediate progress seen: {seen}"
    final = await job_now(conn, job.job_id)
    assert final.progress == 1.0
    assert final.frames_done == final.frames_total == 10


async def test_a_job_shorter_than_the_progress_interval_completes_with_its_frames(
    conn: Conn, database_url: str
) -> None:
    """Its progress was still held back by the throttle when it finished (a 1-frame video).

    It used to complete as progress 1.0, frames_done 0, frames_total null; the last progress
    is written before the completion now.
    """
    job = await submit(conn, params={"sleep_s": 0.05})  # ten progress steps in 50 ms
    async with running_worker(database_url, fast_settings(progress_interval_s=30)):

        async def finished() -> bool:
            return (await job_now(conn, job.job_id)).state is JobState.COMPLETED

        await wait_for_async(finished, within=15, every=0.02)
    final = await job_now(conn, job.job_id)
    assert (final.progress, final.frames_done, final.frames_total) == (1.0, 10, 10)


async def test_transient_failure_is_retried_then_fails_for_good(
    conn: Conn, database_url: str
) -> None:
    job = await submit(conn, params={"fail": "flaky upstream"}, max_attempts=2)
    async with running_worker(database_url, drain=True) as rw:
        await asyncio.wait_for(rw.task, 20)
    first = await job_now(conn, job.job_id)
    assert first.state is JobState.PENDING
    assert first.attempts == 1
    assert first.error_message == "flaky upstream"
    assert first.run_after > first.updated_at, "a transient failure must back off"
    # Let the backoff pass (the test's shortcut for waiting seconds), then run attempt 2.
    await conn.execute("UPDATE vidjobs.jobs SET run_after = now() WHERE job_id = %s", (job.job_id,))
    async with running_worker(database_url, drain=True) as rw:
        await asyncio.wait_for(rw.task, 20)
    last = await job_now(conn, job.job_id)
    assert last.state is JobState.FAILED
    assert last.attempts == 2
    assert last.error_kind == "noop_failure"
    trail = [(e.from_state, e.to_state) for e in await job_event_list(conn, job.job_id)]
    assert trail == [
        (None, JobState.PENDING),
        (JobState.PENDING, JobState.RUNNING),
        (JobState.RUNNING, JobState.PENDING),
        (JobState.PENDING, JobState.RUNNING),
        (JobState.RUNNING, JobState.FAILED),
    ]


async def test_permanent_unknown_and_unexpected_failures(conn: Conn, database_url: str) -> None:
    class Exploding:
        async def run(self, ctx: JobContext) -> str | None:
            raise ValueError(f"bad frame in {ctx.job.params['name']}")

        async def close(self) -> None:
            return None

    class Changed(PipelineRegistry):
        """Offers ``gone`` when the job is claimed, has lost it when the job runs."""

        async def get(self, name: str) -> Pipeline | None:
            return None if name == "gone" else await super().get(name)

    registry = Changed({"noop": NoopPipeline, "explode": Exploding, "gone": NoopPipeline})
    permanent = await submit(
        conn, params={"fail": "no video stream", "fail_kind": "invalid_video", "permanent": True}
    )
    unknown = await submit(conn, pipeline="gone")
    unexpected = await submit(conn, pipeline="explode", params={"name": "x.mp4"}, max_attempts=1)
    good = await submit(conn)
    async with running_worker(database_url, registry=registry, drain=True) as rw:
        stats = await asyncio.wait_for(rw.task, 20)
    assert (stats.failed, stats.completed) == (3, 1)

    p = await job_now(conn, permanent.job_id)
    assert (p.state, p.attempts, p.error_kind) == (JobState.FAILED, 1, "invalid_video")
    u = await job_now(conn, unknown.job_id)
    assert (u.state, u.error_kind) == (JobState.FAILED, "unknown_pipeline")
    assert "this worker has no pipeline 'gone'" in (u.error_message or "")
    x = await job_now(conn, unexpected.job_id)
    assert (x.state, x.error_kind) == (JobState.FAILED, "unexpected_error")
    assert x.error_message == "ValueError: bad frame in x.mp4"
    assert (await job_now(conn, good.job_id)).state is JobState.COMPLETED


async def test_noop_only_worker_leaves_other_pipelines_pending(
    conn: Conn, database_url: str
) -> None:
    # What `vidjobs worker --no-video` runs: noop only. The video job is first in line.
    video = await submit(conn, pipeline="yolo_ocr", priority=9)
    await job_insert_many(conn, [NewJob(tenant="acme", pipeline="noop")] * 20)
    async with running_worker(database_url, registry=default_registry(), drain=True) as rw:
        stats = await asyncio.wait_for(rw.task, 20)
    assert (stats.claimed, stats.completed, stats.failed) == (20, 20, 0)
    v = await job_now(conn, video.job_id)
    assert (v.state, v.attempts, v.worker_id, v.error_kind) == (JobState.PENDING, 0, None, None)
    assert await _states(conn) == {"completed": 20, "pending": 1}


async def test_cancel_while_running_stops_within_a_heartbeat(conn: Conn, database_url: str) -> None:
    settings = fast_settings(heartbeat_interval_s=0.3, progress_interval_s=5)
    job = await submit(conn, params={"sleep_s": 60})
    async with running_worker(database_url, settings) as rw:

        async def running() -> bool:
            return (await job_now(conn, job.job_id)).state is JobState.RUNNING

        await wait_for_async(running)
        await job_cancel(conn, job.job_id)
        t_cancel = time.monotonic()

        async def stopped() -> bool:
            return rw.worker.stats.stopped == 1

        await wait_for_async(stopped, within=5, every=0.01)
        took = time.monotonic() - t_cancel
        # one heartbeat interval, plus scheduling slack for a loaded 2-core CI box
        assert took < 0.3 + 1.5, f"stopped {took:.2f}s after the cancel"
        # The slot is free again: the next job runs.
        nxt = await submit(conn)

        async def next_done() -> bool:
            return (await job_now(conn, nxt.job_id)).state is JobState.COMPLETED

        await wait_for_async(next_done)
    assert (await job_now(conn, job.job_id)).state is JobState.CANCELLED


async def test_stop_hands_back_a_job_that_outlives_the_grace(conn: Conn, database_url: str) -> None:
    job = await submit(conn, params={"sleep_s": 60})
    async with running_worker(database_url, fast_settings(grace_seconds=0.5)) as rw:

        async def running() -> bool:
            return (await job_now(conn, job.job_id)).state is JobState.RUNNING

        await wait_for_async(running)
        t0 = time.monotonic()
        stats = await rw.stop()
        assert time.monotonic() - t0 < 0.5 + 2.0
    assert stats.released == 1
    back = await job_now(conn, job.job_id)
    assert back.state is JobState.PENDING
    assert back.attempts == 0, "a released attempt must not count"
    assert back.lease_token is None


async def test_stop_lets_a_short_job_finish_within_the_grace(conn: Conn, database_url: str) -> None:
    job = await submit(conn, params={"sleep_s": 1.0})
    async with running_worker(database_url, fast_settings(grace_seconds=10)) as rw:

        async def running() -> bool:
            return (await job_now(conn, job.job_id)).state is JobState.RUNNING

        await wait_for_async(running)
        stats = await rw.stop()
    assert (stats.completed, stats.released) == (1, 0)
    assert (await job_now(conn, job.job_id)).state is JobState.COMPLETED


async def test_worker_that_lost_its_lease_cannot_complete(conn: Conn, database_url: str) -> None:
    gate = asyncio.Event()

    class Gated:
        async def run(self, ctx: JobContext) -> str | None:
            await gate.wait()
            return None

        async def close(self) -> None:
            return None

    job = await submit(conn, pipeline="gated")
    settings = fast_settings(heartbeat_interval_s=5)  # no heartbeat before the test is done
    registry = PipelineRegistry({"gated": Gated})
    async with running_worker(database_url, settings, registry) as rw:

        async def running() -> bool:
            return (await job_now(conn, job.job_id)).state is JobState.RUNNING

        await wait_for_async(running)
        # The lease runs out (as if the worker had paused) and another worker takes the job.
        await conn.execute(
            "UPDATE vidjobs.jobs SET lease_expires_at = now() - interval '1 second' "
            "WHERE job_id = %s",
            (job.job_id,),
        )
        [taken] = await job_claim(conn, worker_id="thief", batch_size=1, lease_seconds=60)
        gate.set()

        async def refused() -> bool:
            return rw.worker.stats.lease_lost == 1

        await wait_for_async(refused)
    now = await job_now(conn, job.job_id)
    assert now.state is JobState.RUNNING
    assert (now.worker_id, now.lease_token) == ("thief", taken.lease_token)
