"""``/health``, ``/ready``, ``/metrics``: for load balancers, orchestrators and Prometheus."""

from __future__ import annotations

import logging

import anyio
import anyio.to_thread
from litestar import Controller, Response, get
from litestar.di import NamedDependency
from psycopg_pool import AsyncConnectionPool

from vidjobs.api.problems import problem_responses
from vidjobs.api.runtime import ApiRuntime
from vidjobs.db.jobs import job_count_by_state
from vidjobs.db.pool import connection
from vidjobs.schema import JobState
from vidjobs.schema.api import Health, Readiness

__all__ = ["OpsController"]

_CHECK_TIMEOUT_S = 5.0

log = logging.getLogger(__name__)


class OpsController(Controller):
    """Unauthenticated probes; they reveal nothing about any tenant."""

    path = "/"
    tags = ["ops"]  # noqa: RUF012 - Litestar's declared class attribute

    @get("/health", operation_id="health", summary="The process is alive")
    async def health(self) -> Health:
        """Always 200 while the process serves requests (no dependency is asked)."""
        return Health()

    @get(
        "/ready",
        operation_id="ready",
        summary="Postgres and the blob store answer",
        responses=problem_responses(503),
    )
    async def ready(self, rt: NamedDependency[ApiRuntime]) -> Response[Readiness]:
        """200 if both dependencies answer now, else 503 naming the one that did not."""
        database = blob_store = "ok"
        try:
            with anyio.fail_after(_CHECK_TIMEOUT_S):
                async with connection(rt.pool) as conn:
                    await AsyncConnectionPool.check_connection(conn)
        except Exception as exc:
            database = f"unavailable: {type(exc).__name__}"
        try:
            with anyio.fail_after(_CHECK_TIMEOUT_S):
                await anyio.to_thread.run_sync(rt.store.ping, abandon_on_cancel=True)
        except Exception as exc:
            blob_store = f"unavailable: {type(exc).__name__}"
        ok = database == blob_store == "ok"
        return Response(
            Readiness(
                status="ready" if ok else "unavailable", database=database, blob_store=blob_store
            ),
            status_code=200 if ok else 503,
        )

    @get(
        "/metrics",
        operation_id="metrics",
        summary="Prometheus metrics: requests, latencies, queue depth",
        media_type="text/plain; version=0.0.4",
    )
    async def metrics(self, rt: NamedDependency[ApiRuntime]) -> str:
        """Always 200; ``vidjobs_database_up 0`` when the queue depth could not be read."""
        queue: dict[JobState, int] | None = None
        try:
            with anyio.fail_after(_CHECK_TIMEOUT_S):
                async with connection(rt.pool) as conn:
                    queue = await job_count_by_state(conn)
        except Exception as exc:
            log.warning("metrics: queue depth unavailable: %s", exc)
        return rt.metrics.render(queue)
