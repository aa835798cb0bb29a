"""A real S3 outage longer than a job's whole attempt budget does not fail the job.

The worker hands a job whose blob upload met a dead S3 server back to the queue after a growing
delay without counting the attempt (``job_retry_later``); once the server is back the job
completes. A job that fails by itself during the same outage still uses up its attempts.
"""

from __future__ import annotations

import asyncio
import json
import time
import uuid
from pathlib import Path

import pytest

from tests.support.db import Conn
from tests.support.waiting import wait_for_async
from tests.support.worker import fast_settings, job_now, running_worker, submit
from vidjobs.blobs import BlobSettings, open_blob_store, results_key
from vidjobs.db.jobs import job_event_list
from vidjobs.devstack.embedded import EmbeddedS3
from vidjobs.schema import JobState
from vidjobs.worker.pipelines.noop import NoopPipeline
from vidjobs.worker.pipelines.registry import PipelineRegistry

RUNNING, PENDING = JobState.RUNNING, JobState.PENDING

pytestmark = [pytest.mark.integration, pytest.mark.anyio, pytest.mark.timeout(240)]

# With max_attempts 3, job_fail's two retries wait at least 2.5 s and 5 s: an outage longer
# than this used to fail a job for good (blob_unavailable) although nothing was wrong with it.
OLD_BUDGET_S = 2.5 + 5.0
HAND_BACKS = 3  # each job is handed back at least this often before S3 returns


async def _infra_retries(conn: Conn, job_id: uuid.UUID) -> int:
    cur = await conn.execute("SELECT infra_retries FROM vidjobs.jobs WHERE job_id = %s", (job_id,))
    row = await cur.fetchone()
    assert row is not None
    return int(row[0])


async def test_s3_outage_longer_than_the_attempt_budget_does_not_fail_jobs(
    conn: Conn, database_url: str, tmp_path: Path
) -> None:
    s3 = EmbeddedS3(tmp_path / "s3")
    s3.start()
    try:
        blobs = BlobSettings(
            backend="s3", s3_endpoint=s3.endpoint, s3_access_key=s3.access_key,
            s3_secret_key=s3.secret_key, s3_bucket="infra-retry", s3_region="us-east-1",
        )  # fmt: skip
        store = open_blob_store(blobs)
        store.ensure_ready()
        s3.stop()
        down_at = time.monotonic()

        last_chance = await submit(conn, params={"results": True}, max_attempts=1)
        default = await submit(conn, params={"results": True}, max_attempts=3)
        broken = await submit(
            conn, params={"fail": "ValueError: boom", "fail_kind": "unexpected_error"},
            max_attempts=2,
        )  # fmt: skip
        waiting = (last_chance.job_id, default.job_id)
        registry = PipelineRegistry({"noop": lambda: NoopPipeline(open_blob_store(blobs))})
        async with running_worker(database_url, fast_settings(), registry) as rw:

            async def handed_back_enough() -> bool:
                counts = [await _infra_retries(conn, j) for j in waiting]
                return min(counts) >= HAND_BACKS

            await wait_for_async(handed_back_enough, within=90, every=0.1)
            if (left := OLD_BUDGET_S + 0.5 - (time.monotonic() - down_at)) > 0:
                await asyncio.sleep(left)
            for job_id in waiting:
                during = await job_now(conn, job_id)
                assert during.state in (JobState.PENDING, JobState.RUNNING)
                assert during.attempts <= 1, "an outage must not use up attempts"
            down_s = time.monotonic() - down_at
            s3.start()

            async def settled() -> bool:
                jobs = [await job_now(conn, j) for j in (*waiting, broken.job_id)]
                return all(j.is_terminal for j in jobs)

            recovery_s = await wait_for_async(settled, within=120, every=0.1)
            stats = rw.worker.stats
        assert down_s > OLD_BUDGET_S

        for job_id in waiting:
            job = await job_now(conn, job_id)
            assert (job.state, job.attempts, job.error_kind) == (JobState.COMPLETED, 1, None)
            doc = json.loads(store.get_bytes(results_key(job_id)))
            assert (doc["attempt"], doc["lease_token"]) == (1, str(job.lease_token))
            events = await job_event_list(conn, job_id)
            backs = [e for e in events if (e.from_state, e.to_state) == (RUNNING, PENDING)]
            assert len(backs) >= HAND_BACKS
            assert {(e.attempt, e.error_kind) for e in backs} == {(0, "blob_unavailable")}
            assert all("blob store unavailable" in (e.error_message or "") for e in backs)
            # Each re-claim waited at least the lower bound of its jittered delay: 0.5 s * 2^k.
            claims = [e for e in events if e.to_state is JobState.RUNNING]
            for k, (back, claim) in enumerate(zip(backs, claims[1:], strict=False)):
                waited = (claim.at - back.at).total_seconds()
                assert waited >= 0.5 * 2**k - 0.01, (k, waited)

        # A job that fails by itself still uses up its attempts, outage or not.
        gone = await job_now(conn, broken.job_id)
        assert (gone.state, gone.attempts, gone.error_kind) == (
            JobState.FAILED, 2, "unexpected_error")  # fmt: skip
        assert stats.completed == 2
        assert stats.failed == 2
        assert stats.retried_later >= 2 * HAND_BACKS
        print(
            f"S3 down {down_s:.1f}s, hand-backs {stats.retried_later}, "
            f"settled {recovery_s:.1f}s after S3 started"
        )
        store.close()
    finally:
        s3.stop()
