"""``vidjobs worker`` as a user starts it: real processes, real signals, a real Postgres."""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys
import time
import uuid
import zipfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import psycopg
import pytest

from vidjobs.db.jobs import NewJob, job_insert_many
from vidjobs.worker.pipelines.yolo_ocr.settings import FIXTURE_WEIGHTS

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


def _submit(
    url: str, n: int = 1, params: dict[str, Any] | None = None, pipeline: str = "noop"
) -> list[uuid.UUID]:
    """Submit jobs (noop unless told) through the db API (one statement, one NOTIFY)."""

    async def go() -> list[uuid.UUID]:
        async with await psycopg.AsyncConnection.connect(url, autocommit=True) as c:
            job = NewJob(tenant="acme", pipeline=pipeline, params=params or {})
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


# --- vidjobs worker --check: light by default (a container probe), --check-models loads them.

_ML_MODULES = ("torch", "ultralytics", "rapidocr", "onnxruntime")


def _video_env(tmp_path: Path, **extra: str) -> dict[str, str]:
    """What a video worker's container sets: local blobs and the fixture detector."""
    env = {
        "VIDJOBS_WORKER_NO_VIDEO": "0",
        "VIDJOBS_BLOB_BACKEND": "local",
        "VIDJOBS_BLOB_DIR": str(tmp_path),
        "VIDJOBS_DETECTOR_WEIGHTS": str(FIXTURE_WEIGHTS),
    }
    env.update(extra)
    return env


def _lines(log: str, prefix: str) -> list[str]:
    return [line for line in log.splitlines() if line.startswith(prefix)]


def _as_role(url: str, user: str) -> str:
    info = psycopg.conninfo.conninfo_to_dict(url)
    info["user"] = user
    info.pop("password", None)
    return psycopg.conninfo.make_conninfo(**{k: str(v) for k, v in info.items() if v is not None})


def test_check_is_light_and_exits_0_when_database_blobs_and_weights_are_ready(
    database_url: str, tmp_path: Path
) -> None:
    # -X importtime lists every module the real CLI process imports, on stderr.
    proc = subprocess.run(
        [sys.executable, "-X", "importtime", "-m", "vidjobs", "worker", "--check"],
        env=_env(database_url, **_video_env(tmp_path)),
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    imported = {
        line.rsplit("|", 1)[-1].strip()
        for line in proc.stderr.splitlines()
        if line.startswith("import time:")
    }
    assert "vidjobs.db.health" in imported, "the importtime scan sees the check's own modules"
    heavy = sorted(m for m in imported if m.split(".")[0] in _ML_MODULES)
    assert heavy == [], "the light check imported the ML stack"
    oks = _lines(proc.stderr, "ok ")
    assert [line.split(":")[0] for line in oks] == [
        "ok database",
        "ok blob store (local)",
        "ok detector weights",
    ]
    assert "migrations applied, none pending" in oks[0]
    assert _lines(proc.stderr, "FAILED") == []


def test_check_exits_1_naming_the_database_when_it_is_unreachable(
    workers: Workers, tmp_path: Path
) -> None:
    proc = workers.start(
        "--check", **_video_env(tmp_path, DATABASE_URL="postgresql://nobody@127.0.0.1:1/none")
    )
    assert proc.wait(60) == 1, workers.log(0)
    (failed,) = _lines(workers.log(0), "FAILED")
    assert failed.startswith("FAILED database: cannot connect (check DATABASE_URL)")
    assert len(_lines(workers.log(0), "ok ")) == 2, "the blob store and weights still answer"


def test_check_no_video_checks_the_database_only(workers: Workers) -> None:
    proc = workers.start(
        "--check", "--no-video", DATABASE_URL="postgresql://nobody@127.0.0.1:1/none"
    )
    assert proc.wait(60) == 1
    assert [line.split(":")[0] for line in _lines(workers.log(0), "FAILED")] == ["FAILED database"]
    assert "DATABASE_URL" in workers.log(0)


def test_check_exits_1_naming_migrate_on_an_unmigrated_database(
    workers: Workers, empty_database_url: str
) -> None:
    proc = workers.start("--check", "--no-video", DATABASE_URL=empty_database_url)
    assert proc.wait(60) == 1
    (failed,) = _lines(workers.log(0), "FAILED")
    assert "vidjobs db migrate" in failed


def test_check_passes_as_the_least_privilege_worker_role(
    workers: Workers, database_url: str
) -> None:
    """The role deploy/sql/roles.sql gives workers cannot read yoyo's tables, yet is ready."""
    login = f"t_worker_{uuid.uuid4().hex[:8]}"
    roles_sql = (Path(__file__).resolve().parents[2] / "deploy/sql/roles.sql").read_text()
    _sql(database_url, roles_sql)
    _sql(database_url, f'CREATE ROLE "{login}" LOGIN IN ROLE vidjobs_worker')
    try:
        proc = workers.start("--check", "--no-video", DATABASE_URL=_as_role(database_url, login))
        assert proc.wait(60) == 0, workers.log(0)
        (line,) = _lines(workers.log(0), "ok database")
        assert "worker tables and grants present" in line
        # A role without the worker's grants is told to apply roles.sql.
        bare = f"t_nogrant_{uuid.uuid4().hex[:8]}"
        _sql(database_url, f'CREATE ROLE "{bare}" LOGIN')
        try:
            proc = workers.start("--check", "--no-video", DATABASE_URL=_as_role(database_url, bare))
            assert proc.wait(60) == 1
            (failed,) = _lines(workers.log(1), "FAILED")
            assert "deploy/sql/roles.sql" in failed
        finally:
            _sql(database_url, f'DROP ROLE "{bare}"')
    finally:
        _sql(database_url, f'DROP ROLE "{login}"')


def test_check_exits_1_naming_the_setting_when_the_weights_are_missing(
    workers: Workers, tmp_path: Path
) -> None:
    proc = workers.start(
        "--check", **_video_env(tmp_path, VIDJOBS_DETECTOR_WEIGHTS="/nonexistent/weights.pt")
    )
    assert proc.wait(60) == 1, workers.log(0)
    (failed,) = _lines(workers.log(0), "FAILED")
    assert failed.startswith("FAILED detector weights: '/nonexistent/weights.pt' no such file")
    assert "VIDJOBS_DETECTOR_WEIGHTS" in failed


def test_check_models_loads_the_detector_and_ocr(workers: Workers, tmp_path: Path) -> None:
    proc = workers.start("--check-models", **_video_env(tmp_path))
    assert proc.wait(120) == 0, workers.log(0)
    (line,) = _lines(workers.log(0), "ok models")
    assert "detector and OCR engine loaded" in line


def test_check_models_names_the_setting_when_the_weights_cannot_load(
    workers: Workers, tmp_path: Path
) -> None:
    # A file that passes the light check (a zip archive) but is no model: only loading finds it.
    fake = tmp_path / "not-a-model.pt"
    with zipfile.ZipFile(fake, "w") as zf:
        zf.writestr("hello.txt", "not weights")
    env = _video_env(tmp_path, VIDJOBS_DETECTOR_WEIGHTS=str(fake))
    assert workers.start("--check", **env).wait(60) == 0, workers.log(0)
    proc = workers.start("--check-models", **env)
    assert proc.wait(120) == 1, workers.log(1)
    (failed,) = _lines(workers.log(1), "FAILED")
    assert failed.startswith("FAILED models: ModelUnavailable")
    assert "VIDJOBS_DETECTOR_WEIGHTS" in failed


def test_drain_runs_every_job_and_exits_0(workers: Workers, database_url: str) -> None:
    _submit(database_url, 300)
    proc = workers.start("--drain", "--concurrency", "4")
    assert proc.wait(60) == 0, workers.log(0)
    assert _sql(database_url, "SELECT state::text, count(*) FROM vidjobs.jobs GROUP BY 1") == [
        ("completed", 300)
    ]


def test_no_video_worker_leaves_video_jobs_to_video_workers(
    workers: Workers, database_url: str
) -> None:
    # Submitted first, so a claim that did not filter would take it in the first batch.
    [video] = _submit(database_url, pipeline="yolo_ocr")
    noop = _submit(database_url, 50)
    proc = workers.start("--no-video", "--drain")
    assert proc.wait(60) == 0, workers.log(0)
    assert _sql(
        database_url,
        "SELECT pipeline, state::text, attempts, count(*) FROM vidjobs.jobs"
        " GROUP BY 1, 2, 3 ORDER BY 1",
    ) == [("noop", "completed", 1, len(noop)), ("yolo_ocr", "pending", 0, 1)]
    assert _sql(
        database_url, "SELECT count(*) FROM vidjobs.job_events WHERE job_id = %s", video
    ) == [(1,)], "only its submit: never claimed"
    assert "unknown_pipeline" not in workers.log(0)


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
