"""Settings of the API process (``VIDJOBS_API_*``), composed with the database and blob settings."""

from __future__ import annotations

from pydantic import Field, field_validator

from vidjobs.blobs import BlobSettings
from vidjobs.db.settings import DatabaseSettings
from vidjobs.schema.api import DEFAULT_PIPELINE, PIPELINES
from vidjobs.settings import Settings, setting

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

    @field_validator("default_pipeline")
    @classmethod
    def _known_pipeline(cls, value: str) -> str:
        if value not in PIPELINES:
            raise ValueError(f"must be one of {', '.join(PIPELINES)}")
        return value
