"""Bearer API keys → tenant. Every ``/video`` route needs one; a tenant sees only its own jobs.

Keys are checked against their SHA-256 in Postgres (``db.api_keys``). An optional short-lived
in-process cache (``auth_cache_seconds``) saves that round trip on the routes that check the key
in a statement of its own (submit, results, the job list, cancel, delete), at the cost of a
revoked key working for up to that long in this process; it is off by default. The status route
does not use it, deliberately: its key check rides in the statement that reads the job (batched
with the other polls, ``StatusReads``), so a cached tenant would save no round trip there.
"""

from __future__ import annotations

import time
from typing import Any

from litestar import Request
from psycopg import AsyncConnection

from vidjobs.api.problems import Unauthorized
from vidjobs.db.api_keys import api_key_authenticate, hash_key

__all__ = ["INVALID_KEY", "AuthCache", "authenticate", "bearer_key"]

_CACHE_MAX = 10_000

INVALID_KEY = "invalid or revoked API key; ask for a new one"
"""The 401 detail for a key Postgres does not know (or no longer accepts)."""


class AuthCache:
    """Recently verified keys (by hash) → tenant, each for ``ttl_s`` seconds; 0 disables it."""

    def __init__(self, ttl_s: float) -> None:
        self._ttl = ttl_s
        self._entries: dict[bytes, tuple[str, float]] = {}

    def get(self, digest: bytes) -> str | None:
        """The cached tenant of a key, if still fresh."""
        if self._ttl <= 0:
            return None
        entry = self._entries.get(digest)
        if entry is None or entry[1] < time.monotonic():
            return None
        return entry[0]

    def put(self, digest: bytes, tenant: str) -> None:
        """Remember a verified key."""
        if self._ttl <= 0:
            return
        if len(self._entries) >= _CACHE_MAX:
            self._entries.clear()
        self._entries[digest] = (tenant, time.monotonic() + self._ttl)


def bearer_key(request: Request[Any, Any, Any]) -> str:
    """The key of ``Authorization: Bearer <key>``, or a 401 saying what is missing."""
    header = request.headers.get("authorization")
    if not header:
        raise Unauthorized(
            "missing API key: send 'Authorization: Bearer <key>' "
            "(create one with 'vidjobs keys create --tenant NAME')"
        )
    scheme, _, key = header.partition(" ")
    key = key.strip()
    if scheme.lower() != "bearer" or not key:
        raise Unauthorized("the Authorization header must be 'Bearer <key>'")
    return key


async def authenticate(
    request: Request[Any, Any, Any], conn: AsyncConnection[Any], cache: AuthCache
) -> str:
    """The tenant of the request's key; 401 for a missing, unknown or revoked key."""
    key = bearer_key(request)
    digest = hash_key(key)
    tenant = cache.get(digest)
    if tenant is None:
        tenant = await api_key_authenticate(conn, key)
        if tenant is None:
            raise Unauthorized(INVALID_KEY)
        cache.put(digest, tenant)
    return tenant
