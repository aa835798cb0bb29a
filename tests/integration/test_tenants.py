"""Tenant policy as an operator sets it: `vidjobs tenants set/show/list`, plain SQL, the view."""

from __future__ import annotations

import asyncio
import json
from typing import Any

import psycopg
import pytest

from tests.support.processes import run_vidjobs, service_env
from tests.support.queue import at
from vidjobs.db.jobs import NewJob, job_insert_many
from vidjobs.db.leases import job_claim
from vidjobs.db.tenants import tenant_get, tenant_list, tenant_set

pytestmark = [pytest.mark.integration, pytest.mark.anyio]

Conn = psycopg.AsyncConnection[Any]


async def _cli(database_url: str, *args: str) -> Any:
    return await asyncio.to_thread(run_vidjobs, "tenants", *args, env=service_env(database_url))


async def test_set_show_list_and_back_to_default(database_url: str, conn: Conn) -> None:
    await job_insert_many(conn, [NewJob(tenant="acme", pipeline="noop")] * 3, now=at(0))
    proc = await _cli(database_url, "set", "acme", "--max-running", "2", "--weight", "3",
                      "--submit-rate-per-min", "1.5", "--max-stored-bytes", "1000000")  # fmt: skip
    assert proc.returncode == 0, proc.stderr
    assert "max_running: 2" in proc.stdout
    assert "weight: 3" in proc.stdout
    cur = await conn.execute(
        "SELECT weight, max_running, submit_rate_per_min, max_stored_bytes, max_pending"
        " FROM vidjobs.tenants WHERE tenant = 'acme'"
    )
    assert await cur.fetchone() == (3, 2, 1.5, 1_000_000, None)

    # Flags not given stay; 'default' and --default put a limit back to NULL.
    proc = await _cli(database_url, "set", "acme", "--weight", "default", "--default",
                      "max_stored_bytes", "--max-pending", "10")  # fmt: skip
    assert proc.returncode == 0, proc.stderr
    tenant = await tenant_get(conn, "acme")
    assert tenant is not None
    assert (tenant.weight, tenant.max_running, tenant.max_stored_bytes) == (None, 2, None)
    assert (tenant.max_pending, tenant.submit_rate_per_min) == (10, 1.5)
    assert (tenant.running, tenant.pending) == (0, 3)

    proc = await _cli(database_url, "show", "acme", "--json")
    assert proc.returncode == 0, proc.stderr
    shown = json.loads(proc.stdout)
    assert shown["max_running"] == 2
    assert shown["weight"] is None
    assert shown["pending"] == 3
    proc = await _cli(database_url, "show", "acme")
    assert "weight: default" in proc.stdout
    assert "pending: 3" in proc.stdout

    # A tenant with no key and no job yet can be given limits ahead of its first submit.
    proc = await _cli(database_url, "set", "newco", "--max-running", "0")
    assert proc.returncode == 0, proc.stderr
    proc = await _cli(database_url, "list")
    assert proc.returncode == 0, proc.stderr
    header, *lines = proc.stdout.splitlines()
    assert header.split()[:3] == ["TENANT", "WEIGHT", "MAX_RUN"]
    assert [line.split()[:3] for line in lines] == [
        ["acme", "default", "2"],
        ["newco", "default", "0"],
    ]
    proc = await _cli(database_url, "list", "--json")
    assert [json.loads(line)["tenant"] for line in proc.stdout.splitlines()] == ["acme", "newco"]


async def test_the_cli_refuses_what_the_table_would(database_url: str) -> None:
    for args, says in [
        (["set", "acme", "--weight", "0"], "between 1 and 100"),
        (["set", "acme", "--max-running", "-1"], "at least 0"),
        (["set", "acme", "--max-running", "lots"], "not a number or 'default'"),
        (["set", "acme"], "nothing to set"),
        (["set", "acme", "--weight", "2", "--default", "weight"], "a value and --default"),
        (["show", "nobody"], "no tenant 'nobody'"),
    ]:
        proc = await _cli(database_url, *args)
        assert proc.returncode != 0, args
        assert says in proc.stderr, (args, proc.stderr)


async def test_plain_sql_sets_what_the_claim_obeys(conn: Conn) -> None:
    await job_insert_many(conn, [NewJob(tenant="a", pipeline="noop")] * 5, now=at(0))
    await conn.execute("UPDATE vidjobs.tenants SET max_running = 2 WHERE tenant = 'a'")
    got = await job_claim(conn, worker_id="w", batch_size=10, lease_seconds=60, now=at(1))
    assert len(got) == 2
    cur = await conn.execute(
        "SELECT tenant, max_running, running, pending FROM vidjobs.tenant_usage"
    )
    assert await cur.fetchall() == [("a", 2, 2, 3)]
    # Back to the default (none here): the rest is claimed.
    await tenant_set(conn, "a", {"max_running": None})
    got = await job_claim(conn, worker_id="w", batch_size=10, lease_seconds=60, now=at(2))
    assert len(got) == 3
    [row] = await tenant_list(conn)
    assert (row.running, row.pending, row.max_running) == (5, 0, None)
    with pytest.raises(ValueError, match="not a tenant limit: running"):
        await tenant_set(conn, "a", {"running": 0})
