"""A job's final write during a database outage: retried while the lease may hold, then given up.

The outage is real but confined to the test's own database (``ALLOW_CONNECTIONS false`` and
its sessions terminated), so the shared server keeps serving the other tests. The case where
Postgres comes back within the lease (the same attempt completes the job) is the chaos test
``tests/chaos/test_postgres_outage_completion.py``, with a real server stop.
"""

from __future__ import annotations

import asyncio
import logging
import time

import psycopg
import pytest
from psycopg import sql
from psycopg.conninfo import conninfo_to_dict

from tests.support.waiting import wait_for_async
from tests.support.worker import fast_settings, running_worker, submit
from vidjobs.db.jobs import job_event_list, job_get
from vidjobs.schema import JobState
from vidjobs.worker.outcome import JobFailure
from vidjobs.worker.pipelines.contract import JobContext
from vidjobs.worker.pipelines.registry import PipelineRegistry

pytestmark = [pytest.mark.integration, pytest.mark.anyio]

# Longer than the pool's connect timeout (5 s: how long one try waits while the database is
# unreachable), so a write is tried more than once before the lease runs out.
LEASE_S = 6.0
GIVEN_UP = "until the lease expired"


async def _cut_off(admin_url: str, database_url: str, *, on: bool) -> None:
    """Refuse (``on``) or allow again every connection to the test's database."""
    name = conninfo_to_dict(database_url)["dbname"]
    async with await psycopg.AsyncConnection.connect(admin_url, autocommit=True) as admin:
        flag = sql.SQL("false" if on else "true")
        await admin.execute(
            sql.SQL("ALTER DATABASE {} ALLOW_CONNECTIONS {}").format(sql.Identifier(name), flag)
        )
        if on:
            await admin.execute(
                "SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE datname = %s",
                (name,),
            )


@pytest.mark.parametrize("outcome", ["complete", "fail"])
async def test_final_write_is_given_up_once_the_lease_surely_expired(
    outcome: str, database_url: str, pg_server_url: str, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO)
    gate = asyncio.Event()

    class Gated:
        async def run(self, ctx: JobContext) -> str | None:
            await gate.wait()
            if outcome == "fail" and ctx.job.attempts == 1:
                raise JobFailure(
                    "fails on its first attempt", kind="gated_failure", permanent=False
                )
            return None

        async def close(self) -> None:
            return None

    async with await psycopg.AsyncConnection.connect(database_url, autocommit=True) as c:
        job = await submit(c, pipeline="gated", max_attempts=3)
    settings = fast_settings(lease_seconds=LEASE_S, heartbeat_interval_s=0.5)
    registry = PipelineRegistry({"gated": Gated})
    try:
        async with running_worker(database_url, settings, registry) as rw:

            async def running() -> bool:
                async with await psycopg.AsyncConnection.connect(database_url) as c:
                    j = await job_get(c, job.job_id)
                return j is not None and j.state is JobState.RUNNING

            await wait_for_async(running)
            await asyncio.sleep(0.6)  # at least one heartbeat renewed the lease
            await _cut_off(pg_server_url, database_url, on=True)
            cut_at = time.monotonic()
            gate.set()  # the job ends while its database is unreachable

            async def given_up() -> bool:
                return GIVEN_UP in caplog.text

            await wait_for_async(given_up, within=LEASE_S + 15)
            waited = time.monotonic() - cut_at
            # Retried while the lease could still be valid (renewed <= 0.5 s before the cut),
            # given up after it surely expired: at most one pool timeout (5 s) later.
            assert LEASE_S - 0.5 <= waited <= LEASE_S + 5 + 2, (waited, caplog.text[-2000:])
            assert "not written yet" in caplog.text
            assert "heartbeat of job" in caplog.text  # the heartbeats kept trying too
            assert (rw.worker.stats.completed, rw.worker.stats.failed) == (0, 0)

            await _cut_off(pg_server_url, database_url, on=False)

            # Another claim (this worker's own, here) takes the expired lease back and runs
            # the job again: the given-up attempt cost one attempt, nothing more.
            async def done() -> bool:
                async with await psycopg.AsyncConnection.connect(database_url) as c:
                    j = await job_get(c, job.job_id)
                return j is not None and j.state is JobState.COMPLETED

            await wait_for_async(done, within=30)
    finally:
        await _cut_off(pg_server_url, database_url, on=False)
    async with await psycopg.AsyncConnection.connect(database_url, autocommit=True) as c:
        final = await job_get(c, job.job_id)
        events = await job_event_list(c, job.job_id)
    assert final is not None
    assert final.attempts == 2
    moves = [(e.from_state, e.to_state, e.attempt, e.error_kind) for e in events]
    assert moves == [
        (None, JobState.PENDING, 0, None),
        (JobState.PENDING, JobState.RUNNING, 1, None),
        (JobState.RUNNING, JobState.RUNNING, 2, "lease_expired"),
        (JobState.RUNNING, JobState.COMPLETED, 2, None),
    ], moves
