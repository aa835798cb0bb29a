"""Where blobs live (``BlobSettings``) and the factory that opens the store they name."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any, Literal

from pydantic import BeforeValidator

from vidjobs.blobs.protocol import BlobStore
from vidjobs.settings import Settings, setting

__all__ = ["BlobSettings", "open_blob_store"]


def _lower(value: Any) -> Any:
    return value.strip().lower() if isinstance(value, str) else value


class BlobSettings(Settings):
    """Where blobs live: a local directory (one machine) or S3/MinIO (several machines)."""

    backend: Annotated[Literal["local", "s3"], BeforeValidator(_lower)] = setting(
        "local",
        env="VIDJOBS_BLOB_BACKEND",
        help="``local`` (a directory: single machine, the embedded default) or ``s3`` (MinIO or "
        "any S3; what production and several machines need).",
    )
    directory: Path = setting(
        Path("var/blobs"), env="VIDJOBS_BLOB_DIR", help="Root directory of the local backend."
    )
    s3_endpoint: str = setting(
        "127.0.0.1:9000", env="VIDJOBS_S3_ENDPOINT", help="``host:port`` of the S3 API, no scheme."
    )
    s3_access_key: str = setting("", env="VIDJOBS_S3_ACCESS_KEY", help="Access key id.")
    s3_secret_key: str = setting(
        "", env="VIDJOBS_S3_SECRET_KEY", repr=False, help="Secret key (never shown in a log)."
    )
    s3_bucket: str = setting(
        "vidjobs",
        env="VIDJOBS_S3_BUCKET",
        help="Bucket holding every key; created by ``ensure_ready``.",
    )
    s3_secure: bool = setting(False, env="VIDJOBS_S3_SECURE", help="HTTPS when true.")
    s3_region: str = setting(
        "us-east-1",
        env="VIDJOBS_S3_REGION",
        help="Region to sign for; set, it saves a location lookup per bucket.",
    )
    s3_connect_timeout_s: float = setting(
        3.0,
        env="VIDJOBS_S3_CONNECT_TIMEOUT",
        gt=0,
        help="Seconds to wait for a TCP connection, so an outage shows within seconds.",
    )
    s3_read_timeout_s: float = setting(
        30.0,
        env="VIDJOBS_S3_READ_TIMEOUT",
        gt=0,
        help="Seconds to wait for each read of a response.",
    )
    s3_parallel_uploads: int = setting(
        1,
        env="VIDJOBS_S3_PARALLEL_UPLOADS",
        ge=1,
        help="Multipart parts uploaded at once; each holds 16 MiB of memory per upload, so raise "
        "it only for a distant S3.",
    )


def open_blob_store(settings: BlobSettings) -> BlobStore:
    """The backend ``settings`` names; cheap (no I/O): call ``ensure_ready()`` next."""
    if settings.backend == "s3":
        from vidjobs.blobs.s3 import S3BlobStore

        return S3BlobStore(
            endpoint=settings.s3_endpoint,
            access_key=settings.s3_access_key,
            secret_key=settings.s3_secret_key,
            bucket=settings.s3_bucket,
            secure=settings.s3_secure,
            region=settings.s3_region or None,
            connect_timeout_s=settings.s3_connect_timeout_s,
            read_timeout_s=settings.s3_read_timeout_s,
            parallel_uploads=settings.s3_parallel_uploads,
        )
    from vidjobs.blobs.local import LocalBlobStore

    return LocalBlobStore(settings.directory)
