"""Schema migrations: yoyo's Python API over the raw SQL files in ``db/migrations/``.

Callers pass an ordinary libpq URL or key=value DSN; yoyo needs its own scheme
(``postgresql+psycopg://`` selects the psycopg 3 backend), so the DSN is translated here and the
rest of the code never sees yoyo.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from pathlib import Path
from typing import Any
from urllib.parse import quote, urlencode

import psycopg

__all__ = ["MIGRATIONS_DIR", "bookkeeping_schema", "migrate", "rollback", "status", "yoyo_url"]

MIGRATIONS_DIR = Path(__file__).parent / "migrations"
_YOYO_TABLE = "_yoyo_migration"


def _with_arg(url: str, name: str, value: str) -> str:
    """``url`` with one more query argument (yoyo pops ``schema`` before connecting)."""
    return url + ("&" if "?" in url else "?") + urlencode({name: value})


def yoyo_url(url: str) -> str:
    """Translate a libpq URL or key=value DSN into yoyo's psycopg 3 URL.

    Every connection parameter except the database name travels as a query argument, which
    yoyo hands to ``psycopg.connect`` unchanged (so socket directories and options survive).
    """
    if url.startswith("postgresql+psycopg://"):
        return url
    info = psycopg.conninfo.conninfo_to_dict(url)
    dbname = str(info.pop("dbname", "") or "")
    args = {k: str(v) for k, v in info.items() if v is not None}
    query = f"?{urlencode(args)}" if args else ""
    return f"postgresql+psycopg:///{quote(dbname, safe='')}{query}"


def bookkeeping_schema(url: str) -> str:
    """The schema of yoyo's own tables: where an earlier run left them, else ``public``.

    yoyo creates and looks for them in ``current_schema``, which Postgres' default search_path
    (``"$user", public``) makes ``vidjobs`` itself for a role named like our schema, once that
    schema exists: the first run (no schema yet) put them in ``public``, the second looked in
    ``vidjobs``, found none and applied 0001 again (``schema "vidjobs" already exists``; the
    compose file's role is named ``vidjobs``). So yoyo's search_path is pinned here.
    """
    with psycopg.connect(url) as conn:
        row = conn.execute(
            "SELECT table_schema FROM information_schema.tables WHERE table_name = %s"
            " ORDER BY table_schema <> 'public', table_schema LIMIT 1",
            (_YOYO_TABLE,),
        ).fetchone()
    return str(row[0]) if row else "public"


@contextlib.contextmanager
def _backend(url: str) -> Iterator[tuple[Any, Any]]:
    from yoyo import get_backend, read_migrations

    if url.startswith("postgresql+psycopg://"):  # yoyo's own URL: taken as it is
        backend = get_backend(url)
    else:
        schema = bookkeeping_schema(url)
        # yoyo runs `SET search_path TO <schema>` as given: quoted, it is one identifier.
        quoted = '"' + schema.replace('"', '""') + '"'
        backend = get_backend(_with_arg(yoyo_url(url), "schema", quoted))
    try:
        yield backend, read_migrations(str(MIGRATIONS_DIR))
    finally:
        backend.connection.close()


def migrate(url: str) -> list[str]:
    """Apply every migration not yet applied, in order; returns the ids applied."""
    with _backend(url) as (backend, migrations), backend.lock():
        todo = backend.to_apply(migrations)
        backend.apply_migrations(todo)
        return [m.id for m in todo]


def rollback(url: str, steps: int | None = None) -> list[str]:
    """Roll back the last ``steps`` applied migrations (None: all); returns the ids rolled back."""
    with _backend(url) as (backend, migrations), backend.lock():
        todo = backend.to_rollback(migrations)
        if steps is not None:
            todo = todo.__class__(list(todo)[:steps], todo.post_apply)
        backend.rollback_migrations(todo)
        return [m.id for m in todo]


def status(url: str) -> list[tuple[str, bool]]:
    """Every known migration id, in order, with whether it is applied."""
    with _backend(url) as (backend, migrations):
        applied = set(backend.get_applied_migration_hashes())
        return [(m.id, m.hash in applied) for m in migrations]
