"""``/health``, ``/ready``, ``/metrics``: for load balancers, orchestrators and Prometheus."""

from __future__ import annotations

import hmac
import logging
from typing import Any

import anyio
import anyio.to_thread
from litestar import Controller, Request, get
from litestar.di import NamedDependency
from prometheus_client import CONTENT_TYPE_PLAIN_0_0_4
from psycopg_pool import AsyncConnectionPool

from vidjobs.api.openapi import ProblemOperation, problem_responses
from vidjobs.api.problems import NotReady, Unauthorized
from vidjobs.api.runtime import ApiRuntime
from vidjobs.db.pool import connection
from vidjobs.schema.api import Health, Readiness

__all__ = ["OpsController"]

_CHECK_TIMEOUT_S = 5.0

log = logging.getLogger(__name__)


class OpsController(Controller):
    """Probes without an API key; they reveal nothing about any tenant.

    ``/metrics`` needs the metrics token when one is set (``VIDJOBS_API_METRICS_TOKEN``), and
    only then shows the per-tenant queue depth.
    """

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
        operation_class=ProblemOperation,
        responses=problem_responses(503),
    )
    async def ready(self, rt: NamedDependency[ApiRuntime]) -> Readiness:
        """200 if both dependencies answer now, else a 503 problem naming the one that did not."""
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
        if database != "ok" or blob_store != "ok":
            raise NotReady(database=database, blob_store=blob_store)
        return Readiness()

    @get(
        "/metrics",
        operation_id="metrics",
        summary="Prometheus metrics: requests, latencies, queue depth",
        media_type=CONTENT_TYPE_PLAIN_0_0_4,
        operation_class=ProblemOperation,
        responses=problem_responses(401),
    )
    async def metrics(
        self, request: Request[Any, Any, Any], rt: NamedDependency[ApiRuntime]
    ) -> bytes:
        """Always 200 (401 without the token, when one is set); never queries Postgres.

        The queue depth is the background task's last reading; ``vidjobs_database_up 0`` when
        that read failed. With several API processes the request counts are all of theirs.
        """
        token = rt.settings.metrics_token
        if token:
            _check_metrics_token(request, token)
        return rt.metrics.render()


def _check_metrics_token(request: Request[Any, Any, Any], token: str) -> None:
    """401 unless the request carries ``Authorization: Bearer <token>``."""
    scheme, _, given = (request.headers.get("authorization") or "").partition(" ")
    if scheme.lower() != "bearer" or not given.strip():
        raise Unauthorized(
            "/metrics needs 'Authorization: Bearer <token>' with the deployment's metrics "
            "token (VIDJOBS_API_METRICS_TOKEN)"
        )
    if not hmac.compare_digest(given.strip().encode(), token.encode()):
        raise Unauthorized("wrong metrics token; use the value of VIDJOBS_API_METRICS_TOKEN")
