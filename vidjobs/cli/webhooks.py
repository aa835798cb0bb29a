"""``vidjobs webhooks``: signing secrets, tenant endpoints, the delivery log, a dispatcher.

Secrets are shown once, when made (``secret``, or ``add`` for a tenant that has none); the
database keeps them sealed with ``VIDJOBS_WEBHOOK_SECRET_KEYS`` (docs/operations.md, "Webhooks").
"""

from __future__ import annotations

import asyncio
import json
import logging
import signal
import sys
import uuid
from datetime import timedelta
from typing import Any

import click

from vidjobs.cli.connection import run_on_connection
from vidjobs.cli.options import (
    database_url_option,
    log_level_option,
    settings_from_cli,
    settings_options,
    setup_logging,
)
from vidjobs.db.settings import DatabaseSettings
from vidjobs.webhooks.settings import DispatchSettings, TargetPolicy

__all__ = ["webhooks"]

_TENANT = click.option(
    "--tenant", envvar="VIDJOBS_WEBHOOK_TENANT", show_envvar=True, required=True, help="The tenant."
)


def _sealer() -> Any:
    from vidjobs.webhooks.secrets import Sealer, SecretKeysMissing

    try:
        return Sealer(DispatchSettings().secret_keys)
    except SecretKeysMissing as exc:
        raise click.ClickException(str(exc)) from None


def _show_secret(tenant: str, secret: str, note: str) -> None:
    click.echo(f"tenant: {tenant}", err=True)
    click.echo(note, err=True)
    click.echo(
        "This signing secret is shown once; give it to the tenant now (their receiver "
        "verifies each delivery with it, e.g. standardwebhooks.Webhook(secret).verify(...)):",
        err=True,
    )
    click.echo(secret)


@click.group()
def webhooks() -> None:
    """Signed webhooks: each tenant's secret and endpoints, the delivery log, a dispatcher.

    Every job's terminal state (job.completed, job.failed, job.cancelled) is POSTed to its
    submit's callback_url and to its tenant's endpoints. A DBA reads the same log in SQL:
    vidjobs.webhook_deliveries and vidjobs.webhook_attempts.
    """


@webhooks.command()
def keygen() -> None:
    """Print a new key for VIDJOBS_WEBHOOK_SECRET_KEYS (a Fernet key).

    To change keys: put the new one first and keep the old ones after it (comma-separated);
    every key opens, the first seals.
    """
    from vidjobs.webhooks.secrets import generate_key

    click.echo(generate_key())


@webhooks.command()
@database_url_option
@_TENANT
@settings_options(DispatchSettings, only=["secret_grace_s"])
@click.option(
    "--rotate",
    is_flag=True,
    help="Replace the tenant's secret; the old one keeps signing for --secret-grace seconds "
    "(deliveries carry both signatures meanwhile).",
)
def secret(database_url: str, tenant: str, rotate: bool) -> None:
    """Make TENANT's signing secret (whsec_...) and print it once; --rotate replaces it."""
    from vidjobs.db.webhooks import secret_create, secret_info, secret_rotate
    from vidjobs.webhooks.secrets import new_secret

    if not tenant.strip():
        raise click.BadParameter("must not be blank", param_hint="--tenant")
    sealer, settings = _sealer(), settings_from_cli(DispatchSettings)
    plain = new_secret()
    sealed = sealer.seal(plain)

    async def go(conn: Any) -> tuple[Any, Any]:
        if rotate:
            return await secret_rotate(
                conn, tenant, sealed, grace=timedelta(seconds=settings.secret_grace_s)
            )
        made = await secret_create(conn, tenant, sealed)
        return made, (None if made else (await secret_info(conn, tenant))[0])

    made, other = run_on_connection(database_url, go)
    if made is None:
        raise click.ClickException(
            f"tenant {tenant!r} already has a signing secret (made "
            f"{other.created_at.isoformat(timespec='seconds')}); it was shown when it was "
            "made. --rotate makes a new one"
        )
    note = f"secret_id: {made.secret_id}"
    if rotate and other is not None:
        note += f" (the previous one, {other.secret_id}, signs too until {other.expires_at})"
    _show_secret(tenant, plain, note)


@webhooks.command()
@database_url_option
@_TENANT
@click.option("--url", required=True, help="The receiver: https:// (http:// where allowed).")
@settings_options(TargetPolicy)
def add(database_url: str, tenant: str, url: str) -> None:
    """Send every terminal event of TENANT's jobs to URL (checked like a callback_url).

    A tenant without a signing secret gets one, printed once.
    """
    from vidjobs.db.webhooks import endpoint_add, secret_create, secret_info
    from vidjobs.webhooks.secrets import new_secret
    from vidjobs.webhooks.targets import TargetRefused, check_target

    if not tenant.strip():
        raise click.BadParameter("must not be blank", param_hint="--tenant")
    try:
        asyncio.run(check_target(url, settings_from_cli(TargetPolicy)))
    except TargetRefused as exc:
        raise click.BadParameter(f"refused: {exc}", param_hint="--url") from None
    plain = new_secret()

    async def go(conn: Any) -> tuple[Any, bool, bool]:
        made = False
        if not await secret_info(conn, tenant):
            made = await secret_create(conn, tenant, _sealer().seal(plain)) is not None
        endpoint, created = await endpoint_add(conn, tenant, url)
        return endpoint, created, made

    endpoint, created, made = run_on_connection(database_url, go)
    state = "added" if created else "already registered"
    line = f"endpoint_id: {endpoint.endpoint_id} ({state}) {endpoint.url}"
    if made:
        _show_secret(tenant, plain, line)
    else:
        click.echo(line)


@webhooks.command("list")
@database_url_option
@click.option("--tenant", default=None, help="Only this tenant's endpoints.")
@click.option("--all", "include_disabled", is_flag=True, help="Disabled endpoints too.")
@click.option("--json", "as_json", is_flag=True, help="One JSON object per line.")
def list_endpoints(
    database_url: str, tenant: str | None, include_disabled: bool, as_json: bool
) -> None:
    """Registered endpoints, with their pending and failed deliveries."""
    import msgspec

    from vidjobs.db.webhooks import endpoint_list

    rows = run_on_connection(
        database_url, lambda c: endpoint_list(c, tenant, include_disabled=include_disabled)
    )
    if as_json:
        for row in rows:
            click.echo(msgspec.json.encode(row).decode())
        return
    click.echo(f"{'ID':>6} {'TENANT':16} {'PENDING':>7} {'FAILED':>6} URL")
    for e in rows:
        gone = f"  (disabled: {e.disabled_reason})" if e.disabled_at else ""
        click.echo(f"{e.endpoint_id:>6} {e.tenant:16} {e.pending:>7} {e.failed:>6} {e.url}{gone}")


@webhooks.command()
@database_url_option
@_TENANT
@click.argument("endpoint")
def remove(database_url: str, tenant: str, endpoint: str) -> None:
    """Stop sending TENANT's events to ENDPOINT (its id or URL); its pending deliveries fail."""
    from vidjobs.db.webhooks import endpoint_disable

    by_id = int(endpoint) if endpoint.isdigit() else None
    found = run_on_connection(
        database_url,
        lambda c: endpoint_disable(
            c, tenant, endpoint_id=by_id, url=None if by_id is not None else endpoint
        ),
    )
    if found is None:
        raise click.ClickException(
            f"tenant {tenant!r} has no live endpoint {endpoint!r} (see 'vidjobs webhooks list')"
        )
    row, abandoned = found
    click.echo(f"endpoint_id: {row.endpoint_id} disabled; {abandoned} pending deliveries failed")


@webhooks.command()
@database_url_option
@click.option("--job", "job_id", type=click.UUID, default=None, help="One job's deliveries.")
@click.option("--tenant", default=None, help="One tenant's deliveries.")
@click.option(
    "--state",
    type=click.Choice(["pending", "delivered", "failed"]),
    default=None,
    help="Only deliveries in this state.",
)
@click.option("--limit", type=click.IntRange(1, 10_000), default=50, help="Most deliveries.")
@click.option("--attempts", "with_attempts", is_flag=True, help="Each attempt too.")
@click.option("--json", "as_json", is_flag=True, help="One JSON object per line.")
def deliveries(
    database_url: str,
    job_id: uuid.UUID | None,
    tenant: str | None,
    state: str | None,
    limit: int,
    with_attempts: bool,
    as_json: bool,
) -> None:
    """The delivery log, newest first: state, attempts, last status and error."""
    import msgspec

    from vidjobs.db.webhooks import attempt_list, delivery_list

    async def go(conn: Any) -> tuple[list[Any], list[Any]]:
        rows = await delivery_list(conn, job_id=job_id, tenant=tenant, state=state, limit=limit)
        tries = await attempt_list(conn, [r.delivery_id for r in rows]) if with_attempts else []
        return rows, tries

    rows, tries = run_on_connection(database_url, go)
    by_delivery: dict[int, list[Any]] = {}
    for t in tries:
        by_delivery.setdefault(t.delivery_id, []).append(t)
    for d in rows:
        if as_json:
            item = msgspec.to_builtins(d)
            if with_attempts:
                item["attempts_log"] = msgspec.to_builtins(by_delivery.get(d.delivery_id, []))
            click.echo(json.dumps(item))
            continue
        last = d.last_error or (str(d.last_status) if d.last_status else "")
        click.echo(
            f"{d.delivery_id} {d.state} {d.event_type} job {d.job_id} -> {d.url} "
            f"attempts {d.attempts} {last}".rstrip()
        )
        for t in by_delivery.get(d.delivery_id, []):
            what = str(t.status) if t.status is not None else (t.error or "")
            click.echo(f"    #{t.attempt} {t.started_at.isoformat()} {t.duration_ms:.0f} ms {what}")


@webhooks.command()
@settings_options(DatabaseSettings, only=["url"])
@settings_options(
    DispatchSettings,
    only=[
        "connect_timeout_s", "timeout_s", "retry_base_s", "retry_max_delay_s", "retry_for_s",
        "poll_interval_s", "concurrency", "batch_size", "dispatcher_id",
    ],
)  # fmt: skip
@log_level_option
def dispatch(log_level: str) -> None:
    """Deliver the outbox until SIGTERM/SIGINT (workers also do, unless --no-webhooks).

    Run as many as you like: they share the outbox with SKIP LOCKED.
    """
    setup_logging(log_level)
    db = settings_from_cli(DatabaseSettings)
    settings = settings_from_cli(DispatchSettings)
    sealer = _sealer()
    from vidjobs.db.errors import DatabaseUnavailable

    try:
        asyncio.run(_dispatch(db, settings, sealer))
    except DatabaseUnavailable as exc:
        click.echo(f"error: {exc}", err=True)
        sys.exit(1)


async def _dispatch(db: DatabaseSettings, settings: DispatchSettings, sealer: Any) -> None:
    from vidjobs.db.pool import open_pool
    from vidjobs.webhooks.dispatcher import Dispatcher

    db = db.model_copy(update={"pool_min_size": 1, "pool_max_size": max(2, db.pool_max_size)})
    pool = await open_pool(db)
    try:
        dispatcher = Dispatcher(pool, settings, sealer)
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(sig, dispatcher.stop)
        logging.getLogger(__name__).info(
            "webhook dispatcher %s: concurrency %d", dispatcher.dispatcher_id, settings.concurrency
        )
        await dispatcher.run()
        logging.getLogger(__name__).info(
            "webhook dispatcher %s exits: %d attempts, %d delivered",
            dispatcher.dispatcher_id, dispatcher.attempts, dispatcher.delivered,
        )  # fmt: skip
    finally:
        await pool.close()
