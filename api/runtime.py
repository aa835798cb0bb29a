"""What the app holds while it runs: settings, the pool, the blob store, counters."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from anyio import CapacityLimiter
from litestar.datastructures import State
from psycopg_pool import AsyncConnectionPool

from vidjobs.api.admission import TenantUploads
from vidjobs.api.auth import AuthCache
from vidjobs.api.long_poll import LongPoll
from vidjobs.api.metrics import Metrics
from vidjobs.api.settings import ApiSettings
from vidjobs.api.status_reads import StatusReads
from vidjobs.blobs import BlobStore

__all__ = ["ApiRuntime", "runtime"]

_STATE_KEY = "vidjobs"


@dataclass(frozen=True, slots=True)
class ApiRuntime:
    """Opened in the lifespan, closed at shutdown; handlers reach it through a dependency.

    Attributes:
        settings: the process's settings.
        pool: the Postgres pool.
        store: the blob store (thread-safe, sync; called through worker threads).
        metrics: request counters and latencies.
        auth_cache: recently verified API keys.
        upload_limiter: most uploads streaming at once; each holds a worker thread.
        tenant_uploads: each tenant's uploads in progress, capped below ``upload_limiter``.
        status_reads: the status route's batched reads.
        long_poll: ``?wait=S`` on the status route, on those reads.
    """

    settings: ApiSettings
    pool: AsyncConnectionPool[Any]
    store: BlobStore
    metrics: Metrics
    auth_cache: AuthCache
    upload_limiter: CapacityLimiter
    tenant_uploads: TenantUploads
    status_reads: StatusReads
    long_poll: LongPoll

    def install(self, state: State) -> None:
        """Make this runtime the app's."""
        state[_STATE_KEY] = self


def runtime(state: State) -> ApiRuntime:
    """The app's runtime (a Litestar dependency: ``state`` is injected by name)."""
    rt = state[_STATE_KEY]
    assert isinstance(rt, ApiRuntime)
    return rt
