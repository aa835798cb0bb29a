"""The API's Prometheus metrics (prometheus_client): requests and latencies per route, queue depth.

Request counters and latency histograms are prometheus_client metrics. One API process keeps
them in memory, in a registry of the app's own (tests build many apps in one process). With
``vidjobs api --workers N`` every uvicorn process writes them to files in one shared directory
(prometheus_client's multiprocess mode, :func:`multiprocess_directory`) and a scrape, whichever
process answers it, sums every process's files: the counts are the whole server's.

The queue depth is not a metric anyone updates: :class:`QueueDepthCollector` reads the last
reading of :class:`QueueDepth` (a background task) when a scrape asks, so rendering never
queries Postgres. Every process has its own reader, and the scraping process answers with its
own reading (they differ by at most one refresh interval).
"""

from __future__ import annotations

import contextlib
import os
import shutil
import tempfile
import time
from collections.abc import Iterable, Iterator

from litestar.enums import ScopeType
from litestar.types import ASGIApp, Message, Receive, Scope, Send
from prometheus_client import (
    CollectorRegistry,
    Counter,
    Histogram,
    disable_created_metrics,
    generate_latest,
    values,
)
from prometheus_client.core import GaugeMetricFamily, Metric
from prometheus_client.multiprocess import MultiProcessCollector
from prometheus_client.registry import Collector

from vidjobs.api.queue_depth import QueueDepth
from vidjobs.db.jobs import QueueHealth
from vidjobs.schema.job import JobState

__all__ = [
    "BUCKETS",
    "MULTIPROC_ENV",
    "Metrics",
    "QueueDepthCollector",
    "multiprocess_directory",
]

BUCKETS: tuple[float, ...] = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0)
"""Latency histogram bounds in seconds (uploads land in the top buckets)."""

MULTIPROC_ENV = "PROMETHEUS_MULTIPROC_DIR"
"""prometheus_client's switch to multiprocess mode; read when prometheus_client is imported."""

_QUEUED = (JobState.PENDING, JobState.RUNNING)

# One ``*_created`` series per counter and histogram child would double what Prometheus stores
# for nothing a dashboard reads (and multiprocess mode cannot export them anyway).
disable_created_metrics()  # type: ignore[no-untyped-call]


def _multiprocess() -> bool:
    """True when this process's prometheus_client writes its values to shared files.

    The mode is fixed when prometheus_client is first imported (from ``PROMETHEUS_MULTIPROC_DIR``
    at that moment), so the value class it chose is the truth, not today's environment.
    """
    return values.ValueClass is not values.MutexValue


@contextlib.contextmanager
def multiprocess_directory(processes: int) -> Iterator[str | None]:
    """A fresh ``PROMETHEUS_MULTIPROC_DIR`` for ``processes`` uvicorn processes, removed after.

    Set in this process's environment before uvicorn spawns its processes (each imports
    prometheus_client anew and so starts in multiprocess mode). With one process, or when the
    deployment already names a directory (it then owns it, and must empty it at start), nothing
    is made and the directory in use (or None) is yielded.
    """
    given = os.environ.get(MULTIPROC_ENV)
    if given or processes <= 1:
        yield given or None
        return
    made = tempfile.mkdtemp(prefix="vidjobs-api-metrics-")
    os.environ[MULTIPROC_ENV] = made
    try:
        yield made
    finally:
        os.environ.pop(MULTIPROC_ENV, None)
        shutil.rmtree(made, ignore_errors=True)


class QueueDepthCollector(Collector):
    """The queue-depth gauges, read from the cached reading at scrape time (no query).

    Args:
        queue_depth: the background reader.
        per_tenant: also ``vidjobs_tenant_jobs`` (it names tenants: only behind the token).
    """

    def __init__(self, queue_depth: QueueDepth, *, per_tenant: bool) -> None:
        self.queue_depth = queue_depth
        self.per_tenant = per_tenant

    def collect(self) -> Iterable[Metric]:
        """``vidjobs_jobs``, ``vidjobs_tenant_jobs``, the health gauges, the reading's age,
        ``vidjobs_database_up``."""
        reading, last = self.queue_depth.reading, self.queue_depth.last
        jobs = GaugeMetricFamily(
            "vidjobs_jobs",
            "Jobs waiting (pending) and running, read from Postgres every few seconds.",
            labels=["state"],
        )
        if reading is not None:
            for state in _QUEUED:
                jobs.add_metric([state.value], reading.total(state))
        yield jobs
        if self.per_tenant:
            tenants = GaugeMetricFamily(
                "vidjobs_tenant_jobs",
                "Jobs waiting (pending) and running, per tenant that has any.",
                labels=["tenant", "state"],
            )
            if reading is not None:
                for tenant, counts in sorted(reading.by_tenant.items()):
                    for state in _QUEUED:
                        tenants.add_metric([tenant, state.value], counts.get(state, 0))
            yield tenants
        yield from _health(reading.health if reading is not None else None)
        age = GaugeMetricFamily(
            "vidjobs_queue_depth_age_seconds", "Seconds since the queue depth was last read."
        )
        if last is not None:
            age.add_metric([], round(time.monotonic() - last.at, 3))
        yield age
        yield GaugeMetricFamily(
            "vidjobs_database_up",
            "1 if the last read of the queue depth succeeded.",
            value=0 if reading is None else 1,
        )


_HEALTH: tuple[tuple[str, str, str], ...] = (
    (
        "vidjobs_queue_oldest_pending_age_seconds",
        "oldest_pending_s",
        "Age of the oldest due pending job (now - run_after), 0 when none is due.",
    ),
    (
        "vidjobs_jobs_lease_expired",
        "lease_expired",
        "Running jobs whose lease expired (their worker stopped heartbeating; the next claim "
        "takes them back).",
    ),
    (
        "vidjobs_webhook_deliveries_pending",
        "webhook_pending",
        "Webhook deliveries neither delivered nor failed yet.",
    ),
    (
        "vidjobs_webhook_oldest_pending_age_seconds",
        "webhook_oldest_s",
        "Age of the oldest pending webhook delivery, 0 when none.",
    ),
)


def _health(health: QueueHealth | None) -> Iterable[Metric]:
    """The gauges the alerts watch besides the depth (absent while the database is not read)."""
    for name, field, help_text in _HEALTH:
        gauge = GaugeMetricFamily(name, help_text)
        if health is not None:
            gauge.add_metric([], getattr(health, field))
        yield gauge


class Metrics:
    """Request counters and latency histograms keyed by (method, route template).

    Args:
        queue_depth: where the queue depth comes from (its task runs in the app's lifespan).
        per_tenant: show the per-tenant queue depth (the route is behind the metrics token).
    """

    def __init__(self, queue_depth: QueueDepth, *, per_tenant: bool = False) -> None:
        self.queue_depth = queue_depth
        self.multiprocess = _multiprocess()
        self.registry = CollectorRegistry(auto_describe=False)
        # In multiprocess mode the values live in the shared files, and only the collector
        # that sums them may be registered (else this process's counts would appear twice).
        own = None if self.multiprocess else self.registry
        self.requests = Counter(
            "vidjobs_http_requests",
            "HTTP requests answered, by route and status.",
            ["method", "route", "status"],
            registry=own,
        )
        self.duration = Histogram(
            "vidjobs_http_request_duration_seconds",
            "Time to answer, by route.",
            ["method", "route"],
            buckets=BUCKETS,
            registry=own,
        )
        if self.multiprocess:
            MultiProcessCollector(self.registry)  # type: ignore[no-untyped-call]
        self.registry.register(QueueDepthCollector(queue_depth, per_tenant=per_tenant))
        # The children per label set, so a request costs two dict lookups, not two labels().
        self._counters: dict[tuple[str, str, int], Counter] = {}
        self._histograms: dict[tuple[str, str], Histogram] = {}

    def observe(self, method: str, route: str, status: int, seconds: float) -> None:
        """Record one finished request."""
        counter = self._counters.get((method, route, status))
        if counter is None:
            counter = self._counters[(method, route, status)] = self.requests.labels(
                method, route, str(status)
            )
        counter.inc()
        histogram = self._histograms.get((method, route))
        if histogram is None:
            histogram = self._histograms[(method, route)] = self.duration.labels(method, route)
        histogram.observe(seconds)

    def middleware(self, app: ASGIApp) -> ASGIApp:
        """ASGI middleware recording every routed HTTP request under its path template.

        Litestar runs it after routing, so ``path_template`` is always there and the route
        label takes one value per route (a scanner's made-up paths are 404s before it).
        """

        async def record(scope: Scope, receive: Receive, send: Send) -> None:
            if scope["type"] != ScopeType.HTTP:
                await app(scope, receive, send)
                return
            start = time.perf_counter()
            status = 500

            async def send_wrapper(message: Message) -> None:
                nonlocal status
                if message["type"] == "http.response.start":
                    status = int(message["status"])
                await send(message)

            try:
                await app(scope, receive, send_wrapper)
            finally:
                route = scope.get("path_template") or "unmatched"
                self.observe(scope["method"], route, status, time.perf_counter() - start)

        return record

    def render(self) -> bytes:
        """The Prometheus text format (version 0.0.4), from memory and the shared files only."""
        return generate_latest(self.registry)
