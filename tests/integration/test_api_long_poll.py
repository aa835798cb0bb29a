"""``GET /video/status/{id}?wait=S``: the answer comes when the job's state changes, not later.

The job is moved on by the worker's own db calls from another connection (claim, complete,
cancel), as a worker would. The app runs in the test's event loop behind httpx's ASGI transport
(its lifespan entered: the real pool on the test's Postgres, the real S3 bucket), so requests
really wait side by side; Litestar's test client serves one request at a time.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
import uuid
from collections.abc import AsyncIterator
from typing import Any

import httpx
import psycopg
import pytest

from tests.support.db import sql
from tests.support.keys import Keys
from tests.support.media import mp4_bytes
from vidjobs.api.app import create_app
from vidjobs.api.settings import ApiSettings
from vidjobs.db.jobs import job_cancel
from vidjobs.db.leases import job_claim, job_complete

pytestmark = [pytest.mark.integration, pytest.mark.anyio]

_OTHER_BACKENDS = (
    "SELECT count(*) FROM pg_stat_activity"
    " WHERE datname = current_database() AND pid <> pg_backend_pid()"
)


@contextlib.asynccontextmanager
async def _api(settings: ApiSettings) -> AsyncIterator[httpx.AsyncClient]:
    app = create_app(settings)
    async with app.lifespan():
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://api") as c:
            yield c


async def _submit(c: httpx.AsyncClient, key: str) -> uuid.UUID:
    resp = await c.post(
        "/video/submit",
        data={"pipeline": "noop"},
        files={"file": ("clip.mp4", mp4_bytes(), "video/mp4")},
        headers=Keys.auth(key),
    )
    assert resp.status_code == 202, resp.text
    return uuid.UUID(resp.json()["job_id"])


def _backends(database_url: str) -> int:
    """Connections to this test's database other than the one asking."""
    return int(sql(database_url, _OTHER_BACKENDS)[0][0])


async def test_a_long_poll_answers_when_the_job_completes(
    api_settings: ApiSettings, keys: Keys, conn: psycopg.AsyncConnection[Any]
) -> None:
    async with _api(api_settings) as c:
        job_id = await _submit(c, keys.acme)
        (claimed,) = await job_claim(conn, worker_id="w", batch_size=1, lease_seconds=60)
        assert claimed.job_id == job_id
        poll = asyncio.create_task(
            c.get(f"/video/status/{job_id}?wait=20", headers=Keys.auth(keys.acme))
        )
        await asyncio.sleep(0.5)
        assert not poll.done()  # running, unchanged: it waits
        assert claimed.lease_token is not None
        await job_complete(conn, job_id, claimed.lease_token, output_key=None)
        done_at = time.monotonic()
        resp = await asyncio.wait_for(poll, 10)
        answered_in = time.monotonic() - done_at
    assert resp.status_code == 200, resp.text
    assert resp.json()["status"] == "completed"
    # One tick (50 ms) and a read, not the 20 s asked for; the margin is for a loaded CI box.
    assert answered_in < 1.0, answered_in


async def test_a_finished_job_answers_at_once_and_an_unchanged_one_after_the_wait(
    api_settings: ApiSettings, keys: Keys, conn: psycopg.AsyncConnection[Any]
) -> None:
    async with _api(api_settings) as c:
        job_id = await _submit(c, keys.acme)
        started = time.monotonic()
        resp = await c.get(f"/video/status/{job_id}?wait=0.6", headers=Keys.auth(keys.acme))
        waited = time.monotonic() - started
        assert resp.status_code == 200
        assert resp.json()["status"] == "pending"
        assert waited >= 0.6, waited  # nothing changed: the whole wait, then the state as it is
        await job_cancel(conn, job_id, tenant="acme")
        started = time.monotonic()
        resp = await c.get(f"/video/status/{job_id}?wait=30", headers=Keys.auth(keys.acme))
        assert resp.json()["status"] == "cancelled"
        assert time.monotonic() - started < 5  # finished already: no wait at all


@pytest.mark.parametrize("wait", ["-1", "61", "soon"])
async def test_a_wait_out_of_range_is_422(api_settings: ApiSettings, keys: Keys, wait: str) -> None:
    async with _api(api_settings) as c:
        job_id = await _submit(c, keys.acme)
        resp = await c.get(f"/video/status/{job_id}?wait={wait}", headers=Keys.auth(keys.acme))
    assert resp.status_code == 422, resp.text
    assert resp.headers["content-type"].startswith("application/problem+json")


async def test_200_long_polls_hold_no_connection_each_and_all_see_the_change(
    api_settings: ApiSettings,
    keys: Keys,
    conn: psycopg.AsyncConnection[Any],
    database_url: str,
) -> None:
    async with _api(api_settings) as c:
        job_id = await _submit(c, keys.acme)
        idle = _backends(database_url)
        polls = [
            asyncio.create_task(
                c.get(f"/video/status/{job_id}?wait=30", headers=Keys.auth(keys.acme))
            )
            for _ in range(200)
        ]
        await asyncio.sleep(1.0)
        # While they wait: the pool's connections at most (4 in these settings), never one
        # per request. Each waiting request holds a timer until the next tick of the process.
        waiting = _backends(database_url)
        assert waiting - idle <= api_settings.database.pool_max_size, (idle, waiting)
        assert not any(p.done() for p in polls)
        await job_claim(conn, worker_id="w", batch_size=1, lease_seconds=60)
        answers = await asyncio.wait_for(asyncio.gather(*polls), 20)
    assert {a.status_code for a in answers} == {200}
    assert {a.json()["status"] for a in answers} == {"running"}
