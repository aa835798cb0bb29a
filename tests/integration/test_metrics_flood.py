"""A ``/metrics`` flood against a table of 1 M finished jobs takes nothing from the tenants.

Issue 10: each scrape counted every job on the request pool, so 50 scrapers in a loop made
authenticated requests answer 503. Here a real ``vidjobs api`` process (a small pool, to make
starvation easy to see) serves 50 concurrent scrapers while a tenant polls its job's status:
every poll answers 200 (no 503) and the queue depth the scrapers see still follows the table.
Bounds are hang guards; the latencies are measured by ``bench/tenants.py``.
"""

from __future__ import annotations

import asyncio
import time
import uuid

import httpx
import pytest

from tests.support.db import insert_jobs, sql
from tests.support.keys import auth, create_key
from tests.support.metrics import Scrape
from tests.support.processes import Processes, Services
from vidjobs.blobs import BlobSettings
from vidjobs.db.sql import QUERIES

pytestmark = pytest.mark.integration

FINISHED = 1_000_000
SCRAPERS = 50
FLOOD_S = 8.0


def _insert_finished(url: str, n: int) -> None:
    """``n`` completed jobs of tenant ``bulk`` in one statement (and fresh planner statistics)."""
    sql(
        url,
        "INSERT INTO vidjobs.jobs (job_id, tenant, pipeline, state, attempts, progress,"
        " started_at, finished_at, input_key, output_key)"
        " SELECT gen_random_uuid(), 'bulk', 'noop', 'completed', 1, 1,"
        " now() - interval '1 hour', now() - interval '1 hour' + g * interval '1 ms',"
        " 'video_jobs/' || g || '.mp4', 'video_jobs/' || g || '_results.json'"
        " FROM generate_series(1, %s) AS g",
        n,
    )
    sql(url, "ANALYZE vidjobs.jobs")


def _pending(text: str) -> float | None:
    return Scrape.parse(text).get("vidjobs_jobs", state="pending") if text else None


async def _flood(base: str, key: str, job_id: uuid.UUID, url: str) -> dict[str, object]:
    stop = asyncio.Event()
    scrapes: list[int] = []
    polls: list[int] = []
    seen: list[str] = []
    limits = httpx.Limits(max_connections=SCRAPERS + 5, max_keepalive_connections=SCRAPERS + 5)
    async with httpx.AsyncClient(base_url=base, timeout=30, limits=limits) as http:

        async def scrape() -> None:
            while not stop.is_set():
                resp = await http.get("/metrics")
                scrapes.append(resp.status_code)
                seen.append(resp.text)
                del seen[:-1]  # keep the newest text only

        async def poll() -> None:
            while not stop.is_set():
                resp = await http.get(f"/video/status/{job_id}", headers=auth(key))
                polls.append(resp.status_code)
                await asyncio.sleep(0.02)

        tasks = [asyncio.create_task(scrape()) for _ in range(SCRAPERS)]
        tasks.append(asyncio.create_task(poll()))
        await asyncio.sleep(FLOOD_S / 2)
        # Mid-flood, two more pending jobs: the cached depth must catch up while it lasts.
        await asyncio.to_thread(insert_jobs, url, 2, tenant="acme")
        started = time.monotonic()
        while _pending(seen[-1] if seen else "") != 3:
            assert time.monotonic() - started < 30, "the queue depth never refreshed"
            await asyncio.sleep(0.1)
        await asyncio.sleep(max(0.0, FLOOD_S / 2 - (time.monotonic() - started)))
        stop.set()
        await asyncio.wait_for(asyncio.gather(*tasks), 60)
    return {"scrapes": scrapes, "polls": polls}


@pytest.mark.timeout(600)
def test_metrics_flood_leaves_status_polls_answering(
    processes: Processes, database_url: str, local_blob_settings: BlobSettings
) -> None:
    _insert_finished(database_url, FINISHED)
    (job_id,) = insert_jobs(database_url, 1, tenant="acme")
    # The reader's statement reads the partial indexes, never the finished rows.
    plan = "\n".join(str(r[0]) for r in sql(database_url, "EXPLAIN " + QUERIES["job_count_queued"]))
    assert "Seq Scan" not in plan, plan
    assert "jobs_tenant_pending_idx" in plan, plan
    _, key = create_key(database_url, "acme")
    services = Services(
        processes,
        database_url,
        local_blob_settings,
        {"VIDJOBS_DB_POOL_MAX": "2", "VIDJOBS_API_METRICS_REFRESH_S": "0.5"},
    )
    services.start_api(within=60)

    got = asyncio.run(_flood(services.base_url, key, job_id, database_url))

    scrapes, polls = got["scrapes"], got["polls"]
    assert isinstance(scrapes, list)
    assert isinstance(polls, list)
    assert len(scrapes) > SCRAPERS  # every scraper got answers, in a loop
    assert set(scrapes) == {200}
    assert len(polls) >= 10, polls  # the polls kept answering through the flood
    assert set(polls) == {200}, {code: polls.count(code) for code in set(polls)}
    assert _pending(httpx.get(f"{services.base_url}/metrics").text) == 3
