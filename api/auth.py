"""Bearer API keys → tenant. Every ``/video`` route needs one; a tenant sees only its own jobs.

Keys are checked against their SHA-256 in Postgres (``db.keys``). An optional short-lived
in-process cache (``auth_cache_seconds``) saves that round trip on hot polling loops, at the
cost of a revoked key working for up to that long in this process; it is off by default.
"""

from __future__ import annotations

import time
import uuid
from typing import Any

from litestar import Request
from psycopg import AsyncConnection

from vidjobs.api.problems import ProblemError
from vidjobs.db.api_keys import api_key_authenticate, api_key_job_get, hash_key
from vidjobs.db.jobs import job_get
from vidjobs.schema import Job

__all__ = ["AuthCache", "authenticate", "authenticate_job", "bearer_key", "unauthorized"]

_CACHE_MAX = 10_000


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


def unauthorized(detail: str) -> ProblemError:
    """401 with the ``WWW-Authenticate`` challenge."""
    return ProblemError(
        401,
        "unauthorized",
        detail,
        headers={"WWW-Authenticate": 'Bearer realm="vidjobs"'},
    )


def bearer_key(request: Request[Any, Any, Any]) -> str:
    """The key of ``Authorization: Bearer <key>``, or a 401 saying what is missing."""
    header = request.headers.get("authorization")
    if not header:
        raise unauthorized(
            "missing API key: send 'Authorization: Bearer <key>' "
            "(create one with 'vidjobs keys create --tenant NAME')"
        )
    scheme, _, key = header.partition(" ")
    key = key.strip()
    if scheme.lower() != "bearer" or not key:
        raise unauthorized("the Authorization header must be 'Bearer <key>'")
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
            raise unauthorized("invalid or revoked API key; ask for a new one")
        cache.put(digest, tenant)
    return tenant


async def authenticate_job(
    request: Request[Any, Any, Any], conn: AsyncConnection[Any], cache: AuthCache, job_id: uuid.UUID
) -> tuple[str, Job | None]:
    """The key's tenant and its job ``job_id`` (None if not the tenant's), in one round trip.

    The status route is what clients poll; checking the key and reading the job in one
    statement halves its database round trips.
    """
    key = bearer_key(request)
    digest = hash_key(key)
    tenant = cache.get(digest)
    if tenant is not None:
        return tenant, await job_get(conn, job_id, tenant=tenant)
    found, job = await api_key_job_get(conn, key, job_id)
    if found is None:
        raise unauthorized("invalid or revoked API key; ask for a new one")
    cache.put(digest, found)
    return found, job
