"""The worker's Prometheus metrics, served on a port of its own (``--metrics-port``).

A worker is one process with no HTTP server, so it gets prometheus_client's small one, on a
thread, on ``VIDJOBS_WORKER_METRICS_HOST:VIDJOBS_WORKER_METRICS_PORT`` (off unless a port is
given). Each :class:`WorkerMetrics` has a registry of its own: tests run many workers in one
process. What the worker knows at any moment (jobs in flight, how long each model took to
load) is read when a scrape asks, not copied into gauges as it changes.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable, Iterable, Mapping
from wsgiref.simple_server import WSGIServer

from prometheus_client import CollectorRegistry, Counter, Histogram, start_http_server
from prometheus_client.core import GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

__all__ = ["STAGES", "MetricsServer", "WorkerMetrics"]

log = logging.getLogger(__name__)

STAGES = ("decode", "detect", "ocr")
"""The stages ``vidjobs_worker_stage_seconds`` times, per analysed frame."""

_JOB_BUCKETS = (0.01, 0.1, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 120.0, 300.0, 600.0, 1800.0)
_FPS_BUCKETS = (0.5, 1.0, 2.0, 5.0, 10.0, 20.0, 50.0, 100.0, 200.0, 500.0)
_STAGE_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5)
_LAG_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0)
# A pipeline may name its own error kinds (``noop`` takes one from the job's params): past this
# many distinct ones, the rest count as "other", so no tenant can grow the series without end.
_MAX_ERROR_KINDS = 50


class _Live(Collector):
    """Gauges read at scrape time from the worker's own state (:meth:`WorkerMetrics.watch`)."""

    def __init__(self) -> None:
        self.in_flight: Callable[[], int] = lambda: 0
        self.load_seconds: Callable[[], Mapping[str, float]] = dict
        self.ready = False

    def collect(self) -> Iterable[Metric]:
        yield GaugeMetricFamily(
            "vidjobs_worker_ready",
            "1 once the worker's models are loaded and warm and it claims jobs; 0 while loading.",
            value=1.0 if self.ready else 0.0,
        )
        yield GaugeMetricFamily(
            "vidjobs_worker_jobs_in_flight",
            "Jobs whose pipeline is running in this worker now (at most its concurrency).",
            value=self.in_flight(),
        )
        loads = GaugeMetricFamily(
            "vidjobs_worker_model_load_seconds",
            "Seconds it took to build each pipeline (load and warm its models), before claiming.",
            labels=["pipeline"],
        )
        for pipeline, seconds in sorted(self.load_seconds().items()):
            loads.add_metric([pipeline], seconds)
        yield loads


class MetricsServer:
    """prometheus_client's HTTP server on its thread; :meth:`close` stops it."""

    def __init__(self, server: WSGIServer, thread: threading.Thread) -> None:
        self._server = server
        self._thread = thread

    @property
    def port(self) -> int:
        """The port it listens on (the one asked for, or the one the OS chose for 0)."""
        return int(self._server.server_address[1])

    def close(self) -> None:
        """Stop serving and free the port."""
        self._server.shutdown()
        self._server.server_close()
        self._thread.join(5)


class _Series:
    """One pipeline's children of the per-job metrics."""

    def __init__(self, metrics: WorkerMetrics, pipeline: str) -> None:
        self._metrics = metrics
        self._pipeline = pipeline
        self.claimed = metrics.claimed.labels(pipeline)
        self.completed = metrics.completed.labels(pipeline)
        self.seconds = metrics.job_seconds.labels(pipeline)
        # Made on first use: a pipeline without frames or stages (noop) shows no empty series.
        self._frames_per_second: Histogram | None = None
        self._stages: dict[str, Histogram] = {}

    def frames_per_second(self, rate: float) -> None:
        if self._frames_per_second is None:
            self._frames_per_second = self._metrics.frames_per_second.labels(self._pipeline)
        self._frames_per_second.observe(rate)

    def stage_time(self, stage: str, seconds: float) -> None:
        child = self._stages.get(stage)
        if child is None:
            if stage not in STAGES:  # only the documented stages: the labels stay bounded
                return
            child = self._stages[stage] = self._metrics.stage_seconds.labels(self._pipeline, stage)
        child.observe(seconds)


class WorkerMetrics:
    """Every metric of one worker: counters and histograms it updates, gauges it reads."""

    def __init__(self) -> None:
        self.registry = CollectorRegistry(auto_describe=False)
        r = self.registry
        self.claimed = Counter(
            "vidjobs_worker_jobs_claimed", "Jobs this worker claimed.", ["pipeline"], registry=r
        )
        self.completed = Counter(
            "vidjobs_worker_jobs_completed",
            "Jobs this worker completed (the completion was written).",
            ["pipeline"],
            registry=r,
        )
        self.failed = Counter(
            "vidjobs_worker_jobs_failed",
            "Attempts this worker ended as failed (retried later or not), by error kind.",
            ["pipeline", "error_kind"],
            registry=r,
        )
        self.job_seconds = Histogram(
            "vidjobs_worker_job_duration_seconds",
            "Seconds a completed job's pipeline ran (download, analysis, upload).",
            ["pipeline"],
            buckets=_JOB_BUCKETS,
            registry=r,
        )
        self.frames_per_second = Histogram(
            "vidjobs_worker_job_frames_per_second",
            "Frames analysed per second of a completed job (jobs that report frames).",
            ["pipeline"],
            buckets=_FPS_BUCKETS,
            registry=r,
        )
        self.stage_seconds = Histogram(
            "vidjobs_worker_stage_seconds",
            "Seconds one stage took for one analysed frame (decode, detect, ocr).",
            ["pipeline", "stage"],
            buckets=_STAGE_BUCKETS,
            registry=r,
        )
        self.heartbeat_lag = Histogram(
            "vidjobs_worker_heartbeat_lag_seconds",
            "How late each heartbeat was sent after it was due (heartbeat interval).",
            buckets=_LAG_BUCKETS,
            registry=r,
        )
        # A job's updates go to children made once per pipeline: labels() on every job would
        # triple what counting costs a worker draining thousands of noop jobs a second.
        self._by_pipeline: dict[str, _Series] = {}
        self._error_kinds: set[str] = set()
        self._live = _Live()
        r.register(self._live)

    def watch(
        self, in_flight: Callable[[], int], load_seconds: Callable[[], Mapping[str, float]]
    ) -> None:
        """Where the scrape-time gauges read: running jobs, and each pipeline's build time."""
        self._live.in_flight = in_flight
        self._live.load_seconds = load_seconds

    def set_ready(self, ready: bool) -> None:
        """Whether the models are loaded and the worker claims (``vidjobs_worker_ready``)."""
        self._live.ready = ready

    def _series(self, pipeline: str) -> _Series:
        series = self._by_pipeline.get(pipeline)
        if series is None:
            series = self._by_pipeline[pipeline] = _Series(self, pipeline)
        return series

    def job_claimed(self, pipeline: str) -> None:
        """One job claimed."""
        self._series(pipeline).claimed.inc()

    def job_done(self, pipeline: str, seconds: float, frames: int) -> None:
        """A completion was written: count it, time it, and its frame rate if it had frames."""
        series = self._series(pipeline)
        series.completed.inc()
        series.seconds.observe(seconds)
        if frames > 0 and seconds > 0:
            series.frames_per_second(frames / seconds)

    def job_failed(self, pipeline: str, error_kind: str) -> None:
        """A failed attempt was written (counted or handed back for the infrastructure)."""
        kinds = self._error_kinds
        if error_kind not in kinds:
            if len(kinds) >= _MAX_ERROR_KINDS:
                error_kind = "other"
            kinds.add(error_kind)
        self.failed.labels(pipeline, error_kind).inc()

    def stage_timer(self, pipeline: str) -> Callable[[str, float], None]:
        """``observe(stage, seconds)`` for jobs of ``pipeline`` (thread-safe)."""
        return self._series(pipeline).stage_time

    def serve(self, host: str, port: int) -> MetricsServer:
        """Serve ``/metrics`` (any path answers) on ``host:port`` from a daemon thread.

        Raises:
            OSError: the port is taken or the host is not this machine's.
        """
        server, thread = start_http_server(port, addr=host, registry=self.registry)
        served = MetricsServer(server, thread)
        log.info("worker metrics on http://%s:%d/metrics", host, served.port)
        return served
