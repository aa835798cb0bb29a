"""Blobs in an S3 bucket through the ``minio`` SDK: MinIO in production, any S3, SeaweedFS in tests.

The SDK's default HTTP pool waits five minutes and retries five times; here a short connect
timeout and two retries make an outage surface as :class:`BlobStoreUnavailable` within seconds,
so the API answers 503 and the worker requeues, instead of hanging a request.
"""

from __future__ import annotations

import contextlib
import datetime
import os
from collections.abc import Iterator
from pathlib import Path
from typing import BinaryIO, cast

import certifi
import urllib3
from minio import Minio
from minio.error import InvalidResponseError, MinioException, S3Error, ServerError

from vidjobs.blobs.errors import BlobNotFound, BlobStoreError, BlobStoreUnavailable
from vidjobs.blobs.keys import check_key
from vidjobs.blobs.protocol import BlobStore, SourceStream

#: How long a presigned URL for a decoder stays valid (longer than any segment's analysis).
_URL_LIFETIME = datetime.timedelta(hours=12)

__all__ = ["PART_SIZE", "S3BlobStore"]

PART_SIZE = 16 * 1024 * 1024
"""Multipart part size. An upload holds about ``(parallel_uploads + 2) * PART_SIZE`` in memory,
whatever the file size (48 MiB with the default of one part in flight)."""

_CHUNK = 1024 * 1024
_NOT_FOUND = {"NoSuchKey", "NoSuchObject", "NotFound"}
_BUSY = {"SlowDown", "ServiceUnavailable", "InternalError", "RequestTimeout", "ServerBusy"}
_BUCKET_TAKEN = {"BucketAlreadyOwnedByYou", "BucketAlreadyExists"}


class S3BlobStore(BlobStore):
    """A :class:`~vidjobs.blobs.protocol.BlobStore` over one S3 bucket.

    Args:
        endpoint: ``host:port``; an ``http://`` or ``https://`` prefix also sets ``secure``.
        access_key / secret_key: the credentials (SigV4).
        bucket: the bucket every key lives in.
        secure: HTTPS when true.
        region: region to sign for; ``None`` asks the server once per bucket.
        connect_timeout_s / read_timeout_s: per-attempt socket timeouts.
        parallel_uploads: parts in flight at once; each costs a part of memory. One keeps an
            upload near 48 MiB and still moves ~100 MB/s to a local MinIO/SeaweedFS.
    """

    def __init__(
        self,
        *,
        endpoint: str,
        access_key: str,
        secret_key: str,
        bucket: str,
        secure: bool = False,
        region: str | None = None,
        connect_timeout_s: float = 3.0,
        read_timeout_s: float = 30.0,
        parallel_uploads: int = 1,
    ) -> None:
        for scheme, is_secure in (("http://", False), ("https://", True)):
            if endpoint.startswith(scheme):
                endpoint, secure = endpoint.removeprefix(scheme).rstrip("/"), is_secure
        self.endpoint = endpoint
        self.bucket = bucket
        self.parallel_uploads = max(1, parallel_uploads)
        self._http = urllib3.PoolManager(
            timeout=urllib3.Timeout(connect=connect_timeout_s, read=read_timeout_s),
            maxsize=16,
            cert_reqs="CERT_REQUIRED",
            ca_certs=os.environ.get("SSL_CERT_FILE") or certifi.where(),
            # Two quick retries ride out a blip; more would only delay a real outage. A 5xx
            # left after them is handed to the SDK (raise_on_status=False), which reports it.
            retries=urllib3.Retry(
                total=2,
                backoff_factor=0.2,
                status_forcelist=[500, 502, 503, 504],
                raise_on_status=False,
            ),
        )
        try:
            self._client = Minio(
                endpoint,
                access_key=access_key or None,
                secret_key=secret_key or None,
                secure=secure,
                region=region,
                http_client=self._http,
            )
        except ValueError as exc:
            raise BlobStoreError(f"bad S3 endpoint {endpoint!r}: {exc}") from exc

    def __repr__(self) -> str:
        return f"S3BlobStore(endpoint={self.endpoint!r}, bucket={self.bucket!r})"

    @contextlib.contextmanager
    def _errors(self, what: str, key: str | None = None) -> Iterator[None]:
        """Translate SDK and transport errors into the blob-store error types."""
        try:
            yield
        except S3Error as exc:
            if exc.code == "NoSuchBucket":
                raise BlobStoreError(
                    f"{what}: bucket {self.bucket!r} does not exist (ensure_ready() creates it)"
                ) from exc
            if key is not None and (exc.code in _NOT_FOUND or exc.response.status == 404):
                raise BlobNotFound(key) from exc
            if exc.code in _BUSY or exc.response.status >= 500:
                raise BlobStoreUnavailable(f"{what}: S3 {exc.code}: {exc.message}") from exc
            raise BlobStoreError(f"{what}: S3 {exc.code}: {exc.message}") from exc
        except ServerError as exc:
            raise BlobStoreUnavailable(f"{what}: S3 server error: {exc}") from exc
        except InvalidResponseError as exc:
            raise BlobStoreUnavailable(f"{what}: S3 answered garbage: {exc}") from exc
        except (urllib3.exceptions.HTTPError, OSError) as exc:
            raise BlobStoreUnavailable(
                f"{what}: S3 endpoint {self.endpoint} unreachable: {exc}"
            ) from exc
        except MinioException as exc:
            raise BlobStoreError(f"{what}: {exc}") from exc

    def ensure_ready(self) -> None:
        """Create the bucket if missing (tolerating a concurrent creator)."""
        with self._errors("checking the bucket"):
            if self._client.bucket_exists(self.bucket):
                return
        try:
            with self._errors("creating the bucket"):
                self._client.make_bucket(self.bucket)
        except BlobStoreError as exc:
            cause = exc.__cause__
            if not (isinstance(cause, S3Error) and cause.code in _BUCKET_TAKEN):
                raise

    def ping(self) -> None:
        """Raise unless the endpoint answers and the bucket exists."""
        with self._errors("pinging S3"):
            found = self._client.bucket_exists(self.bucket)
        if not found:
            raise BlobStoreError(f"bucket {self.bucket!r} does not exist (ensure_ready creates it)")

    def _write(self, key: str, source: SourceStream, content_type: str) -> None:
        """Upload in 16 MiB parts (multipart when larger); an aborted upload leaves no object."""
        try:
            with self._errors(f"uploading {key!r}"):
                self._client.put_object(
                    self.bucket,
                    key,
                    cast(BinaryIO, source),
                    length=-1 if source.size is None else source.size,
                    part_size=PART_SIZE,
                    content_type=content_type,
                    num_parallel_uploads=self.parallel_uploads,
                )
        except BlobStoreUnavailable:
            # The SDK raises IOError for a short stream; that is the caller's data, not S3.
            source.check_complete()
            raise

    def get_to_tempfile(self, key: str, *, suffix: str = "", directory: Path | None = None) -> Path:
        """Stream the object into a new temp file in 1 MiB chunks (the caller deletes it)."""
        check_key(key)
        with self._errors(f"downloading {key!r}", key):
            response = self._client.get_object(self.bucket, key)
        try:
            with self._tempfile(key, suffix, directory) as (out, path):
                chunks = response.stream(_CHUNK)
                while True:
                    with self._errors(f"downloading {key!r}", key):
                        chunk = next(chunks, None)
                    if chunk is None:
                        break
                    try:
                        out.write(chunk)
                    except OSError as exc:  # a full local disk is not an S3 outage
                        raise BlobStoreError(f"writing {path} for {key!r}: {exc}") from exc
        finally:
            response.close()
            response.release_conn()
        return path

    def get_bytes(self, key: str) -> bytes:
        """Read a small object whole."""
        check_key(key)
        with self._errors(f"reading {key!r}", key):
            response = self._client.get_object(self.bucket, key)
            try:
                return bytes(response.read())
            finally:
                response.close()
                response.release_conn()

    def get_range(self, key: str, offset: int, length: int) -> bytes:
        """A ranged GET (``Range: bytes=offset-``...): only those bytes cross the network."""
        check_key(key)
        if length <= 0:
            return b""
        with self._errors(f"reading {key!r}", key):
            response = self._client.get_object(self.bucket, key, offset=offset, length=length)
            try:
                return bytes(response.read())
            finally:
                response.close()
                response.release_conn()

    def size(self, key: str) -> int:
        """The object's size (a HEAD request)."""
        check_key(key)
        with self._errors(f"checking {key!r}", key):
            return int(self._client.stat_object(self.bucket, key).size or 0)

    def readable_location(self, key: str) -> str:
        """A presigned GET URL, valid for 12 hours (a segment job's decoder reads its range
        with it); checks the object exists first."""
        check_key(key)
        with self._errors(f"locating {key!r}", key):
            self._client.stat_object(self.bucket, key)
            return str(self._client.presigned_get_object(self.bucket, key, expires=_URL_LIFETIME))

    def exists(self, key: str) -> bool:
        """True if the object exists (a HEAD request)."""
        check_key(key)
        try:
            with self._errors(f"checking {key!r}", key):
                self._client.stat_object(self.bucket, key)
        except BlobNotFound:
            return False
        return True

    def delete(self, key: str) -> None:
        """Remove the object; S3 answers success for a missing key, so this is idempotent."""
        check_key(key)
        with self._errors(f"deleting {key!r}"):
            self._client.remove_object(self.bucket, key)

    def close(self) -> None:
        """Close pooled connections."""
        self._http.clear()
