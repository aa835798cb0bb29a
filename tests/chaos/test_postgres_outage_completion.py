"""Scenario 2b: Postgres down while a job finishes, for less than a lease: the same attempt wins.

A worker whose job finishes while Postgres is unreachable keeps retrying its fenced final
write (the completion, or the failure) and its heartbeats for as long as its lease may still
be valid; Postgres comes back before that, so the finished work is saved by the attempt that
did it instead of being taken back and run again (which used to cost an attempt, and on the
last attempt failed the job for good with ``lease_expired``).
"""

from __future__ import annotations

import time
import uuid
from typing import Any

import pytest

from tests.support.audit import record
from tests.support.db import run_db, sql, states
from tests.support.postgres import RestartablePostgres
from tests.support.processes import Processes, Services, worker_args
from vidjobs.blobs import BlobSettings
from vidjobs.db.jobs import NewJob, job_insert_many

pytestmark = [pytest.mark.chaos, pytest.mark.integration, pytest.mark.timeout(240)]

LEASE_S = 45.0  # heartbeats every 11 s (worker_args: lease / 4)
SLEEP_S = 2.0  # the jobs finish while Postgres is down
# Longer than the old retry window of a final write (5 tries; each waits for the pool's 5 s
# connect timeout: given up about 26 s after the job ended) and well within the lease: a
# worker that keeps retrying for as long as its lease may be valid saves the work.
DOWN_S = 34.0
WORKER = "chaos-outage-w0"


def _insert(url: str) -> tuple[uuid.UUID, uuid.UUID]:
    """One job that completes and one that fails for good, both after ``SLEEP_S``."""
    done: dict[str, Any] = {"sleep_s": SLEEP_S}
    fail: dict[str, Any] = {"sleep_s": SLEEP_S, "fail": "meant to fail", "permanent": True}
    jobs = [NewJob(tenant="chaos", pipeline="noop", params=p) for p in (done, fail)]
    completes, fails = run_db(url, lambda conn: job_insert_many(conn, jobs))
    return completes, fails


def test_a_job_finished_during_a_postgres_outage_is_saved_by_its_attempt(
    restartable_pg: RestartablePostgres, local_blob_settings: BlobSettings, processes: Processes
) -> None:
    url = restartable_pg.url
    completes, fails = _insert(url)
    services = Services(processes, url, local_blob_settings)
    worker = services.start_worker(*worker_args(LEASE_S, worker_id=WORKER), name="outage-worker")
    processes.wait_for(lambda: states(url).get("running", 0) == 2, 60, "both jobs are running")

    restartable_pg.stop()
    down_at = time.time()
    # The jobs end (and their writes start failing) while the server is down.
    time.sleep(max(0.0, DOWN_S - (time.time() - down_at)))
    assert worker.alive(), worker.text()[-3000:]
    restartable_pg.start()
    up_at = time.time()

    processes.wait_for(
        lambda: states(url) == {"completed": 1, "failed": 1},
        LEASE_S + 30,
        "one job completed and one failed",
    )
    rows = {
        r[0]: r[1:]
        for r in sql(
            url,
            "SELECT job_id, state::text, attempts, worker_id, error_kind FROM vidjobs.jobs",
        )
    }
    assert rows[completes] == ("completed", 1, WORKER, None), rows
    assert rows[fails] == ("failed", 1, WORKER, "noop_failure"), rows  # not lease_expired
    trail = sql(
        url,
        "SELECT job_id, actor, from_state::text, to_state::text, attempt,"
        " extract(epoch FROM at)::float8 FROM vidjobs.job_events ORDER BY event_id",
    )
    for job_id, final in ((completes, "completed"), (fails, "failed")):
        moves = [(e[2], e[3], e[1], e[4]) for e in trail if e[0] == job_id]
        # Submit, one claim and one final write by this worker's first attempt: no take-back.
        assert moves == [
            (None, "pending", "chaos", 0),
            ("pending", "running", WORKER, 1),
            ("running", final, WORKER, 1),
        ], moves
    written_at = {e[0]: e[5] for e in trail if e[3] in ("completed", "failed")}
    log = worker.text()
    assert "not written yet" in log, log[-3000:]  # the writes did meet the outage
    assert "until the lease expired" not in log, log[-3000:]  # and were not given up
    assert worker.alive(), log[-3000:]
    processes.stop(worker)
    record(
        "postgres_outage_completion",
        {
            "lease_s": LEASE_S,
            "down_s": round(up_at - down_at, 1),
            "completion_written_after_start_s": round(written_at[completes] - up_at, 2),
            "failure_written_after_start_s": round(written_at[fails] - up_at, 2),
            "attempts": [rows[completes][1], rows[fails][1]],
            "takebacks": 0,
        },
    )
