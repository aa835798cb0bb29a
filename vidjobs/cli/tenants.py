"""``vidjobs tenants``: set, show and list each tenant's weight and limits, and its usage.

The limit flags of ``set`` have no environment variable, unlike every other flag: they are
one-off values for one tenant, and a variable left set in a shell would quietly apply to every
tenant set from it.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any

import click

from vidjobs.cli.connection import run_on_connection
from vidjobs.cli.options import database_url_option

__all__ = ["tenants"]

DEFAULT = "default"


class _Limit(click.ParamType[Any]):
    """A number at least ``low`` (at most ``high``), or ``default``: back to the default."""

    name = "N|default"

    def __init__(self, kind: type[int] | type[float], low: float, high: float | None = None):
        self.kind, self.low, self.high = kind, low, high

    def convert(self, value: Any, param: click.Parameter | None, ctx: click.Context | None) -> Any:
        if value is None or isinstance(value, int | float):
            return value
        if str(value).strip().lower() == DEFAULT:
            return DEFAULT
        try:
            number = self.kind(value)
        except ValueError:
            self.fail(f"{value!r} is not a number or 'default'", param, ctx)
        if number < self.low or (self.high is not None and number > self.high):
            bound = f"between {self.low} and {self.high}" if self.high else f"at least {self.low}"
            self.fail(f"must be {bound} (or 'default'), got {value}", param, ctx)
        return number


_FLAGS: list[tuple[str, _Limit, str]] = [
    ("weight", _Limit(int, 1, 100), "Share of the workers when tenants compete (1-100)."),
    ("max_running", _Limit(int, 0), "Most jobs running at once across all workers (0 pauses)."),
    ("max_pending", _Limit(int, 0), "Most pending jobs; a submit beyond it gets 429."),
    ("submit_rate_per_min", _Limit(float, 1e-9), "Average submits per minute (token bucket)."),
    ("submit_burst", _Limit(int, 1), "Submits allowed at once above the rate (bucket size)."),
    ("max_stored_bytes", _Limit(int, 0), "Most bytes of uploaded video stored at once."),
]


@click.group()
def tenants() -> None:
    """Each tenant's share of the workers and its limits (NULL/default = the deployment default).

    Plain SQL works too: UPDATE vidjobs.tenants SET max_running = 2 WHERE tenant = 'acme';
    """


def _limit_options(command: Callable[..., Any]) -> Callable[..., Any]:
    for name, kind, help_text in reversed(_FLAGS):
        flag = "--" + name.replace("_", "-")
        command = click.option(
            flag, name, type=kind, default=None, help=f"{help_text} 'default': the default."
        )(command)
    return command


@tenants.command("set")
@database_url_option
@click.argument("tenant")
@_limit_options
@click.option(
    "--default",
    "reset",
    multiple=True,
    type=click.Choice([name for name, _, _ in _FLAGS]),
    help="Put this limit back to the deployment default (repeatable); same as LIMIT=default.",
)
def set_tenant(database_url: str, tenant: str, reset: tuple[str, ...], **limits: Any) -> None:
    """Set TENANT's weight or limits; those not given stay as they are.

    A tenant with no row yet (no key, no job) gets one. The claim and the API read the new
    values on their next statement; nothing needs a restart.
    """
    from vidjobs.db.tenants import tenant_get, tenant_set

    if not tenant.strip():
        raise click.BadParameter("must not be blank", param_hint="TENANT")
    changes = {n: None if v == DEFAULT else v for n, v in limits.items() if v is not None}
    for name in reset:
        if changes.get(name) is not None:
            raise click.UsageError(f"--{name.replace('_', '-')} given a value and --default")
        changes[name] = None
    if not changes:
        raise click.UsageError("nothing to set: give at least one limit (see --help)")

    async def go(conn: Any) -> Any:
        await tenant_set(conn, tenant, changes)
        return await tenant_get(conn, tenant)

    _echo_one(run_on_connection(database_url, go), as_json=False)


def _value(value: Any) -> str:
    return DEFAULT if value is None else str(value)


def _as_dict(row: Any) -> dict[str, Any]:
    import msgspec

    return msgspec.to_builtins(row)  # type: ignore[no-any-return]


def _echo_one(row: Any, *, as_json: bool) -> None:
    if as_json:
        click.echo(json.dumps(_as_dict(row)))
        return
    from vidjobs.schema.tenant import LIMITS

    click.echo(f"tenant: {row.tenant}")
    for name in LIMITS:
        click.echo(f"{name}: {_value(getattr(row, name))}")
    click.echo(f"running: {row.running}")
    click.echo(f"pending: {row.pending}")
    click.echo(f"stored_bytes: {row.stored_bytes}")
    last = row.last_claimed_at.isoformat() if row.last_claimed_at else "-"
    click.echo(f"last_claimed_at: {last}")


@tenants.command("show")
@database_url_option
@click.argument("tenant")
@click.option("--json", "as_json", is_flag=True, help="One JSON object instead of lines.")
def show_tenant(database_url: str, tenant: str, as_json: bool) -> None:
    """TENANT's weight and limits ('default' = the deployment default) and its usage."""
    from vidjobs.db.tenants import tenant_get

    row = run_on_connection(database_url, lambda c: tenant_get(c, tenant))
    if row is None:
        raise click.ClickException(f"no tenant {tenant!r} (see 'vidjobs tenants list')")
    _echo_one(row, as_json=as_json)


_COLUMNS = [
    ("TENANT", "tenant", 16),
    ("WEIGHT", "weight", 7),
    ("MAX_RUN", "max_running", 8),
    ("MAX_PEND", "max_pending", 9),
    ("RATE/MIN", "submit_rate_per_min", 9),
    ("BURST", "submit_burst", 6),
    ("MAX_BYTES", "max_stored_bytes", 12),
    ("RUNNING", "running", 8),
    ("PENDING", "pending", 8),
    ("STORED", "stored_bytes", 12),
]


@tenants.command("list")
@database_url_option
@click.option("--json", "as_json", is_flag=True, help="One JSON object per line.")
def list_tenants(database_url: str, as_json: bool) -> None:
    """Every tenant: weight, limits ('default' = the deployment default) and usage."""
    from vidjobs.db.tenants import tenant_list

    rows = run_on_connection(database_url, tenant_list)
    if as_json:
        for row in rows:
            click.echo(json.dumps(_as_dict(row)))
        return
    click.echo(" ".join(f"{title:{width}}" for title, _, width in _COLUMNS).rstrip())
    for row in rows:
        cells = [_value(getattr(row, name)) for _, name, _ in _COLUMNS]
        click.echo(" ".join(f"{c:{w}}" for c, (_, _, w) in zip(cells, _COLUMNS, strict=True)))
