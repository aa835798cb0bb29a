"""The ``yolo_ocr`` job: download the video, analyse it, upload the results document.

The analysis itself (``worker.pipeline.VideoAnalyzer``) is synchronous and CPU bound; it runs
in an executor (``worker.executors``) so the event loop stays free for heartbeats. Every
outcome becomes a job outcome the loop understands: a bad video or missing model fails the
job for good, a blob-store outage hands the job back for later (the attempt not counted), any
other blob-store error fails the attempt (retried with backoff), a stop request ends the work.
The temporary directory holding the video is removed whatever happens.
"""

from __future__ import annotations

import asyncio
import logging
import shutil
import tempfile
from pathlib import Path
from typing import Any, Protocol

from vidjobs.blobs import (
    BlobNotFound,
    BlobStore,
    BlobStoreError,
    BlobStoreUnavailable,
    results_key,
    video_key,
)
from vidjobs.worker.pipelines.contract import JobContext, JobFailure, JobStopped

__all__ = ["Analyze", "VideoPipeline", "blob_failure", "pipeline_failure"]

log = logging.getLogger(__name__)


class Analyze(Protocol):
    """Runs ``VideoAnalyzer.analyze`` somewhere (a thread, a child process) for one job."""

    async def __call__(self, path: Path, params: dict[str, Any], ctx: JobContext) -> bytes:
        """Return the results JSON; raise the pipeline's errors, or JobStopped."""
        ...

    async def close(self) -> None:
        """Release threads, processes and models."""
        ...


def blob_failure(what: str, exc: BlobStoreError) -> JobFailure:
    """Missing input: permanent; store unavailable: infrastructure (not counted); else transient."""
    if isinstance(exc, BlobNotFound):
        return JobFailure("input_missing", f"{what}: no blob at {exc.key}", permanent=True)
    if isinstance(exc, BlobStoreUnavailable):
        return JobFailure(
            "blob_unavailable",
            f"{what}: blob store unavailable: {exc}",
            permanent=False,
            infrastructure=True,
        )
    return JobFailure("blob_error", f"{what}: {exc}", permanent=False)


def pipeline_failure(exc: Exception) -> Exception:
    """Map ``worker.pipeline`` errors to what the loop understands (others pass through)."""
    from vidjobs.worker.pipelines.yolo_ocr.errors import Cancelled, PipelineError

    if isinstance(exc, Cancelled):
        return JobStopped(str(exc))
    if isinstance(exc, PipelineError):
        # invalid_video, invalid_params, model_unavailable: retrying cannot help.
        return JobFailure(exc.kind, str(exc), permanent=True)
    return exc


class VideoPipeline:
    """The ``yolo_ocr`` pipeline as the worker loop sees it.

    Args:
        store: the blob store (one per process; its methods block, so they run in threads).
        analyze: where the analysis runs; it owns the loaded models.
        temp_dir: parent of the per-job temporary directories (None: the system's).
    """

    def __init__(self, store: BlobStore, analyze: Analyze, temp_dir: Path | None = None) -> None:
        self._store = store
        self._analyze = analyze
        self._temp_dir = temp_dir

    async def run(self, ctx: JobContext) -> str | None:
        """Download → analyse → upload; returns the results key."""
        job = ctx.job
        key = job.input_key or video_key(job.job_id)
        work = Path(tempfile.mkdtemp(prefix=f"vidjobs-{job.job_id}-", dir=self._temp_dir))
        try:
            try:
                path = await asyncio.to_thread(
                    self._store.get_to_tempfile, key, suffix=".mp4", directory=work
                )
            except BlobStoreError as exc:
                raise blob_failure("downloading the video", exc) from exc
            if ctx.should_stop():
                raise JobStopped(ctx.stop_reason or "stopped")
            try:
                document = await self._analyze(path, dict(job.params), ctx)
            except JobStopped:
                raise
            except Exception as exc:
                mapped = pipeline_failure(exc)
                if mapped is exc:
                    raise
                raise mapped from exc
            out = results_key(job.job_id)
            await ctx.ensure_held()  # a stale attempt must not replace a newer one's results
            try:
                await asyncio.to_thread(
                    self._store.put_bytes, out, document, content_type="application/json"
                )
            except BlobStoreError as exc:
                raise blob_failure("uploading the results", exc) from exc
            return out
        finally:
            shutil.rmtree(work, ignore_errors=True)

    async def close(self) -> None:
        """Stop the executor and close the blob store."""
        await self._analyze.close()
        await asyncio.to_thread(self._store.close)
