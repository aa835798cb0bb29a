"""``vidjobs worker --check`` reads a worker's readiness from its metrics page.

A real ``WorkerMetrics`` served on a free port: "loading models" (a failed check) while its
``vidjobs_worker_ready`` gauge is 0, "ready" once the worker sets it; nothing listening there
means no worker runs, which is no failure of the machine the check asks about.
"""

from __future__ import annotations

import asyncio

import pytest

from vidjobs.db.settings import DatabaseSettings
from vidjobs.devstack.embedded import free_port
from vidjobs.worker.health import check_worker
from vidjobs.worker.metrics import WorkerMetrics
from vidjobs.worker.settings import WorkerSettings

pytestmark = pytest.mark.integration


def _worker_line(db: DatabaseSettings, port: int) -> str:
    results = asyncio.run(check_worker(db, worker=WorkerSettings(metrics_port=port)))
    [line] = [r.line() for r in results if r.name == "worker"]
    return line


def test_check_says_loading_models_until_the_worker_is_ready(database_url: str) -> None:
    db = DatabaseSettings(url=database_url)
    metrics = WorkerMetrics()
    served = metrics.serve("127.0.0.1", 0)
    try:
        assert (
            _worker_line(db, served.port) == "FAILED worker: loading models (not claiming jobs yet)"
        )
        metrics.set_ready(True)
        assert _worker_line(db, served.port) == "ok worker: ready, models loaded"
    finally:
        served.close()


def test_check_passes_when_no_worker_answers_on_the_port(database_url: str) -> None:
    port = free_port()
    line = _worker_line(DatabaseSettings(url=database_url), port)
    assert line == f"ok worker: no worker answers on 127.0.0.1:{port} (none runs here)"
