"""The one runner: every named statement of ``db/sql/*.sql`` runs through :func:`fetch`.

It is also the only place that turns a lost or refused connection into ``DatabaseUnavailable``
(:func:`unavailable_on_error`, used by the pool and the kept connections too) and the only
mapping of a row to ``schema.Job`` (:func:`to_job`), so nothing above the db layer sees psycopg.
Parameters are a mapping or a msgspec Struct whose fields name the statement's placeholders
(River's ``JobGetAvailableParams``): see ``db/leases.py``.
"""

from __future__ import annotations

from collections.abc import Mapping
from types import TracebackType
from typing import Any, LiteralString

import msgspec
import psycopg
from psycopg.rows import dict_row

from vidjobs.db.errors import DatabaseUnavailable, one_line
from vidjobs.db.sql import QUERIES
from vidjobs.schema import Job, JobState

__all__ = [
    "Conn",
    "Params",
    "Row",
    "fetch",
    "fetch_jobs",
    "fetch_rows",
    "to_job",
    "unavailable_on_error",
]

Conn = psycopg.AsyncConnection[Any]
Row = dict[str, Any]
Params = Mapping[str, Any] | msgspec.Struct | None
_JOB_FIELDS = frozenset(Job.__struct_fields__)


class _Unavailable:
    """Raises ``DatabaseUnavailable`` for a ``psycopg.OperationalError`` leaving the block.

    A class rather than ``contextlib.contextmanager``: it wraps every statement (thousands a
    second on the worker's hot paths) and a generator-based one costs several times more.
    """

    __slots__ = ("_what",)

    def __init__(self, what: str) -> None:
        self._what = what

    def __enter__(self) -> None:
        return None

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        # psycopg_pool.PoolTimeout is an OperationalError; so is a statement timeout (Postgres
        # answered, but the caller's remedy is the same: back off and retry).
        if isinstance(exc, psycopg.OperationalError):
            text = one_line(exc)
            raise DatabaseUnavailable(f"{self._what}: {text}" if self._what else text) from exc


def unavailable_on_error(what: str = "") -> _Unavailable:
    """``with unavailable_on_error(what):`` a connection failure inside raises DatabaseUnavailable.

    Args:
        what: what was being done, the start of the error's message; empty where the driver's
            own message says it (libpq's "connection failed: ...").
    """
    return _Unavailable(what)


def _args(params: Params) -> Mapping[str, Any] | None:
    return msgspec.structs.asdict(params) if isinstance(params, msgspec.Struct) else params


async def fetch(conn: Conn, name: LiteralString, params: Params = None) -> psycopg.AsyncCursor[Any]:
    """Run the named statement; its rows are tuples, in the statement's column order."""
    with unavailable_on_error(name):
        return await conn.execute(QUERIES[name], _args(params))


async def fetch_rows(conn: Conn, name: LiteralString, params: Params = None) -> list[Row]:
    """Run the named statement and return its rows as dicts, by column name.

    ``dict_row`` reads the names straight from the result: cheaper than building
    ``cursor.description`` (a Column object per column), which would cost more than the rest of
    the status route's read.
    """
    cur = conn.cursor(row_factory=dict_row)
    with unavailable_on_error(name):
        await cur.execute(QUERIES[name], _args(params))
        return await cur.fetchall()


async def fetch_jobs(conn: Conn, name: LiteralString, params: Params = None) -> list[Job]:
    """Run the named statement and return its rows as ``Job``s."""
    return [to_job(row) for row in await fetch_rows(conn, name, params)]


def to_job(row: Mapping[str, Any]) -> Job:
    """A ``Job`` from a row holding the ``vidjobs.jobs`` columns (other columns are ignored)."""
    fields = {n: v for n, v in row.items() if n in _JOB_FIELDS}
    fields["state"] = JobState(fields["state"])
    return Job(**fields)
