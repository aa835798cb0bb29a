"""`vidjobs db prune` as an operator runs it: old finished jobs lose rows, events and blobs."""

from __future__ import annotations

import asyncio
import uuid
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import psycopg
import pytest

from tests.support.media import mp4_bytes
from tests.support.processes import run_vidjobs, service_env
from vidjobs.blobs import BlobSettings, open_blob_store, results_key, video_key
from vidjobs.db.jobs import job_cancel, job_event_list, job_get, job_insert
from vidjobs.db.leases import job_claim, job_complete
from vidjobs.db.webhooks import delivery_list, endpoint_add

pytestmark = [pytest.mark.integration, pytest.mark.anyio]

Conn = psycopg.AsyncConnection[Any]


async def _finished_job(conn: Conn, store: Any, *, at: datetime, completed: bool) -> uuid.UUID:
    job_id = uuid.uuid4()
    store.put_bytes(video_key(job_id), mp4_bytes(64))
    await job_insert(conn, job_id=job_id, tenant="acme", pipeline="noop", params={},
                     input_key=video_key(job_id), now=at)  # fmt: skip
    if completed:
        [held] = await job_claim(conn, worker_id="w", batch_size=1, lease_seconds=30, now=at)
        assert held.job_id == job_id
        assert held.lease_token is not None
        store.put_bytes(results_key(job_id), b"{}")
        await job_complete(conn, job_id, held.lease_token, output_key=results_key(job_id), now=at)
    else:
        await job_cancel(conn, job_id, now=at)
    return job_id


async def test_prune_removes_old_finished_jobs_with_their_blobs(
    database_url: str, tmp_path: Path
) -> None:
    blob_dir = tmp_path / "blobs"
    store = open_blob_store(BlobSettings(backend="local", directory=blob_dir))
    store.ensure_ready()
    now = datetime.now(UTC)
    async with await psycopg.AsyncConnection.connect(database_url, autocommit=True) as conn:
        old_done = await _finished_job(conn, store, at=now - timedelta(days=40), completed=True)
        old_cancelled = await _finished_job(
            conn, store, at=now - timedelta(days=35), completed=False
        )
        recent_done = await _finished_job(conn, store, at=now - timedelta(days=2), completed=True)
        old_pending = uuid.uuid4()
        await job_insert(conn, job_id=old_pending, tenant="acme", pipeline="noop", params={},
                         now=now - timedelta(days=60))  # fmt: skip

        env = service_env(database_url, BlobSettings(backend="local", directory=blob_dir))
        proc = await asyncio.to_thread(
            run_vidjobs, "db", "prune", "--older-than-days", "30", env=env
        )
        assert proc.returncode == 0, proc.stderr
        assert "pruned 2 job(s)" in proc.stdout

        for gone in (old_done, old_cancelled):
            assert await job_get(conn, gone) is None
            assert await job_event_list(conn, gone) == []
            assert not store.exists(video_key(gone))
            assert not store.exists(results_key(gone))
        assert await job_get(conn, recent_done) is not None
        assert store.exists(video_key(recent_done))
        assert store.exists(results_key(recent_done))
        assert await job_get(conn, old_pending) is not None
    store.close()


async def test_prune_removes_webhook_deliveries_that_ended_long_ago(
    database_url: str, tmp_path: Path
) -> None:
    blob_dir = tmp_path / "blobs"
    store = open_blob_store(BlobSettings(backend="local", directory=blob_dir))
    store.ensure_ready()
    now = datetime.now(UTC)
    async with await psycopg.AsyncConnection.connect(database_url, autocommit=True) as conn:
        await endpoint_add(conn, "acme", "https://example.com/hooks")
        jobs = [await _finished_job(conn, store, at=now, completed=True) for _ in range(4)]
        # Delivered 40 days ago, failed 35 days ago, delivered yesterday, still pending.
        for job_id, state, days in zip(
            jobs, ["delivered", "failed", "delivered", "pending"], [40, 35, 1, 0], strict=True
        ):
            await conn.execute(
                "UPDATE vidjobs.webhook_deliveries SET state = %s,"
                " finished_at = CASE WHEN %s <> 'pending' THEN now() - %s END WHERE job_id = %s",
                (state, state, timedelta(days=days), job_id),
            )
        env = service_env(database_url, BlobSettings(backend="local", directory=blob_dir))
        proc = await asyncio.to_thread(
            run_vidjobs, "db", "prune", "--older-than-days", "30", env=env
        )
        assert proc.returncode == 0, proc.stderr
        assert "2 webhook deliveries" in proc.stdout
        kept = [d.job_id for d in await delivery_list(conn, tenant="acme")]
        assert sorted(kept) == sorted(jobs[2:])
    store.close()
