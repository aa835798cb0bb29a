"""The real worker loop on an in-memory queue: claim, heartbeat, completer, outcomes, shutdown.

The fast tier: ``Worker`` runs in the test's event loop exactly as in production, only its
``JobQueue`` is ``tests/support/inmemory_queue.py`` instead of Postgres, so each test takes
milliseconds to a second. tests/integration/test_worker_loop.py runs the same scenarios on a
real Postgres; neither replaces the other.
"""

from __future__ import annotations

import asyncio
import contextlib
import uuid
from collections.abc import AsyncIterator
from typing import Any

import pytest

from tests.support.inmemory_queue import InMemoryQueue
from tests.support.waiting import wait_for_async
from vidjobs.blobs import BlobStoreUnavailable
from vidjobs.db.errors import DatabaseUnavailable
from vidjobs.schema import JobState
from vidjobs.worker.pipelines.contract import JobContext
from vidjobs.worker.pipelines.noop import NoopPipeline
from vidjobs.worker.pipelines.registry import PipelineRegistry, noop_only
from vidjobs.worker.runner import Worker, WorkerStats
from vidjobs.worker.settings import WorkerSettings

pytestmark = pytest.mark.anyio

PENDING, RUNNING = JobState.PENDING, JobState.RUNNING


def _settings(**kw: Any) -> WorkerSettings:
    """Short intervals, so heartbeats, backoff and grace play out in a fraction of a second."""
    base: dict[str, Any] = {
        "concurrency": 2,
        "batch_size": 10,
        "lease_seconds": 10.0,
        "heartbeat_interval_s": 0.05,
        "progress_interval_s": 0.05,
        "grace_seconds": 5.0,
        "poll_interval_s": 0.02,
        "idle_backoff_max_s": 0.05,
        "worker_id": f"fast-{uuid.uuid4().hex[:6]}",
    }
    base.update(kw)
    return WorkerSettings(**base)


@contextlib.asynccontextmanager
async def _running(
    queue: InMemoryQueue,
    settings: WorkerSettings | None = None,
    registry: PipelineRegistry | None = None,
    *,
    drain: bool = False,
) -> AsyncIterator[tuple[Worker, asyncio.Task[WorkerStats]]]:
    """Run the worker loop (the queue is also its notifier) until the block ends."""
    worker = Worker(settings or _settings(), queue, registry or noop_only(), queue, drain=drain)
    task = asyncio.create_task(worker.run())
    try:
        yield worker, task
    finally:
        if not task.done():
            worker.stop()
        await asyncio.wait_for(task, 15)


async def _drain(queue: InMemoryQueue, **kw: Any) -> WorkerStats:
    async with _running(queue, drain=True, **kw) as (_, task):
        return await asyncio.wait_for(task, 15)


async def _until(queue: InMemoryQueue, job_id: uuid.UUID, state: JobState) -> None:
    async def reached() -> bool:
        return queue.get(job_id).state is state

    await wait_for_async(reached, within=10, what=f"job {job_id} is {state}")


class _Gated:
    """Runs until the test opens the gate; a stand-in for a job that takes a while."""

    def __init__(self, gate: asyncio.Event) -> None:
        self._gate = gate

    async def run(self, ctx: JobContext) -> str | None:
        await self._gate.wait()
        return None

    async def close(self) -> None:
        return None


async def test_jobs_complete_once_each() -> None:
    queue = InMemoryQueue()
    jobs = [queue.insert() for _ in range(50)]
    stats = await _drain(queue, settings=_settings(concurrency=4, prefetch=10))
    assert stats.claimed == stats.completed == 50
    assert queue.states() == {"completed": 50}
    assert {queue.get(j.job_id).attempts for j in jobs} == {1}
    assert queue.trail(jobs[0].job_id) == [
        (None, PENDING),
        (PENDING, RUNNING),
        (RUNNING, JobState.COMPLETED),
    ]


async def test_progress_is_written_while_the_job_runs() -> None:
    queue = InMemoryQueue()
    job = queue.insert(params={"sleep_s": 0.5})
    stats = await _drain(queue)
    assert stats.completed == 1
    assert queue.calls["job_progress"] >= 2, "progress is flushed every interval, not at the end"
    done = queue.get(job.job_id)
    assert (done.progress, done.frames_done, done.frames_total) == (1.0, 10, 10)


async def test_transient_failure_is_retried_then_fails_for_good() -> None:
    queue = InMemoryQueue(fail_backoff_s=60)
    job = queue.insert(params={"fail": "flaky upstream"}, max_attempts=2)
    await _drain(queue)
    first = queue.get(job.job_id)
    assert (first.state, first.attempts, first.error_message) == (PENDING, 1, "flaky upstream")
    assert first.run_after > first.updated_at, "a transient failure must back off"
    queue.make_due(job.job_id)
    stats = await _drain(queue)
    last = queue.get(job.job_id)
    assert (last.state, last.attempts, last.error_kind) == (JobState.FAILED, 2, "noop_failure")
    assert stats.failed == 1
    assert queue.trail(job.job_id) == [
        (None, PENDING),
        (PENDING, RUNNING),
        (RUNNING, PENDING),
        (PENDING, RUNNING),
        (RUNNING, JobState.FAILED),
    ]


async def test_permanent_failure_fails_at_once() -> None:
    queue = InMemoryQueue()
    params = {"fail": "no video stream", "fail_kind": "invalid_video", "permanent": True}
    job = queue.insert(params=params, max_attempts=5)
    stats = await _drain(queue)
    failed = queue.get(job.job_id)
    assert (failed.state, failed.attempts, failed.error_kind) == (
        JobState.FAILED,
        1,
        "invalid_video",
    )
    assert (stats.failed, stats.retried_later) == (1, 0)


@pytest.mark.parametrize(
    ("error", "kind", "message"),
    [
        (BlobStoreUnavailable("refused"), "blob_unavailable", "uploading the results: blob store "
         "unavailable: refused"),
        (DatabaseUnavailable("refused"), "database_unavailable", "the database was unreachable: "
         "refused"),
    ],
)  # fmt: skip
async def test_an_infrastructure_error_hands_back_without_counting(
    error: Exception, kind: str, message: str
) -> None:
    raised: list[int] = []

    class Flaky:
        async def run(self, ctx: JobContext) -> str | None:
            if not raised:
                raised.append(ctx.job.attempts)
                ctx.step = "uploading the results"
                raise error
            return "results/x.json"

        async def close(self) -> None:
            return None

    queue = InMemoryQueue()
    job = queue.insert(pipeline="flaky", max_attempts=1)
    stats = await _drain(queue, registry=PipelineRegistry({"flaky": Flaky}))
    assert raised == [1]
    assert (stats.retried_later, stats.completed, stats.failed) == (1, 1, 0)
    done = queue.get(job.job_id)
    # The outage did not use up the only attempt: the job ran again and completed.
    assert (done.state, done.attempts, done.output_key) == (
        JobState.COMPLETED,
        1,
        "results/x.json",
    )
    back = [e for e in queue.events if (e.from_state, e.to_state) == (RUNNING, PENDING)]
    assert [(e.error_kind, e.error_message, e.attempt) for e in back] == [(kind, message, 0)]
    assert queue.calls["job_fail"] == 0


async def test_cancel_stops_a_running_job_within_a_heartbeat() -> None:
    queue = InMemoryQueue()
    job = queue.insert(params={"sleep_s": 60})
    async with _running(queue, _settings(concurrency=1)) as (worker, _):
        await _until(queue, job.job_id, RUNNING)
        queue.cancel(job.job_id)

        async def stopped() -> bool:
            return worker.stats.stopped == 1

        took = await wait_for_async(stopped, within=5, what="the cancelled job stops")
        assert took < 0.05 + 1.5, "one heartbeat interval, plus scheduling slack"
        # The slot is free again: the next job runs.
        nxt = queue.insert()
        await _until(queue, nxt.job_id, JobState.COMPLETED)
    cancelled = queue.get(job.job_id)
    assert cancelled.state is JobState.CANCELLED
    assert queue.calls["job_release"] == 0, "a cancelled job is not handed back"


async def test_heartbeats_keep_a_job_longer_than_its_lease() -> None:
    queue = InMemoryQueue()
    job = queue.insert(params={"sleep_s": 1.0})
    settings = _settings(lease_seconds=0.3, heartbeat_interval_s=0.05)
    async with _running(queue, settings) as (worker, _):
        await _until(queue, job.job_id, RUNNING)
        await asyncio.sleep(0.5)  # past the first lease
        thief = await queue.job_claim(
            worker_id="thief", batch_size=1, lease_seconds=60, pipelines=["noop"]
        )
        assert thief == [], "a renewed lease cannot be taken back"
        await _until(queue, job.job_id, JobState.COMPLETED)
        assert worker.stats.lease_lost == 0
    assert queue.get(job.job_id).attempts == 1


async def test_shutdown_releases_held_jobs_without_counting() -> None:
    queue = InMemoryQueue()
    jobs = [queue.insert(params={"sleep_s": 60}) for _ in range(3)]
    # One runs, two are claimed ahead (prefetch) and wait for the slot.
    settings = _settings(concurrency=1, prefetch=2, grace_seconds=0.2)
    async with _running(queue, settings) as (worker, task):
        for job in jobs:
            await _until(queue, job.job_id, RUNNING)
        worker.stop()
        stats = await asyncio.wait_for(task, 10)
    assert stats.released == 3
    for job in jobs:
        back = queue.get(job.job_id)
        assert (back.state, back.attempts, back.lease_token) == (PENDING, 0, None)


async def test_shutdown_hands_back_prefetched_jobs_before_the_running_one_ends() -> None:
    queue = InMemoryQueue()
    gate = asyncio.Event()
    registry = PipelineRegistry({"noop": lambda: _Gated(gate)})
    jobs = [queue.insert() for _ in range(3)]
    # One runs (until the gate opens), two are claimed ahead and never started.
    settings = _settings(concurrency=1, prefetch=2, grace_seconds=10)
    async with _running(queue, settings, registry) as (worker, task):
        for job in jobs:
            await _until(queue, job.job_id, RUNNING)
        worker.stop()

        async def two_back() -> bool:
            return sum(queue.get(j.job_id).state is PENDING for j in jobs) == 2

        # Within the running job's grace, not after it: nobody else could take them meanwhile.
        await wait_for_async(two_back, within=2, what="the prefetched jobs handed back")
        gate.set()
        stats = await asyncio.wait_for(task, 10)
    assert (stats.completed, stats.released) == (1, 2)


async def test_shutdown_lets_a_short_job_finish_within_the_grace() -> None:
    queue = InMemoryQueue()
    job = queue.insert(params={"sleep_s": 0.3})
    async with _running(queue, _settings(grace_seconds=10)) as (worker, task):
        await _until(queue, job.job_id, RUNNING)
        worker.stop()
        stats = await asyncio.wait_for(task, 10)
    assert (stats.completed, stats.released) == (1, 0)
    assert queue.get(job.job_id).state is JobState.COMPLETED


async def test_a_worker_that_lost_its_lease_cannot_complete() -> None:
    gate = asyncio.Event()
    queue = InMemoryQueue()
    job = queue.insert(pipeline="gated")
    settings = _settings(heartbeat_interval_s=5)  # no heartbeat before the test is done
    registry = PipelineRegistry({"gated": lambda: _Gated(gate)})
    async with _running(queue, settings, registry) as (worker, _):
        await _until(queue, job.job_id, RUNNING)
        # The lease runs out (as if the worker had paused) and another worker takes the job.
        queue.expire(job.job_id)
        [taken] = await queue.job_claim(
            worker_id="thief", batch_size=1, lease_seconds=60, pipelines=["gated"]
        )
        gate.set()

        async def refused() -> bool:
            return worker.stats.lease_lost == 1

        await wait_for_async(refused, within=5, what="the stale completion is refused")
    now = queue.get(job.job_id)
    assert now.state is RUNNING
    assert (now.worker_id, now.lease_token, now.attempts) == ("thief", taken.lease_token, 2)
    assert worker.stats.completed == 0


async def test_a_heartbeat_that_finds_the_lease_lost_stops_the_job() -> None:
    queue = InMemoryQueue()
    job = queue.insert(params={"sleep_s": 60})
    async with _running(queue, _settings(concurrency=1)) as (worker, _):
        await _until(queue, job.job_id, RUNNING)
        queue.expire(job.job_id)
        await queue.job_claim(worker_id="thief", batch_size=1, lease_seconds=60, pipelines=["noop"])

        async def stopped() -> bool:
            return worker.stats.stopped == 1

        await wait_for_async(stopped, within=5, what="the job that lost its lease stops")
        assert worker.stats.released == 0, "a lost job is not ours to hand back"
    assert queue.get(job.job_id).worker_id == "thief"


async def test_a_completion_that_meets_an_outage_is_written_once_the_database_answers() -> None:
    gate = asyncio.Event()
    queue = InMemoryQueue()
    job = queue.insert(pipeline="gated")
    registry = PipelineRegistry({"gated": lambda: _Gated(gate), "noop": NoopPipeline})
    async with _running(queue, registry=registry) as (worker, _):
        await _until(queue, job.job_id, RUNNING)
        queue.down = True
        gate.set()  # the job finishes while the database cannot be reached

        async def tried() -> bool:
            return queue.calls["job_complete_many"] >= 3

        await wait_for_async(tried, within=5, what="the completion is retried")
        assert queue.get(job.job_id).state is RUNNING
        queue.down = False
        await _until(queue, job.job_id, JobState.COMPLETED)

        async def counted() -> bool:
            # The row turns completed inside the write; the worker counts it once the write
            # returns, a step of the event loop later.
            return worker.stats.completed == 1

        await wait_for_async(counted, within=5, what="the worker counts the completion")
        assert (worker.stats.completed, worker.stats.lease_lost) == (1, 0)
    assert queue.get(job.job_id).attempts == 1, "the finished work was saved, not redone"
