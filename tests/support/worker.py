"""A real worker loop (``run_worker``: pool, LISTEN, loop) in the test's own event loop.

The integration tests of the worker drive it here instead of as a process, so they can stop it
as SIGTERM would and read its stats; ``tests/support/processes.py`` runs the real process.
"""

from __future__ import annotations

import asyncio
import contextlib
import uuid
from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Any

from tests.support.db import Conn
from vidjobs.db.jobs import job_get, job_insert
from vidjobs.db.settings import DatabaseSettings
from vidjobs.schema import Job
from vidjobs.worker.main import run_worker
from vidjobs.worker.pipelines.registry import PipelineRegistry, noop_only
from vidjobs.worker.runner import Worker, WorkerStats
from vidjobs.worker.settings import WorkerSettings

__all__ = ["RunningWorker", "fast_settings", "job_now", "running_worker", "submit"]


def fast_settings(**kw: Any) -> WorkerSettings:
    """Worker settings with short intervals, so tests see heartbeats and backoff quickly."""
    base: dict[str, Any] = {
        "concurrency": 2,
        "batch_size": 10,
        "lease_seconds": 10.0,
        "heartbeat_interval_s": 0.2,
        "progress_interval_s": 0.1,
        "grace_seconds": 5.0,
        "poll_interval_s": 0.05,
        "idle_backoff_max_s": 0.2,
        "worker_id": f"test-{uuid.uuid4().hex[:6]}",
    }
    base.update(kw)
    return WorkerSettings(**base)


@dataclass
class RunningWorker:
    """A worker loop running as a task of the test's event loop."""

    worker: Worker
    task: asyncio.Task[WorkerStats]

    async def stop(self, within: float = 30.0) -> WorkerStats:
        """Ask it to stop (as SIGTERM would) and wait for it to return."""
        self.worker.stop()
        return await asyncio.wait_for(self.task, within)


@contextlib.asynccontextmanager
async def running_worker(
    url: str,
    settings: WorkerSettings | None = None,
    registry: PipelineRegistry | None = None,
    *,
    drain: bool = False,
) -> AsyncIterator[RunningWorker]:
    """Run ``worker.main.run_worker`` (pool, LISTEN, loop) until the block ends."""
    ready: asyncio.Future[Worker] = asyncio.get_running_loop().create_future()

    async def on_ready(w: Worker) -> None:
        ready.set_result(w)

    task = asyncio.create_task(
        run_worker(
            DatabaseSettings(url=url),
            settings or fast_settings(),
            registry or noop_only(),
            drain=drain,
            install_signals=False,
            on_ready=on_ready,
        )
    )
    await asyncio.wait({ready, task}, timeout=30, return_when=asyncio.FIRST_COMPLETED)
    if task.done():
        task.result()  # raises what broke the start
    rw = RunningWorker(ready.result(), task)
    try:
        yield rw
    finally:
        if not task.done():
            await rw.stop()


async def submit(conn: Conn, pipeline: str = "noop", **kw: Any) -> Job:
    """Insert one job at the real now (a running worker claims it); ``kw`` go to ``job_insert``."""
    kw.setdefault("params", {})
    result = await job_insert(conn, job_id=uuid.uuid4(), tenant="acme", pipeline=pipeline, **kw)
    return result.job


async def job_now(conn: Conn, job_id: uuid.UUID) -> Job:
    """The job as it is in the database now."""
    job = await job_get(conn, job_id)
    assert job is not None
    return job
