"""``vidjobs worker``: run a worker process (or ``--check`` that one could run here)."""

from __future__ import annotations

import asyncio
import logging
import sys
from typing import TYPE_CHECKING

import click

from vidjobs import tracing
from vidjobs.cli.options import (
    log_level_option,
    settings_from_cli,
    settings_options,
    setup_logging,
)
from vidjobs.db.settings import DatabaseSettings
from vidjobs.tracing import TracingSettings
from vidjobs.worker.settings import WorkerSettings

if TYPE_CHECKING:
    from vidjobs.worker.pipelines.yolo_ocr.settings import PipelineSettings

__all__ = ["worker"]


@click.command()
@settings_options(DatabaseSettings, only=["url"])
@settings_options(WorkerSettings)
@settings_options(TracingSettings)
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
    "the blob store, the detector weights file and, with a metrics port, whether the worker "
    "there is ready (FAILED 'loading models' until it is). Light (no models loaded): for probes.",
)
@click.option(
    "--check-models",
    is_flag=True,
    help="--check, and also load the detector and OCR engine as a job would (seconds, ~1 GB: "
    "a one-off diagnosis, not a probe). No environment variable, so no probe turns it on.",
)
@log_level_option
def worker(
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
    setup_logging(log_level)
    from vidjobs.blobs import BlobSettings

    db = settings_from_cli(DatabaseSettings)
    settings = settings_from_cli(WorkerSettings)
    blobs = None if no_video else settings_from_cli(BlobSettings)
    video = None if no_video else _video_settings()
    if check or check_models:
        from vidjobs.worker.health import check_worker

        # The S3 client's retry warnings would bury the one FAILED line that says what to fix.
        logging.getLogger("urllib3").setLevel(logging.ERROR)
        results = asyncio.run(
            check_worker(db, blobs, video, load_models=check_models, worker=settings)
        )
        for result in results:
            click.echo(result.line(), err=True)
        sys.exit(0 if all(r.ok for r in results) else 1)
    from vidjobs.db.errors import DatabaseUnavailable
    from vidjobs.worker.main import MetricsPortUnavailable, exit_now_if_threads_linger, run_worker
    from vidjobs.worker.pipelines.registry import default_registry

    tracing.configure(settings_from_cli(TracingSettings), service="vidjobs-worker")
    try:
        registry = default_registry(blobs, video, concurrency=settings.concurrency)
        asyncio.run(run_worker(db, settings, registry, drain=drain))
    except (DatabaseUnavailable, MetricsPortUnavailable) as exc:
        click.echo(f"error: {exc}", err=True)
        sys.exit(1)
    finally:
        tracing.shutdown()  # exports what is still batched
    exit_now_if_threads_linger(0)


def _video_settings() -> PipelineSettings:
    # Imported here: the pipeline package pulls in OpenCV, which --no-video workers never need.
    from vidjobs.worker.pipelines.yolo_ocr.settings import PipelineSettings

    return settings_from_cli(PipelineSettings)
