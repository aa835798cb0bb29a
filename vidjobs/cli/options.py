"""Options shared by several subcommands, declared once so their flag, variable and help agree."""

from __future__ import annotations

import click

__all__ = ["database_url_option"]

database_url_option = click.option(
    "--database-url",
    envvar="DATABASE_URL",
    show_envvar=True,
    required=True,
    help="Postgres URL (or key=value DSN) of the vidjobs database.",
)
