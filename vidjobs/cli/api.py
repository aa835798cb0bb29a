"""``vidjobs api``: serve the HTTP API with uvicorn.

uvicorn builds the app through the factory ``api.app:app_from_env``, so every worker process
reads the same settings from the environment; the flags here are written into it first.
"""

from __future__ import annotations

import os

import click

from vidjobs.cli.options import database_url_option

__all__ = ["api"]


@click.command()
@click.option(
    "--host",
    envvar="VIDJOBS_API_HOST",
    show_envvar=True,
    default="127.0.0.1",
    help="Interface to listen on (0.0.0.0 for every interface).",
)
@click.option(
    "--port",
    envvar="VIDJOBS_API_PORT",
    show_envvar=True,
    type=click.IntRange(1, 65535),
    default=8000,
    help="TCP port.",
)
@click.option(
    "--workers",
    envvar="VIDJOBS_API_WORKERS",
    show_envvar=True,
    type=click.IntRange(min=1),
    default=1,
    help="uvicorn worker processes (uploads are I/O bound: one per core is plenty).",
)
@database_url_option
@click.option(
    "--max-upload-bytes",
    envvar="VIDJOBS_API_MAX_UPLOAD_BYTES",
    show_envvar=True,
    type=click.IntRange(min=1),
    default=2 * 1024**3,
    help="Largest video accepted; enforced while streaming (413 beyond it).",
)
@click.option(
    "--log-level",
    envvar="VIDJOBS_API_LOG_LEVEL",
    show_envvar=True,
    type=click.Choice(["critical", "error", "warning", "info", "debug"]),
    default="info",
    help="uvicorn log level.",
)
def api(
    host: str,
    port: int,
    workers: int,
    database_url: str,
    max_upload_bytes: int,
    log_level: str,
) -> None:
    """Serve the vidjobs HTTP API (submit, status, results, jobs; OpenAPI at /schema).

    Blob storage is configured by VIDJOBS_BLOB_BACKEND, VIDJOBS_BLOB_DIR and VIDJOBS_S3_*
    (see docs/api.md).
    """
    import uvicorn

    from vidjobs.api.settings import ApiSettings

    os.environ.update(
        {
            "DATABASE_URL": database_url,
            "VIDJOBS_API_HOST": host,
            "VIDJOBS_API_PORT": str(port),
            "VIDJOBS_API_WORKERS": str(workers),
            "VIDJOBS_API_MAX_UPLOAD_BYTES": str(max_upload_bytes),
        }
    )
    try:
        ApiSettings.from_env()  # fail here, with a clear message, not in every worker
    except ValueError as exc:
        raise click.UsageError(str(exc)) from exc
    uvicorn.run(
        "vidjobs.api.app:app_from_env",
        factory=True,
        host=host,
        port=port,
        workers=workers,
        log_level=log_level,
        proxy_headers=True,
        timeout_graceful_shutdown=30,
    )
