"""``vidjobs api``: serve the HTTP API with uvicorn.

The settings are built once, here, from the flags and the environment, and handed to every
uvicorn process as the argument of the app factory (``create_app(settings)``): with
``--workers N`` uvicorn pickles its config, factory and settings included, into each spawned
process, so no process reads the environment again. The config, with its header and
keep-alive timeouts, is ``vidjobs.api.server.server_config``. With ``--workers N`` the
processes write their request metrics to a fresh temporary directory
(``PROMETHEUS_MULTIPROC_DIR``, removed at exit) that every ``/metrics`` scrape sums up.
"""

from __future__ import annotations

import sys
from functools import partial

import click

from vidjobs.api.settings import ApiSettings
from vidjobs.cli.options import settings_from_cli, settings_options
from vidjobs.db.settings import DatabaseSettings
from vidjobs.tracing import TracingSettings, traced_factory

__all__ = ["api"]

_STARTUP_FAILURE = 3  # uvicorn's exit status when the app did not start


@click.command()
@settings_options(ApiSettings)
@settings_options(DatabaseSettings, only=["url"])
@settings_options(TracingSettings)
@click.option(
    "--log-level",
    envvar="VIDJOBS_API_LOG_LEVEL",
    show_envvar=True,
    type=click.Choice(["critical", "error", "warning", "info", "debug"]),
    default="info",
    help="uvicorn log level.",
)
def api(log_level: str) -> None:
    """Serve the vidjobs HTTP API (submit, status, results, jobs; OpenAPI at /schema).

    Blob storage is configured by VIDJOBS_BLOB_BACKEND, VIDJOBS_BLOB_DIR and VIDJOBS_S3_*
    (see docs/api.md).
    """
    import uvicorn
    from uvicorn.supervisors import Multiprocess

    from vidjobs.api.app import create_app
    from vidjobs.api.metrics import multiprocess_directory
    from vidjobs.api.server import server_config

    settings = settings_from_cli(ApiSettings, database=settings_from_cli(DatabaseSettings))
    config = server_config(settings, log_level)
    # Tracing starts in each server process, where the factory builds the app (an exporter's
    # thread does not survive the spawn of uvicorn's worker processes).
    app = partial(create_app, settings)
    config.app = partial(traced_factory, app, settings_from_cli(TracingSettings), "vidjobs-api")
    server = uvicorn.Server(config)
    try:
        if settings.workers > 1:
            # The processes share their request metrics through files in one directory, made
            # (and named in the environment they inherit) before they are spawned.
            with multiprocess_directory(settings.workers):
                # What uvicorn.run does for workers > 1 (which it allows only for an import
                # string).
                Multiprocess(config, sockets=[config.bind_socket()]).run()
            return
        server.run()
    except KeyboardInterrupt:
        pass
    if settings.workers == 1 and not server.started:
        sys.exit(_STARTUP_FAILURE)
