"""The blob-store interface both backends implement.

The interface is synchronous on purpose: the ``minio`` SDK blocks, and the worker runs the
pipeline in threads anyway. Async callers (Litestar handlers) run each call in a worker thread::

    await anyio.to_thread.run_sync(lambda: store.put_stream(key, f, size=n))

One store object is safe to share between threads (the S3 client pools connections; the local
backend writes through unique temp files).
"""

from __future__ import annotations

from pathlib import Path
from typing import BinaryIO, Protocol, runtime_checkable

__all__ = ["DEFAULT_CONTENT_TYPE", "BlobStore"]

DEFAULT_CONTENT_TYPE = "application/octet-stream"


@runtime_checkable
class BlobStore(Protocol):
    """Where videos and results documents live (S3/MinIO or a local directory).

    Every method raises :class:`~db.blobs.errors.BlobStoreUnavailable` when the store does not
    answer, and :class:`~db.blobs.errors.BlobStoreError` for anything else that goes wrong.
    Writes are all-or-nothing: a reader sees the old blob, the new blob, or none, never a part.
    """

    def ensure_ready(self) -> None:
        """Create the bucket (or directory) if missing; call once at process start."""

    def ping(self) -> None:
        """Return if the store answers and the bucket exists (for ``/ready``), else raise."""

    def put_stream(
        self,
        key: str,
        stream: BinaryIO,
        *,
        size: int | None = None,
        content_type: str = DEFAULT_CONTENT_TYPE,
    ) -> int:
        """Upload ``stream`` in parts, never holding it whole in memory; returns bytes written.

        Args:
            key: where to store it (see :mod:`db.blobs.keys`).
            stream: anything with ``read(n) -> bytes``; read to EOF (or ``size`` bytes).
            size: the exact length if known; ``None`` streams until EOF (multipart).
            content_type: stored with the object on S3; ignored by the local backend.

        Raises:
            BlobStoreError: ``size`` was given and the stream ended before it.
        """

    def put_bytes(self, key: str, data: bytes, *, content_type: str = DEFAULT_CONTENT_TYPE) -> None:
        """Store a small blob (a results document) from memory."""

    def get_to_tempfile(self, key: str, *, suffix: str = "", directory: Path | None = None) -> Path:
        """Download to a new temp file and return its path; the CALLER deletes it.

        Args:
            key: the blob to fetch.
            suffix: the temp file's ending (``.mp4`` helps OpenCV pick a demuxer).
            directory: where to create it; the system temp directory if omitted.

        Raises:
            BlobNotFound: no blob under ``key`` (no temp file is left behind).
        """

    def get_bytes(self, key: str) -> bytes:
        """Read a small blob whole (results documents); raises ``BlobNotFound`` if absent."""

    def exists(self, key: str) -> bool:
        """True if a blob is stored under ``key``."""

    def delete(self, key: str) -> None:
        """Remove the blob; deleting a missing key is not an error (idempotent)."""

    def close(self) -> None:
        """Release pooled connections; the store must not be used afterwards."""
