"""``vidjobs worker``: run a worker process (or ``--check`` that one could run here)."""

from __future__ import annotations

import asyncio
import logging
import sys
from typing import TYPE_CHECKING, Any

import click

from vidjobs.cli.options import database_url_option
from vidjobs.worker.settings import WorkerSettings, default_worker_id

if TYPE_CHECKING:
    from vidjobs.worker.pipelines.yolo_ocr.settings import PipelineSettings

__all__ = ["worker"]

_D = WorkerSettings.__dataclass_fields__


def _default(name: str) -> Any:
    return _D[name].default


@click.command()
@database_url_option
@click.option(
    "--concurrency",
    envvar="VIDJOBS_WORKER_CONCURRENCY",
    show_envvar=True,
    type=click.IntRange(min=1),
    default=_default("concurrency"),
    help="Jobs running at once in this process (one video analysis already uses every core).",
)
@click.option(
    "--batch-size",
    envvar="VIDJOBS_WORKER_BATCH_SIZE",
    show_envvar=True,
    type=click.IntRange(min=1),
    default=_default("batch_size"),
    help="Most jobs per claim statement and per batched completion.",
)
@click.option(
    "--prefetch",
    envvar="VIDJOBS_WORKER_PREFETCH",
    show_envvar=True,
    type=click.IntRange(min=0),
    default=_default("prefetch"),
    help="Jobs claimed ahead of free slots (raise only for very short jobs).",
)
@click.option(
    "--lease-seconds",
    envvar="VIDJOBS_WORKER_LEASE_SECONDS",
    show_envvar=True,
    type=click.FloatRange(min=1),
    default=_default("lease_seconds"),
    help="How long a claim or heartbeat holds a job; a dead worker's jobs return after this.",
)
@click.option(
    "--heartbeat-interval",
    envvar="VIDJOBS_WORKER_HEARTBEAT_INTERVAL",
    show_envvar=True,
    type=click.FloatRange(min=0.05),
    default=_default("heartbeat_interval_s"),
    help="Seconds between lease renewals; a cancelled job stops within one interval.",
)
@click.option(
    "--progress-interval",
    envvar="VIDJOBS_WORKER_PROGRESS_INTERVAL",
    show_envvar=True,
    type=click.FloatRange(min=0.01),
    default=_default("progress_interval_s"),
    help="At least this many seconds between two progress writes of one job.",
)
@click.option(
    "--grace-seconds",
    envvar="VIDJOBS_WORKER_GRACE_SECONDS",
    show_envvar=True,
    type=click.FloatRange(min=0),
    default=_default("grace_seconds"),
    help="After SIGTERM/SIGINT, how long running jobs may finish before they are handed back.",
)
@click.option(
    "--poll-interval",
    envvar="VIDJOBS_WORKER_POLL_INTERVAL",
    show_envvar=True,
    type=click.FloatRange(min=0.01),
    default=_default("poll_interval_s"),
    help="First idle wait for a NOTIFY before polling anyway.",
)
@click.option(
    "--idle-backoff-max",
    envvar="VIDJOBS_WORKER_IDLE_BACKOFF_MAX",
    show_envvar=True,
    type=click.FloatRange(min=0.01),
    default=_default("idle_backoff_max_s"),
    help="Idle waits double up to this many seconds while the queue stays empty.",
)
@click.option(
    "--worker-id",
    envvar="VIDJOBS_WORKER_ID",
    show_envvar=True,
    default=None,
    help="Name recorded on claimed jobs [default: hostname-pid].",
)
@click.option(
    "--durable-claims/--fast-claims",
    envvar="VIDJOBS_WORKER_DURABLE_CLAIMS",
    show_envvar=True,
    default=_default("durable_claims"),
    help="Claims wait for the WAL flush; --fast-claims skips it (a claim lost in a crash "
    "only re-queues the job).",
)
@click.option(
    "--drain",
    is_flag=True,
    envvar="VIDJOBS_WORKER_DRAIN",
    show_envvar=True,
    help="Exit once the queue is empty and no job runs (batch runs, benchmarks).",
)
@click.option(
    "--no-video",
    is_flag=True,
    envvar="VIDJOBS_WORKER_NO_VIDEO",
    show_envvar=True,
    help=(
        "Run and claim only noop jobs: no blob store, no models (queue benchmarks, smoke "
        "tests); video jobs are left to the other workers."
    ),
)
@click.option(
    "--check",
    is_flag=True,
    help="Health check, then exit 0 (ok) or 1: the database (reachable, migrated, grants), "
    "the blob store and the detector weights file. Light (no models loaded): for probes.",
)
@click.option(
    "--check-models",
    is_flag=True,
    help="--check, and also load the detector and OCR engine as a job would (seconds, ~1 GB: "
    "a one-off diagnosis, not a probe). No environment variable, so no probe turns it on.",
)
@click.option(
    "--log-level",
    envvar="VIDJOBS_LOG_LEVEL",
    show_envvar=True,
    type=click.Choice(["DEBUG", "INFO", "WARNING", "ERROR"], case_sensitive=False),
    default="INFO",
    help="Log verbosity.",
)
def worker(
    database_url: str,
    concurrency: int,
    batch_size: int,
    prefetch: int,
    lease_seconds: float,
    heartbeat_interval: float,
    progress_interval: float,
    grace_seconds: float,
    poll_interval: float,
    idle_backoff_max: float,
    worker_id: str | None,
    durable_claims: bool,
    drain: bool,
    no_video: bool,
    check: bool,
    check_models: bool,
    log_level: str,
) -> None:
    """Claim jobs from Postgres and run their pipelines until SIGTERM/SIGINT.

    The first signal stops claiming and gives running jobs --grace-seconds to finish; jobs
    still running then go back to the queue. A second signal exits at once.

    The blob store is configured by VIDJOBS_BLOB_* / VIDJOBS_S3_* and the models by
    VIDJOBS_DETECTOR_* / VIDJOBS_OCR_* (see docs/pipeline.md); they load once per process.
    """
    logging.basicConfig(
        level=log_level.upper(),
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
        stream=sys.stderr,
    )
    from vidjobs.blobs import BlobSettings, BlobStoreError
    from vidjobs.db.pool import DatabaseSettings

    try:
        db = DatabaseSettings.from_env({"DATABASE_URL": database_url, **_pool_env()})
        blobs = None if no_video else BlobSettings.from_env()
        video = None if no_video else _video_settings()
    except (ValueError, BlobStoreError) as exc:
        raise click.UsageError(str(exc)) from exc
    if check or check_models:
        from vidjobs.worker.health import check_worker

        # The S3 client's retry warnings would bury the one FAILED line that says what to fix.
        logging.getLogger("urllib3").setLevel(logging.ERROR)
        results = asyncio.run(check_worker(db, blobs, video, load_models=check_models))
        for result in results:
            click.echo(result.line(), err=True)
        sys.exit(0 if all(r.ok for r in results) else 1)
    try:
        settings = WorkerSettings(
            concurrency=concurrency,
            batch_size=batch_size,
            prefetch=prefetch,
            lease_seconds=lease_seconds,
            heartbeat_interval_s=heartbeat_interval,
            progress_interval_s=progress_interval,
            grace_seconds=grace_seconds,
            poll_interval_s=poll_interval,
            idle_backoff_max_s=max(idle_backoff_max, poll_interval),
            worker_id=worker_id or default_worker_id(),
            durable_claims=durable_claims,
        )
    except ValueError as exc:
        raise click.UsageError(str(exc)) from exc

    from vidjobs.db.errors import DatabaseUnavailable
    from vidjobs.worker.main import exit_now_if_threads_linger, run_worker
    from vidjobs.worker.pipelines.registry import default_registry

    try:
        registry = default_registry(blobs, video, concurrency=settings.concurrency)
        asyncio.run(run_worker(db, settings, registry, drain=drain))
    except DatabaseUnavailable as exc:
        click.echo(f"error: {exc}", err=True)
        sys.exit(1)
    exit_now_if_threads_linger(0)


def _video_settings() -> PipelineSettings:
    # Imported here: the pipeline package pulls in OpenCV, which --no-video workers never need.
    from vidjobs.worker.pipelines.yolo_ocr.settings import PipelineSettings

    return PipelineSettings.from_env()


def _pool_env() -> dict[str, str]:
    import os

    return {k: v for k, v in os.environ.items() if k.startswith("VIDJOBS_DB_POOL_")}
