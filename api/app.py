"""The Litestar app factory: ``create_app(settings)``.

Postgres pool and blob store are opened in the lifespan and closed at shutdown. The API starts
even while Postgres is down (an orchestrator restarting both must not need an order): until it
answers, ``/ready`` and every database route answer 503, and the pool connects by itself once
it is back. A blob store that cannot be reached at start still fails the start, loudly.
``vidjobs api`` builds the settings once and hands them to every uvicorn process as
``create_app``'s argument.
"""

from __future__ import annotations

import asyncio
import contextlib
import importlib.metadata
import logging
from collections.abc import AsyncIterator
from typing import Any

import anyio.to_thread
from anyio import CapacityLimiter
from litestar import Litestar
from litestar.openapi import OpenAPIConfig
from litestar.openapi.plugins import ScalarRenderPlugin
from litestar.openapi.spec import Components, SecurityScheme
from litestar.static_files import create_static_files_router

from vidjobs.api.admission import TenantUploads
from vidjobs.api.auth import AuthCache
from vidjobs.api.dependencies import dependencies
from vidjobs.api.jobs import JobsController
from vidjobs.api.log_redaction import install_log_redaction
from vidjobs.api.long_poll import LongPoll
from vidjobs.api.metrics import Metrics
from vidjobs.api.ops import OpsController
from vidjobs.api.problems import exception_handlers, problem_details
from vidjobs.api.queue_depth import QueueDepth
from vidjobs.api.results import ResultsController
from vidjobs.api.runtime import ApiRuntime
from vidjobs.api.settings import ApiSettings
from vidjobs.api.status_reads import StatusReads
from vidjobs.api.ui import UiController, ui_template_config
from vidjobs.api.ui.controller import FRAMES_STATE_KEY, UI_STATIC_DIR
from vidjobs.api.ui.frames import FrameCache
from vidjobs.api.videos import VideoController
from vidjobs.blobs import open_blob_store
from vidjobs.db.pool import open_pool

__all__ = ["create_app"]

log = logging.getLogger(__name__)


def _version() -> str:
    try:
        return importlib.metadata.version("vidjobs")
    except importlib.metadata.PackageNotFoundError:
        return "0.0.0"


def create_app(settings: ApiSettings) -> Litestar:
    """Build the app; nothing connects until the lifespan starts.

    It also makes this process's log redact keys (``vidjobs.api.log_redaction``): uvicorn calls
    the factory in every process it runs, before the first request.
    """
    install_log_redaction()
    metrics = Metrics(
        QueueDepth(
            settings.database.url,
            refresh_s=settings.metrics_refresh_s,
            statement_timeout_s=settings.metrics_statement_timeout_s,
            connect_timeout_s=settings.database.connect_timeout_s,
        ),
        per_tenant=bool(settings.metrics_token),
    )

    @contextlib.asynccontextmanager
    async def lifespan(app: Litestar) -> AsyncIterator[None]:
        pool = await open_pool(settings.database, wait=False)
        store = open_blob_store(settings.blobs)
        try:
            await anyio.to_thread.run_sync(store.ensure_ready)
            status_reads = StatusReads(pool)
            ApiRuntime(
                settings=settings,
                pool=pool,
                store=store,
                metrics=metrics,
                auth_cache=AuthCache(settings.auth_cache_seconds),
                upload_limiter=CapacityLimiter(settings.upload_slots),
                tenant_uploads=TenantUploads(settings.tenant_upload_slots),
                status_reads=status_reads,
                long_poll=LongPoll(status_reads, settings.long_poll_tick_s),
            ).install(app.state)
            app.state[FRAMES_STATE_KEY] = FrameCache(store, settings.ui_frame_cache)
            # One queue-depth reader per process, on its own connection: /metrics reads its
            # last value, so scrapers never touch the request pool.
            refresher = asyncio.get_running_loop().create_task(metrics.queue_depth.run())
            log.info("vidjobs API ready (blobs: %r)", settings.blobs)
            try:
                yield
            finally:
                refresher.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await refresher
        finally:
            await pool.close()
            store.close()

    ui_routes: list[Any] = []
    if settings.ui:  # the operator dashboard (VIDJOBS_API_UI), off by default
        ui_routes = [
            UiController,
            create_static_files_router(
                path="/ui/static", directories=[UI_STATIC_DIR], include_in_schema=False
            ),
        ]
    return Litestar(
        route_handlers=[
            VideoController,
            ResultsController,
            JobsController,
            OpsController,
            *ui_routes,
        ],
        template_config=ui_template_config() if settings.ui else None,
        lifespan=[lifespan],
        dependencies=dependencies(),
        exception_handlers=exception_handlers(),
        plugins=[problem_details()],
        middleware=[metrics.middleware] if settings.request_metrics else [],
        openapi_config=OpenAPIConfig(
            title="vidjobs API",
            version=_version(),
            description=(
                "Upload MP4 videos, follow their analysis, read the results. Every error is "
                "an RFC 9457 problem (application/problem+json)."
            ),
            path="/schema",
            render_plugins=[ScalarRenderPlugin()],
            components=Components(
                security_schemes={
                    "bearer": SecurityScheme(
                        type="http",
                        scheme="bearer",
                        description="An API key from 'vidjobs keys create --tenant NAME'.",
                    )
                }
            ),
        ),
    )
