"""A video worker loads and warms its models before it claims, and says so until then.

A real ``vidjobs worker`` with the fixture detector and a metrics port: while
``vidjobs_worker_ready`` is 0 the queued job stays pending (nothing is claimed) and
``vidjobs worker --check`` fails with "loading models"; then the gauge turns 1, the model load
time is on the metrics page, the job is claimed and the check passes.
"""

from __future__ import annotations

import uuid
from pathlib import Path

import httpx
import pytest

from tests.support.db import insert_jobs, sql
from tests.support.metrics import Scrape
from tests.support.processes import Services, worker_args
from tests.support.waiting import wait_for
from vidjobs.devstack.embedded import free_port

pytestmark = [pytest.mark.acceptance, pytest.mark.ml]


def _scrape(port: int) -> Scrape | None:
    try:
        return Scrape.parse(httpx.get(f"http://127.0.0.1:{port}/metrics", timeout=5).text)
    except httpx.TransportError:
        return None


def _state(url: str, job_id: uuid.UUID) -> str:
    [(state,)] = sql(url, "SELECT state::text FROM vidjobs.jobs WHERE job_id = %s", job_id)
    return str(state)


def test_worker_claims_nothing_and_is_not_ready_until_its_models_are_loaded(
    live: Services, database_url: str
) -> None:
    [job] = insert_jobs(database_url, 1)  # waiting before the worker starts
    assert live.blobs is not None
    Path(live.blobs.directory).mkdir(parents=True, exist_ok=True)
    port = free_port()
    # live: local blobs and the fixture detector, so this worker builds yolo_ocr too.
    worker = live.start_worker(
        *worker_args(5.0), "--metrics-port", str(port), VIDJOBS_LOG_LEVEL="INFO"
    )

    loading_seen = 0
    check_said_loading = False

    def ready() -> bool:
        nonlocal loading_seen, check_said_loading
        scrape = _scrape(port)
        if scrape is None:
            return False  # not serving yet (still importing)
        if scrape.get("vidjobs_worker_ready") == 1:
            return True
        assert scrape.get("vidjobs_worker_ready") == 0
        # Loading: the job is still pending; nothing was claimed.
        assert _state(database_url, job) == "pending"
        assert scrape.get("vidjobs_worker_jobs_claimed_total", pipeline="noop") is None
        loading_seen += 1
        if not check_said_loading:
            check = live.cli("worker", "--check", "--metrics-port", str(port))
            after = _scrape(port)
            if after is not None and after.get("vidjobs_worker_ready") == 0:
                # Still loading once the check had answered: it must have said so.
                assert check.returncode == 1, check.stderr
                assert "FAILED worker: loading models" in check.stderr, check.stderr
                check_said_loading = True
        return False

    worker.wait_for(ready, 180, "the worker says ready", every=0.05)
    assert loading_seen >= 1, "the metrics page never showed the worker loading its models"
    assert check_said_loading, "no --check answered while the worker was loading"
    wait_for(lambda: _state(database_url, job) == "completed", 30, "the job completed")
    scrape = _scrape(port)
    assert scrape is not None
    assert (scrape.get("vidjobs_worker_model_load_seconds", pipeline="yolo_ocr") or 0) > 0
    check = live.cli("worker", "--check", "--metrics-port", str(port))
    assert check.returncode == 0, check.stderr
    assert "ok worker: ready, models loaded (yolo_ocr " in check.stderr, check.stderr
    assert worker.text().index("loading models") < worker.text().index("ready, models loaded")
