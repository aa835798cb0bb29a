"""One database call from a CLI command, on a connection of its own.

The one-shot commands (``vidjobs keys``, ``vidjobs tenants``) open no pool: a command makes one
or two calls and exits. An unreachable or lost database ends the command with one readable line.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from typing import Any, TypeVar

import click

__all__ = ["run_on_connection"]

T = TypeVar("T")


def run_on_connection(database_url: str, action: Callable[[Any], Awaitable[T]]) -> T:
    """Run ``action(conn)`` on a fresh connection to ``database_url`` and return its result.

    Raises:
        click.ClickException: Postgres refused the connection or was lost during the call.
    """
    from vidjobs.db.errors import DatabaseUnavailable
    from vidjobs.db.pool import connect

    async def go() -> T:
        async with await connect(database_url) as conn:
            return await action(conn)

    try:
        return asyncio.run(go())
    except DatabaseUnavailable as exc:
        raise click.ClickException(str(exc)) from exc
