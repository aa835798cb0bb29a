"""The ``noop`` pipeline: the queue without the video stack (benchmarks, smoke and chaos tests)."""

from __future__ import annotations

import asyncio
import json

from vidjobs.blobs import BlobStore, results_key
from vidjobs.schema import Job
from vidjobs.schema.segments import plan_segments, segment_samples
from vidjobs.worker.outcome import JobFailure
from vidjobs.worker.pipelines.contract import JobContext, SplitInto

__all__ = ["NoopPipeline"]


class NoopPipeline:
    """Does nothing, optionally for ``params["sleep_s"]`` seconds (benchmarks, smoke tests).

    With ``sleep_s`` it reports progress in ten steps so progress and cancellation can be
    exercised without the video stack. ``params["fail"]`` fails the run with that message
    (``fail_kind``, ``permanent``). With ``params["results"]`` and a blob store it uploads a
    tiny results document naming the attempt that wrote it (job id, attempt, lease token,
    worker), so the chaos suite can check that every stored result belongs to the attempt
    that completed the job; a blob-store outage then hands the job back, as for a video.

    Segments without the video stack (``bench/segments.py``, the segment tests): with
    ``params["seconds"]`` it stands for a video of that many seconds sampled at 1 frame/s,
    sleeping ``frame_sleep_s`` per frame; longer than ``segment_seconds``, it is split into
    segment jobs as ``yolo_ocr`` splits a long video, each segment sleeps through its frames,
    and the last run "merges" (no output). ``fail_segment`` fails that segment permanently.

    Args:
        store: where ``results`` documents go; None (benchmarks) never writes one.
    """

    def __init__(self, store: BlobStore | None = None) -> None:
        self._store = store

    async def run(self, ctx: JobContext) -> str | SplitInto | None:
        """Return at once, or sleep ``sleep_s`` in ten steps while reporting progress."""
        params = ctx.job.params
        if "seconds" in params:
            return await _frames(ctx)
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


async def _frames(ctx: JobContext) -> SplitInto | None:
    """A video of ``seconds`` at 1 frame/s: split, a segment's frames, or the merge."""
    job, params = ctx.job, ctx.job.params
    if job.segments is not None:
        return None  # the merge: every segment is done
    samples = max(1, int(params["seconds"]))
    segment_s = float(params.get("segment_seconds", 0) or 0)
    if job.parent_id is None and segment_s > 0 and samples > segment_s:
        return SplitInto(tuple(plan_segments(samples, 1.0, segment_s)))
    first, stop = (0, samples)
    if job.parent_id is not None:
        first, stop = segment_samples(job.segment_start_ms or 0, job.segment_end_ms or 0, 1.0)
    if job.parent_id is not None and params.get("fail_segment") == job.segment_index:
        raise JobFailure("this segment fails (fail_segment)", kind="noop_failure", permanent=True)
    sleep_s = float(params.get("frame_sleep_s", 0) or 0)
    for done in range(1, stop - first + 1):
        await ctx.sleep(sleep_s)
        ctx.progress(done, stop - first)
    return None


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
