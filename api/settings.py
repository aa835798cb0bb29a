"""Settings of the API process (``VIDJOBS_API_*``), composed with the database and blob settings."""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass, field

from vidjobs.blobs import BlobSettings
from vidjobs.db.pool import DatabaseSettings
from vidjobs.schema.api import DEFAULT_PIPELINE, PIPELINES

__all__ = ["ApiSettings"]

_GIB = 1024**3


@dataclass(frozen=True, kw_only=True)
class ApiSettings:
    """How one API process runs.

    Attributes:
        database: Postgres URL and pool sizes (``DATABASE_URL``, ``VIDJOBS_DB_POOL_*``).
        blobs: where uploads and results live (``VIDJOBS_BLOB_*``, ``VIDJOBS_S3_*``); the
            local-directory default suits one machine only.
        host: interface to listen on (``VIDJOBS_API_HOST``).
        port: TCP port (``VIDJOBS_API_PORT``).
        workers: uvicorn worker processes; uploads are I/O bound, so one per core is plenty
            (``VIDJOBS_API_WORKERS``).
        max_upload_bytes: largest video accepted; enforced while streaming, so a liar's
            ``Content-Length`` does not help (``VIDJOBS_API_MAX_UPLOAD_BYTES``).
        default_pipeline: pipeline of a submit that names none (``VIDJOBS_API_DEFAULT_PIPELINE``).
        max_attempts: attempts a job gets before it fails for good
            (``VIDJOBS_API_MAX_ATTEMPTS``).
        auth_cache_seconds: how long a verified API key is trusted without asking Postgres
            again; 0 checks every request, so a revoked key stops at once
            (``VIDJOBS_API_AUTH_CACHE_SECONDS``).
        upload_read_bytes: most bytes handed to the blob store per read; bounds the memory one
            upload holds besides the store's own part buffer (``VIDJOBS_API_UPLOAD_READ_BYTES``).
    """

    database: DatabaseSettings
    blobs: BlobSettings = field(default_factory=BlobSettings)
    host: str = "127.0.0.1"
    port: int = 8000
    workers: int = 1
    max_upload_bytes: int = 2 * _GIB
    default_pipeline: str = DEFAULT_PIPELINE
    max_attempts: int = 3
    auth_cache_seconds: float = 0.0
    upload_read_bytes: int = 1024 * 1024

    def __post_init__(self) -> None:
        if self.default_pipeline not in PIPELINES:
            raise ValueError(
                f"default_pipeline must be one of {', '.join(PIPELINES)}, "
                f"got {self.default_pipeline!r}"
            )
        if self.max_upload_bytes < 1 or self.workers < 1 or self.max_attempts < 1:
            raise ValueError("max_upload_bytes, workers and max_attempts must be at least 1")
        if not 0 < self.port < 65536:
            raise ValueError(f"port must be 1..65535, got {self.port}")
        if self.auth_cache_seconds < 0 or self.upload_read_bytes < 4096:
            raise ValueError("auth_cache_seconds must be >= 0 and upload_read_bytes >= 4096")

    @classmethod
    def from_env(cls, env: Mapping[str, str] | None = None) -> ApiSettings:
        """Build from the environment; unset or empty variables keep their defaults."""
        e = os.environ if env is None else env
        d = cls(database=DatabaseSettings(url=""), blobs=BlobSettings())

        def get(name: str, default: str) -> str:
            return e.get(name, "") or default

        try:
            return cls(
                database=DatabaseSettings.from_env(dict(e)),
                blobs=BlobSettings.from_env(e),
                host=get("VIDJOBS_API_HOST", d.host),
                port=int(get("VIDJOBS_API_PORT", str(d.port))),
                workers=int(get("VIDJOBS_API_WORKERS", str(d.workers))),
                max_upload_bytes=int(get("VIDJOBS_API_MAX_UPLOAD_BYTES", str(d.max_upload_bytes))),
                default_pipeline=get("VIDJOBS_API_DEFAULT_PIPELINE", d.default_pipeline),
                max_attempts=int(get("VIDJOBS_API_MAX_ATTEMPTS", str(d.max_attempts))),
                auth_cache_seconds=float(
                    get("VIDJOBS_API_AUTH_CACHE_SECONDS", str(d.auth_cache_seconds))
                ),
                upload_read_bytes=int(
                    get("VIDJOBS_API_UPLOAD_READ_BYTES", str(d.upload_read_bytes))
                ),
            )
        except ValueError as exc:
            raise ValueError(f"invalid VIDJOBS_API_* setting: {exc}") from exc
