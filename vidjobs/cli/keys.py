"""``vidjobs keys``: create, list and revoke API keys (stored only as SHA-256 hashes)."""

from __future__ import annotations

import uuid

import click

from vidjobs.cli.connection import run_on_connection
from vidjobs.cli.options import database_url_option

__all__ = ["keys"]


@click.group()
def keys() -> None:
    """Manage API keys; each key is bound to one tenant."""


@keys.command()
@database_url_option
@click.option(
    "--tenant",
    envvar="VIDJOBS_KEY_TENANT",
    show_envvar=True,
    required=True,
    help="Tenant the key acts for; it sees only this tenant's jobs.",
)
@click.option(
    "--name",
    envvar="VIDJOBS_KEY_NAME",
    show_envvar=True,
    default="",
    help="Free text to tell keys apart (who or what uses it).",
)
def create(database_url: str, tenant: str, name: str) -> None:
    """Create a key and print it ONCE (only its hash is stored: copy it now)."""
    from vidjobs.db.api_keys import api_key_create

    if not tenant.strip():
        raise click.BadParameter("must not be blank", param_hint="--tenant")
    key_id, plaintext = run_on_connection(database_url, lambda c: api_key_create(c, tenant, name))
    click.echo(f"key_id: {key_id}", err=True)
    click.echo(f"tenant: {tenant}", err=True)
    click.echo(
        "This key is shown once; store it now (use it as 'Authorization: Bearer KEY'):", err=True
    )
    click.echo(plaintext)


@keys.command("list")
@database_url_option
@click.option(
    "--tenant",
    envvar="VIDJOBS_KEY_TENANT",
    show_envvar=True,
    default=None,
    help="Only this tenant's keys.",
)
def list_keys(database_url: str, tenant: str | None) -> None:
    """List keys (id, tenant, name, prefix, created, revoked), newest first."""
    from vidjobs.db.api_keys import api_key_list

    rows = run_on_connection(database_url, lambda c: api_key_list(c, tenant=tenant))
    click.echo(f"{'KEY_ID':36}  {'TENANT':16} {'PREFIX':10} {'CREATED':20} {'REVOKED':20} NAME")
    for k in rows:
        revoked = k.revoked_at.strftime("%Y-%m-%d %H:%M:%S") if k.revoked_at else "-"
        click.echo(
            f"{k.key_id!s:36}  {k.tenant:16} {k.prefix:10} "
            f"{k.created_at.strftime('%Y-%m-%d %H:%M:%S'):20} {revoked:20} {k.name}"
        )


@keys.command()
@database_url_option
@click.argument("key_id", type=click.UUID)
def revoke(database_url: str, key_id: uuid.UUID) -> None:
    """Revoke KEY_ID at once: every later request with it gets 401."""
    from vidjobs.db.api_keys import api_key_revoke

    if not run_on_connection(database_url, lambda c: api_key_revoke(c, key_id)):
        raise click.ClickException(f"no key {key_id} (see 'vidjobs keys list')")
    click.echo(f"revoked {key_id}")
