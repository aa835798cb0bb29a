"""Blob storage for videos and results documents: S3/MinIO (``minio`` SDK) or a local directory.

Usage::

    store = open_blob_store(BlobSettings())  # the VIDJOBS_BLOB_* / VIDJOBS_S3_* variables
    store.ensure_ready()
    store.put_stream(video_key(job_id), upload.file, size=None, content_type="video/mp4")

The interface is synchronous (see :mod:`db.blobs.protocol`); async code wraps each call with
``anyio.to_thread.run_sync`` or ``asyncio.to_thread``.
"""

from __future__ import annotations

from vidjobs.blobs.errors import BlobNotFound, BlobStoreError, BlobStoreUnavailable
from vidjobs.blobs.keys import check_key, results_index_key, results_key, video_key
from vidjobs.blobs.protocol import DEFAULT_CONTENT_TYPE, BlobStore
from vidjobs.blobs.settings import BlobSettings, open_blob_store

__all__ = [
    "DEFAULT_CONTENT_TYPE",
    "BlobNotFound",
    "BlobSettings",
    "BlobStore",
    "BlobStoreError",
    "BlobStoreUnavailable",
    "check_key",
    "open_blob_store",
    "results_index_key",
    "results_key",
    "video_key",
]
