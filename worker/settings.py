"""How one worker process runs: concurrency, batching, leases, heartbeats, shutdown, idling."""

from __future__ import annotations

import os
import socket

from pydantic import Field, model_validator

from vidjobs.db.settings import TenantDefaults
from vidjobs.settings import Settings, setting
from vidjobs.webhooks.settings import DispatchSettings

__all__ = ["WorkerSettings", "default_worker_id"]


def default_worker_id() -> str:
    """``hostname-pid``: unique per process, and a DBA can tell which box holds a job."""
    return f"{socket.gethostname()}-{os.getpid()}"


class WorkerSettings(Settings):
    """Settings of one worker process (``VIDJOBS_WORKER_*``, the flags of ``vidjobs worker``)."""

    tenants: TenantDefaults = Field(
        default_factory=TenantDefaults,
        description="The claim's defaults for tenants whose row leaves weight or max_running "
        "NULL (``VIDJOBS_TENANT_DEFAULT_*``).",
    )

    webhook_dispatch: DispatchSettings = Field(
        default_factory=DispatchSettings,
        description="How this process's webhook dispatcher delivers (``VIDJOBS_WEBHOOK_*``).",
    )
    webhooks: bool = setting(
        True,
        env="VIDJOBS_WORKER_WEBHOOKS",
        flag="--webhooks/--no-webhooks",
        help="Run a webhook dispatcher in this process (it needs VIDJOBS_WEBHOOK_SECRET_KEYS; "
        "without them the worker says so and sends none). --no-webhooks leaves the outbox to "
        "other workers or to ``vidjobs webhooks dispatch``.",
    )
    concurrency: int = setting(
        1,
        env="VIDJOBS_WORKER_CONCURRENCY",
        ge=1,
        help="Jobs running at once in this process. One video analysis already spreads each "
        "frame over every core (PyTorch and ONNX Runtime intra-op threads), so 1 is fastest for "
        "``yolo_ocr`` (bench/executors.py); scale with processes or machines. Short jobs "
        "(``noop``) want more.",
    )
    batch_size: int = setting(
        100,
        env="VIDJOBS_WORKER_BATCH_SIZE",
        ge=1,
        help="Most jobs taken by one claim statement and most completions written by one "
        "``job_complete_many``; batching is what makes short jobs cheap.",
    )
    prefetch: int = setting(
        0,
        env="VIDJOBS_WORKER_PREFETCH",
        ge=0,
        help="Jobs claimed ahead of free slots. Claimed-but-waiting jobs hold a lease another "
        "idle worker cannot take, so keep 0 for long jobs; the queue benchmark raises it for "
        "no-op jobs.",
    )
    lease_seconds: float = setting(
        60.0,
        env="VIDJOBS_WORKER_LEASE_SECONDS",
        gt=0,
        help="How long a claim or heartbeat holds a job; a crashed worker's jobs are taken back "
        "after this.",
    )
    heartbeat_interval_s: float = setting(
        5.0,
        env="VIDJOBS_WORKER_HEARTBEAT_INTERVAL",
        flag="--heartbeat-interval",
        gt=0,
        help="Seconds between two extensions of a running job's lease. Also the bound on how "
        "long a cancelled job keeps running, so it must stay well under the lease.",
    )
    progress_interval_s: float = setting(
        0.5,
        env="VIDJOBS_WORKER_PROGRESS_INTERVAL",
        flag="--progress-interval",
        gt=0,
        help="At least this many seconds between two progress writes of one job.",
    )
    grace_seconds: float = setting(
        30.0,
        env="VIDJOBS_WORKER_GRACE_SECONDS",
        ge=0,
        help="After SIGTERM/SIGINT, how long running jobs may still finish before they are "
        "handed back (released to pending, attempt not counted).",
    )
    poll_interval_s: float = setting(
        0.5,
        env="VIDJOBS_WORKER_POLL_INTERVAL",
        flag="--poll-interval",
        gt=0,
        help="Seconds of the first idle wait for a NOTIFY before claiming anyway (the poll "
        "fallback that also finds jobs whose retry backoff ran out).",
    )
    idle_backoff_max_s: float = setting(
        5.0,
        env="VIDJOBS_WORKER_IDLE_BACKOFF_MAX",
        flag="--idle-backoff-max",
        gt=0,
        help="Idle waits double up to this many seconds while the queue stays empty.",
    )
    worker_id: str = setting(
        default_factory=default_worker_id,
        env="VIDJOBS_WORKER_ID",
        shown_default="hostname-pid",
        min_length=1,
        help="Name recorded on every job this process claims.",
    )
    durable_claims: bool = setting(
        True,
        env="VIDJOBS_WORKER_DURABLE_CLAIMS",
        flag="--durable-claims/--fast-claims",
        help="Wait for the WAL flush on every claim (the default). --fast-claims runs the claim "
        "connection with ``synchronous_commit=off``: safe, since a claim lost in a server crash "
        "only puts the job back to pending (as if this worker had died right after claiming), "
        "and it takes an fsync off the wake-up path. Completions, failures and submits are "
        "always durable.",
    )

    metrics_port: int = setting(
        0,
        env="VIDJOBS_WORKER_METRICS_PORT",
        ge=0,
        le=65535,
        help="Serve this worker's Prometheus metrics (jobs, durations, stage times, heartbeat "
        "lag) over HTTP on this port; 0 = not served. One port per process: give each worker "
        "on one machine its own.",
    )
    metrics_host: str = setting(
        "127.0.0.1",
        env="VIDJOBS_WORKER_METRICS_HOST",
        help="Interface the metrics port listens on: this machine only by default, like the "
        "API; 0.0.0.0 in a container that Prometheus scrapes from outside (the k8s manifest).",
    )

    @model_validator(mode="after")
    def _leases_outlive_heartbeats(self) -> WorkerSettings:
        if self.heartbeat_interval_s >= self.lease_seconds:
            raise ValueError(
                "heartbeat_interval_s must be positive and shorter than lease_seconds, "
                "or leases expire between heartbeats"
            )
        if self.idle_backoff_max_s < self.poll_interval_s:
            raise ValueError("idle_backoff_max_s must be at least poll_interval_s")
        return self
