"""Admission control at submit, over HTTP against real Postgres and a real S3 server.

A tenant's submit rate, pending jobs and stored bytes are checked before a byte of the body is
read; a refused submit names the limit, its value and the usage, and leaves no row or blob.
"""

from __future__ import annotations

import asyncio
import re
import time
from collections.abc import Iterator
from typing import Any

import httpx
import msgspec
import psycopg
import pytest
from litestar import Litestar
from litestar.testing import TestClient
from psycopg import sql as pg_sql

from tests.support.api import submit_noop
from tests.support.blobs import stored_keys
from tests.support.db import count_jobs, insert_jobs, sql
from tests.support.keys import Keys, auth
from tests.support.media import mp4_bytes
from vidjobs.api.app import create_app
from vidjobs.api.settings import ApiSettings
from vidjobs.blobs import BlobSettings
from vidjobs.db.admission import TenantSubmitAdmitParams, tenant_submit_admit
from vidjobs.db.settings import TenantDefaults
from vidjobs.db.sql import QUERIES

pytestmark = pytest.mark.integration

PROBLEM = "application/problem+json"


def _limit(database_url: str, tenant: str, **limits: Any) -> None:
    """Set a tenant's own limits with plain SQL, as an operator may."""
    sql(
        database_url,
        "INSERT INTO vidjobs.tenants (tenant) VALUES (%s) ON CONFLICT DO NOTHING",
        tenant,
    )
    for column, value in limits.items():
        sql(
            database_url,
            f"UPDATE vidjobs.tenants SET {column} = %s WHERE tenant = %s",
            value,
            tenant,
        )


def _refused(resp: httpx.Response, status: int, slug: str, limit: str) -> dict[str, Any]:
    assert resp.status_code == status, resp.text
    assert resp.headers["content-type"].startswith(PROBLEM)
    assert resp.headers["connection"] == "close"  # the body was never read
    body: dict[str, Any] = resp.json()
    assert body["type"].endswith(f"/problems/{slug}"), body
    assert body["status"] == status
    assert body["limit"] == limit, body
    assert limit in body["detail"] or slug == "submit-rate-limited", body
    return body


def _jobs_of(database_url: str, tenant: str) -> int:
    ((n,),) = sql(database_url, "SELECT count(*) FROM vidjobs.jobs WHERE tenant = %s", tenant)
    return int(n)


def test_rate_limit_answers_429_with_retry_after_and_recovers_after_it(
    client: TestClient[Litestar], keys: Keys, database_url: str, s3_settings: BlobSettings
) -> None:
    # A token per 5 s: three submits on a loaded box (one CI run took over 1 s for them, with a
    # token a second) cannot see the bucket refill in between.
    _limit(database_url, "acme", submit_rate_per_min=12, submit_burst=2)
    assert submit_noop(client, keys.acme).status_code == 202
    assert submit_noop(client, keys.acme).status_code == 202
    refused = submit_noop(client, keys.acme)
    body = _refused(refused, 429, "submit-rate-limited", "submit_rate_per_min")
    assert 1 <= int(refused.headers["retry-after"]) <= 5  # the wait for the next token
    assert body["limit_value"] == 12
    assert 0 <= body["usage"] < 1  # the tokens left
    assert "12 videos per minute" in body["detail"]
    assert "bursts of 2" in body["detail"]
    # Nothing of the refused submit is stored; another tenant is not limited by acme's bucket.
    assert _jobs_of(database_url, "acme") == 2
    assert len(stored_keys(s3_settings)) == 2
    assert submit_noop(client, keys.other).status_code == 202

    time.sleep(int(refused.headers["retry-after"]))
    assert submit_noop(client, keys.acme).status_code == 202


def test_retry_after_is_the_wait_for_one_token_and_the_bucket_refills_with_time(
    client: TestClient[Litestar], keys: Keys, database_url: str
) -> None:
    _limit(database_url, "acme", submit_rate_per_min=6, submit_burst=1)  # a token per 10 s
    assert submit_noop(client, keys.acme).status_code == 202
    refused = submit_noop(client, keys.acme)
    _refused(refused, 429, "submit-rate-limited", "submit_rate_per_min")
    wait = int(refused.headers["retry-after"])
    assert 8 <= wait <= 10  # 10 s for a token, less what passed since the first submit
    # Let the bucket's clock run `wait` seconds (its level was computed at submit_refilled_at).
    sql(
        database_url,
        "UPDATE vidjobs.tenants SET submit_refilled_at = submit_refilled_at - make_interval("
        "secs => %s) WHERE tenant = 'acme'",
        wait - 1,
    )
    still = submit_noop(client, keys.acme)
    _refused(still, 429, "submit-rate-limited", "submit_rate_per_min")
    assert int(still.headers["retry-after"]) <= 2
    sql(
        database_url,
        "UPDATE vidjobs.tenants SET submit_refilled_at = submit_refilled_at - interval '2 s' "
        "WHERE tenant = 'acme'",
    )
    assert submit_noop(client, keys.acme).status_code == 202


def test_max_pending_refuses_with_the_limit_and_the_count_and_stores_nothing(
    client: TestClient[Litestar], keys: Keys, database_url: str, s3_settings: BlobSettings
) -> None:
    _limit(database_url, "acme", max_pending=2)
    assert submit_noop(client, keys.acme).status_code == 202
    assert submit_noop(client, keys.acme).status_code == 202
    body = _refused(submit_noop(client, keys.acme), 429, "too-many-pending-jobs", "max_pending")
    assert (body["limit_value"], body["usage"]) == (2, 2)
    assert "2 pending jobs" in body["detail"]
    assert count_jobs(database_url) == 2
    assert len(stored_keys(s3_settings)) == 2
    # Once one runs (leaves pending), the tenant may submit again.
    sql(
        database_url,
        "UPDATE vidjobs.jobs SET state = 'cancelled', finished_at = now() WHERE job_id = "
        "(SELECT job_id FROM vidjobs.jobs ORDER BY created_at LIMIT 1)",
    )
    assert submit_noop(client, keys.acme).status_code == 202


@pytest.fixture
def limited_client(api_settings: ApiSettings) -> Iterator[TestClient[Litestar]]:
    """The app with deployment defaults: 1 pending job per tenant, 1/min, 5 000 bytes stored."""
    defaults = TenantDefaults(max_pending=1, submit_rate_per_min=1, max_stored_bytes=5000)
    with TestClient(create_app(api_settings.model_copy(update={"tenants": defaults}))) as c:
        yield c


def test_the_defaults_apply_where_a_tenants_row_leaves_a_limit_null(
    limited_client: TestClient[Litestar], keys: Keys, database_url: str
) -> None:
    assert submit_noop(limited_client, keys.acme, size=1000).status_code == 202
    # The default burst is a minute of the rate (1): the second submit is over the rate.
    refused = submit_noop(limited_client, keys.acme, size=1000)
    _refused(refused, 429, "submit-rate-limited", "submit_rate_per_min")
    assert 50 <= int(refused.headers["retry-after"]) <= 60
    # A row's own value wins over the default: globex may submit at 600/min, keeps 1 pending.
    _limit(database_url, "globex", submit_rate_per_min=600)
    assert submit_noop(limited_client, keys.other, size=1000).status_code == 202
    body = _refused(
        submit_noop(limited_client, keys.other, size=1000),
        429,
        "too-many-pending-jobs",
        "max_pending",
    )
    assert body["limit_value"] == 1


def _multipart(video: bytes) -> tuple[bytes, str]:
    boundary = "b0undary"
    body = (
        (
            f'--{boundary}\r\nContent-Disposition: form-data; name="pipeline"\r\n\r\nnoop\r\n'
            f'--{boundary}\r\nContent-Disposition: form-data; name="file"; filename="v.mp4"\r\n'
            "Content-Type: video/mp4\r\n\r\n"
        ).encode()
        + video
        + f"\r\n--{boundary}--\r\n".encode()
    )
    return body, f"multipart/form-data; boundary={boundary}"


def test_max_stored_bytes_counts_what_was_stored_and_refuses_what_would_not_fit(
    client: TestClient[Litestar], keys: Keys, database_url: str, s3_settings: BlobSettings
) -> None:
    _limit(database_url, "acme", max_stored_bytes=10_000)
    assert submit_noop(client, keys.acme, size=6000).status_code == 202
    # input_bytes is the file's size, and 0012's trigger adds it to the tenant's counter.
    assert sql(database_url, "SELECT input_bytes FROM vidjobs.jobs") == [(6000,)]
    assert sql(database_url, "SELECT stored_bytes FROM vidjobs.tenants WHERE tenant = 'acme'") == [
        (6000,)
    ]
    # Refused from its Content-Length, before the body is read.
    body = _refused(
        submit_noop(client, keys.acme, size=6000), 413, "storage-quota-exceeded", "max_stored_bytes"
    )
    assert (body["limit_value"], body["usage"]) == (10_000, 6000)
    assert "DELETE /jobs/" in body["detail"]
    # Without a Content-Length (chunked), the upload is cut off at the first byte over the quota.
    video, ctype = _multipart(mp4_bytes(6000, seed=1))
    chunked = client.post(
        "/video/submit",
        content=(video[i : i + 1000] for i in range(0, len(video), 1000)),
        headers={**auth(keys.acme), "Content-Type": ctype},
    )
    assert "content-length" not in chunked.request.headers
    body = _refused(chunked, 413, "storage-quota-exceeded", "max_stored_bytes")
    assert body["usage"] == 6000
    assert _jobs_of(database_url, "acme") == 1
    assert len(stored_keys(s3_settings)) == 1
    # A smaller one still fits; deleting a job frees its bytes.
    assert submit_noop(client, keys.acme, size=3000).status_code == 202
    assert sql(database_url, "SELECT stored_bytes FROM vidjobs.tenants WHERE tenant = 'acme'") == [
        (9000,)
    ]
    sql(database_url, "DELETE FROM vidjobs.jobs WHERE input_bytes = 6000")
    assert submit_noop(client, keys.acme, size=6000).status_code == 202


@pytest.mark.anyio
async def test_the_bucket_is_exact_under_concurrent_submits_from_many_connections(
    database_url: str,
) -> None:
    """20 submits at once on 20 connections (as from many API processes): burst 5 admits 5."""
    _limit(database_url, "acme", submit_rate_per_min=0.001, submit_burst=5)
    conns = [
        await psycopg.AsyncConnection.connect(database_url, autocommit=True) for _ in range(20)
    ]
    try:
        verdicts = await asyncio.gather(
            *(tenant_submit_admit(c, "acme", TenantDefaults()) for c in conns)
        )
    finally:
        for c in conns:
            await c.close()
    assert (
        sorted(v.refused_by or "admitted" for v in verdicts)
        == ["admitted"] * 5 + ["submit_rate_per_min"] * 15
    )
    ((tokens,),) = sql(
        database_url, "SELECT submit_tokens FROM vidjobs.tenants WHERE tenant = 'acme'"
    )
    assert tokens == pytest.approx(0, abs=0.01)


@pytest.mark.anyio
async def test_a_tenant_without_a_row_gets_one_at_its_first_submit(database_url: str) -> None:
    async with await psycopg.AsyncConnection.connect(database_url, autocommit=True) as conn:
        verdict = await tenant_submit_admit(
            conn, "newco", TenantDefaults(submit_rate_per_min=60, submit_burst=3)
        )
    assert verdict.refused_by is None
    assert verdict.tokens == 3  # a new bucket is full; this submit took one of them
    assert sql(
        database_url, "SELECT submit_tokens FROM vidjobs.tenants WHERE tenant = 'newco'"
    ) == [(2.0,)]


def test_pending_jobs_are_counted_from_the_tenant_index_no_further_than_the_limit(
    database_url: str,
) -> None:
    """EXPLAIN ANALYZE over 3,000 pending jobs and 20,000 finished ones: an index read of
    exactly max_pending entries, never a scan of the table."""
    insert_jobs(database_url, 20_000, tenant="acme")
    sql(database_url, "UPDATE vidjobs.jobs SET state = 'cancelled', finished_at = now()")
    insert_jobs(database_url, 2_000, tenant="acme")
    insert_jobs(database_url, 1_000, tenant="globex")
    sql(database_url, "ANALYZE vidjobs.jobs")
    _limit(database_url, "acme", max_pending=100)
    args = msgspec.structs.asdict(
        TenantSubmitAdmitParams(
            tenant="acme", rate_per_min=None, burst=None, max_pending=None,
            max_stored_bytes=None, incoming_bytes=None,
        )
    )  # fmt: skip
    query = QUERIES["tenant_submit_admit"]
    names = list(dict.fromkeys(re.findall(r"%\((\w+)\)s", query)))
    numbered = re.sub(r"%\((\w+)\)s", lambda m: f"${names.index(m[1]) + 1}", query)
    values = pg_sql.SQL(", ").join(pg_sql.Literal(args[n]) for n in names)
    with psycopg.connect(database_url, autocommit=True) as conn:
        explain = "EXPLAIN (ANALYZE, TIMING OFF, COSTS OFF) " + query
        custom = "\n".join(row[0] for row in conn.execute(explain, args).fetchall())  # type: ignore[arg-type]
        # And the generic plan a prepared statement may switch to after 5 runs.
        conn.execute("PREPARE admit AS " + numbered)  # type: ignore[arg-type]
        conn.execute("SET plan_cache_mode = force_generic_plan")
        run = pg_sql.SQL("EXPLAIN (ANALYZE, TIMING OFF, COSTS OFF) EXECUTE admit({})")
        generic = "\n".join(row[0] for row in conn.execute(run.format(values)).fetchall())
    for plan in (custom, generic):
        assert "Seq Scan on jobs" not in plan, plan
        scans = [line for line in plan.splitlines() if "jobs_tenant_pending_idx" in line]
        assert len(scans) == 1, plan
        assert "actual rows=100 " in scans[0], plan  # the limit's worth of entries, not 2,000
    assert "tenant = $" in generic, "not a generic plan: " + generic
