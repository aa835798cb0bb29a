"""The pipelines a worker can run, by the name stored in ``jobs.pipeline``.

A pipeline is an object with an async ``run(ctx)`` that returns the job's output key (or
None) and a ``close()``. The worker loop knows nothing else about it: the video pipeline
(``yolo_ocr``) and the ``noop`` pipeline of the queue benchmark plug in the same way.
"""

from __future__ import annotations

import asyncio
import json
import threading
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass, field
from typing import Protocol

from vidjobs.blobs import BlobStore, BlobStoreError, BlobStoreUnavailable, results_key
from vidjobs.schema import Job

__all__ = [
    "JobContext",
    "JobFailure",
    "JobStopped",
    "NoopPipeline",
    "Pipeline",
    "PipelineRegistry",
    "StopReason",
    "noop_only",
]

#: Why the worker asked a running job to stop.
StopReason = str  # "cancelled" | "lease_lost" | "shutdown"


class JobFailure(Exception):
    """A pipeline's way to fail its job with a kind the API shows.

    Args:
        kind: short machine-readable class of error, e.g. ``invalid_video``.
        message: what a person should read in ``error_message``.
        permanent: True fails the job at once; False counts an attempt and retries with backoff.
        infrastructure: the blob store or the database failed, not the job: the job is handed
            back after a growing delay without counting an attempt (``job_retry_later``), so
            an outage cannot use up ``max_attempts``. Implies not permanent.
    """

    def __init__(
        self, kind: str, message: str, *, permanent: bool, infrastructure: bool = False
    ) -> None:
        super().__init__(message)
        self.kind = kind
        self.message = message
        self.permanent = permanent and not infrastructure
        self.infrastructure = infrastructure


class JobStopped(Exception):
    """Raised by a pipeline that noticed ``ctx.should_stop()`` and gave up its work."""


@dataclass(eq=False)
class JobContext:
    """What a pipeline gets for one job.

    ``progress`` and ``should_stop`` are safe to call from any thread, so a pipeline that
    runs its frames in a worker thread may call them from there.
    """

    job: Job
    _stop: threading.Event = field(default_factory=threading.Event, repr=False)
    stop_reason: StopReason | None = None
    frames_done: int = 0
    frames_total: int | None = None
    progress_dirty: bool = False
    _async_stop: asyncio.Event = field(default_factory=asyncio.Event, repr=False)
    renew: Callable[[], Awaitable[bool]] | None = field(default=None, repr=False)
    """Heartbeat this job now; True while this attempt still holds it (set by the worker)."""

    def progress(self, frames_done: int, frames_total: int | None) -> None:
        """Record how far the job got; the worker writes it out at most every interval."""
        self.frames_done = frames_done
        self.frames_total = frames_total
        self.progress_dirty = True

    def should_stop(self) -> bool:
        """True once the job was cancelled, lost its lease, or the worker shuts down."""
        return self._stop.is_set()

    def request_stop(self, reason: StopReason) -> None:
        """Ask the pipeline to stop (worker side; must run on the event loop's thread)."""
        if self.stop_reason is None:
            self.stop_reason = reason
        self._stop.set()
        self._async_stop.set()

    async def ensure_held(self) -> None:
        """Renew the lease now; raise JobStopped if this attempt no longer holds the job.

        Call it right before a write outside Postgres that a newer attempt makes too (the
        results upload). Fenced database writes cannot overwrite a newer attempt, but a blob
        put can: a worker paused or cut off past its lease would otherwise wake up and
        replace the new holder's results. After a successful renewal nobody can take the
        job for another ``lease_seconds``, which the upload must fit in.

        Raises:
            JobStopped: the job was cancelled or taken back by another worker.
            DatabaseUnavailable: the lease could not be confirmed (the job is handed back).
        """
        if self.renew is not None and not await self.renew():
            self.request_stop(self.stop_reason or "lease_lost")
        if self.should_stop():
            raise JobStopped(self.stop_reason or "stopped")

    async def sleep(self, seconds: float) -> None:
        """Sleep, but return early (raising JobStopped) as soon as the job must stop."""
        try:
            await asyncio.wait_for(self._async_stop.wait(), seconds)
        except TimeoutError:
            return
        raise JobStopped(self.stop_reason or "stopped")


class Pipeline(Protocol):
    """One kind of job."""

    async def run(self, ctx: JobContext) -> str | None:
        """Do the job; return the output blob key, or None when there is no output.

        Raises:
            JobFailure: the job failed in a way the pipeline understands.
            JobStopped: ``ctx.should_stop()`` turned true and the work was abandoned.
        """
        ...

    async def close(self) -> None:
        """Release what the pipeline loaded (models, executors); called once at exit."""
        ...


class NoopPipeline:
    """Does nothing, optionally for ``params["sleep_s"]`` seconds (benchmarks, smoke tests).

    With ``sleep_s`` it reports progress in ten steps so progress and cancellation can be
    exercised without the video stack. With ``params["results"]`` and a blob store it uploads
    a tiny results document naming the attempt that wrote it (job id, attempt, lease token,
    worker), so the chaos suite can check that every stored result belongs to the attempt
    that completed the job; a blob-store outage then hands the job back, as for a video.

    Args:
        store: where ``results`` documents go; None (benchmarks) never writes one.
    """

    def __init__(self, store: BlobStore | None = None) -> None:
        self._store = store

    async def run(self, ctx: JobContext) -> str | None:
        """Return at once, or sleep ``sleep_s`` in ten steps while reporting progress."""
        sleep_s = float(ctx.job.params.get("sleep_s", 0) or 0)
        if sleep_s > 0:
            steps = 10
            for i in range(steps):
                await ctx.sleep(sleep_s / steps)
                ctx.progress(i + 1, steps)
        if ctx.job.params.get("fail"):
            raise JobFailure(
                str(ctx.job.params.get("fail_kind", "noop_failure")),
                str(ctx.job.params["fail"]),
                permanent=bool(ctx.job.params.get("permanent", False)),
            )
        if ctx.job.params.get("results") and self._store is not None:
            await ctx.ensure_held()
            return await _write_noop_results(self._store, ctx.job)
        return None

    async def close(self) -> None:
        """Close the blob store, if any."""
        if self._store is not None:
            await asyncio.to_thread(self._store.close)


async def _write_noop_results(store: BlobStore, job: Job) -> str:
    """Upload the noop results document; an outage hands the job back (attempt not counted)."""
    doc = {
        "job_id": str(job.job_id),
        "pipeline": job.pipeline,
        "attempt": job.attempts,
        "lease_token": str(job.lease_token),
        "worker_id": job.worker_id,
    }
    key = results_key(job.job_id)
    try:
        await asyncio.to_thread(
            store.put_bytes,
            key,
            json.dumps(doc, sort_keys=True).encode(),
            content_type="application/json",
        )
    except BlobStoreUnavailable as exc:
        raise JobFailure(
            "blob_unavailable",
            f"uploading the results: blob store unavailable: {exc}",
            permanent=False,
            infrastructure=True,
        ) from exc
    except BlobStoreError as exc:
        raise JobFailure("blob_error", f"uploading the results: {exc}", permanent=False) from exc
    return key


class PipelineRegistry:
    """Name → pipeline, built lazily so a worker only loads the models it needs.

    Args:
        factories: pipeline name → zero-argument callable that builds the pipeline the first
            time a job of that name is claimed (the video model loads once per process).
    """

    def __init__(self, factories: Mapping[str, Callable[[], Pipeline]]) -> None:
        self._factories = dict(factories)
        self._built: dict[str, Pipeline] = {}
        self._lock = asyncio.Lock()

    @property
    def names(self) -> tuple[str, ...]:
        """Every pipeline this worker can run."""
        return tuple(sorted(self._factories))

    async def get(self, name: str) -> Pipeline | None:
        """The pipeline called ``name``, built on first use; None if unknown."""
        built = self._built.get(name)
        if built is not None:
            return built
        factory = self._factories.get(name)
        if factory is None:
            return None
        async with self._lock:
            if name not in self._built:
                # Building may load a model for seconds: keep the event loop (heartbeats) free.
                self._built[name] = await asyncio.to_thread(factory)
            return self._built[name]

    async def close(self) -> None:
        """Close every pipeline that was built."""
        for pipeline in self._built.values():
            await pipeline.close()
        self._built.clear()


def noop_only() -> PipelineRegistry:
    """A registry with just the ``noop`` pipeline (benchmarks, queue tests)."""
    return PipelineRegistry({"noop": NoopPipeline})
