"""deploy/sql/roles.sql on a migrated database: each role can do its job and nothing more.

The API and worker roles run the real named queries (db.jobs); the read-only role reads the DBA
views, runs the KEDA scaler's query from deploy/k8s/keda.yaml, is refused every write, the key
hashes and the tenants' idempotency keys, and its sessions get time limits (which Postgres
applies to the login role only, never through a group: shown here). It can still NOTIFY the
queue channel, as any role can; shown here too, since docs say so.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
import uuid
from collections.abc import Iterator
from datetime import timedelta
from pathlib import Path

import psycopg
import pytest
import yaml
from psycopg import errors, sql
from psycopg.pq import TransactionStatus

from vidjobs.db.jobs import job_cancel, job_delete, job_get, job_insert
from vidjobs.db.leases import job_claim, job_complete, job_retry_later
from vidjobs.db.webhooks import (
    RetryPolicy,
    delivery_claim,
    delivery_list,
    delivery_prune,
    delivery_record,
    endpoint_add,
    secret_create,
    secret_info,
)

pytestmark = pytest.mark.integration

ROOT = Path(__file__).resolve().parents[2]
ROLES_SQL = (ROOT / "deploy/sql/roles.sql").read_text(encoding="utf-8")


def _keda_query() -> str:
    for doc in yaml.safe_load_all((ROOT / "deploy/k8s/keda.yaml").read_text(encoding="utf-8")):
        if doc["kind"] == "ScaledObject":
            (trigger,) = [t for t in doc["spec"]["triggers"] if t["type"] == "postgresql"]
            return str(trigger["metadata"]["query"])
    raise AssertionError("no ScaledObject with a postgresql trigger in keda.yaml")


#: Every login role here has it: a server that asks for a password (postgres:16 in a container)
#: refuses a login with none.
_PASSWORD = "test"


def _as(url: str, user: str) -> str:
    info = psycopg.conninfo.conninfo_to_dict(url)
    info["user"] = user
    info["password"] = _PASSWORD
    return psycopg.conninfo.make_conninfo(**{k: str(v) for k, v in info.items() if v is not None})


@pytest.fixture
def logins(database_url: str) -> Iterator[dict[str, str]]:
    """roles.sql applied (twice: it is idempotent) and one login role per group role."""
    suffix = uuid.uuid4().hex[:8]
    names = {group: f"t_{group}_{suffix}" for group in ("api", "worker", "readonly")}
    with psycopg.connect(database_url, autocommit=True) as conn:
        conn.execute(ROLES_SQL)  # type: ignore[arg-type]
        for group, login in names.items():
            conn.execute(
                sql.SQL("CREATE ROLE {} LOGIN PASSWORD {} IN ROLE {}").format(
                    sql.Identifier(login),
                    sql.Literal(_PASSWORD),
                    sql.Identifier(f"vidjobs_{group}"),
                )
            )
        conn.execute(ROLES_SQL)  # type: ignore[arg-type]  # as after every migration
    yield {group: _as(database_url, login) for group, login in names.items()}
    with psycopg.connect(database_url, autocommit=True) as conn:
        for login in names.values():
            conn.execute(sql.SQL("DROP ROLE IF EXISTS {}").format(sql.Identifier(login)))


async def _api_submits_and_worker_completes(api_url: str, worker_url: str) -> None:
    job_id = uuid.uuid4()
    async with await psycopg.AsyncConnection.connect(api_url, autocommit=True) as api:
        result = await job_insert(
            api, job_id=job_id, tenant="acme", pipeline="yolo_ocr", params={},
            input_key=f"video_jobs/{job_id}.mp4",
        )  # fmt: skip
        assert result.created
    async with await psycopg.AsyncConnection.connect(worker_url, autocommit=True) as worker:
        (first,) = await job_claim(worker, worker_id="w1", batch_size=1, lease_seconds=30)
        assert first.lease_token is not None
        # An infrastructure hand-back (blob store down), then the retry once it is due.
        back = await job_retry_later(
            worker, job_id, first.lease_token, error_kind="blob_unavailable", error_message="x"
        )
        (claimed,) = await job_claim(
            worker, worker_id="w1", batch_size=1, lease_seconds=30, now=back.run_after
        )
        assert claimed.job_id == job_id
        assert claimed.lease_token is not None
        await job_complete(
            worker, job_id, claimed.lease_token, output_key=f"video_jobs/{job_id}_results.json"
        )
    async with await psycopg.AsyncConnection.connect(api_url, autocommit=True) as api:
        job = await job_get(api, job_id, tenant="acme")
        assert job is not None
        assert job.state == "completed"


def test_api_and_worker_roles_run_the_real_queries(logins: dict[str, str]) -> None:
    asyncio.run(_api_submits_and_worker_completes(logins["api"], logins["worker"]))


async def _webhooks_as_the_roles(owner_url: str, api_url: str, worker_url: str) -> None:
    """The outbox trigger under each role (a cancel by the API, a completion by a worker),
    the dispatcher's claim and record as the worker, a job's delete by the API."""
    async with await psycopg.AsyncConnection.connect(owner_url, autocommit=True) as owner:
        await endpoint_add(owner, "acme", "https://example.com/hooks")
        await secret_create(owner, "acme", "sealed-token")
    ids = [uuid.uuid4(), uuid.uuid4()]
    async with await psycopg.AsyncConnection.connect(api_url, autocommit=True) as api:
        for job_id in ids:
            await job_insert(api, job_id=job_id, tenant="acme", pipeline="noop", params={})
        assert await secret_info(api, "acme"), "the API sees that a secret exists"
        await job_cancel(api, ids[0], tenant="acme")
    async with await psycopg.AsyncConnection.connect(worker_url, autocommit=True) as worker:
        (held,) = await job_claim(worker, worker_id="w1", batch_size=1, lease_seconds=30)
        assert held.lease_token is not None
        await job_complete(worker, held.job_id, held.lease_token, output_key="out")
        claimed = await delivery_claim(worker, limit=10, lease_s=30)
        assert sorted(d.event_type for d in claimed) == ["job.cancelled", "job.completed"]
        assert all(d.sealed_secrets == ["sealed-token"] for d in claimed)
        for d in claimed:
            outcome = "gone" if d.event_type == "job.cancelled" else "delivered"
            await delivery_record(
                worker, d, outcome=outcome, started_at=d.created_at, duration_ms=1.0,
                status=410 if outcome == "gone" else 200, error=None, response_prefix=None,
                dispatcher="w1", retry=RetryPolicy(retry_base_s=1, retry_max_delay_s=1,
                                                   retry_for_s=60),
            )  # fmt: skip
    async with await psycopg.AsyncConnection.connect(api_url, autocommit=True) as api:
        assert await job_delete(api, ids[1], tenant="acme") is not None
        assert await delivery_list(api, job_id=ids[1]) == []
        # vidjobs db prune run as an API login (docs/operations.md, "Retention").
        assert await delivery_prune(api, older_than=timedelta(0)) == 1
        assert await delivery_list(api, tenant="acme") == []


def test_the_roles_run_the_webhook_statements(logins: dict[str, str], database_url: str) -> None:
    asyncio.run(_webhooks_as_the_roles(database_url, logins["api"], logins["worker"]))
    with psycopg.connect(logins["readonly"], autocommit=True) as conn:
        conn.execute("SELECT state, attempts, last_error FROM vidjobs.webhook_deliveries")
        conn.execute("SELECT attempt, status, error FROM vidjobs.webhook_attempts")
        conn.execute("SELECT tenant, created_at, expires_at FROM vidjobs.webhook_secrets")
        with pytest.raises(errors.InsufficientPrivilege):
            conn.execute("SELECT sealed FROM vidjobs.webhook_secrets")
    with psycopg.connect(logins["api"], autocommit=True) as conn:
        with pytest.raises(errors.InsufficientPrivilege):
            conn.execute("SELECT sealed FROM vidjobs.webhook_secrets")
        with pytest.raises(errors.InsufficientPrivilege):
            conn.execute("UPDATE vidjobs.webhook_deliveries SET state = 'delivered'")


def test_worker_role_cannot_delete_jobs_or_read_api_keys(logins: dict[str, str]) -> None:
    with psycopg.connect(logins["worker"], autocommit=True) as conn:
        with pytest.raises(errors.InsufficientPrivilege):
            conn.execute("DELETE FROM vidjobs.jobs")
        with pytest.raises(errors.InsufficientPrivilege):
            conn.execute("SELECT key_hash FROM vidjobs.api_keys")


def test_readonly_role_reads_views_and_runs_the_keda_query(logins: dict[str, str]) -> None:
    with psycopg.connect(logins["readonly"], autocommit=True) as conn:
        row = conn.execute(_keda_query()).fetchone()
        assert row is not None
        assert isinstance(row[0], int)
        assert row[0] == 0
        for view in ("queue_overview", "stuck_jobs", "recent_failures", "throughput_per_minute"):
            conn.execute(sql.SQL("SELECT * FROM vidjobs.{}").format(sql.Identifier(view)))
        conn.execute("SELECT count(*) FROM vidjobs.jobs")
        conn.execute("SELECT key_id, tenant, prefix FROM vidjobs.api_keys")


@pytest.mark.parametrize(
    "statement",
    [
        "INSERT INTO vidjobs.job_events (job_id, actor, to_state, attempt)"
        " VALUES (gen_random_uuid(), 'dba', 'pending', 0)",
        "UPDATE vidjobs.jobs SET priority = 1",
        "DELETE FROM vidjobs.jobs",
        "DELETE FROM vidjobs.api_keys",
        "SELECT key_hash FROM vidjobs.api_keys",
        "SELECT idempotency_key FROM vidjobs.jobs",
        "SELECT * FROM vidjobs.jobs",
        "UPDATE vidjobs.tenants SET weight = 2",
        "CREATE TABLE vidjobs.dba_scratch (x int)",
        "TRUNCATE vidjobs.job_events",
    ],
)
def test_readonly_role_is_refused_every_write(logins: dict[str, str], statement: str) -> None:
    with (
        psycopg.connect(logins["readonly"], autocommit=True) as conn,
        pytest.raises(errors.InsufficientPrivilege),
    ):
        conn.execute(statement)  # type: ignore[arg-type]


def _show(url: str, setting: str) -> str:
    with psycopg.connect(url, autocommit=True) as conn:
        row = conn.execute(sql.SQL("SHOW {}").format(sql.Identifier(setting))).fetchone()
    assert row is not None
    return str(row[0])


def test_readonly_sessions_get_time_limits_and_the_others_none(logins: dict[str, str]) -> None:
    assert _show(logins["readonly"], "statement_timeout") == "30s"
    assert _show(logins["readonly"], "idle_in_transaction_session_timeout") == "1min"
    for group in ("api", "worker"):
        assert _show(logins[group], "statement_timeout") == "0"
        assert _show(logins[group], "idle_in_transaction_session_timeout") == "0"


def test_idle_transaction_of_a_readonly_session_is_ended(
    logins: dict[str, str], database_url: str
) -> None:
    login = psycopg.conninfo.conninfo_to_dict(logins["readonly"])["user"]
    with psycopg.connect(database_url, autocommit=True) as owner:
        owner.execute(
            sql.SQL("ALTER ROLE {} SET idle_in_transaction_session_timeout = '200ms'").format(
                sql.Identifier(str(login))
            )
        )
    with psycopg.connect(logins["readonly"]) as conn:  # a transaction opens with the first read
        conn.execute("SELECT count(*) FROM vidjobs.tenants")
        deadline = time.monotonic() + 30  # hang guard
        while conn.info.transaction_status != TransactionStatus.UNKNOWN:
            assert time.monotonic() < deadline, "the idle transaction was never ended"
            time.sleep(1.0)  # five times the limit: the server ends it meanwhile
            with contextlib.suppress(psycopg.Error):
                conn.execute("SELECT 1")
        assert conn.closed


def test_role_settings_apply_to_the_login_role_not_through_the_group(
    logins: dict[str, str], database_url: str
) -> None:
    # A DBA login made after roles.sql ran: the group's own settings do not reach it ...
    late = f"t_late_{uuid.uuid4().hex[:8]}"
    with psycopg.connect(database_url, autocommit=True) as owner:
        owner.execute(
            sql.SQL("CREATE ROLE {} LOGIN PASSWORD {} IN ROLE vidjobs_readonly").format(
                sql.Identifier(late), sql.Literal(_PASSWORD)
            )
        )
        ((group_settings,),) = owner.execute(
            "SELECT setconfig FROM pg_db_role_setting s JOIN pg_roles r ON r.oid = s.setrole"
            " WHERE r.rolname = 'vidjobs_readonly'"
        ).fetchall()
    assert "statement_timeout=30s" in group_settings
    try:
        assert _show(_as(database_url, late), "statement_timeout") == "0"
        # ... until roles.sql runs again (or ALTER ROLE late SET ..., as its header says).
        with psycopg.connect(database_url, autocommit=True) as owner:
            owner.execute(ROLES_SQL)  # type: ignore[arg-type]
        assert _show(_as(database_url, late), "statement_timeout") == "30s"
        assert _show(_as(database_url, late), "idle_in_transaction_session_timeout") == "1min"
    finally:
        with psycopg.connect(database_url, autocommit=True) as owner:
            owner.execute(sql.SQL("DROP ROLE IF EXISTS {}").format(sql.Identifier(late)))


def test_readonly_role_reads_jobs_and_every_view_but_no_idempotency_key(
    logins: dict[str, str], database_url: str
) -> None:
    with psycopg.connect(database_url, autocommit=True) as owner:
        owner.execute(
            "INSERT INTO vidjobs.jobs (job_id, tenant, pipeline, idempotency_key)"
            " VALUES (gen_random_uuid(), 'acme', 'noop', 'acme-order-4711')"
        )
        views = [
            name
            for (name,) in owner.execute(
                "SELECT viewname FROM pg_views WHERE schemaname = 'vidjobs' ORDER BY 1"
            ).fetchall()
        ]
    assert {"queue_overview", "stuck_jobs", "recent_failures"} <= set(views)
    with psycopg.connect(logins["readonly"], autocommit=True) as conn:
        rows = conn.execute(
            "SELECT job_id, tenant, state, params, input_bytes, created_at FROM vidjobs.jobs"
        ).fetchall()
        assert [(r[1], r[2]) for r in rows] == [("acme", "pending")]
        for view in views:  # tenant_usage too, once its migration is in
            got = conn.execute(sql.SQL("SELECT * FROM vidjobs.{}").format(sql.Identifier(view)))
            for row in got.fetchall():
                assert "acme-order-4711" not in map(str, row), view
        tenants = conn.execute("SELECT tenant, running FROM vidjobs.tenant_usage").fetchall()
        assert ("acme", 0) in tenants


def test_any_role_can_notify_the_queue_channel(logins: dict[str, str], database_url: str) -> None:
    # Postgres has no privilege for NOTIFY: documented in roles.sql, pinned here.
    with psycopg.connect(database_url, autocommit=True) as listener:
        listener.execute("LISTEN vidjobs_jobs")
        with psycopg.connect(logins["readonly"], autocommit=True) as dba:
            dba.execute("NOTIFY vidjobs_jobs, 'from a dba'")
        got = [n.payload for n in listener.notifies(timeout=10, stop_after=1)]
    assert got == ["from a dba"]
