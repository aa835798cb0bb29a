"""Settings of the API process (``VIDJOBS_API_*``), composed with the database and blob settings."""

from __future__ import annotations

from pydantic import Field, field_validator

from vidjobs.blobs import BlobSettings
from vidjobs.db.settings import DatabaseSettings, TenantDefaults
from vidjobs.schema.api import DEFAULT_PIPELINE, PIPELINES
from vidjobs.settings import Settings, setting
from vidjobs.webhooks.settings import TargetPolicy

__all__ = ["ApiSettings"]

_GIB = 1024**3


class ApiSettings(Settings):
    """How one API process runs; ``database`` and ``blobs`` read their own variables."""

    database: DatabaseSettings = Field(
        default_factory=DatabaseSettings,
        description="Postgres URL and pool sizes (``DATABASE_URL``, ``VIDJOBS_DB_POOL_*``).",
    )
    blobs: BlobSettings = Field(
        default_factory=BlobSettings,
        description="Where uploads and results live (``VIDJOBS_BLOB_*``, ``VIDJOBS_S3_*``); "
        "the local-directory default suits one machine only.",
    )
    tenants: TenantDefaults = Field(
        default_factory=TenantDefaults,
        description="Submit limits of a tenant whose row leaves one NULL "
        "(``VIDJOBS_TENANT_DEFAULT_*``).",
    )
    webhook_targets: TargetPolicy = Field(
        default_factory=TargetPolicy,
        description="Which callback URLs a submit may name (``VIDJOBS_WEBHOOK_ALLOW_*``); the "
        "dispatcher applies the same policy.",
    )
    host: str = setting(
        "127.0.0.1",
        env="VIDJOBS_API_HOST",
        help="Interface to listen on (0.0.0.0 for every interface).",
    )
    port: int = setting(8000, env="VIDJOBS_API_PORT", ge=1, le=65535, help="TCP port.")
    workers: int = setting(
        1,
        env="VIDJOBS_API_WORKERS",
        ge=1,
        help="uvicorn worker processes; uploads are I/O bound, so one per core is plenty.",
    )
    max_upload_bytes: int = setting(
        2 * _GIB,
        env="VIDJOBS_API_MAX_UPLOAD_BYTES",
        ge=1,
        help="Largest video accepted; enforced while streaming, so a liar's ``Content-Length`` "
        "does not help (413 beyond it).",
    )
    results_inline_max_bytes: int = setting(
        64 * 1024 * 1024,
        env="VIDJOBS_API_RESULTS_INLINE_MAX_BYTES",
        ge=1,
        help="Largest results document ``GET /video/results/{id}`` returns whole (decoded, a "
        "document takes ~10x its size in memory); beyond it the answer is 422 "
        "``results-too-large`` pointing to the paged reads (``/frames``, ``/tracks``, ...).",
    )
    upload_slots: int = setting(
        32,
        env="VIDJOBS_API_UPLOAD_SLOTS",
        ge=1,
        help="Uploads one API process streams to the blob store at once, all tenants together; "
        "each holds a worker thread.",
    )
    tenant_upload_slots: int = setting(
        8,
        env="VIDJOBS_API_TENANT_UPLOAD_SLOTS",
        ge=1,
        help="Uploads one tenant may have in progress at once in one API process; one more is "
        "refused at once (429 too-many-uploads) before its body is read. Keep it well below "
        "VIDJOBS_API_UPLOAD_SLOTS, so no tenant can hold them all.",
    )
    long_poll_tick_s: float = setting(
        0.05,
        env="VIDJOBS_API_LONG_POLL_TICK_S",
        gt=0,
        le=5,
        help="How often a ``GET /video/status/{id}?wait=S`` re-reads the jobs it waits for (one "
        "batched statement per tick for all of them); a change is answered at most this late.",
    )
    upload_idle_timeout_s: float = setting(
        30.0,
        env="VIDJOBS_API_UPLOAD_IDLE_TIMEOUT_S",
        gt=0,
        flag="--upload-idle-timeout",
        help="A request body that sends nothing for this long is cut off (408 upload-timeout, "
        "nothing stored); also the window the minimum upload rate is measured over.",
    )
    upload_min_bytes_per_s: int = setting(
        1024,
        env="VIDJOBS_API_UPLOAD_MIN_BYTES_PER_S",
        ge=0,
        flag="--upload-min-rate",
        help="Slowest upload accepted, in bytes per second averaged over each "
        "VIDJOBS_API_UPLOAD_IDLE_TIMEOUT_S; slower is cut off (408, nothing stored), so a "
        "trickle cannot hold an upload slot for hours. 0 = no minimum.",
    )
    header_timeout_s: float = setting(
        10.0,
        env="VIDJOBS_API_HEADER_TIMEOUT_S",
        gt=0,
        flag="--header-timeout",
        help="A connection whose request line and headers are not complete this long after "
        "they started (or after it opened) is closed with 408: slow headers hold no socket.",
    )
    keep_alive_timeout_s: int = setting(
        5,
        env="VIDJOBS_API_KEEP_ALIVE_TIMEOUT_S",
        ge=1,
        flag="--keep-alive-timeout",
        help="An idle keep-alive connection is closed after this many seconds (uvicorn's "
        "timeout_keep_alive).",
    )
    default_pipeline: str = setting(
        DEFAULT_PIPELINE,
        env="VIDJOBS_API_DEFAULT_PIPELINE",
        help=f"Pipeline of a submit that names none ({', '.join(PIPELINES)}).",
    )
    max_attempts: int = setting(
        3,
        env="VIDJOBS_API_MAX_ATTEMPTS",
        ge=1,
        help="Attempts a job gets before it fails for good.",
    )
    auth_cache_seconds: float = setting(
        0.0,
        env="VIDJOBS_API_AUTH_CACHE_SECONDS",
        ge=0,
        help="How long a verified API key is trusted without asking Postgres again; 0 checks "
        "every request, so a revoked key stops at once.",
    )
    upload_read_bytes: int = setting(
        1024 * 1024,
        env="VIDJOBS_API_UPLOAD_READ_BYTES",
        ge=4096,
        help="Most bytes handed to the blob store per read; bounds the memory one upload holds "
        "besides the store's own part buffer.",
    )
    metrics_refresh_s: float = setting(
        5.0,
        env="VIDJOBS_API_METRICS_REFRESH_S",
        gt=0,
        flag="--metrics-refresh",
        help="How often each API process reads the queue depth /metrics shows, on a connection "
        "of its own; a scrape only reads that cached value and never queries Postgres.",
    )
    metrics_statement_timeout_s: float = setting(
        2.0,
        env="VIDJOBS_API_METRICS_STATEMENT_TIMEOUT_S",
        gt=0,
        flag="--metrics-statement-timeout",
        help="statement_timeout of the queue-depth read; past it /metrics says "
        "vidjobs_database_up 0 until a read succeeds.",
    )
    request_metrics: bool = setting(
        True,
        env="VIDJOBS_API_REQUEST_METRICS",
        help="Count every request and time it per route on /metrics "
        "(vidjobs_http_requests_total, vidjobs_http_request_duration_seconds); "
        "--no-request-metrics leaves only the queue depth there (and measures what counting "
        "costs: bench/api.py --compare-metrics).",
    )
    metrics_token: str = setting(
        "",
        env="VIDJOBS_API_METRICS_TOKEN",
        repr=False,
        help="When set, /metrics needs 'Authorization: Bearer <token>' (else 401) and also "
        "shows the queue depth per tenant; empty = /metrics is open and names no tenant.",
    )

    ui: bool = setting(
        False,
        env="VIDJOBS_API_UI",
        help="Serve the operator dashboard under /ui: every tenant's queue, jobs, events and "
        "results, read-only and without an API key, so only where operators alone reach the "
        "API (a private network or a proxy that authenticates).",
    )
    ui_cancel: bool = setting(
        False,
        env="VIDJOBS_API_UI_CANCEL",
        help="Let the dashboard cancel pending and running jobs (a same-origin POST); off, "
        "it only reads.",
    )
    ui_frame_cache: int = setting(
        256,
        env="VIDJOBS_API_UI_FRAME_CACHE",
        ge=0,
        help="Decoded video frames (JPEG) each API process keeps in memory for the dashboard's "
        "results viewer, least recently used dropped first; 0 decodes every request.",
    )

    @field_validator("default_pipeline")
    @classmethod
    def _known_pipeline(cls, value: str) -> str:
        if value not in PIPELINES:
            raise ValueError(f"must be one of {', '.join(PIPELINES)}")
        return value
