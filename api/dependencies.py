"""Per-request dependencies: the app runtime, a pooled connection, the caller's tenant."""

from __future__ import annotations

from collections.abc import AsyncGenerator
from typing import Any

from litestar import Request
from litestar.datastructures import State
from litestar.di import NamedDependency, Provide
from psycopg import AsyncConnection

from vidjobs.api.auth import authenticate
from vidjobs.api.runtime import ApiRuntime, runtime
from vidjobs.db.pool import connection

__all__ = ["dependencies", "provide_connection", "provide_tenant"]


async def provide_connection(state: State) -> AsyncGenerator[AsyncConnection[Any], None]:
    """One pool connection for the request, returned when the response is sent."""
    async with connection(runtime(state).pool) as conn:
        yield conn


async def provide_tenant(
    request: Request[Any, Any, Any], db_conn: NamedDependency[AsyncConnection[Any]], state: State
) -> str:
    """The tenant of the request's API key (401 otherwise)."""
    return await authenticate(request, db_conn, runtime(state).auth_cache)


def provide_runtime(state: State) -> ApiRuntime:
    """The app runtime (pool, blob store, settings)."""
    return runtime(state)


def dependencies() -> dict[str, Provide]:
    """The app-level dependency map."""
    return {
        "rt": Provide(provide_runtime, sync_to_thread=False),
        "db_conn": Provide(provide_connection),
        "tenant": Provide(provide_tenant),
    }
