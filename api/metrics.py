"""Prometheus text exposition, by hand: request counts and latencies per route, queue depth.

Counters live in this process (one registry per app): with several uvicorn workers, each
scrape sees one worker's counts. Run one worker per container when the numbers matter. The
queue depth is the last reading of :class:`QueueDepth` (a background task): rendering never
queries Postgres.
"""

from __future__ import annotations

import time
from collections import defaultdict

from litestar.enums import ScopeType
from litestar.types import ASGIApp, Message, Receive, Scope, Send

from vidjobs.api.queue_depth import QueueDepth
from vidjobs.schema.job import JobState

__all__ = ["BUCKETS", "Metrics"]

BUCKETS: tuple[float, ...] = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0)
"""Latency histogram bounds in seconds (uploads land in the top buckets)."""

_QUEUED = (JobState.PENDING, JobState.RUNNING)


def _label(value: str) -> str:
    return value.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n")


class Metrics:
    """Request counters and latency histograms keyed by (method, route template).

    Args:
        queue_depth: where the queue depth comes from (its task runs in the app's lifespan).
    """

    def __init__(self, queue_depth: QueueDepth) -> None:
        self.queue_depth = queue_depth
        self._requests: dict[tuple[str, str, int], int] = defaultdict(int)
        self._buckets: dict[tuple[str, str], list[int]] = {}
        self._sum: dict[tuple[str, str], float] = defaultdict(float)
        self._count: dict[tuple[str, str], int] = defaultdict(int)

    def observe(self, method: str, route: str, status: int, seconds: float) -> None:
        """Record one finished request."""
        self._requests[(method, route, status)] += 1
        key = (method, route)
        counts = self._buckets.setdefault(key, [0] * len(BUCKETS))
        for i, bound in enumerate(BUCKETS):
            if seconds <= bound:
                counts[i] += 1
        self._sum[key] += seconds
        self._count[key] += 1

    def middleware(self, app: ASGIApp) -> ASGIApp:
        """ASGI middleware recording every routed HTTP request under its path template."""

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
                route = scope.get("path_template") or scope.get("path", "")
                self.observe(scope["method"], route, status, time.perf_counter() - start)

        return record

    def render(self, *, per_tenant: bool = False) -> str:
        """The Prometheus text format (version 0.0.4), from memory only.

        Args:
            per_tenant: also the queue depth per tenant (``vidjobs_tenant_jobs``): it names
                tenants, so the route shows it only behind the metrics token.
        """
        lines = [
            "# HELP vidjobs_http_requests_total HTTP requests answered, by route and status.",
            "# TYPE vidjobs_http_requests_total counter",
        ]
        for (method, route, status), n in sorted(self._requests.items()):
            lines.append(
                f'vidjobs_http_requests_total{{method="{method}",route="{_label(route)}",'
                f'status="{status}"}} {n}'
            )
        lines += [
            "# HELP vidjobs_http_request_duration_seconds Time to answer, by route.",
            "# TYPE vidjobs_http_request_duration_seconds histogram",
        ]
        for (method, route), counts in sorted(self._buckets.items()):
            labels = f'method="{method}",route="{_label(route)}"'
            for bound, n in zip(BUCKETS, counts, strict=True):
                lines.append(
                    f'vidjobs_http_request_duration_seconds_bucket{{{labels},le="{bound}"}} {n}'
                )
            total = self._count[(method, route)]
            lines.append(
                f'vidjobs_http_request_duration_seconds_bucket{{{labels},le="+Inf"}} {total}'
            )
            lines.append(
                f"vidjobs_http_request_duration_seconds_sum{{{labels}}} "
                f"{self._sum[(method, route)]:.6f}"
            )
            lines.append(f"vidjobs_http_request_duration_seconds_count{{{labels}}} {total}")
        lines += self._queue_lines(per_tenant)
        return "\n".join(lines) + "\n"

    def _queue_lines(self, per_tenant: bool) -> list[str]:
        reading, last = self.queue_depth.reading, self.queue_depth.last
        lines = [
            "# HELP vidjobs_jobs Jobs waiting (pending) and running, read from Postgres every "
            "few seconds.",
            "# TYPE vidjobs_jobs gauge",
        ]
        if reading is not None:
            for state in _QUEUED:
                lines.append(f'vidjobs_jobs{{state="{state.value}"}} {reading.total(state)}')
        if per_tenant:
            lines += [
                "# HELP vidjobs_tenant_jobs Jobs waiting (pending) and running, per tenant that "
                "has any.",
                "# TYPE vidjobs_tenant_jobs gauge",
            ]
            if reading is not None:
                for tenant, counts in sorted(reading.by_tenant.items()):
                    for state in _QUEUED:
                        lines.append(
                            f'vidjobs_tenant_jobs{{tenant="{_label(tenant)}",'
                            f'state="{state.value}"}} {counts.get(state, 0)}'
                        )
        lines += [
            "# HELP vidjobs_queue_depth_age_seconds Seconds since the queue depth was last read.",
            "# TYPE vidjobs_queue_depth_age_seconds gauge",
        ]
        if last is not None:
            lines.append(f"vidjobs_queue_depth_age_seconds {time.monotonic() - last.at:.3f}")
        lines += [
            "# HELP vidjobs_database_up 1 if the last read of the queue depth succeeded.",
            "# TYPE vidjobs_database_up gauge",
            f"vidjobs_database_up {0 if reading is None else 1}",
        ]
        return lines
