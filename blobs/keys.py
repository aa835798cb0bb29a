"""Blob keys: built from the job's UUID only, never from anything a client sent.

A client's file name never reaches a key, so no upload can overwrite another job's blob or
escape the ``video_jobs/`` prefix.
"""

from __future__ import annotations

from uuid import UUID

from vidjobs.blobs.errors import BlobStoreError

__all__ = ["check_key", "results_index_key", "results_key", "video_key"]

_PREFIX = "video_jobs"
_MAX_KEY_BYTES = 1024  # the S3 limit


def video_key(job_id: UUID) -> str:
    """Key of a job's uploaded video: ``video_jobs/{job_id}.mp4``."""
    return f"{_PREFIX}/{UUID(str(job_id))}.mp4"


def results_key(job_id: UUID) -> str:
    """Key of a job's results document: ``video_jobs/{job_id}_results.json``."""
    return f"{_PREFIX}/{UUID(str(job_id))}_results.json"


def results_index_key(job_id: UUID) -> str:
    """Key of the byte index of a job's results document (``results_index``), beside it."""
    return f"{_PREFIX}/{UUID(str(job_id))}_results.index.json"


def check_key(key: str) -> str:
    """Return ``key`` if both backends can store it safely, else raise :class:`BlobStoreError`.

    Relative, slash-separated, no empty/``.``/``..`` segments, no backslash or NUL: the same key
    then means the same thing in a bucket and under a directory, and cannot leave either.
    """
    if not key or len(key.encode()) > _MAX_KEY_BYTES:
        raise BlobStoreError(f"blob key must be 1..{_MAX_KEY_BYTES} bytes: {key!r}")
    if "\\" in key or "\x00" in key:
        raise BlobStoreError(f"blob key must not contain a backslash or NUL: {key!r}")
    if any(part in ("", ".", "..") for part in key.split("/")):
        raise BlobStoreError(f"blob key must be relative with no empty, '.' or '..' parts: {key!r}")
    return key
