"""The blob-store interface both backends implement, and what they do the same way.

The interface is synchronous on purpose: the ``minio`` SDK blocks, and the worker runs the
pipeline in threads anyway. Async callers (Litestar handlers) run each call in a worker thread::

    await anyio.to_thread.run_sync(lambda: store.put_stream(key, f, size=n))

One store object is safe to share between threads (the S3 client pools connections; the local
backend writes through unique temp files).

What does not depend on where the bytes go lives here once: checking the key, reading the
caller's stream (counted, its errors told apart from the store's, a short one refused),
``put_bytes`` and the temp file a download lands in. A backend only moves bytes.
"""

from __future__ import annotations

import abc
import contextlib
import io
import os
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import BinaryIO

from vidjobs.blobs.errors import BlobStoreError
from vidjobs.blobs.keys import check_key

__all__ = ["DEFAULT_CONTENT_TYPE", "BlobStore", "SourceStream"]

DEFAULT_CONTENT_TYPE = "application/octet-stream"

_CHUNK = 1024 * 1024


class SourceStream:
    """The caller's stream as a backend reads it: full ``read(n)`` results, counted.

    Full reads because the S3 SDK concatenates reads with ``bytes +=``: a stream that returns
    small chunks would make that quadratic. Errors of the source stream become
    :class:`BlobStoreError`, so they are not mistaken for an unreachable store. With a
    declared ``size`` it reads no further than that.
    """

    def __init__(self, stream: BinaryIO, key: str, size: int | None) -> None:
        self._stream = stream
        self.key = key
        self.size = size
        self.count = 0

    def read(self, n: int = -1) -> bytes:
        """Up to ``n`` bytes (all that is left if negative); fewer only at the end."""
        if self.size is not None:
            left = self.size - self.count
            n = left if n < 0 else min(n, left)
        parts: list[bytes] = []
        got = 0
        while n < 0 or got < n:
            try:
                chunk = self._stream.read(_CHUNK if n < 0 else n - got)
            except OSError as exc:
                raise BlobStoreError(f"reading the stream for {self.key!r}: {exc}") from exc
            if not chunk:
                break
            parts.append(bytes(chunk))
            got += len(chunk)
        self.count += got
        return b"".join(parts)

    def check_complete(self) -> None:
        """Raise :class:`BlobStoreError` if the stream ended before its declared size."""
        if self.size is not None and self.count < self.size:
            raise BlobStoreError(
                f"stream for {self.key!r} ended after {self.count} of {self.size} bytes; "
                "nothing stored"
            )


class BlobStore(abc.ABC):
    """Where videos and results documents live (S3/MinIO or a local directory).

    Every method raises :class:`~vidjobs.blobs.errors.BlobStoreUnavailable` when the store does
    not answer, and :class:`~vidjobs.blobs.errors.BlobStoreError` for anything else that goes
    wrong. Writes are all-or-nothing: a reader sees the old blob, the new blob, or none, never
    a part.
    """

    @abc.abstractmethod
    def ensure_ready(self) -> None:
        """Create the bucket (or directory) if missing; call once at process start."""

    @abc.abstractmethod
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
            key: where to store it (see :mod:`vidjobs.blobs.keys`).
            stream: anything with ``read(n) -> bytes``; read to EOF (or ``size`` bytes).
            size: the exact length if known; ``None`` streams until EOF (multipart).
            content_type: stored with the object on S3; ignored by the local backend.

        Raises:
            BlobStoreError: ``size`` was given and the stream ended before it.
        """
        source = SourceStream(stream, check_key(key), size)
        self._write(key, source, content_type)
        return source.count

    @abc.abstractmethod
    def _write(self, key: str, source: SourceStream, content_type: str) -> None:
        """Store all of ``source`` under ``key``, or nothing if it is short or anything fails.

        ``key`` is already checked. Call ``source.check_complete()`` before the blob becomes
        visible (or, where the store's client found the end first, to tell which end it was).
        """

    def put_bytes(self, key: str, data: bytes, *, content_type: str = DEFAULT_CONTENT_TYPE) -> None:
        """Store a small blob (a results document) from memory."""
        self.put_stream(key, io.BytesIO(data), size=len(data), content_type=content_type)

    @abc.abstractmethod
    def get_to_tempfile(self, key: str, *, suffix: str = "", directory: Path | None = None) -> Path:
        """Download to a new temp file and return its path; the CALLER deletes it.

        Args:
            key: the blob to fetch.
            suffix: the temp file's ending (``.mp4`` helps OpenCV pick a demuxer).
            directory: where to create it; the system temp directory if omitted.

        Raises:
            BlobNotFound: no blob under ``key`` (no temp file is left behind).
        """

    @staticmethod
    @contextlib.contextmanager
    def _tempfile(key: str, suffix: str, directory: Path | None) -> Iterator[tuple[BinaryIO, Path]]:
        """A new temp file open for writing ``key``'s bytes; removed again if the body fails.

        For ``get_to_tempfile``: the caller gets a whole download or no file at all.
        """
        try:
            fd, name = tempfile.mkstemp(suffix=suffix, dir=directory)
        except OSError as exc:
            raise BlobStoreError(f"cannot create a temp file for {key!r}: {exc}") from exc
        path = Path(name)
        try:
            with os.fdopen(fd, "wb") as out:
                yield out, path
        except BaseException:
            path.unlink(missing_ok=True)
            raise

    @abc.abstractmethod
    def get_bytes(self, key: str) -> bytes:
        """Read a small blob whole (results documents); raises ``BlobNotFound`` if absent."""

    @abc.abstractmethod
    def get_range(self, key: str, offset: int, length: int) -> bytes:
        """``length`` bytes of a blob from ``offset`` (fewer at its end); ``BlobNotFound`` if
        absent. What lets the API page a large results document without reading it whole."""

    @abc.abstractmethod
    def size(self, key: str) -> int:
        """The blob's size in bytes; ``BlobNotFound`` if absent."""

    @abc.abstractmethod
    def readable_location(self, key: str) -> str:
        """Where a decoder can open the blob and seek in it without a download: a presigned
        GET URL (S3: FFmpeg reads it by range requests) or the file's path (local).
        ``BlobNotFound`` if absent."""

    @abc.abstractmethod
    def exists(self, key: str) -> bool:
        """True if a blob is stored under ``key``."""

    @abc.abstractmethod
    def delete(self, key: str) -> None:
        """Remove the blob; deleting a missing key is not an error (idempotent)."""

    @abc.abstractmethod
    def close(self) -> None:
        """Release pooled connections; the store must not be used afterwards."""
