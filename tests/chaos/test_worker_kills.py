"""Scenario 1: workers SIGKILLed again and again while they drain 300 jobs.

A killed worker's jobs must come back once its lease expires (nothing lost, nothing stuck in
``running``), and fencing must hold: no completion by a worker whose lease was taken back,
and every stored result written by the attempt that completed the job.
"""

from __future__ import annotations

import random
import time

import pytest

from tests.support.audit import audit, record, result_mismatches
from tests.support.db import insert_jobs, sql, states
from tests.support.processes import Process, Processes, Services, worker_args
from vidjobs.blobs import BlobSettings, open_blob_store

pytestmark = [pytest.mark.chaos, pytest.mark.integration, pytest.mark.timeout(420)]

JOBS = 300
WORKERS = 4
CONCURRENCY = 2
SLEEP_S = 0.6  # per job: ten 60 ms steps, progress after each
LEASE_S = 3.0
KILL_EVERY_S = 2.5
MAX_KILLS = 12


def test_sigkilled_workers_lose_no_job_and_fencing_holds(
    database_url: str, s3_settings: BlobSettings, processes: Processes
) -> None:
    store = open_blob_store(s3_settings)
    store.ensure_ready()
    store.close()
    ids = insert_jobs(
        database_url,
        JOBS,
        tenant="chaos",
        params={"sleep_s": SLEEP_S, "results": True},
        max_attempts=10,
    )
    services = Services(processes, database_url, s3_settings)
    rng = random.Random(6)
    generation = 0

    def start(slot: int) -> Process:
        nonlocal generation
        generation += 1
        wid = f"chaos-w{slot}-g{generation}"
        return services.start_worker(
            *worker_args(LEASE_S, worker_id=wid, concurrency=CONCURRENCY), name=wid
        )

    slots = {slot: start(slot) for slot in range(WORKERS)}
    killed: dict[str, float] = {}  # worker id -> wall-clock time of its SIGKILL
    held_at_kill: dict[str, int] = {}
    started = time.monotonic()

    def done() -> bool:
        return states(database_url).get("completed", 0) == JOBS

    while len(killed) < MAX_KILLS and not done():
        time.sleep(KILL_EVERY_S)
        # Kill a worker that holds jobs, so every kill strands work that must come back.
        running = dict(
            sql(
                database_url,
                "SELECT worker_id, count(*) FROM vidjobs.jobs WHERE state = 'running' GROUP BY 1",
            )
        )
        live = [s for s, p in slots.items() if p.alive() and running.get(p.name, 0) > 0]
        if not live:
            continue
        slot = rng.choice(live)
        victim = slots[slot]
        held_at_kill[victim.name] = running[victim.name]
        killed[victim.name] = victim.kill()
        slots[slot] = start(slot)

    processes.wait_for(done, 240, f"all {JOBS} jobs completed")
    drained_s = time.monotonic() - started
    for proc in slots.values():
        assert proc.alive(), proc.text()[-3000:]
        processes.stop(proc)

    a = audit(database_url)
    assert a.jobs == JOBS
    assert {r[0] for r in sql(database_url, "SELECT job_id FROM vidjobs.jobs")} == set(ids)
    assert a.states == {"completed": JOBS}, a.states  # 0 lost, 0 stuck in running
    assert a.violations == [], a.violations[:20]
    assert result_mismatches(database_url, s3_settings, a) == []
    assert len(killed) >= 3, "too few kills happened to prove anything"
    # Each kill stranded jobs that came back only through a take-back after the lease expired.
    # (A take-back from before the kill would be a live worker that missed its heartbeats:
    # counted, not treated as a kill.)
    reclaim_s = [
        at - killed[w]
        for w, times in a.takeback_at.items()
        if w in killed
        for at in times
        if at >= killed[w] - 0.5
    ]
    stalled = a.takebacks - len(reclaim_s)
    assert reclaim_s, (a.takebacks, killed)
    refused = sum(p.text().count("lease was lost") for p in processes.all)
    record(
        "worker_kills",
        {
            "jobs": JOBS,
            "workers": WORKERS,
            "concurrency": CONCURRENCY,
            "job_sleep_s": SLEEP_S,
            "lease_s": LEASE_S,
            "kills": len(killed),
            "jobs_held_at_kills": sum(held_at_kill.values()),
            "lost": JOBS - a.states.get("completed", 0),
            "stuck_running": a.states.get("running", 0),
            "attempts_total": a.attempts_total,
            "repeated_attempts": a.attempts_total - JOBS,
            "jobs_with_repeats": a.repeated_jobs,
            "takebacks": a.takebacks,
            "kill_to_reclaim_worst_s": round(max(reclaim_s), 2),
            "kill_to_reclaim_mean_s": round(sum(reclaim_s) / len(reclaim_s), 2),
            "kill_to_reclaim_best_s": round(min(reclaim_s), 2),
            "takebacks_not_after_a_kill": stalled,
            "fencing_violations": len(a.violations),
            "result_blob_mismatches": 0,
            "late_writes_refused_in_logs": refused,
            "drain_s": round(drained_s, 1),
        },
    )
