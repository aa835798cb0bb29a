"""One worker process: open the pool and the notifier, run the loop, obey SIGTERM/SIGINT.

The first SIGTERM or SIGINT stops claiming and lets running jobs finish within the grace
period (then hands them back); a second one exits at once, leaving the leases to expire so
another worker takes the jobs.
"""

from __future__ import annotations

import asyncio
import logging
import os
import signal
import threading
import time
from collections.abc import Awaitable, Callable
from typing import Any

from psycopg_pool import AsyncConnectionPool

from vidjobs.db.notify import JobNotifier
from vidjobs.db.pool import open_pool
from vidjobs.db.settings import DatabaseSettings
from vidjobs.webhooks.dispatcher import Dispatcher
from vidjobs.webhooks.secrets import Sealer, SecretKeysMissing
from vidjobs.worker.jobqueue import PostgresQueue
from vidjobs.worker.metrics import MetricsServer, WorkerMetrics
from vidjobs.worker.pipelines.registry import PipelineRegistry
from vidjobs.worker.runner import Worker, WorkerStats
from vidjobs.worker.settings import WorkerSettings

__all__ = ["MetricsPortUnavailable", "exit_now_if_threads_linger", "run_worker"]

log = logging.getLogger(__name__)

# Connections besides one per running job: the claim loop, the completion flusher,
# heartbeats/progress and failure writes, the webhook dispatcher's claims and records.
_EXTRA_CONNECTIONS = 4


class MetricsPortUnavailable(OSError):
    """The metrics port cannot be listened on (taken, or a host that is not this machine's)."""


async def run_worker(
    db: DatabaseSettings,
    settings: WorkerSettings,
    registry: PipelineRegistry,
    *,
    drain: bool = False,
    install_signals: bool = True,
    on_ready: Callable[[Worker], Awaitable[None]] | None = None,
) -> WorkerStats:
    """Run one worker until stopped by a signal (or, with ``drain``, until the queue is empty).

    Args:
        db: where Postgres is; the pool is sized for ``settings.concurrency``.
        settings: the worker's settings.
        registry: the pipelines it runs; closed on the way out.
        drain: return once nothing is left to claim (benchmarks and tests).
        install_signals: handle SIGTERM/SIGINT (off when embedded in a test's event loop).
        on_ready: awaited with the worker once the pool and LISTEN are up and the models are
            loaded, before it claims.
    """
    metrics = WorkerMetrics()
    # First, so a port that is taken stops the worker before it claims anything.
    served = _serve_metrics(metrics, settings)
    try:
        return await _run(db, settings, registry, metrics, drain, install_signals, on_ready)
    finally:
        if served is not None:
            served.close()


def _serve_metrics(metrics: WorkerMetrics, settings: WorkerSettings) -> MetricsServer | None:
    if not settings.metrics_port:
        return None
    try:
        return metrics.serve(settings.metrics_host, settings.metrics_port)
    except OSError as exc:
        raise MetricsPortUnavailable(
            f"cannot serve metrics on {settings.metrics_host}:{settings.metrics_port} ({exc}); "
            "choose another VIDJOBS_WORKER_METRICS_PORT / --metrics-port (0 = none)"
        ) from exc


async def _run(  # noqa: PLR0917 - run_worker's arguments, passed on
    db: DatabaseSettings,
    settings: WorkerSettings,
    registry: PipelineRegistry,
    metrics: WorkerMetrics,
    drain: bool,
    install_signals: bool,
    on_ready: Callable[[Worker], Awaitable[None]] | None,
) -> WorkerStats:
    size = max(db.pool_max_size, settings.concurrency + _EXTRA_CONNECTIONS)
    db = db.model_copy(
        update={"pool_min_size": min(size, _EXTRA_CONNECTIONS), "pool_max_size": size}
    )
    pool = await open_pool(db)
    dispatcher = _dispatcher(pool, settings)
    queue = PostgresQueue(
        pool,
        durable_claims=settings.durable_claims,
        tenants=settings.tenants,
        on_finished=dispatcher.poke if dispatcher is not None else None,
    )
    dispatching = asyncio.create_task(dispatcher.run()) if dispatcher is not None else None
    try:
        async with JobNotifier(db.url) as notifier:
            worker = Worker(settings, queue, registry, notifier, drain=drain, metrics=metrics)
            if install_signals:
                _install_signals(worker, dispatcher)
            log.info(
                "worker %s: concurrency %d, batch %d, lease %.0fs, pipelines %s",
                settings.worker_id,
                settings.concurrency,
                settings.batch_size,
                settings.lease_seconds,
                ", ".join(registry.names),
            )
            await _load_models(registry, metrics, settings.worker_id)
            if on_ready is not None:
                await on_ready(worker)
            try:
                stats = await worker.run()
            finally:
                if install_signals:
                    _remove_signals()
    finally:
        if dispatcher is not None and dispatching is not None:
            dispatcher.stop()
            await dispatching
        await queue.close()
        await registry.close()
        await pool.close()
    log.info("worker %s exits: %s", settings.worker_id, stats)
    return stats


async def _load_models(registry: PipelineRegistry, metrics: WorkerMetrics, worker_id: str) -> None:
    """Build every pipeline (load and warm its models) before the first claim, then say ready.

    Until then ``vidjobs_worker_ready`` is 0 and ``vidjobs worker --check`` says "loading
    models"; the first job no longer pays seconds and a gigabyte for them.
    """
    log.info("worker %s: loading models (%s)", worker_id, ", ".join(registry.names))
    started = time.perf_counter()
    for name, exc in (await registry.load_all()).items():
        log.error("worker %s: pipeline %s cannot be built: %s", worker_id, name, exc)
    metrics.set_ready(True)
    log.info(
        "worker %s: ready, models loaded in %.1fs (%s)",
        worker_id,
        time.perf_counter() - started,
        ", ".join(f"{k} {v:.1f}s" for k, v in sorted(registry.load_seconds.items())),
    )


def _dispatcher(pool: AsyncConnectionPool[Any], settings: WorkerSettings) -> Dispatcher | None:
    """This process's webhook dispatcher, or None (turned off, or no keys to open secrets)."""
    if not settings.webhooks:
        return None
    try:
        sealer = Sealer(settings.webhook_dispatch.secret_keys)
    except SecretKeysMissing:
        log.warning(
            "worker %s sends no webhooks: VIDJOBS_WEBHOOK_SECRET_KEYS is not set (see "
            "docs/operations.md, 'Webhooks'; --no-webhooks silences this)",
            settings.worker_id,
        )
        return None
    return Dispatcher(pool, settings.webhook_dispatch, sealer, dispatcher_id=settings.worker_id)


def _install_signals(worker: Worker, dispatcher: Dispatcher | None) -> None:
    loop = asyncio.get_running_loop()

    def on_signal(signum: int) -> None:
        name = signal.Signals(signum).name
        if worker.stopping:
            log.warning("second %s: exiting now; held leases will expire", name)
            logging.shutdown()
            os._exit(128 + signum)
        log.info(
            "%s: finishing running jobs (grace %.0fs); send again to exit at once",
            name,
            worker.settings.grace_seconds,
        )
        worker.stop()
        if dispatcher is not None:  # its attempts end while the jobs' grace runs, not after it
            dispatcher.stop()

    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, on_signal, sig)


def _remove_signals() -> None:
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.remove_signal_handler(sig)


def exit_now_if_threads_linger(code: int, wait_s: float = 5.0) -> None:
    """Exit with ``code`` now if an analysis thread is still busy after ``wait_s``.

    Its job was already handed back (or completed); waiting for the thread would only hold
    up the exit that SIGTERM asked for, so the process leaves without it.
    """
    deadline = time.monotonic() + wait_s
    for t in threading.enumerate():
        if t is threading.main_thread() or t.daemon:
            continue
        t.join(max(0.0, deadline - time.monotonic()))
    if any(
        t.is_alive() and not t.daemon
        for t in threading.enumerate()
        if t is not threading.main_thread()
    ):
        log.warning(
            "exiting without waiting for busy analysis threads (their jobs were handed back)"
        )
        logging.shutdown()
        os._exit(code)
