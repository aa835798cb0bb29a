"""Migrations on a real, empty Postgres: apply, roll back all, apply again; the DBA comments."""

from __future__ import annotations

import uuid
from urllib.parse import parse_qs, urlsplit

import psycopg
import pytest
from psycopg import sql

from vidjobs.db.migrate import MIGRATIONS_DIR, migrate, rollback, status, yoyo_url

pytestmark = pytest.mark.integration


def _vidjobs_objects(url: str) -> list[str]:
    with psycopg.connect(url) as conn:
        rows = conn.execute(
            "SELECT c.relname FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace"
            " WHERE n.nspname = 'vidjobs' ORDER BY 1"
        ).fetchall()
        return [r[0] for r in rows]


def _schema_exists(url: str) -> bool:
    with psycopg.connect(url) as conn:
        row = conn.execute("SELECT count(*) FROM pg_namespace WHERE nspname = 'vidjobs'").fetchone()
        return bool(row and row[0])


def test_every_migration_has_a_rollback() -> None:
    ups = sorted(p for p in MIGRATIONS_DIR.glob("*.sql") if not p.name.endswith(".rollback.sql"))
    assert ups, "no migrations found"
    for up in ups:
        assert up.with_name(up.stem + ".rollback.sql").exists(), f"{up.name} has no rollback"


def test_up_down_up(empty_database_url: str) -> None:
    url = empty_database_url
    ids = [m for m, _ in status(url)]
    assert ids[:4] == ["0001_schema", "0002_jobs", "0003_job_events", "0004_dba_views"]
    assert all(not applied for _, applied in status(url))

    assert migrate(url) == ids
    assert all(applied for _, applied in status(url))
    first = _vidjobs_objects(url)
    expected = {
        "jobs", "job_events", "queue_overview", "stuck_jobs", "recent_failures",
        "throughput_per_minute", "jobs_tenant_pending_idx", "jobs_running_lease_idx",
        "tenants", "tenant_usage",
    }  # fmt: skip
    assert expected <= set(first)
    assert migrate(url) == []  # idempotent

    assert rollback(url, steps=1) == [ids[-1]]
    assert [a for _, a in status(url)] == [True] * (len(ids) - 1) + [False]

    assert rollback(url) == list(reversed(ids[:-1]))
    assert not _schema_exists(url)

    assert migrate(url) == ids
    assert _vidjobs_objects(url) == first


def test_every_table_column_and_view_is_commented(database_url: str) -> None:
    with psycopg.connect(database_url) as conn:
        missing = conn.execute(
            """
            SELECT c.relname || coalesce('.' || a.attname, '')
            FROM pg_class c
            JOIN pg_namespace n ON n.oid = c.relnamespace AND n.nspname = 'vidjobs'
            LEFT JOIN pg_attribute a ON a.attrelid = c.oid AND a.attnum > 0 AND NOT a.attisdropped
            WHERE c.relkind IN ('r', 'v')
              AND (obj_description(c.oid, 'pg_class') IS NULL
                   OR (a.attnum IS NOT NULL AND col_description(c.oid, a.attnum) IS NULL))
            ORDER BY 1
            """
        ).fetchall()
    assert [m for (m,) in missing] == []


def test_jobs_table_storage_settings(database_url: str) -> None:
    with psycopg.connect(database_url) as conn:
        row = conn.execute(
            "SELECT reloptions FROM pg_class WHERE oid = 'vidjobs.jobs'::regclass"
        ).fetchone()
    assert row is not None
    assert "fillfactor=70" in row[0]
    assert any(o.startswith("autovacuum_vacuum_scale_factor=") for o in row[0])


def test_yoyo_url_accepts_urls_and_dsns() -> None:
    def parts(url: str) -> tuple[str, dict[str, list[str]]]:
        split = urlsplit(url)
        return f"{split.scheme}://{split.netloc}{split.path}", parse_qs(split.query)

    assert parts(yoyo_url("postgresql://u:p@h:5433/db")) == (
        "postgresql+psycopg:///db",
        {"user": ["u"], "password": ["p"], "host": ["h"], "port": ["5433"]},
    )
    assert parts(yoyo_url("host=/tmp port=5432 dbname=x user=postgres")) == (
        "postgresql+psycopg:///x",
        {"host": ["/tmp"], "port": ["5432"], "user": ["postgres"]},
    )
    same = "postgresql+psycopg://u@h/db"
    assert yoyo_url(same) == same


def test_db_cli_migrate_status_rollback(empty_database_url: str) -> None:
    from click.testing import CliRunner

    from vidjobs.cli import main

    runner = CliRunner()
    env = {"DATABASE_URL": empty_database_url}
    pending = runner.invoke(main, ["db", "status"], env=env)
    assert pending.exit_code == 1
    assert "pending  0001_schema" in pending.output

    up = runner.invoke(main, ["db", "migrate"], env=env)
    assert up.exit_code == 0, up.output
    assert "applied 0002_jobs" in up.output
    assert runner.invoke(main, ["db", "status"], env=env).exit_code == 0

    one = runner.invoke(main, ["db", "rollback"], env=env)
    assert one.exit_code == 0, one.output
    assert "1 migration(s) rolled back" in one.output
    everything = runner.invoke(main, ["db", "rollback", "--all"], env=env)
    assert everything.exit_code == 0, everything.output
    assert "rolled back 0001_schema" in everything.output
    assert not _schema_exists(empty_database_url)


def test_db_cli_says_what_failed_in_one_line() -> None:
    import subprocess
    import sys

    from vidjobs.devstack.embedded import free_port

    url = f"postgresql://postgres@127.0.0.1:{free_port()}/nothing_listens"
    for args in (["migrate"], ["status"], ["rollback"], ["prune"]):
        proc = subprocess.run(
            [sys.executable, "-m", "vidjobs", "db", *args, "--database-url", url],
            capture_output=True, text=True, timeout=60, check=False,
        )  # fmt: skip
        assert proc.returncode == 1, (args, proc.stderr)
        assert "Traceback" not in proc.stderr
        lines = proc.stderr.strip().splitlines()
        assert len(lines) == 1, proc.stderr
        assert lines[0].startswith("Error: database: connection failed"), lines[0]


def test_migrate_twice_as_a_role_named_like_the_schema(pg_server_url: str) -> None:
    """Postgres' default search_path is "$user", public: for a role named vidjobs (as in the
    compose file) the second run found the schema first and looked for yoyo's bookkeeping
    there, so it tried 0001 again ("schema vidjobs already exists")."""
    name = f"vidjobs_r_{uuid.uuid4().hex[:8]}"
    with psycopg.connect(pg_server_url, autocommit=True) as admin:
        admin.execute(
            "DO $$ BEGIN IF NOT EXISTS (SELECT FROM pg_roles WHERE rolname = 'vidjobs')"
            " THEN CREATE ROLE vidjobs LOGIN; END IF; END $$"
        )
        # A password: a server that asks for one (postgres:16 in a container) refuses none.
        admin.execute("ALTER ROLE vidjobs PASSWORD 'vidjobs'")
        admin.execute(sql.SQL("CREATE DATABASE {} OWNER vidjobs").format(sql.Identifier(name)))
    info = psycopg.conninfo.conninfo_to_dict(pg_server_url)
    info.update(dbname=name, user="vidjobs", password="vidjobs")
    url = psycopg.conninfo.make_conninfo(**{k: str(v) for k, v in info.items() if v is not None})
    try:
        first = migrate(url)
        assert first[0] == "0001_schema"
        assert migrate(url) == [], "the second run finds every migration applied"
        assert all(applied for _, applied in status(url))
    finally:
        with psycopg.connect(pg_server_url, autocommit=True) as admin:
            admin.execute(sql.SQL("DROP DATABASE {} WITH (FORCE)").format(sql.Identifier(name)))
