"""Scenario 2: Postgres restarted mid-run (fast shutdown, start again on the same data dir).

While it is down the API answers 503 (with Retry-After) and a submit leaves no blob behind;
once it is back the API and the workers carry on by themselves, and no job is lost.
"""

from __future__ import annotations

import time
import uuid
from concurrent.futures import ThreadPoolExecutor

import httpx
import pytest

from tests.support.api import submit_noop
from tests.support.audit import audit, record, result_mismatches
from tests.support.blobs import stored_keys
from tests.support.db import insert_jobs, sql, states
from tests.support.keys import auth, create_key
from tests.support.postgres import RestartablePostgres
from tests.support.processes import Processes, Services, worker_args
from vidjobs.blobs import BlobSettings, open_blob_store

pytestmark = [pytest.mark.chaos, pytest.mark.integration, pytest.mark.timeout(300)]

MIB = str(1024 * 1024)  # the API's upload limit
JOBS = 120
SUBMITS = 5
SLEEP_S = 0.5
LEASE_S = 3.0
DOWN_S = 6.0  # longer than the lease: every lease held at shutdown expires while it is down


def test_postgres_restart_mid_run_loses_nothing(
    restartable_pg: RestartablePostgres, s3_settings: BlobSettings, processes: Processes
) -> None:
    url = restartable_pg.url
    store = open_blob_store(s3_settings)
    store.ensure_ready()
    store.close()
    _, key = create_key(url, "chaos")
    services = Services(processes, url, s3_settings, {"VIDJOBS_API_MAX_UPLOAD_BYTES": MIB})
    services.start_api()
    workers = [
        services.start_worker(*worker_args(LEASE_S, worker_id=wid), name=wid)
        for wid in ("chaos-pg-w0", "chaos-pg-w1")
    ]
    with httpx.Client(base_url=services.base_url, headers=auth(key)) as api:
        submitted = [submit_noop(api, filename=f"before-{i}.mp4") for i in range(SUBMITS)]
        assert all(r.status_code == 202 for r in submitted), [r.text for r in submitted]
        job_ids = [uuid.UUID(r.json()["job_id"]) for r in submitted]
        job_ids += insert_jobs(
            url, JOBS, tenant="chaos", params={"sleep_s": SLEEP_S, "results": True}, max_attempts=10
        )
        processes.wait_for(lambda: states(url).get("completed", 0) >= 30, 120, "30 jobs completed")

        restartable_pg.stop()
        down_at = time.time()
        calls = {
            "status": lambda: api.get(f"/video/status/{job_ids[0]}", timeout=30),
            "submit": lambda: submit_noop(api, filename="during-outage.mp4"),
            "ready": lambda: api.get("/ready", timeout=30),
        }

        def hammer(what: str) -> list[tuple[int, float, str | None]]:
            """Call one route until DOWN_S passed: (status, seconds, Retry-After) each time."""
            seen = []
            while not seen or time.time() - down_at < DOWN_S:
                t0 = time.monotonic()
                resp = calls[what]()
                seen.append(
                    (resp.status_code, time.monotonic() - t0, resp.headers.get("retry-after"))
                )
            return seen

        with ThreadPoolExecutor(len(calls)) as pool:
            answers = dict(zip(calls, pool.map(hammer, calls), strict=True))
        restartable_pg.start()
        up_at = time.time()

        def api_answers() -> bool:
            return api.get(f"/video/status/{job_ids[0]}", timeout=30).status_code == 200

        api_recovery_s = processes.wait_for(api_answers, 60, "the API answers again", every=0.1)
        after = submit_noop(api, filename="after-restart.mp4")
        assert after.status_code == 202, after.text
        job_ids.append(uuid.UUID(after.json()["job_id"]))
        assert api.get("/ready", timeout=30).status_code == 200

    total = JOBS + SUBMITS + 1
    processes.wait_for(
        lambda: states(url).get("completed", 0) == total, 180, f"all {total} jobs completed"
    )
    for proc in workers:
        assert proc.alive(), proc.text()[-3000:]  # the workers rode it out, no restart
    codes = {what: [a[0] for a in seen] for what, seen in answers.items()}
    assert all(c == 503 for seen in codes.values() for c in seen), codes
    assert all(a[2] for what in ("status", "submit") for a in answers[what]), "no Retry-After"
    slowest_s = max(a[1] for seen in answers.values() for a in seen)

    a = audit(url)
    assert a.states == {"completed": total}, a.states  # 0 lost, 0 stuck
    assert {r[0] for r in sql(url, "SELECT job_id FROM vidjobs.jobs")} == set(job_ids)
    assert a.violations == [], a.violations[:20]
    assert result_mismatches(url, s3_settings, a) == []
    # No blob without a row: the submits refused during the outage removed their uploads.
    videos = {k for k in stored_keys(s3_settings) if k.endswith(".mp4")}
    rows = {
        k for (k,) in sql(url, "SELECT input_key FROM vidjobs.jobs WHERE input_key IS NOT NULL")
    }
    assert videos == rows, videos ^ rows
    first_done = sql(
        url,
        "SELECT extract(epoch FROM min(at)) FROM vidjobs.job_events"
        " WHERE to_state = 'completed' AND at > to_timestamp(%s)",
        up_at,
    )[0][0]
    for proc in workers:
        processes.stop(proc)
    record(
        "postgres_restart",
        {
            "jobs": total,
            "workers": len(workers),
            "lease_s": LEASE_S,
            "down_s": round(up_at - down_at, 1),
            "api_503": {k: len(v) for k, v in codes.items()},
            "api_non_503_while_down": sum(c != 503 for v in codes.values() for c in v),
            "api_slowest_answer_while_down_s": round(slowest_s, 2),
            "api_recovered_after_start_s": round(api_recovery_s, 2),
            "workers_first_completion_after_start_s": round(float(first_done) - up_at, 2),
            "takebacks": a.takebacks,
            "repeated_attempts": a.attempts_total - total,
            "lost": total - a.states.get("completed", 0),
            "blobs_without_row": len(videos - rows),
            "worker_restarts": 0,
        },
    )
