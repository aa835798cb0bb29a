"""Long jobs as segment jobs, on Postgres: split, fan-in, failure, cancel, fairness, deletion.

The ``noop`` pipeline stands for a video of ``seconds`` sampled at 1 frame/s and splits like
``yolo_ocr`` (the video side, seeking and the merge, is tests/acceptance/test_segments_video.py).
"""

from __future__ import annotations

import asyncio
import uuid

import psycopg
import pytest

from tests.support.db import Conn, sql
from tests.support.worker import fast_settings, job_now, running_worker, submit
from vidjobs.db.jobs import (
    job_cancel,
    job_children,
    job_delete,
    job_event_list,
    job_insert,
    job_list,
)
from vidjobs.db.leases import job_claim, job_split
from vidjobs.schema import JobState
from vidjobs.schema.api import job_status
from vidjobs.schema.segments import plan_segments, segment_job_id

pytestmark = [pytest.mark.integration, pytest.mark.anyio, pytest.mark.timeout(120)]


async def _until(conn: Conn, job_id: uuid.UUID, *states: JobState, within: float = 60) -> None:
    deadline = asyncio.get_running_loop().time() + within
    while (await job_now(conn, job_id)).state not in states:
        job = await job_now(conn, job_id)
        assert asyncio.get_running_loop().time() < deadline, (
            job.state,
            job.error_kind,
            job.error_message,
        )
        await asyncio.sleep(0.05)


async def test_a_long_job_runs_as_segments_and_its_parent_completes_when_the_last_one_does(
    conn: Conn, database_url: str
) -> None:
    # The tenant has a webhook endpoint: the parent's end is an event, its segments' are not.
    sql(
        database_url,
        "INSERT INTO vidjobs.webhook_endpoints (tenant, url) VALUES ('acme', 'http://127.0.0.1:9/')",
    )
    parent = await submit(conn, params={"seconds": 50, "segment_seconds": 10})
    async with running_worker(database_url, fast_settings(concurrency=3)) as w:
        await _until(conn, parent.job_id, JobState.COMPLETED)
        stats = w.worker.stats
    children = await job_children(conn, parent.job_id)
    assert [c.segment_index for c in children] == [0, 1, 2, 3, 4]
    assert [c.job_id for c in children] == [segment_job_id(parent.job_id, i) for i in range(5)]
    assert [(c.segment_start_ms, c.segment_end_ms) for c in children] == [
        (0, 10_000), (10_000, 20_000), (20_000, 30_000), (30_000, 40_000), (40_000, 49_001)
    ]  # fmt: skip
    assert all(c.state is JobState.COMPLETED and c.attempts == 1 for c in children)
    assert sum(c.frames_done for c in children) == 50
    done = await job_now(conn, parent.job_id)
    assert done.segments == 5
    assert done.attempts == 1  # the plan's attempt was given back: the merge is attempt 1
    assert stats.split == 1
    assert stats.completed == 6
    # The trail: submitted, claimed (plan), handed on, claimed (merge), completed; each child
    # created by its parent.
    trail = [(e.from_state, e.to_state) for e in await job_event_list(conn, parent.job_id)]
    assert trail == [
        (None, "pending"), ("pending", "running"), ("running", "pending"),
        ("pending", "running"), ("running", "completed"),
    ]  # fmt: skip
    first = await job_event_list(conn, children[0].job_id)
    assert first[0].actor == f"parent {parent.job_id}"
    # Clients see the parent only: the list has no segments; the status lists them.
    page = await job_list(conn, tenant="acme")
    assert [j.job_id for j in page.jobs] == [parent.job_id]
    status = job_status(done, children)
    assert status.status is JobState.COMPLETED
    assert status.frames_done == 50
    assert status.children is not None
    assert [c.index for c in status.children] == list(range(5))
    assert sql(database_url, "SELECT job_id, event_type FROM vidjobs.webhook_deliveries") == [
        (parent.job_id, "job.completed")
    ]
    # The DBA view.
    assert sql(
        database_url,
        "SELECT phase, segments, segments_completed, frames_done FROM vidjobs.job_segments",
    ) == [("completed", 5, 5, 50)]


async def test_while_segments_run_the_parent_reads_running_with_their_summed_progress(
    conn: Conn, database_url: str
) -> None:
    parent = await submit(
        conn, params={"seconds": 40, "segment_seconds": 10, "frame_sleep_s": 0.05}
    )
    async with running_worker(database_url, fast_settings(concurrency=2)):
        seen: list[float] = []
        while (job := await job_now(conn, parent.job_id)).state is not JobState.COMPLETED:
            if job.segments is not None:
                status = job_status(job, await job_children(conn, parent.job_id))
                assert status.status in (JobState.RUNNING, JobState.COMPLETED)
                seen.append(status.progress)
            await asyncio.sleep(0.05)
    assert seen == sorted(seen)
    assert seen[-1] > 0.5
    assert sql(database_url, "SELECT count(*) FROM vidjobs.jobs WHERE parent_id IS NOT NULL") == [
        (4,)
    ]


async def test_a_segment_that_fails_for_good_fails_the_parent_and_cancels_the_rest(
    conn: Conn, database_url: str
) -> None:
    parent = await submit(
        conn,
        params={"seconds": 60, "segment_seconds": 10, "frame_sleep_s": 0.05, "fail_segment": 1},
    )
    async with running_worker(database_url, fast_settings(concurrency=2, batch_size=1)):
        await _until(conn, parent.job_id, JobState.FAILED)
        failed = await job_now(conn, parent.job_id)
        await asyncio.sleep(1.0)  # running segments hear "cancelled" at their next heartbeat
        children = await job_children(conn, parent.job_id)
    assert failed.error_kind == "noop_failure"
    assert failed.error_message == (
        "segment 1 (10000-20000 ms) failed: this segment fails (fail_segment)"
    )
    by_state = {c.segment_index: c.state for c in children}
    assert by_state[1] is JobState.FAILED
    # Nothing is left to run: each other segment completed before the failure or was cancelled.
    assert set(by_state.values()) <= {JobState.COMPLETED, JobState.FAILED, JobState.CANCELLED}
    assert JobState.CANCELLED in by_state.values()
    events = await job_event_list(conn, parent.job_id)
    assert (events[-1].to_state, events[-1].actor) == ("failed", "segment 1")


async def test_cancelling_the_parent_cancels_every_segment_and_stops_the_running_ones(
    conn: Conn, database_url: str
) -> None:
    parent = await submit(conn, params={"seconds": 60, "segment_seconds": 10, "frame_sleep_s": 0.2})
    async with running_worker(database_url, fast_settings(concurrency=2, batch_size=2)) as w:
        # Polling the database (ASYNC110 asks for an in-process Event).
        while not any(  # noqa: ASYNC110
            c.state is JobState.RUNNING for c in await job_children(conn, parent.job_id)
        ):
            await asyncio.sleep(0.05)
        cancelled = await job_cancel(conn, parent.job_id, tenant="acme")
        assert cancelled is not None
        assert cancelled.state is JobState.CANCELLED
        children = await job_children(conn, parent.job_id)
        assert {c.state for c in children} == {JobState.CANCELLED}
        deadline = asyncio.get_running_loop().time() + 10
        while w.worker.stats.stopped < 1:  # the running ones stop at their next heartbeat
            assert asyncio.get_running_loop().time() < deadline
            await asyncio.sleep(0.05)
    assert all(c.attempts <= 1 for c in await job_children(conn, parent.job_id))


async def test_cancelling_a_segment_cancels_its_parent_and_the_other_segments(
    conn: Conn, database_url: str
) -> None:
    parent = await submit(conn, params={"seconds": 30, "segment_seconds": 10})
    claimed = await job_claim(conn, worker_id="w", batch_size=1, lease_seconds=30)
    assert [j.job_id for j in claimed] == [parent.job_id]
    await _split(conn, claimed[0].job_id, claimed[0].lease_token, 3)
    child = segment_job_id(parent.job_id, 2)
    await job_cancel(conn, child, tenant="acme")
    assert (await job_now(conn, parent.job_id)).state is JobState.CANCELLED
    assert {c.state for c in await job_children(conn, parent.job_id)} == {JobState.CANCELLED}


async def _split(conn: Conn, job_id: uuid.UUID, token: uuid.UUID | None, n: int) -> None:
    assert token is not None
    segments = [(segment_job_id(job_id, i), i * 10_000, (i + 1) * 10_000, 10) for i in range(n)]
    await job_split(conn, job_id, token, segments=segments)


async def test_impossible_trees_are_refused_by_the_database(conn: Conn, database_url: str) -> None:
    plain = await submit(conn)
    parent = await submit(conn, params={"seconds": 30})
    claimed = await job_claim(conn, worker_id="w", batch_size=2, lease_seconds=30)
    token = next(j.lease_token for j in claimed if j.job_id == parent.job_id)
    await _split(conn, parent.job_id, token, 3)
    insert = """INSERT INTO vidjobs.jobs (job_id, tenant, pipeline, parent_id, segment_index,
                segment_start_ms, segment_end_ms) VALUES (%s, %s, 'noop', %s, %s, 0, 10)"""
    cases = [
        ("acme", plain.job_id, 0),  # a plain job is nobody's parent
        ("acme", segment_job_id(parent.job_id, 0), 0),  # a segment is nobody's parent
        ("acme", parent.job_id, 3),  # no slot 3 in a split into 3
        ("other", parent.job_id, 1),  # another tenant's tree
    ]
    for tenant, parent_id, index in cases:
        _refused(database_url, insert, (uuid.uuid4(), tenant, parent_id, index))
    _refused(  # a segment without its range
        database_url,
        "INSERT INTO vidjobs.jobs (job_id, tenant, pipeline, parent_id) VALUES (%s, 'acme', "
        "'noop', %s)",
        (uuid.uuid4(), parent.job_id),
    )


def _refused(url: str, statement: str, args: tuple[object, ...]) -> None:
    """The statement or its commit (the deferred tree check) fails with an integrity error."""
    c = psycopg.connect(url)
    try:
        with pytest.raises(psycopg.errors.IntegrityError):  # noqa: PT012 - commit is where it fails
            c.execute(statement, args)  # type: ignore[arg-type]
            c.commit()
    finally:
        c.close()


async def test_a_tenant_with_a_split_video_does_not_starve_another(
    conn: Conn, database_url: str
) -> None:
    # Tenant acme's 2-hour video becomes 120 one-minute segments, all due at once.
    parent = await submit(conn, params={"seconds": 7200, "segment_seconds": 60})
    claimed = await job_claim(conn, worker_id="w", batch_size=1, lease_seconds=30)
    token = claimed[0].lease_token
    assert token is not None
    plan = plan_segments(7200, 1.0, 60)
    await job_split(
        conn,
        parent.job_id,
        token,
        segments=[(segment_job_id(parent.job_id, i), *p) for i, p in enumerate(plan)],
    )
    other = (
        await job_insert(conn, job_id=uuid.uuid4(), tenant="globex", pipeline="noop", params={})
    ).job
    # The next claim takes globex's one job beside acme's segments: tenants take turns.
    got = await job_claim(conn, worker_id="w", batch_size=4, lease_seconds=30)
    assert other.job_id in {j.job_id for j in got}
    assert {j.tenant for j in got} == {"acme", "globex"}
    assert all(j.parent_id == parent.job_id for j in got if j.tenant == "acme")


async def test_deleting_a_split_job_takes_its_segments_and_their_trails(
    conn: Conn, database_url: str
) -> None:
    parent = await submit(conn, params={"seconds": 30, "segment_seconds": 10})
    async with running_worker(database_url, fast_settings()):
        await _until(conn, parent.job_id, JobState.COMPLETED)
    child = segment_job_id(parent.job_id, 0)
    refused = await job_delete(conn, child, tenant="acme")  # a segment goes with its parent only
    assert refused is not None
    assert refused.parent_id == parent.job_id
    assert sql(database_url, "SELECT count(*) FROM vidjobs.jobs") == [(4,)]
    deleted = await job_delete(conn, parent.job_id, tenant="acme")
    assert deleted is not None
    assert deleted.job_id == parent.job_id
    assert sql(database_url, "SELECT count(*) FROM vidjobs.jobs") == [(0,)]
    assert sql(database_url, "SELECT count(*) FROM vidjobs.job_events") == [(0,)]
