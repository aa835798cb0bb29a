"""Scenario 3: the S3 server stops mid-run and comes back on the same port and data.

While it is down, submits get 503 and leave nothing half-written (no row without its blob, no
blob without its row), status polls still answer (they need only Postgres), and workers hand
the jobs that cannot upload their results back to the queue (``job_retry_later``: after a
growing delay, the attempt not counted); those jobs complete once the store is back. The
second test keeps the store down longer than the default three attempts' backoff lasts, with
jobs of the default ``max_attempts = 3``: none fails.
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
from tests.support.processes import Processes, Services, worker_args
from vidjobs.blobs import BlobSettings, open_blob_store
from vidjobs.devstack.embedded import EmbeddedS3

pytestmark = [pytest.mark.chaos, pytest.mark.integration, pytest.mark.timeout(300)]

MIB = str(1024 * 1024)  # the API's upload limit
JOBS = 80
SUBMITS = 5
SLEEP_S = 0.3
LEASE_S = 3.0
DOWN_S = 8.0
# job_retry_later's defaults: the k-th hand-back (from 0) of a job waits at least 0.5·2^k s
# (equal jitter of min(60, 1·2^k)).
INFRA_BASE_S = 1.0
INFRA_MAX_S = 60.0
# Second test: the outage that used to fail every running job with the default 3 attempts
# (job_fail's backoff of 2.5-5 s, then 5-10 s, used them up within ~8-15 s).
LONG_DOWN_S = 20.0
RUNNING_JOBS = 4


def test_blob_store_outage_mid_run(
    database_url: str, restartable_s3: tuple[EmbeddedS3, BlobSettings], processes: Processes
) -> None:
    s3, blobs = restartable_s3
    store = open_blob_store(blobs)
    store.ensure_ready()
    store.close()
    _, key = create_key(database_url, "chaos")
    services = Services(processes, database_url, blobs, {"VIDJOBS_API_MAX_UPLOAD_BYTES": MIB})
    services.start_api()
    workers = [
        services.start_worker(*worker_args(LEASE_S, worker_id=wid), name=wid)
        for wid in ("chaos-s3-w0", "chaos-s3-w1")
    ]
    with httpx.Client(base_url=services.base_url, headers=auth(key)) as api:
        before = [submit_noop(api, filename=f"before-{i}.mp4") for i in range(SUBMITS)]
        assert [r.status_code for r in before] == [202] * SUBMITS, [r.text for r in before]
        job_ids = [uuid.UUID(r.json()["job_id"]) for r in before]
        job_ids += insert_jobs(
            database_url,
            JOBS,
            tenant="chaos",
            params={"sleep_s": SLEEP_S, "results": True},
            max_attempts=10,
        )
        processes.wait_for(
            lambda: states(database_url).get("completed", 0) >= 20, 120, "20 completed"
        )

        s3.stop()
        down_at = time.time()
        calls = {
            "submit": lambda: submit_noop(api, filename="during-outage.mp4"),
            "status": lambda: api.get(f"/video/status/{job_ids[0]}", timeout=30),
            "ready": lambda: api.get("/ready", timeout=30),
        }

        def hammer(what: str) -> list[int]:
            seen: list[int] = []
            while not seen or time.time() - down_at < DOWN_S:
                seen.append(calls[what]().status_code)
                time.sleep(0.2)
            return seen

        with ThreadPoolExecutor(len(calls)) as pool:
            codes = dict(zip(calls, pool.map(hammer, calls), strict=True))
        failed_while_down = sql(
            database_url,
            "SELECT count(*) FROM vidjobs.job_events WHERE error_kind = 'blob_unavailable'",
        )[0][0]
        s3.start()
        up_at = time.time()
        api_recovery_s = processes.wait_for(
            lambda: submit_noop(api, filename="after-outage.mp4").status_code == 202,
            60,
            "submits work again",
        )
        job_ids += [
            uuid.UUID(r[0])
            for r in sql(
                database_url,
                "SELECT job_id::text FROM vidjobs.jobs WHERE pipeline = 'noop'"
                " AND input_key IS NOT NULL AND job_id <> ALL(%s)",
                job_ids,
            )
        ]

    total = len(job_ids)
    assert total == JOBS + SUBMITS + 1  # every accepted submit, nothing from the refused ones
    processes.wait_for(
        lambda: states(database_url).get("completed", 0) == total, 180, f"all {total} completed"
    )
    for proc in workers:
        assert proc.alive(), proc.text()[-3000:]
    assert set(codes["submit"]) == {503}, codes
    assert set(codes["ready"]) == {503}, codes
    assert set(codes["status"]) == {200}, codes  # polling needs only Postgres

    a = audit(database_url)
    assert a.states == {"completed": total}, a.states
    assert a.violations == [], a.violations[:20]
    assert result_mismatches(database_url, blobs, a) == []
    # Nothing half-written: each row has its video and each video its row.
    videos = {k for k in stored_keys(blobs) if k.endswith(".mp4")}
    rows = {
        k for (k,) in sql(database_url, "SELECT input_key FROM vidjobs.jobs WHERE input_key > ''")
    }
    assert videos == rows, videos ^ rows
    # The workers' failed uploads were handed back and retried with backoff: each re-claim
    # waited at least the lower bound of its jittered delay (run_after is enforced by the
    # claim, so no timing race).
    retries = hand_back_waits(database_url)
    assert retries, "no worker upload failed during the outage"
    for k, waited in retries:
        assert waited >= min(INFRA_MAX_S, INFRA_BASE_S * 2**k) / 2 - 0.01, (k, waited)
    first_done = sql(
        database_url,
        "SELECT extract(epoch FROM min(at)) FROM vidjobs.job_events"
        " WHERE to_state = 'completed' AND at > to_timestamp(%s)",
        up_at,
    )[0][0]
    all_done = sql(
        database_url,
        "SELECT extract(epoch FROM max(at)) FROM vidjobs.job_events WHERE to_state = 'completed'",
    )[0][0]
    for proc in workers:
        processes.stop(proc)
    record(
        "blob_outage",
        {
            "jobs": total,
            "workers": len(workers),
            "down_s": round(up_at - down_at, 1),
            "api_submit_503": len(codes["submit"]),
            "api_ready_503": len(codes["ready"]),
            "api_status_200_while_down": len(codes["status"]),
            "api_submit_ok_after_start_s": round(api_recovery_s, 2),
            "hand_backs_blob_unavailable": len(retries),
            "attempts_failed_while_down": failed_while_down,
            "retry_wait_s_min": round(min(w for _, w in retries), 2),
            "retry_wait_s_max": round(max(w for _, w in retries), 2),
            "first_completion_after_start_s": round(float(first_done) - up_at, 2),
            "all_completed_after_start_s": round(float(all_done) - up_at, 2),
            "repeated_attempts": a.attempts_total - total,
            "most_attempts_one_job": max(
                n for (n,) in sql(database_url, "SELECT attempts FROM vidjobs.jobs")
            ),
            "lost": total - a.states.get("completed", 0),
            "rows_without_blob": len(rows - videos),
            "blobs_without_row": len(videos - rows),
        },
    )


def hand_back_waits(url: str) -> list[tuple[int, float]]:
    """(k, seconds until re-claimed) of each blob_unavailable hand-back; k counts per job from 0."""
    rows = sql(
        url,
        "SELECT row_number() OVER (PARTITION BY f.job_id ORDER BY f.event_id) - 1,"
        " extract(epoch FROM (SELECT min(c.at) FROM vidjobs.job_events c"
        "  WHERE c.job_id = f.job_id AND c.to_state = 'running' AND c.event_id > f.event_id)"
        "  - f.at)"
        " FROM vidjobs.job_events f"
        " WHERE f.error_kind = 'blob_unavailable' AND f.to_state = 'pending'",
    )
    return [(int(k), float(w)) for k, w in rows if w is not None]


def test_blob_store_outage_does_not_use_up_attempts(
    database_url: str, restartable_s3: tuple[EmbeddedS3, BlobSettings], processes: Processes
) -> None:
    """Jobs with the default 3 attempts, running when S3 stops for 20 s, all complete."""
    s3, blobs = restartable_s3
    store = open_blob_store(blobs)
    store.ensure_ready()
    store.close()
    services = Services(processes, database_url, blobs)
    workers = [
        services.start_worker(*worker_args(LEASE_S, worker_id=wid), name=wid)
        for wid in ("chaos-s3l-w0", "chaos-s3l-w1")
    ]
    job_ids = insert_jobs(
        database_url,
        RUNNING_JOBS,
        tenant="chaos",
        params={"sleep_s": 1.0, "results": True},
        max_attempts=3,
    )
    processes.wait_for(
        lambda: states(database_url).get("running", 0) == RUNNING_JOBS, 60, "all jobs running"
    )
    s3.stop()
    down_at = time.time()
    time.sleep(LONG_DOWN_S)
    during = states(database_url)
    most_attempts_while_down = max(
        n for (n,) in sql(database_url, "SELECT attempts FROM vidjobs.jobs")
    )
    s3.start()
    up_at = time.time()
    processes.wait_for(
        lambda: states(database_url).get("completed", 0) == RUNNING_JOBS,
        180,
        f"all {RUNNING_JOBS} completed",
    )
    for proc in workers:
        assert proc.alive(), proc.text()[-3000:]
    assert "failed" not in during, during
    a = audit(database_url)
    assert a.states == {"completed": RUNNING_JOBS}, a.states
    assert a.violations == [], a.violations[:20]
    assert result_mismatches(database_url, blobs, a) == []
    waits = hand_back_waits(database_url)
    assert waits, "no upload met the outage"
    for k, waited in waits:
        assert waited >= min(INFRA_MAX_S, INFRA_BASE_S * 2**k) / 2 - 0.01, (k, waited)
    all_done = sql(
        database_url,
        "SELECT extract(epoch FROM max(at)) FROM vidjobs.job_events WHERE to_state = 'completed'",
    )[0][0]
    for proc in workers:
        processes.stop(proc)
    record(
        "blob_outage_attempt_budget",
        {
            "jobs": len(job_ids),
            "max_attempts": 3,
            "down_s": round(up_at - down_at, 1),
            "hand_backs_blob_unavailable": len(waits),
            "most_hand_backs_one_job": 1 + max(k for k, _ in waits),
            "retry_wait_s_max": round(max(w for _, w in waits), 2),
            "most_attempts_while_down": most_attempts_while_down,
            "most_attempts_one_job": max(
                n for (n,) in sql(database_url, "SELECT attempts FROM vidjobs.jobs")
            ),
            "failed": a.states.get("failed", 0),
            "all_completed_after_start_s": round(float(all_done) - up_at, 2),
        },
    )
