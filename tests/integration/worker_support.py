"""Helpers of the worker tests: start a real worker loop in the test's event loop, poll jobs."""

from __future__ import annotations

import asyncio
import contextlib
import time
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass
from typing import Any

import psycopg

from vidjobs.db.jobs import job_get, job_insert
from vidjobs.db.pool import DatabaseSettings
from vidjobs.schema import Job
from vidjobs.worker.main import run_worker
from vidjobs.worker.pipelines.registry import PipelineRegistry, noop_only
from vidjobs.worker.runner import Worker, WorkerStats
from vidjobs.worker.settings import WorkerSettings

Conn = psycopg.AsyncConnection[Any]


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
    """Insert one job now; ``params`` and the rest go to ``job_insert``."""
    kw.setdefault("params", {})
    result = await job_insert(conn, job_id=uuid.uuid4(), tenant="acme", pipeline=pipeline, **kw)
    return result.job


async def wait_for(
    check: Callable[[], Awaitable[bool]], within: float = 20.0, every: float = 0.02
) -> float:
    """Poll ``check`` until true; returns the seconds it took. Fails the test on timeout."""
    t0 = time.monotonic()
    while not await check():
        if time.monotonic() - t0 > within:
            raise AssertionError(f"condition not met within {within}s")
        await asyncio.sleep(every)
    return time.monotonic() - t0


async def job_now(conn: Conn, job_id: uuid.UUID) -> Job:
    """The job as it is in the database now."""
    job = await job_get(conn, job_id)
    assert job is not None
    return job
