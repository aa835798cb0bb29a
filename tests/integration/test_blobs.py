"""The blob store against both backends: a real S3 server and a local directory.

Every test taking ``blob_store`` runs twice (``[local]`` and ``[s3]``); the S3 server is the
session's (env-named, MinIO in Docker, or embedded SeaweedFS).
"""

from __future__ import annotations

import hashlib
import io
import time
import tracemalloc
import uuid
from pathlib import Path

import pytest

from tests.support.media import mp4_bytes
from tests.support.s3 import S3Server
from vidjobs.blobs import (
    BlobNotFound,
    BlobSettings,
    BlobStore,
    BlobStoreError,
    BlobStoreUnavailable,
    check_key,
    open_blob_store,
    results_key,
    video_key,
)
from vidjobs.blobs.s3 import PART_SIZE
from vidjobs.devstack.embedded import free_port

pytestmark = pytest.mark.integration

MiB = 1024 * 1024


class PatternStream:
    """A generated, non-repeating byte stream with no backing buffer: ``read(n)`` makes n bytes.

    Args:
        total: bytes to produce before EOF.
        fail_after: raise ``OSError`` once this many bytes were produced (a dropped client).
    """

    def __init__(self, total: int, *, fail_after: int | None = None) -> None:
        self.total = total
        self.fail_after = fail_after
        self.produced = 0
        self.sha256 = hashlib.sha256()

    def read(self, n: int = -1) -> bytes:
        if self.fail_after is not None and self.produced >= self.fail_after:
            raise OSError("client went away")
        n = min(self.total - self.produced, MiB if n < 0 else n, MiB)
        if n <= 0:
            return b""
        block = hashlib.sha256(self.produced.to_bytes(8, "big")).digest() * (MiB // 32)
        data = block[:n]
        self.produced += n
        self.sha256.update(data)
        return data


def _key() -> str:
    return video_key(uuid.uuid4())


def _sha256_file(path: Path) -> str:
    h = hashlib.sha256()
    with path.open("rb") as f:
        while chunk := f.read(MiB):
            h.update(chunk)
    return h.hexdigest()


def test_round_trip_bytes(blob_store: BlobStore) -> None:
    key = results_key(uuid.uuid4())
    assert not blob_store.exists(key)
    blob_store.put_bytes(key, b'{"frames": []}', content_type="application/json")
    assert blob_store.exists(key)
    assert blob_store.get_bytes(key) == b'{"frames": []}'
    blob_store.put_bytes(key, b"{}")  # overwrite replaces
    assert blob_store.get_bytes(key) == b"{}"


def test_ranged_reads_and_size(blob_store: BlobStore) -> None:
    key = results_key(uuid.uuid4())
    data = bytes(range(256)) * 40
    blob_store.put_bytes(key, data)
    assert blob_store.size(key) == len(data)
    assert blob_store.get_range(key, 0, 10) == data[:10]
    assert blob_store.get_range(key, 5000, 300) == data[5000:5300]
    assert blob_store.get_range(key, len(data) - 4, 100) == data[-4:]  # fewer at the end
    assert blob_store.get_range(key, 7, 0) == b""
    missing = results_key(uuid.uuid4())
    with pytest.raises(BlobNotFound):
        blob_store.get_range(missing, 0, 1)
    with pytest.raises(BlobNotFound):
        blob_store.size(missing)


def test_put_stream_known_size_returns_bytes_written(blob_store: BlobStore) -> None:
    key = _key()
    data = mp4_bytes(10 * 1024)
    assert blob_store.put_stream(key, io.BytesIO(data), size=len(data)) == len(data)
    assert blob_store.get_bytes(key) == data


def test_empty_stream_stores_an_empty_blob(blob_store: BlobStore) -> None:
    key = _key()
    assert blob_store.put_stream(key, io.BytesIO(b""), size=None) == 0
    assert blob_store.get_bytes(key) == b""


def test_multipart_stream_of_unknown_size_stays_small_in_memory(
    blob_store: BlobStore, tmp_path: Path
) -> None:
    total = 5 * PART_SIZE + 12345  # 80 MiB + a bit: six parts on S3
    stream = PatternStream(total)
    key = _key()
    tracemalloc.start()
    try:
        written = blob_store.put_stream(key, stream, size=None, content_type="video/mp4")
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert written == total == stream.produced
    # A part (16 MiB) and its copies, never the whole 80 MiB stream.
    assert peak < 4 * PART_SIZE, f"peak {peak / MiB:.1f} MiB for a {total / MiB:.0f} MiB stream"

    path = blob_store.get_to_tempfile(key, suffix=".mp4", directory=tmp_path)
    try:
        assert path.suffix == ".mp4"
        assert path.stat().st_size == total
        assert _sha256_file(path) == stream.sha256.hexdigest()
    finally:
        path.unlink()


def test_get_to_tempfile_leaves_the_file_to_the_caller(blob_store: BlobStore) -> None:
    key = _key()
    blob_store.put_bytes(key, b"video bytes")
    first = blob_store.get_to_tempfile(key, suffix=".mp4")
    second = blob_store.get_to_tempfile(key, suffix=".mp4")
    try:
        assert first != second
        assert first.read_bytes() == second.read_bytes() == b"video bytes"
    finally:
        first.unlink()
        second.unlink()


def test_missing_key_is_blob_not_found_and_leaves_no_tempfile(
    blob_store: BlobStore, tmp_path: Path
) -> None:
    key = _key()
    with pytest.raises(BlobNotFound) as info:
        blob_store.get_bytes(key)
    assert info.value.key == key
    downloads = tmp_path / "downloads"
    downloads.mkdir()
    with pytest.raises(BlobNotFound):
        blob_store.get_to_tempfile(key, suffix=".mp4", directory=downloads)
    assert list(downloads.iterdir()) == []
    assert not blob_store.exists(key)


def test_delete_is_idempotent(blob_store: BlobStore) -> None:
    key = _key()
    blob_store.put_bytes(key, b"x")
    blob_store.delete(key)
    assert not blob_store.exists(key)
    blob_store.delete(key)
    blob_store.delete(_key())  # never written


def test_short_stream_with_declared_size_stores_nothing(blob_store: BlobStore) -> None:
    key = _key()
    with pytest.raises(BlobStoreError, match="ended after 10 of 100 bytes") as info:
        blob_store.put_stream(key, io.BytesIO(b"0123456789"), size=100)
    assert not isinstance(info.value, BlobStoreUnavailable)
    assert not blob_store.exists(key)


def test_failing_stream_mid_upload_leaves_no_partial_blob(blob_store: BlobStore) -> None:
    key = _key()
    stream = PatternStream(3 * PART_SIZE, fail_after=PART_SIZE + MiB)  # after one full part
    with pytest.raises(BlobStoreError, match="client went away"):
        blob_store.put_stream(key, stream, size=None)
    assert not blob_store.exists(key)


def test_keys_come_from_the_uuid_only() -> None:
    job_id = uuid.UUID("12345678-1234-5678-1234-567812345678")
    assert video_key(job_id) == "video_jobs/12345678-1234-5678-1234-567812345678.mp4"
    assert results_key(job_id) == ("video_jobs/12345678-1234-5678-1234-567812345678_results.json")
    with pytest.raises(ValueError):
        video_key("../../etc/passwd")  # type: ignore[arg-type]


@pytest.mark.parametrize("key", ["", "/abs", "../up", "a/../b", "a//b", "a\\b", "x\x00y"])
def test_unsafe_keys_are_refused(blob_store: BlobStore, key: str) -> None:
    with pytest.raises(BlobStoreError):
        check_key(key)
    with pytest.raises(BlobStoreError):
        blob_store.put_bytes(key, b"x")


def test_ensure_ready_creates_the_bucket(s3_settings: BlobSettings, s3_server: S3Server) -> None:
    client = s3_server.client()
    assert not client.bucket_exists(s3_settings.s3_bucket)
    store = open_blob_store(s3_settings)
    with pytest.raises(BlobStoreError, match="does not exist"):
        store.ping()
    store.ensure_ready()
    store.ensure_ready()  # a second start finds it
    assert client.bucket_exists(s3_settings.s3_bucket)
    store.ping()
    store.close()


def test_ensure_ready_creates_the_directory(local_blob_settings: BlobSettings) -> None:
    assert not local_blob_settings.directory.exists()
    store = open_blob_store(local_blob_settings)
    with pytest.raises(BlobStoreUnavailable):
        store.ping()
    store.ensure_ready()
    assert local_blob_settings.directory.is_dir()
    store.ping()


def test_unreachable_endpoint_is_unavailable_within_seconds(s3_settings: BlobSettings) -> None:
    closed = BlobSettings(
        backend="s3",
        s3_endpoint=f"127.0.0.1:{free_port()}",  # nothing listens there
        s3_access_key=s3_settings.s3_access_key,
        s3_secret_key=s3_settings.s3_secret_key,
        s3_bucket=s3_settings.s3_bucket,
    )
    store = open_blob_store(closed)
    calls = {
        "ensure_ready": store.ensure_ready,
        "ping": store.ping,
        "put_stream": lambda: store.put_stream(_key(), io.BytesIO(b"x"), size=1),
        "get_bytes": lambda: store.get_bytes(_key()),
        "exists": lambda: store.exists(_key()),
        "delete": lambda: store.delete(_key()),
    }
    for name, call in calls.items():
        started = time.monotonic()
        with pytest.raises(BlobStoreUnavailable, match="unreachable"):
            call()
        assert time.monotonic() - started < 5, name


def test_unwritable_directory_is_unavailable(tmp_path: Path) -> None:
    not_a_dir = tmp_path / "file"
    not_a_dir.write_bytes(b"")
    store = open_blob_store(BlobSettings(backend="local", directory=not_a_dir))
    with pytest.raises(BlobStoreUnavailable):
        store.ensure_ready()


def test_wrong_credentials_are_an_error_not_an_outage(
    s3_settings: BlobSettings, s3_server: S3Server
) -> None:
    if not s3_server.secret_key:
        pytest.skip("the external S3 server takes anonymous requests")
    bad = BlobSettings(
        backend="s3",
        s3_endpoint=s3_settings.s3_endpoint,
        s3_access_key=s3_settings.s3_access_key,
        s3_secret_key=s3_settings.s3_secret_key + "-wrong",
        s3_bucket=s3_settings.s3_bucket,
        s3_secure=s3_settings.s3_secure,
    )
    store = open_blob_store(bad)
    with pytest.raises(BlobStoreError) as info:
        store.ensure_ready()
    assert not isinstance(info.value, BlobStoreUnavailable)


def test_download_into_a_missing_directory_is_a_clear_error(
    blob_store: BlobStore, tmp_path: Path
) -> None:
    key = _key()
    blob_store.put_bytes(key, b"x")
    with pytest.raises(BlobStoreError, match="temp file") as info:
        blob_store.get_to_tempfile(key, directory=tmp_path / "missing")
    assert not isinstance(info.value, BlobNotFound | BlobStoreUnavailable)
