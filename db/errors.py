"""Errors the db layer raises, so callers need not know psycopg.

One root, :class:`DatabaseError`, for everything the db layer raises on purpose. Driver errors
that mean "Postgres cannot be reached" become :class:`DatabaseUnavailable` in exactly one place,
``db/statements.py``; other driver errors (a bug in a statement, a violated constraint) are not
wrapped: they are not something a caller can handle.
"""

from __future__ import annotations

import uuid

__all__ = [
    "DatabaseError",
    "DatabaseUnavailable",
    "InvalidCursor",
    "LeaseLost",
    "SchemaNotReady",
    "one_line",
]


class DatabaseError(Exception):
    """Root of the db layer's own errors."""


class DatabaseUnavailable(DatabaseError):
    """Postgres cannot be reached right now (connection refused or lost, pool timeout).

    Wraps ``psycopg.OperationalError`` and ``psycopg_pool.PoolTimeout`` so the API can answer
    503 and the worker can back off without importing psycopg.
    """


class LeaseLost(DatabaseError):
    """A fenced write found the job no longer held under this lease token.

    The lease expired and another worker took the job back, or the job was cancelled. The
    caller must stop working on the job: its result would overwrite a newer attempt.
    """

    def __init__(self, job_id: uuid.UUID) -> None:
        super().__init__(f"job {job_id}: lease lost (expired and taken back, or cancelled)")
        self.job_id = job_id


class InvalidCursor(DatabaseError, ValueError):
    """A pagination cursor that ``job_list`` did not produce (or that was tampered with)."""


class SchemaNotReady(DatabaseError):
    """Postgres answers but a worker could not run here; the message says what to do."""


def one_line(exc: BaseException) -> str:
    """A driver error's text on one line (libpq's span several), for logs and probes."""
    return "; ".join(part.strip() for part in str(exc).splitlines() if part.strip())
