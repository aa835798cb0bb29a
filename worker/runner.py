"""The worker loop: claim a batch, run each job, renew leases, complete or fail, idle on NOTIFY.

Everything a worker writes about a job goes through the fenced db calls with the job's lease
token, so a worker that lost a job can never overwrite the attempt that replaced it. Claims
and completions are batched (one commit for many jobs) because with short jobs the WAL flush
of each commit, not the work, bounds throughput.

Shutdown (``stop()``, wired to SIGTERM/SIGINT by ``run_worker``): claiming stops at once;
jobs claimed ahead (``prefetch``) and not started are handed back at once; running jobs get
``grace_seconds`` to finish; then they are asked to stop and handed back with ``job_release``
(pending again, the attempt not counted).

A job's final write (completion, failure, hand-back, release) that meets an unreachable
database is retried with backoff for as long as the job's lease may still be valid as this
worker knows it; the heartbeats go on meanwhile, so the lease is renewed as soon as Postgres
answers again and the finished work is saved instead of redone. Only once the lease surely
expired is the write given up (another worker then runs the job again; fencing keeps the two
from both completing it).
"""

from __future__ import annotations

import asyncio
import collections
import functools
import logging
import time
import uuid
from collections.abc import Awaitable, Callable
from dataclasses import dataclass

from vidjobs import tracing
from vidjobs.db.errors import DatabaseUnavailable, LeaseLost
from vidjobs.schema import Job
from vidjobs.schema.segments import segment_job_id
from vidjobs.worker.completions import Completer, CompletionNotWritten
from vidjobs.worker.heartbeat import Heartbeater, Lease
from vidjobs.worker.jobqueue import JobQueue, Notifier
from vidjobs.worker.metrics import WorkerMetrics
from vidjobs.worker.outcome import Outcome, Result, UnknownPipeline, classify
from vidjobs.worker.pipelines.contract import JobContext, SplitInto
from vidjobs.worker.pipelines.registry import PipelineRegistry
from vidjobs.worker.settings import WorkerSettings

__all__ = ["Worker", "WorkerStats"]

log = logging.getLogger(__name__)


def _span_attributes(job: Job) -> dict[str, str | int]:
    """What every span of a job carries (the claim's, the run's)."""
    return {"vidjobs.job_id": str(job.job_id), "vidjobs.tenant": job.tenant,
            "vidjobs.pipeline": job.pipeline, "vidjobs.attempt": job.attempts}  # fmt: skip


# After grace ran out and jobs were asked to stop, how long to wait before releasing anyway.
_STOP_WAIT_S = 2.0
# Retries of a fenced fail/release while the database is unreachable: the first wait, doubling
# up to the cap, for as long as the job's lease may still be valid.
_WRITE_RETRY_FIRST_S = 0.1
_WRITE_RETRY_MAX_S = 1.0


@dataclass
class WorkerStats:
    """What this worker did, for logs, tests and the benchmark."""

    claimed: int = 0
    completed: int = 0
    failed: int = 0
    retried_later: int = 0  # handed back after a blob-store/database error, attempt not counted
    released: int = 0
    stopped: int = 0
    lease_lost: int = 0
    split: int = 0  # handed on as segment jobs


class Worker:
    """One worker process's loop.

    Args:
        settings: concurrency, batching, leases, shutdown.
        queue: the database (``jobqueue.PostgresQueue``; in-memory in the fast tests).
        registry: pipelines by name.
        notifier: idle wake-up (``JobNotifier``).
        drain: return once a claim finds nothing and no job is in flight (benchmarks, tests).
        metrics: where it counts and times its jobs (``--metrics-port`` serves them).
    """

    def __init__(
        self,
        settings: WorkerSettings,
        queue: JobQueue,
        registry: PipelineRegistry,
        notifier: Notifier,
        *,
        drain: bool = False,
        metrics: WorkerMetrics | None = None,
    ) -> None:
        self.settings = settings
        self.stats = WorkerStats()
        self.metrics = metrics or WorkerMetrics()
        self.metrics.watch(lambda: self._running, lambda: registry.load_seconds)
        self._queue = queue
        self._registry = registry
        self._notifier = notifier
        self._drain = drain
        self._ready: collections.deque[tuple[JobContext, Lease]] = collections.deque()
        self._running = 0  # job tasks started (at most concurrency)
        self._capacity = settings.concurrency + settings.prefetch
        self._low_water = max(1, min(settings.batch_size, self._capacity) // 2)
        self._active = 0  # claimed jobs whose pipeline has not returned yet
        self._tasks: dict[asyncio.Task[None], uuid.UUID] = {}  # running job tasks -> job id
        self._stopping = asyncio.Event()
        self._slot_freed = asyncio.Event()
        self._heartbeat = Heartbeater(queue, settings, on_lag=self.metrics.heartbeat_lag.observe)
        self._completer = Completer(
            queue, batch_size=settings.batch_size, lease_left=self._heartbeat.lease_left
        )

    @property
    def stopping(self) -> bool:
        """True once ``stop()`` was called."""
        return self._stopping.is_set()

    def stop(self) -> None:
        """Stop claiming now; running jobs get ``grace_seconds`` before they are handed back."""
        if not self._stopping.is_set():
            log.info("stopping: no new claims; %d job(s) running", self._active)
        self._stopping.set()

    async def run(self) -> WorkerStats:
        """Claim and run jobs until ``stop()`` (or, draining, until the queue is empty)."""
        self._heartbeat.start()
        self._completer.start()
        try:
            await self._claim_loop()
        finally:
            await self._shutdown()
        return self.stats

    # -- claiming -------------------------------------------------------------------------

    async def _claim_loop(self) -> None:
        idle_wait = self.settings.poll_interval_s
        db_wait = 0.1
        while not self._stopping.is_set():
            free = self._capacity - self._active
            if free <= 0 or (self._active and free < self._low_water):
                # Refill in batches, not one claim per finished job: a claim statement costs
                # about as much for one row as for dozens.
                await self._wait_slot()
                continue
            try:
                claimed_at = time.monotonic()  # the leases run from no earlier than this
                jobs = await self._queue.job_claim(
                    worker_id=self.settings.worker_id,
                    batch_size=min(free, self.settings.batch_size),
                    lease_seconds=self.settings.lease_seconds,
                    pipelines=self._registry.names,  # only jobs this worker can run
                )
            except Exception as exc:
                # Unreachable database, or a server-side error: the worker outlives both.
                if isinstance(exc, DatabaseUnavailable):
                    log.warning(
                        "claim failed, database unavailable (retry in %.1fs): %s", db_wait, exc
                    )
                else:
                    log.exception("claim failed (retry in %.1fs)", db_wait)
                await self._sleep_unless_stopped(db_wait)
                db_wait = min(db_wait * 2, self.settings.idle_backoff_max_s)
                continue
            db_wait = 0.1
            if jobs:
                idle_wait = self.settings.poll_interval_s
                for job in jobs:
                    self._start(job, claimed_at)
                # Let the started jobs begin before the next claim is sent: its send and
                # the parameter adapting before it take the loop ~0.8 ms.
                await asyncio.sleep(0)
                continue
            if self._drain:
                if self._active == 0:
                    return
                await self._wait_slot()
                continue
            if not await self._idle(idle_wait):
                idle_wait = min(idle_wait * 2, self.settings.idle_backoff_max_s)

    async def _wait_slot(self) -> None:
        self._slot_freed.clear()
        await self._race(self._slot_freed.wait())

    async def _sleep_unless_stopped(self, seconds: float) -> None:
        await self._race(asyncio.sleep(seconds))

    async def _idle(self, seconds: float) -> bool:
        """Wait for a NOTIFY (True) or the poll timeout (False); stop() ends it early."""
        return bool(await self._race(self._notifier.wait(seconds)))

    async def _race(self, aw: Awaitable[object]) -> object:
        """Await ``aw`` unless stop() comes first (then ``aw`` is cancelled)."""
        if self._stopping.is_set():
            if asyncio.iscoroutine(aw):
                aw.close()
            return None
        work = asyncio.ensure_future(aw)
        stop = asyncio.ensure_future(self._stopping.wait())
        await asyncio.wait({work, stop}, return_when=asyncio.FIRST_COMPLETED)
        for t in (work, stop):
            if not t.done():
                t.cancel()
        await asyncio.gather(work, stop, return_exceptions=True)
        if work.done() and not work.cancelled() and work.exception() is None:
            return work.result()
        if work.done() and not work.cancelled() and work.exception() is not None:
            log.warning("idle wait failed: %s", work.exception())
        return None

    # -- running one job ------------------------------------------------------------------

    def _start(self, job: Job, claimed_at: float) -> None:
        """Take a claimed job: its lease is renewed from now on; it runs when a slot is free."""
        assert job.lease_token is not None, "a claimed job always carries its lease token"
        self.stats.claimed += 1
        self.metrics.job_claimed(job.pipeline)
        self._active += 1
        ctx = JobContext(job, renew=functools.partial(self._heartbeat.renew, job.job_id))
        ctx.stage_time = self.metrics.stage_timer(job.pipeline)
        if tracing.enabled():  # the claim as a span of the submit's trace
            with tracing.span("job claim", _span_attributes(job), parent=job.trace_context):
                tracing.annotate({"vidjobs.worker_id": self.settings.worker_id,
                                  "vidjobs.attempt": job.attempts})  # fmt: skip
        lease = self._heartbeat.track(ctx, job.lease_token, claimed_at=claimed_at)
        self._ready.append((ctx, lease))
        self._dispatch()

    def _dispatch(self) -> None:
        """Start ready jobs while fewer than ``concurrency`` run.

        A task per running job only, not per claimed one: prefetched jobs wait in a deque, not
        as tasks queued on a semaphore (whose wake-ups cost the loop a share of its time).
        """
        while self._ready and self._running < self.settings.concurrency:
            ctx, lease = self._ready.popleft()
            self._spawn(ctx, lease)

    def _spawn(self, ctx: JobContext, lease: Lease) -> None:
        self._running += 1
        task = asyncio.create_task(self._run_job(ctx, lease), name=f"job-{ctx.job.job_id}")
        self._tasks[task] = ctx.job.job_id
        task.add_done_callback(self._forget)

    def _forget(self, task: asyncio.Task[None]) -> None:
        self._tasks.pop(task, None)

    async def _run_job(self, ctx: JobContext, lease: Lease) -> None:
        if not tracing.enabled():  # no attributes built, no context manager entered
            await self._run_job_spanned(ctx, lease)
            return
        job = ctx.job
        with tracing.span("job run", _span_attributes(job), parent=job.trace_context):
            await self._run_job_spanned(ctx, lease)

    async def _run_job_spanned(self, ctx: JobContext, lease: Lease) -> None:
        try:
            try:
                if self._stopping.is_set() and ctx.stop_reason is None:
                    # Claimed ahead (prefetch) but never started: hand it straight back.
                    ctx.request_stop("shutdown")
                result = Result(Outcome.STOPPED) if ctx.should_stop() else await self._execute(ctx)
            finally:
                self._active -= 1
                self._running -= 1
                self._slot_freed.set()
                self._dispatch()
            # The slot is free; the heartbeats keep the lease while the outcome is written.
            lease.finishing = True
            await self._finish(ctx, lease.token, result)
        finally:
            self._heartbeat.untrack(ctx.job.job_id)

    async def _execute(self, ctx: JobContext) -> Result:
        job = ctx.job
        try:
            pipeline = await self._registry.get(job.pipeline)
        except Exception as exc:  # e.g. the models cannot be loaded: ModelUnavailable
            return classify(ctx, exc)
        if pipeline is None:  # the claim filters by pipeline: only if the registry changed since
            names = ", ".join(self._registry.names)
            missing = f"this worker has no pipeline {job.pipeline!r} (it runs: {names})"
            return classify(ctx, UnknownPipeline(missing))
        started = time.perf_counter()
        try:
            out = await pipeline.run(ctx)
            if isinstance(out, SplitInto):
                return Result(Outcome.SPLIT, segments=out.segments)
            return Result(Outcome.DONE, output_key=out)
        except Exception as exc:
            return classify(ctx, exc)
        finally:
            ctx.run_seconds = time.perf_counter() - started

    async def _finish(self, ctx: JobContext, token: uuid.UUID, result: Result) -> None:
        if not tracing.enabled():
            await self._write_outcome(ctx, token, result)
            return
        name = {
            Outcome.DONE: "job complete",
            Outcome.FAILED: "job fail",
            Outcome.SPLIT: "job split",
        }.get(result.outcome, "job release" if ctx.stop_reason == "shutdown" else "job stop")
        attrs = {"vidjobs.job_id": str(ctx.job.job_id), "vidjobs.outcome": str(result.outcome)}
        if result.error_kind:
            attrs["vidjobs.error_kind"] = result.error_kind
        if ctx.stop_reason:
            attrs["vidjobs.stop_reason"] = ctx.stop_reason
        with tracing.span(name, attrs):
            state = await self._write_outcome(ctx, token, result)
            tracing.annotate({"vidjobs.state": state})
        tracing.annotate({"vidjobs.state": state})  # the run span

    async def _write_outcome(self, ctx: JobContext, token: uuid.UUID, result: Result) -> str:
        """Write the job's outcome; returns the state the job is left in, as far as known."""
        job_id = ctx.job.job_id
        if result.outcome is Outcome.DONE:
            return await self._complete(ctx, token, result)
        if result.outcome is Outcome.SPLIT:
            return await self._split(ctx, token, result)
        if result.outcome is Outcome.FAILED:
            if not await self._fail(job_id, token, result):
                return "not_written"
            self.metrics.job_failed(ctx.job.pipeline, result.error_kind)
            last = result.permanent or ctx.job.attempts >= ctx.job.max_attempts
            return "failed" if last and not result.infrastructure else "pending"
        if ctx.stop_reason == "shutdown":
            await self.release(job_id, token)
            return "pending"
        self.stats.stopped += 1
        log.info("job %s stopped (%s)", job_id, ctx.stop_reason)
        return str(ctx.stop_reason)

    async def _complete(self, ctx: JobContext, token: uuid.UUID, result: Result) -> str:
        job_id = ctx.job.job_id
        await self._heartbeat.flush_progress(job_id)  # frames_done/total truthful at the end
        try:
            ok = await self._completer.submit(job_id, token, result.output_key)
        except CompletionNotWritten:
            return "not_written"  # logged by the completer
        except Exception as exc:
            log.error("job %s finished but its completion was not written: %s", job_id, exc)
            return "not_written"
        if ok:
            self.stats.completed += 1
            self.metrics.job_done(ctx.job.pipeline, ctx.run_seconds, ctx.frames_done)
            return "completed"
        self.stats.lease_lost += 1
        log.warning("job %s finished after its lease was lost; result dropped", job_id)
        return "lease_lost"

    async def _fail(self, job_id: uuid.UUID, token: uuid.UUID, result: Result) -> bool:
        """Write a failed attempt: counted (``job_fail``) or, for the infrastructure's fault, not.

        A blob-store or database outage is not the job's fault and must not use up its
        attempts: such a job is handed back with a growing delay (``job_retry_later``, which
        bounds how often). Returns whether the write went through.
        """
        infra = result.infrastructure
        if infra:
            log.warning("job %s: %s (%s); handed back for a later try, attempt not counted",
                        job_id, result.error_kind, result.error_message)  # fmt: skip
        else:
            log.log(logging.INFO if result.permanent else logging.WARNING,
                    "job %s failed (%s): %s", job_id, result.error_kind,
                    result.error_message)  # fmt: skip

        async def write() -> None:
            kind, message = result.error_kind, result.error_message
            if infra:
                await self._queue.job_retry_later(
                    job_id, token, error_kind=kind, error_message=message
                )
            else:
                await self._queue.job_fail(
                    job_id, token, error_kind=kind, error_message=message,
                    permanent=result.permanent,
                )  # fmt: skip

        if not await self._fenced(job_id, "hand-back" if infra else "fail", write):
            return False
        if infra:
            self.stats.retried_later += 1
        else:
            self.stats.failed += 1
        return True

    async def _split(self, ctx: JobContext, token: uuid.UUID, result: Result) -> str:
        """Hand the job on as segment jobs; it waits (pending) until the last one completes."""
        job_id = ctx.job.job_id
        segments = [
            (segment_job_id(job_id, i), start, end, samples)
            for i, (start, end, samples) in enumerate(result.segments)
        ]

        async def write() -> None:
            await self._queue.job_split(job_id, token, segments)

        if not await self._fenced(job_id, "split", write):
            return "not_written"
        self.stats.split += 1
        log.info("job %s split into %d segment jobs", job_id, len(segments))
        return "pending"

    async def release(self, job_id: uuid.UUID, token: uuid.UUID) -> None:
        """Hand a held job back (pending, attempt not counted), e.g. at shutdown."""

        if await self._fenced(job_id, "release", lambda: self._queue.job_release(job_id, token)):
            self.stats.released += 1
            log.info("job %s handed back to the queue", job_id)

    async def _fenced(
        self, job_id: uuid.UUID, what: str, op: Callable[[], Awaitable[None]]
    ) -> bool:
        """Run a fenced write; False if not written.

        While the database is unreachable the write is retried with backoff for as long as
        the job's lease may still be valid (the heartbeats renew it meanwhile, so it stays
        valid once Postgres answers again). After that another worker may have taken the job
        and will run it again, so the write is given up.
        """
        delay = _WRITE_RETRY_FIRST_S
        tries = 0
        while True:
            tries += 1
            try:
                await op()
            except LeaseLost:
                self.stats.lease_lost += 1
                log.warning("job %s: %s not written, the lease was lost", job_id, what)
                return False
            except DatabaseUnavailable as exc:
                left = self._heartbeat.lease_left(job_id)
                if left <= 0:
                    log.error("job %s: %s not written after %d tries, the database stayed "
                              "unreachable until the lease expired (another worker will run "
                              "the job again): %s", job_id, what, tries, exc)  # fmt: skip
                    return False
                if tries == 1:
                    log.warning("job %s: %s not written yet, retrying for up to %.1fs (the "
                                "lease): %s", job_id, what, left, exc)  # fmt: skip
                await asyncio.sleep(min(delay, left))
                delay = min(delay * 2, _WRITE_RETRY_MAX_S)
            else:
                if tries > 1:
                    log.info("job %s: %s written after %d tries", job_id, what, tries)
                return True

    # -- shutdown -------------------------------------------------------------------------

    async def _shutdown(self) -> None:
        grace = self.settings.grace_seconds
        # Jobs claimed ahead and never started go back at once, not after the running ones.
        while self._ready:
            self._spawn(*self._ready.popleft())
        pending = set(self._tasks)
        if pending:
            log.info("waiting up to %.1fs for %d running job(s)", grace, len(pending))
            _, pending = await asyncio.wait(pending, timeout=grace)
        if pending:
            log.warning("grace period over: stopping %d job(s) and handing them back", len(pending))
            for lease in self._heartbeat.held:
                if not lease.finishing:
                    lease.ctx.request_stop("shutdown")
            _, pending = await asyncio.wait(pending, timeout=_STOP_WAIT_S)
        if pending:
            # The pipeline did not notice the stop request in time: hand the jobs back anyway.
            # Its late result is fenced out (the release changed the job's lease). A job that
            # is already writing its outcome (retrying while the database is unreachable)
            # keeps at it: that ends by the time its lease surely expired.
            running = [x for x in self._heartbeat.held if not x.finishing]
            await asyncio.gather(*(self.release(x.job_id, x.token) for x in running))
            stuck = {x.job_id for x in running}
            for task in pending:
                if self._tasks.get(task) in stuck:
                    task.cancel()
            await asyncio.gather(*pending, return_exceptions=True)
        await self._completer.close()
        await self._heartbeat.close()
