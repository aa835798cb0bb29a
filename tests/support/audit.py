"""The chaos suite's verdict: what ``vidjobs.job_events`` and the stored results say about a run.

The fencing rules are checked on the audit trail itself, not on what the workers logged: each
completion must come from the holder of the job's last attempt, and each stored result must have
been written by that attempt (docs/reliability.md, "What nothing lost, fencing held is checked
against"). :func:`record` prints the figures a scenario measured.
"""

from __future__ import annotations

import json
import os
import uuid
from dataclasses import dataclass, field
from typing import Any

from tests.support.db import sql
from vidjobs.blobs import BlobSettings

__all__ = ["Audit", "audit", "record", "result_mismatches"]


def record(scenario: str, figures: dict[str, Any]) -> None:
    """Print one ``CHAOS {json}`` line (and append it to ``$VIDJOBS_CHAOS_FIGURES`` if set).

    Visible with ``pytest -s``; docs/reliability.md quotes the last run's lines.
    """
    line = json.dumps({"scenario": scenario, **figures}, sort_keys=True, default=str)
    print(f"\nCHAOS {line}")
    target = os.environ.get("VIDJOBS_CHAOS_FIGURES")
    if target:
        with open(target, "a", encoding="utf-8") as fh:
            fh.write(line + "\n")


@dataclass
class Audit:
    """What ``vidjobs.job_events`` says about a finished run.

    Attributes:
        jobs: rows in ``vidjobs.jobs``.
        states: count per state.
        attempts_total: claims over all jobs (``sum(attempts)``).
        repeated_jobs: jobs that needed more than one attempt.
        takebacks: expired leases taken back (``running → running``, ``lease_expired``).
        completed_by: job id → (worker, attempt, lease token) of the completion.
        takeback_at: worker that lost a job → times its jobs were taken back (epoch seconds).
        violations: every way the trail contradicts the fencing rules (must stay empty).
    """

    jobs: int = 0
    states: dict[str, int] = field(default_factory=dict)
    attempts_total: int = 0
    repeated_jobs: int = 0
    takebacks: int = 0
    completed_by: dict[uuid.UUID, tuple[str, int, uuid.UUID]] = field(default_factory=dict)
    takeback_at: dict[str, list[float]] = field(default_factory=dict)
    violations: list[str] = field(default_factory=list)


def audit(url: str) -> Audit:
    """Check the trail: each completion comes from the holder of the job's last attempt.

    For every completed job: exactly one completion event; its attempt is the job's last
    claimed attempt (no later take-back, so the completing worker still held the lease); its
    actor is the worker that claimed that attempt; and the row keeps that attempt's token.
    """
    a = Audit()
    rows = sql(
        url,
        "SELECT job_id, state::text, attempts, worker_id, lease_token FROM vidjobs.jobs",
    )
    events: dict[uuid.UUID, list[tuple[Any, ...]]] = {}
    for ev in sql(
        url,
        "SELECT job_id, at, actor, from_state::text, to_state::text, attempt, error_kind,"
        " error_message FROM vidjobs.job_events ORDER BY job_id, event_id",
    ):
        events.setdefault(ev[0], []).append(ev)
    a.jobs = len(rows)
    for job_id, state, attempts, worker_id, token in rows:
        a.states[state] = a.states.get(state, 0) + 1
        a.attempts_total += attempts
        a.repeated_jobs += attempts > 1
        trail = events.get(job_id, [])
        claims = {ev[5]: ev for ev in trail if ev[4] == "running"}
        for ev in trail:
            if ev[3] == "running" and ev[4] == "running":
                a.takebacks += 1
                lost_by = str(ev[7]).removeprefix("lease of worker ").split(" expired")[0]
                a.takeback_at.setdefault(lost_by, []).append(ev[1].timestamp())
        done = [ev for ev in trail if ev[4] == "completed"]
        if state != "completed":
            continue
        if len(done) != 1:
            a.violations.append(f"{job_id}: {len(done)} completion events")
            continue
        _, _, actor, _, _, attempt, _, _ = done[0]
        if attempt != attempts or attempt != max(claims, default=0):
            a.violations.append(f"{job_id}: completed by attempt {attempt}, last claim {attempts}")
        claim = claims.get(attempt)
        if claim is None or claim[2] != actor:
            a.violations.append(f"{job_id}: completed by {actor}, attempt {attempt} held by other")
        if worker_id != actor:
            a.violations.append(f"{job_id}: row says {worker_id}, completion says {actor}")
        a.completed_by[job_id] = (actor, attempt, token)
    return a


def result_mismatches(url: str, blobs: BlobSettings, a: Audit) -> list[str]:
    """Completed noop jobs whose results blob was not written by the completing attempt."""
    from vidjobs.blobs import open_blob_store, results_key

    wanted = {
        r[0]
        for r in sql(url, "SELECT job_id FROM vidjobs.jobs WHERE (params->>'results')::boolean")
    }
    store = open_blob_store(blobs)
    bad: list[str] = []
    try:
        for job_id, (actor, attempt, token) in a.completed_by.items():
            if job_id not in wanted:
                continue
            doc = json.loads(store.get_bytes(results_key(job_id)))
            got = (doc["worker_id"], doc["attempt"], doc["lease_token"], doc["job_id"])
            if got != (actor, attempt, str(token), str(job_id)):
                bad.append(f"{job_id}: blob {got} but completed by {(actor, attempt, token)}")
    finally:
        store.close()
    return bad
