"""``vidjobs worker`` as a user starts it: real processes, real signals, a real Postgres."""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import psycopg
import pytest

from db.jobs import NewJob, job_insert_many
from worker.pipeline.settings import FIXTURE_WEIGHTS

pytestmark = pytest.mark.acceptance

VIDJOBS = str(Path(sys.executable).with_name("vidjobs"))


def _env(database_url: str, **extra: str) -> dict[str, str]:
    env = dict(os.environ)
    env.update(
        DATABASE_URL=database_url,
        VIDJOBS_WORKER_HEARTBEAT_INTERVAL="0.5",
        VIDJOBS_WORKER_POLL_INTERVAL="0.1",
        VIDJOBS_WORKER_IDLE_BACKOFF_MAX="0.5",
        VIDJOBS_LOG_LEVEL="INFO",
        VIDJOBS_WORKER_NO_VIDEO="1",
    )
    env.update(extra)
    return env


class Workers:
    """Starts ``vidjobs worker`` processes and stops whatever is left by PID at the end."""

    def __init__(self, database_url: str, tmp: Path) -> None:
        self.database_url = database_url
        self.tmp = tmp
        self.procs: list[subprocess.Popen[bytes]] = []

    def start(self, *args: str, **env: str) -> subprocess.Popen[bytes]:
        with (self.tmp / f"worker-{len(self.procs)}.log").open("wb") as log:
            proc = subprocess.Popen(
                [VIDJOBS, "worker", *args],
                env=_env(self.database_url, **env),
                stdout=log,
                stderr=subprocess.STDOUT,
            )
        self.procs.append(proc)
        return proc

    def log(self, i: int) -> str:
        return (self.tmp / f"worker-{i}.log").read_text(errors="replace")

    def close(self) -> None:
        for p in self.procs:
            if p.poll() is None:
                p.kill()
                p.wait(10)


@pytest.fixture
def workers(database_url: str, tmp_path: Path) -> Iterator[Workers]:
    w = Workers(database_url, tmp_path)
    try:
        yield w
    finally:
        w.close()


def _sql(url: str, query: str, *params: Any) -> list[tuple[Any, ...]]:
    with psycopg.connect(url, autocommit=True) as c:
        cur = c.execute(query, params)  # type: ignore[arg-type]
        return cur.fetchall() if cur.description else []


def _submit(url: str, n: int = 1, params: dict[str, Any] | None = None) -> list[uuid.UUID]:
    """Submit noop jobs through the db API (one statement, one NOTIFY)."""

    async def go() -> list[uuid.UUID]:
        async with await psycopg.AsyncConnection.connect(url, autocommit=True) as c:
            job = NewJob(tenant="acme", pipeline="noop", params=params or {})
            return await job_insert_many(c, [job] * n)

    return asyncio.run(go())


def _state(url: str, job_id: uuid.UUID) -> tuple[str, int]:
    [(state, attempts)] = _sql(
        url, "SELECT state::text, attempts FROM vidjobs.jobs WHERE job_id = %s", job_id
    )
    return state, attempts


def _wait_state(url: str, job_id: uuid.UUID, state: str, within: float = 30) -> None:
    deadline = time.monotonic() + within
    while _state(url, job_id)[0] != state:
        assert time.monotonic() < deadline, f"job not {state} within {within}s"
        time.sleep(0.05)


def test_check_exits_0_when_database_blobs_and_models_are_ready(
    workers: Workers, tmp_path: Path
) -> None:
    proc = workers.start(
        "--check",
        VIDJOBS_WORKER_NO_VIDEO="0",
        VIDJOBS_BLOB_BACKEND="local",
        VIDJOBS_BLOB_DIR=str(tmp_path),
        VIDJOBS_DETECTOR_WEIGHTS=str(FIXTURE_WEIGHTS),
    )
    assert proc.wait(120) == 0, workers.log(0)


def test_check_exits_1_when_the_model_cannot_be_loaded(workers: Workers, tmp_path: Path) -> None:
    proc = workers.start(
        "--check",
        VIDJOBS_WORKER_NO_VIDEO="0",
        VIDJOBS_BLOB_BACKEND="local",
        VIDJOBS_BLOB_DIR=str(tmp_path),
        VIDJOBS_DETECTOR_WEIGHTS="/nonexistent/weights.pt",
    )
    assert proc.wait(120) == 1
    assert "VIDJOBS_DETECTOR_WEIGHTS" in workers.log(0)


def test_check_exits_1_when_the_database_is_unreachable(workers: Workers) -> None:
    proc = workers.start(
        "--check", "--no-video", DATABASE_URL="postgresql://nobody@127.0.0.1:1/none"
    )
    assert proc.wait(60) == 1
    assert "DATABASE_URL" in workers.log(0)


def test_drain_runs_every_job_and_exits_0(workers: Workers, database_url: str) -> None:
    _submit(database_url, 300)
    proc = workers.start("--drain", "--concurrency", "4")
    assert proc.wait(60) == 0, workers.log(0)
    assert _sql(database_url, "SELECT state::text, count(*) FROM vidjobs.jobs GROUP BY 1") == [
        ("completed", 300)
    ]


def test_sigterm_finishes_a_job_within_the_grace(workers: Workers, database_url: str) -> None:
    [job_id] = _submit(database_url, params={"sleep_s": 2})
    proc = workers.start("--grace-seconds", "20")
    _wait_state(database_url, job_id, "running")
    proc.send_signal(signal.SIGTERM)
    assert proc.wait(20) == 0, workers.log(0)
    assert _state(database_url, job_id) == ("completed", 1)


def test_sigterm_hands_back_a_long_job_and_another_worker_completes_it(
    workers: Workers, database_url: str
) -> None:
    [job_id] = _submit(database_url, params={"sleep_s": 4})
    first = workers.start("--grace-seconds", "1")
    _wait_state(database_url, job_id, "running")
    t0 = time.monotonic()
    first.send_signal(signal.SIGTERM)
    assert first.wait(20) == 0, workers.log(0)
    assert time.monotonic() - t0 < 1 + 4, "grace plus the stop wait, no more"
    assert _state(database_url, job_id) == ("pending", 0), "released, attempt not counted"
    assert "handed back" in workers.log(0)

    second = workers.start("--drain")
    assert second.wait(30) == 0, workers.log(1)
    assert _state(database_url, job_id) == ("completed", 1)


def test_second_signal_exits_at_once(workers: Workers, database_url: str) -> None:
    [job_id] = _submit(database_url, params={"sleep_s": 60})
    proc = workers.start("--grace-seconds", "60")
    _wait_state(database_url, job_id, "running")
    proc.send_signal(signal.SIGINT)
    time.sleep(0.5)
    assert proc.poll() is None, "the first signal waits for the grace period"
    t0 = time.monotonic()
    proc.send_signal(signal.SIGINT)
    assert proc.wait(10) == 128 + signal.SIGINT
    assert time.monotonic() - t0 < 2
    # The lease was left to expire: the job still shows running under the dead worker.
    assert _state(database_url, job_id) == ("running", 1)
