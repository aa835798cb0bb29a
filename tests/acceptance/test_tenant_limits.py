"""A tenant's max_running across real ``vidjobs worker`` processes: never exceeded, always used."""

from __future__ import annotations

import time

import pytest

from tests.support.db import insert_jobs, sql
from tests.support.processes import Processes, Services, worker_args
from tests.support.waiting import wait_for

pytestmark = pytest.mark.acceptance

_QUICK = {
    "VIDJOBS_WORKER_POLL_INTERVAL": "0.1",
    "VIDJOBS_WORKER_IDLE_BACKOFF_MAX": "0.3",
    "VIDJOBS_WORKER_NO_VIDEO": "1",
    "VIDJOBS_LOG_LEVEL": "INFO",
}


def _running(url: str) -> dict[str, tuple[int, int]]:
    """Per tenant: running from the trigger-kept counters and the count of running jobs."""
    rows = sql(
        url,
        "SELECT t.tenant, t.running,"
        " (SELECT count(*) FROM vidjobs.jobs j WHERE j.tenant = t.tenant AND j.state = 'running')"
        " FROM vidjobs.tenant_usage t",
    )
    return {tenant: (counter, count) for tenant, counter, count in rows}


@pytest.mark.timeout(240)
def test_max_running_holds_across_four_worker_processes(
    processes: Processes, database_url: str
) -> None:
    limit, default_limit = 3, 5
    insert_jobs(database_url, 40, params={"sleep_s": 0.3}, tenant="capped")
    insert_jobs(database_url, 40, params={"sleep_s": 0.3}, tenant="defaulted")
    insert_jobs(database_url, 40, params={"sleep_s": 0.3}, tenant="free")
    services = Services(processes, database_url, extra_env=_QUICK)
    assert services.cli("tenants", "set", "capped", "--max-running", str(limit)).returncode == 0
    assert services.cli("tenants", "set", "free", "--max-running", "1000").returncode == 0
    # Each process could run 8 jobs of one tenant at once: 32 slots against a limit of 3.
    for n in range(4):
        services.start_worker(
            *worker_args(concurrency=8, worker_id=f"w{n}"),
            name=f"worker{n}",
            VIDJOBS_TENANT_DEFAULT_MAX_RUNNING=str(default_limit),
        )

    peaks = {"capped": 0, "defaulted": 0, "free": 0}
    deadline = time.monotonic() + 180
    while time.monotonic() < deadline:
        for tenant, (counter, count) in _running(database_url).items():
            assert counter == count, (tenant, counter, count)
            peaks[tenant] = max(peaks[tenant], count)
        assert peaks["capped"] <= limit, peaks
        assert peaks["defaulted"] <= default_limit, peaks
        [(left,)] = sql(
            database_url, "SELECT count(*) FROM vidjobs.jobs WHERE state <> 'completed'"
        )
        if left == 0:
            break
        time.sleep(0.02)
    wait_for(
        lambda: (
            sql(database_url, "SELECT count(*) FROM vidjobs.jobs WHERE state <> 'completed'")
            == [(0,)]
        ),
        5,
        "every job completed",
    )
    # The limits were reached (the workers used them), never passed; the unlimited tenant went
    # wider than either.
    assert peaks["capped"] == limit, peaks
    assert peaks["defaulted"] == default_limit, peaks
    assert peaks["free"] > default_limit, peaks
    [(claimers,)] = sql(
        database_url,
        "SELECT count(DISTINCT e.actor) FROM vidjobs.job_events e JOIN vidjobs.jobs j"
        " USING (job_id) WHERE j.tenant = 'capped' AND e.to_state = 'running'",
    )
    assert claimers >= 2, "the capped tenant's jobs were not spread over the processes"
