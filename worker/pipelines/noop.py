"""The ``noop`` pipeline: the queue without the video stack (benchmarks, smoke and chaos tests)."""

from __future__ import annotations

import asyncio
import json

from vidjobs.blobs import BlobStore, results_key
from vidjobs.schema import Job
from vidjobs.worker.outcome import JobFailure
from vidjobs.worker.pipelines.contract import JobContext

__all__ = ["NoopPipeline"]


class NoopPipeline:
    """Does nothing, optionally for ``params["sleep_s"]`` seconds (benchmarks, smoke tests).

    With ``sleep_s`` it reports progress in ten steps so progress and cancellation can be
    exercised without the video stack. ``params["fail"]`` fails the run with that message
    (``fail_kind``, ``permanent``). With ``params["results"]`` and a blob store it uploads a
    tiny results document naming the attempt that wrote it (job id, attempt, lease token,
    worker), so the chaos suite can check that every stored result belongs to the attempt
    that completed the job; a blob-store outage then hands the job back, as for a video.

    Args:
        store: where ``results`` documents go; None (benchmarks) never writes one.
    """

    def __init__(self, store: BlobStore | None = None) -> None:
        self._store = store

    async def run(self, ctx: JobContext) -> str | None:
        """Return at once, or sleep ``sleep_s`` in ten steps while reporting progress."""
        params = ctx.job.params
        sleep_s = float(params.get("sleep_s", 0) or 0)
        if sleep_s > 0:
            steps = 10
            for i in range(steps):
                await ctx.sleep(sleep_s / steps)
                ctx.progress(i + 1, steps)
        if params.get("fail"):
            raise JobFailure(
                str(params["fail"]),
                kind=str(params.get("fail_kind", "noop_failure")),
                permanent=bool(params.get("permanent", False)),
            )
        if params.get("results") and self._store is not None:
            await ctx.ensure_held()
            ctx.step = "uploading the results"
            return await _write_results(self._store, ctx.job)
        return None

    async def close(self) -> None:
        """Close the blob store, if any."""
        if self._store is not None:
            await asyncio.to_thread(self._store.close)


async def _write_results(store: BlobStore, job: Job) -> str:
    """Upload the document naming this attempt; blob-store errors go to ``classify``."""
    doc = {
        "job_id": str(job.job_id),
        "pipeline": job.pipeline,
        "attempt": job.attempts,
        "lease_token": str(job.lease_token),
        "worker_id": job.worker_id,
    }
    key = results_key(job.job_id)
    data = json.dumps(doc, sort_keys=True).encode()
    await asyncio.to_thread(store.put_bytes, key, data, content_type="application/json")
    return key
