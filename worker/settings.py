"""How one worker process runs: concurrency, batching, leases, heartbeats, shutdown, idling."""

from __future__ import annotations

import os
import socket
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

__all__ = ["WorkerSettings", "default_worker_id"]


def default_worker_id() -> str:
    """``hostname-pid``: unique per process, and a DBA can tell which box holds a job."""
    return f"{socket.gethostname()}-{os.getpid()}"


@dataclass(frozen=True, kw_only=True)
class WorkerSettings:
    """Settings of one worker process (``VIDJOBS_WORKER_*`` environment variables).

    Attributes:
        concurrency: jobs running at once in this process. One video analysis already
            spreads each frame over every core (PyTorch and ONNX Runtime intra-op threads), so
            1 is fastest for ``yolo_ocr`` (bench/executors.py); scale with processes or
            machines. Short jobs (``noop``) want more.
        batch_size: most jobs taken by one claim statement and most completions written by
            one ``job_complete_many``; batching is what makes short jobs cheap.
        prefetch: jobs claimed ahead of free slots. Claimed-but-waiting jobs hold a lease
            another idle worker cannot take, so keep 0 for long jobs; the queue benchmark
            raises it for no-op jobs.
        lease_seconds: how long a claim or heartbeat holds a job; a crashed worker's jobs are
            taken back after this.
        heartbeat_interval_s: how often a running job's lease is extended. Also the bound on
            how long a cancelled job keeps running, so it must stay well under the lease.
        progress_interval_s: at least this long between two progress writes of one job.
        grace_seconds: after SIGTERM/SIGINT, how long running jobs may still finish before
            they are handed back (released to pending, attempt not counted).
        poll_interval_s: the first idle wait for a NOTIFY before claiming anyway (the poll
            fallback that also finds jobs whose retry backoff ran out).
        idle_backoff_max_s: idle waits double up to this while the queue stays empty.
        worker_id: recorded on every job this process claims.
        durable_claims: wait for the WAL flush on every claim (the default). False runs the
            claim connection with ``synchronous_commit=off``: safe, since a claim lost in a
            server crash only puts the job back to pending (as if this worker had died right
            after claiming), and it takes an fsync off the wake-up path. Completions,
            failures and submits are always durable.
    """

    concurrency: int = 1
    batch_size: int = 100
    prefetch: int = 0
    lease_seconds: float = 60.0
    heartbeat_interval_s: float = 5.0
    progress_interval_s: float = 0.5
    grace_seconds: float = 30.0
    poll_interval_s: float = 0.5
    idle_backoff_max_s: float = 5.0
    worker_id: str = field(default_factory=default_worker_id)
    durable_claims: bool = True

    def __post_init__(self) -> None:
        if self.concurrency < 1:
            raise ValueError("concurrency must be at least 1")
        if self.batch_size < 1:
            raise ValueError("batch_size must be at least 1")
        if self.prefetch < 0:
            raise ValueError("prefetch must not be negative")
        if not 0 < self.heartbeat_interval_s < self.lease_seconds:
            raise ValueError(
                "heartbeat_interval_s must be positive and shorter than lease_seconds, "
                "or leases expire between heartbeats"
            )
        if self.grace_seconds < 0 or self.poll_interval_s <= 0:
            raise ValueError("grace_seconds must be >= 0 and poll_interval_s > 0")
        if self.idle_backoff_max_s < self.poll_interval_s:
            raise ValueError("idle_backoff_max_s must be at least poll_interval_s")

    @classmethod
    def from_env(cls, env: Mapping[str, str] | None = None) -> WorkerSettings:
        """Build from ``VIDJOBS_WORKER_*`` variables; unset or empty ones keep their defaults."""
        e = os.environ if env is None else env
        kwargs: dict[str, Any] = {}
        for var, (name, convert) in _ENV.items():
            raw = e.get(var, "")
            if raw.strip():
                kwargs[name] = convert(raw)
        return cls(**kwargs)


def _bool(raw: str) -> bool:
    value = raw.strip().lower()
    if value in ("1", "true", "yes", "on"):
        return True
    if value in ("0", "false", "no", "off"):
        return False
    raise ValueError(f"not a boolean: {raw!r}")


# Environment variable -> (field, parser). The CLI shows the same names in --help.
_ENV: dict[str, tuple[str, Callable[[str], Any]]] = {
    "VIDJOBS_WORKER_CONCURRENCY": ("concurrency", int),
    "VIDJOBS_WORKER_BATCH_SIZE": ("batch_size", int),
    "VIDJOBS_WORKER_PREFETCH": ("prefetch", int),
    "VIDJOBS_WORKER_LEASE_SECONDS": ("lease_seconds", float),
    "VIDJOBS_WORKER_HEARTBEAT_INTERVAL": ("heartbeat_interval_s", float),
    "VIDJOBS_WORKER_PROGRESS_INTERVAL": ("progress_interval_s", float),
    "VIDJOBS_WORKER_GRACE_SECONDS": ("grace_seconds", float),
    "VIDJOBS_WORKER_POLL_INTERVAL": ("poll_interval_s", float),
    "VIDJOBS_WORKER_IDLE_BACKOFF_MAX": ("idle_backoff_max_s", float),
    "VIDJOBS_WORKER_ID": ("worker_id", str),
    "VIDJOBS_WORKER_DURABLE_CLAIMS": ("durable_claims", _bool),
}
