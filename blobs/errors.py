"""Typed blob-store errors, so callers map failures to responses without knowing the backend.

The API turns :class:`BlobStoreUnavailable` into a 503 and :class:`BlobNotFound` into a 404; the
worker retries a job on :class:`BlobStoreUnavailable` and fails it on :class:`BlobNotFound`.
"""

from __future__ import annotations

__all__ = ["BlobNotFound", "BlobStoreError", "BlobStoreUnavailable"]


class BlobStoreError(Exception):
    """Any blob-store failure: misconfiguration, refused credentials, a short stream, bad key."""


class BlobStoreUnavailable(BlobStoreError):
    """The store did not answer: connection refused, timeout, a 5xx, an unwritable directory.

    Transient by nature: retrying later may succeed.
    """


class BlobNotFound(BlobStoreError):
    """No blob under this key.

    Args:
        key: the key that was asked for.
    """

    def __init__(self, key: str) -> None:
        super().__init__(f"no blob under key {key!r}")
        self.key = key
