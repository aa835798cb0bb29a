"""``vidjobs db``: apply, roll back and list the schema migrations (yoyo, via db.migrate)."""

from __future__ import annotations

from typing import Any

import click

from vidjobs.cli.options import database_url_option, settings_from_cli

__all__ = ["db"]


class _OneLineErrors(click.Group):
    """Database and blob-store failures end a ``vidjobs db`` command with one readable line."""

    def invoke(self, ctx: click.Context) -> Any:
        import psycopg

        from vidjobs.blobs import BlobStoreError
        from vidjobs.db.errors import DatabaseError

        try:
            return super().invoke(ctx)
        except DatabaseError as exc:  # the db layer's own: already one line
            raise click.ClickException(f"database: {exc}") from exc
        except psycopg.Error as exc:
            first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
            raise click.ClickException(f"database: {first}") from exc
        except BlobStoreError as exc:
            raise click.ClickException(f"blob store: {exc}") from exc


@click.group(cls=_OneLineErrors)
def db() -> None:
    """Manage the vidjobs database schema (migrations in db/migrations/)."""


@db.command()
@database_url_option
def migrate(database_url: str) -> None:
    """Apply every migration not applied yet (safe to run again)."""
    from vidjobs.db.migrate import migrate as run_migrate

    applied = run_migrate(database_url)
    for migration_id in applied:
        click.echo(f"applied {migration_id}")
    click.echo(f"{len(applied)} migration(s) applied; the schema is up to date.")


@db.command()
@database_url_option
@click.option(
    "--steps",
    envvar="VIDJOBS_DB_ROLLBACK_STEPS",
    show_envvar=True,
    type=click.IntRange(min=1),
    default=1,
    help="How many of the last applied migrations to roll back.",
)
@click.option(
    "--all",
    "all_",
    envvar="VIDJOBS_DB_ROLLBACK_ALL",
    show_envvar=True,
    is_flag=True,
    help="Roll back every applied migration (drops the vidjobs schema and its data).",
)
def rollback(database_url: str, steps: int, all_: bool) -> None:
    """Roll back the last applied migration(s); data in dropped tables is lost."""
    from vidjobs.db.migrate import rollback as run_rollback

    rolled = run_rollback(database_url, None if all_ else steps)
    for migration_id in rolled:
        click.echo(f"rolled back {migration_id}")
    click.echo(f"{len(rolled)} migration(s) rolled back.")


@db.command()
@database_url_option
def status(database_url: str) -> None:
    """List every migration and whether it is applied; exit 1 if any is pending."""
    from vidjobs.db.migrate import status as run_status

    rows = run_status(database_url)
    for migration_id, applied in rows:
        click.echo(f"{'applied' if applied else 'pending':8} {migration_id}")
    if not all(applied for _, applied in rows):
        raise SystemExit(1)


@db.command()
@database_url_option
@click.option(
    "--older-than-days",
    envvar="VIDJOBS_RETENTION_DAYS",
    show_envvar=True,
    type=click.FloatRange(min=0),
    default=30.0,
    help="Delete jobs that finished (completed, failed, cancelled) more than this many days ago.",
)
@click.option(
    "--batch",
    envvar="VIDJOBS_PRUNE_BATCH",
    show_envvar=True,
    type=click.IntRange(min=1),
    default=1000,
    help="Jobs deleted per statement.",
)
def prune(database_url: str, older_than_days: float, batch: int) -> None:
    """Delete long-finished jobs: rows, audit events, blobs (VIDJOBS_BLOB_*), webhook log.

    Pending and running jobs are never touched. Safe to run from cron on several hosts at once.
    """
    import asyncio
    from datetime import timedelta

    from vidjobs.blobs import BlobSettings, open_blob_store
    from vidjobs.db.pool import connect
    from vidjobs.db.retention import prune_finished

    store = open_blob_store(settings_from_cli(BlobSettings))

    async def run() -> None:
        async with await connect(database_url) as conn:
            report = await prune_finished(
                conn, store, older_than=timedelta(days=older_than_days), batch=batch
            )
        click.echo(
            f"pruned {report.jobs_deleted} job(s), deleted {report.blobs_deleted} blob(s), "
            f"{report.deliveries_deleted} webhook deliveries"
            + (f", {report.blob_errors} blob deletion(s) failed" if report.blob_errors else "")
        )
        if report.blob_errors:
            raise SystemExit(1)

    try:
        asyncio.run(run())
    finally:
        store.close()
