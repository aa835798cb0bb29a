"""Blob-store settings from ``VIDJOBS_*`` environment variables, and the factory that opens one."""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

from vidjobs.blobs.errors import BlobStoreError
from vidjobs.blobs.protocol import BlobStore

__all__ = ["BlobSettings", "open_blob_store"]

_TRUE = {"1", "true", "yes", "on"}
_FALSE = {"0", "false", "no", "off", ""}


def _flag(name: str, raw: str) -> bool:
    value = raw.strip().lower()
    if value in _TRUE:
        return True
    if value in _FALSE:
        return False
    raise BlobStoreError(f"{name} must be true or false, got {raw!r}")


def _number(env: Mapping[str, str], name: str, default: float) -> float:
    raw = env.get(name)
    if raw is None:
        return default
    try:
        value = float(raw)
    except ValueError:
        value = -1.0
    if value <= 0:
        raise BlobStoreError(f"{name} must be a positive number, got {raw!r}")
    return value


@dataclass(frozen=True)
class BlobSettings:
    """Where blobs live.

    Attributes:
        backend: ``local`` (a directory: single machine, the embedded default) or ``s3``
            (MinIO or any S3; what production and several machines need).
        directory: root directory of the local backend (``VIDJOBS_BLOB_DIR``).
        s3_endpoint: ``host:port`` of the S3 API, no scheme (``VIDJOBS_S3_ENDPOINT``).
        s3_access_key: access key id (``VIDJOBS_S3_ACCESS_KEY``).
        s3_secret_key: secret key (``VIDJOBS_S3_SECRET_KEY``).
        s3_bucket: bucket holding every key; created by ``ensure_ready`` (``VIDJOBS_S3_BUCKET``).
        s3_secure: HTTPS when true (``VIDJOBS_S3_SECURE``).
        s3_region: region to sign for; set, it saves a location lookup per bucket
            (``VIDJOBS_S3_REGION``).
        s3_connect_timeout_s: seconds to wait for a TCP connection, so an outage shows within
            seconds (``VIDJOBS_S3_CONNECT_TIMEOUT``).
        s3_read_timeout_s: seconds to wait for each read of a response
            (``VIDJOBS_S3_READ_TIMEOUT``).
        s3_parallel_uploads: multipart parts uploaded at once; each holds 16 MiB of memory per
            upload, so raise it only for a distant S3 (``VIDJOBS_S3_PARALLEL_UPLOADS``).
    """

    backend: Literal["local", "s3"] = "local"
    directory: Path = Path("var/blobs")
    s3_endpoint: str = "127.0.0.1:9000"
    s3_access_key: str = ""
    s3_secret_key: str = ""
    s3_bucket: str = "vidjobs"
    s3_secure: bool = False
    s3_region: str = "us-east-1"
    s3_connect_timeout_s: float = 3.0
    s3_read_timeout_s: float = 30.0
    s3_parallel_uploads: int = 1

    def __repr__(self) -> str:
        # Never print the secret key into a log.
        return (
            f"BlobSettings(backend={self.backend!r}, directory={str(self.directory)!r}, "
            f"s3_endpoint={self.s3_endpoint!r}, s3_bucket={self.s3_bucket!r}, "
            f"s3_secure={self.s3_secure!r}, s3_region={self.s3_region!r})"
        )

    @classmethod
    def from_env(cls, env: Mapping[str, str] | None = None) -> BlobSettings:
        """Build from ``VIDJOBS_BLOB_*`` / ``VIDJOBS_S3_*``; unset variables keep the defaults."""
        e = os.environ if env is None else env
        d = cls()
        backend = e.get("VIDJOBS_BLOB_BACKEND", d.backend).strip().lower()
        if backend not in ("local", "s3"):
            raise BlobStoreError(f"VIDJOBS_BLOB_BACKEND must be 'local' or 's3', got {backend!r}")
        connect = _number(e, "VIDJOBS_S3_CONNECT_TIMEOUT", d.s3_connect_timeout_s)
        read = _number(e, "VIDJOBS_S3_READ_TIMEOUT", d.s3_read_timeout_s)
        parallel = int(_number(e, "VIDJOBS_S3_PARALLEL_UPLOADS", d.s3_parallel_uploads))
        return cls(
            backend="s3" if backend == "s3" else "local",
            directory=Path(e.get("VIDJOBS_BLOB_DIR", str(d.directory))),
            s3_endpoint=e.get("VIDJOBS_S3_ENDPOINT", d.s3_endpoint),
            s3_access_key=e.get("VIDJOBS_S3_ACCESS_KEY", d.s3_access_key),
            s3_secret_key=e.get("VIDJOBS_S3_SECRET_KEY", d.s3_secret_key),
            s3_bucket=e.get("VIDJOBS_S3_BUCKET", d.s3_bucket),
            s3_secure=_flag("VIDJOBS_S3_SECURE", e.get("VIDJOBS_S3_SECURE", "false")),
            s3_region=e.get("VIDJOBS_S3_REGION", d.s3_region),
            s3_connect_timeout_s=connect,
            s3_read_timeout_s=read,
            s3_parallel_uploads=parallel,
        )


def open_blob_store(settings: BlobSettings) -> BlobStore:
    """The backend ``settings`` names; cheap (no I/O) — call ``ensure_ready()`` next."""
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
