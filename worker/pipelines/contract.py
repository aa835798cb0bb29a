"""What a pipeline is to the worker: the ``Pipeline`` protocol and the ``JobContext`` it gets.

A pipeline is an object with an async ``run(ctx)`` that returns the job's output key (or
None) and a ``close()``. The worker loop knows nothing else about it: the video pipeline
(``yolo_ocr``) and the ``noop`` pipeline of the queue benchmark plug in the same way. What it
raises is decided in ``worker/outcome.py``; which pipelines a worker runs, in ``registry.py``.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Protocol

from vidjobs.schema import Job
from vidjobs.worker.outcome import JobStopped

__all__ = ["JobContext", "Pipeline", "SplitInto", "StopReason"]

#: Why the worker asked a running job to stop.
StopReason = str  # "cancelled" | "lease_lost" | "shutdown"


@dataclass(eq=False)
class JobContext:
    """What a pipeline gets for one job.

    ``progress`` and ``should_stop`` are safe to call from any thread, so a pipeline that
    runs its frames in a worker thread may call them from there.
    """

    job: Job
    # A plain flag, not a threading.Event: it is set once on the loop's thread and only read
    # elsewhere (an attribute read is atomic), and an Event per job (a Condition and a lock)
    # cost a twentieth of the worker's CPU on a no-op drain.
    _stopped: bool = field(default=False, repr=False)
    stop_reason: StopReason | None = None
    frames_done: int = 0
    frames_total: int | None = None
    progress_dirty: bool = False
    _async_stop: asyncio.Event | None = field(default=None, repr=False)  # made by sleep()
    renew: Callable[[], Awaitable[bool]] | None = field(default=None, repr=False)
    """Heartbeat this job now; True while this attempt still holds it (set by the worker)."""
    step: str = ""
    """What the job is doing now (``downloading the video``); blob-store error messages
    start with it (``worker.outcome.classify``)."""
    stage_time: Callable[[str, float], None] | None = field(default=None, repr=False)
    """``stage_time(stage, seconds)``: how long one stage (decode, detect, ocr) took for one
    frame; set by the worker for its metrics, callable from any thread."""
    run_seconds: float = 0.0
    """How long the pipeline's ``run`` took (set by the worker when it returns)."""

    def progress(self, frames_done: int, frames_total: int | None) -> None:
        """Record how far the job got; the worker writes it out at most every interval."""
        self.frames_done = frames_done
        self.frames_total = frames_total
        self.progress_dirty = True

    def should_stop(self) -> bool:
        """True once the job was cancelled, lost its lease, or the worker shuts down."""
        return self._stopped

    def request_stop(self, reason: StopReason) -> None:
        """Ask the pipeline to stop (worker side; must run on the event loop's thread)."""
        if self.stop_reason is None:
            self.stop_reason = reason
        self._stopped = True
        if self._async_stop is not None:
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
        if self._async_stop is None:
            self._async_stop = asyncio.Event()
            if self._stopped:
                self._async_stop.set()
        try:
            await asyncio.wait_for(self._async_stop.wait(), seconds)
        except TimeoutError:
            return
        raise JobStopped(self.stop_reason or "stopped")


@dataclass(frozen=True)
class SplitInto:
    """What ``run`` returns instead of an output key to have the job analysed as segments.

    ``segments`` are ``(start_ms, end_ms, samples)`` in order (``schema.segments.plan_segments``);
    the worker writes them as segment jobs (``job_split``), and the job runs again, to merge
    their results, once the last of them completes (``JobContext.job.segments`` is then set).
    """

    segments: tuple[tuple[int, int, int], ...]


class Pipeline(Protocol):
    """One kind of job."""

    async def run(self, ctx: JobContext) -> str | SplitInto | None:
        """Do the job; return the output blob key, None when there is no output, or
        ``SplitInto`` to run a long job as segment jobs.

        Raises:
            JobFailure: the job failed in a way the pipeline understands (``worker.outcome``),
                JobStopped when ``ctx.should_stop()`` turned true and the work was abandoned.
            BlobStoreError: the blob store failed (``classify`` decides what that means).
        """
        ...

    async def close(self) -> None:
        """Release what the pipeline loaded (models, executors); called once at exit."""
        ...
