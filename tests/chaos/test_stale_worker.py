"""Scenario 4: a worker paused (SIGSTOP) past its lease comes back after another took its job.

Its late writes (heartbeat, progress, result, completion) must be refused and logged, and the
job's result must be the new holder's. Paused early in the job, the stale worker learns of the
loss from its first heartbeat; paused in the last step, its work is already done when it
wakes, so what it tries is the result upload and the completion.
"""

from __future__ import annotations

import re
import signal
import time
import uuid

import pytest

from tests.support.audit import audit, record, result_mismatches
from tests.support.db import insert_jobs, sql
from tests.support.processes import Processes, Services, worker_args
from vidjobs.blobs import BlobSettings, open_blob_store

pytestmark = [pytest.mark.chaos, pytest.mark.integration, pytest.mark.timeout(240)]

# Ten steps of sleep_s / 10. Paused "in the last step", the test must see progress 0.9 (written
# at most one progress interval, 0.5 s, after the step began) before the job ends: 1 s steps.
SLEEP_S = {"early": 6.0, "last-step": 10.0}
LEASE_S = 2.0
# What the stale worker may log about a write refused for the job (any one proves fencing).
REFUSED = re.compile(
    r"lease lost to another worker|no longer held|lease was lost|after its lease was lost"
)


def _job_row(url: str, job_id: uuid.UUID) -> tuple[str, str | None, float, int]:
    rows = sql(
        url,
        "SELECT state::text, worker_id, progress, attempts FROM vidjobs.jobs WHERE job_id = %s",
        job_id,
    )
    state, worker_id, progress, attempts = rows[0]
    return state, worker_id, float(progress), attempts


@pytest.mark.parametrize(("when", "pause_at"), [("early", 0.2), ("last-step", 0.9)])
def test_paused_worker_is_fenced_out_and_the_result_is_the_new_holders(
    when: str, pause_at: float, database_url: str, s3_settings: BlobSettings, processes: Processes
) -> None:
    store = open_blob_store(s3_settings)
    store.ensure_ready()
    store.close()
    (job_id,) = insert_jobs(
        database_url,
        tenant="chaos",
        params={"sleep_s": SLEEP_S[when], "results": True},
        max_attempts=5,
    )
    services = Services(processes, database_url, s3_settings)
    stale = services.start_worker(*worker_args(LEASE_S, worker_id="chaos-stale"), name="stale")

    def reached() -> bool:
        state, worker, progress, _ = _job_row(database_url, job_id)
        return state == "running" and worker == "chaos-stale" and progress >= pause_at

    processes.wait_for(reached, 60, f"the first worker is {pause_at:.0%} into the job", every=0.05)
    stale.signal(signal.SIGSTOP)
    paused_at = time.time()
    paused_progress = _job_row(database_url, job_id)[2]

    fresh = services.start_worker(*worker_args(LEASE_S, worker_id="chaos-fresh"), name="fresh")
    processes.wait_for(
        lambda: _job_row(database_url, job_id)[:2] == ("completed", "chaos-fresh"),
        60,
        "the second worker took the job back and completed it",
    )
    completed_at = time.time()
    stale.signal(signal.SIGCONT)
    resumed_at = time.time()
    processes.wait_for(
        lambda: any(str(job_id) in line for line in refused_lines(stale.text())),
        30,
        "the resumed worker logs that its write was refused",
    )
    refused_after_s = time.time() - resumed_at
    # Give any further late write time to land (or, rather, to be refused).
    time.sleep(2 * LEASE_S)
    assert stale.alive(), stale.text()[-3000:]

    a = audit(database_url)
    assert a.states == {"completed": 1}
    assert a.violations == []
    assert a.completed_by[job_id][:2] == ("chaos-fresh", 2)
    assert result_mismatches(database_url, s3_settings, a) == []
    # The trail shows the take-back from the paused worker and nothing written by it after.
    trail = sql(
        database_url,
        "SELECT actor, from_state::text, to_state::text, attempt, error_message"
        " FROM vidjobs.job_events WHERE job_id = %s ORDER BY event_id",
        job_id,
    )
    assert [(r[0], r[1], r[2], r[3]) for r in trail] == [
        ("chaos", None, "pending", 0),
        ("chaos-stale", "pending", "running", 1),
        ("chaos-fresh", "running", "running", 2),
        ("chaos-fresh", "running", "completed", 2),
    ], trail
    assert "chaos-stale" in str(trail[2][4])
    refusals = refused_lines(stale.text())
    for proc in (stale, fresh):
        processes.stop(proc)
    record(
        f"stale_worker_{when}",
        {
            "lease_s": LEASE_S,
            "job_sleep_s": SLEEP_S[when],
            "paused_at_progress": round(paused_progress, 2),
            "paused_s": round(resumed_at - paused_at, 1),
            "new_holder_completed_after_pause_s": round(completed_at - paused_at, 1),
            "refusal_logged_after_resume_s": round(refused_after_s, 2),
            "refused_writes_logged": [r.split(": ", 1)[-1] for r in refusals],
            "result_is_new_holders": True,
        },
    )


def refused_lines(log: str) -> list[str]:
    """Log lines of the stale worker that report a refused write."""
    return [line for line in log.splitlines() if REFUSED.search(line)]
