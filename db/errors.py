"""Errors the db layer raises, so callers need not know psycopg."""

from __future__ import annotations

import uuid

__all__ = ["DatabaseUnavailable", "InvalidCursor", "LeaseLost"]


class LeaseLost(Exception):
    """A fenced write found the job no longer held under this lease token.

    The lease expired and another worker took the job back, or the job was cancelled. The
    caller must stop working on the job: its result would overwrite a newer attempt.
    """

    def __init__(self, job_id: uuid.UUID) -> None:
        super().__init__(f"job {job_id}: lease lost (expired and taken back, or cancelled)")
        self.job_id = job_id


class DatabaseUnavailable(Exception):
    """Postgres cannot be reached right now (connection refused, pool timeout).

    Wraps ``psycopg.OperationalError`` and ``psycopg_pool.PoolTimeout`` so the API can answer
    503 and the worker can back off without importing psycopg.
    """


class InvalidCursor(ValueError):
    """A pagination cursor that ``job_list`` did not produce (or that was tampered with)."""
