"""``vidjobs worker`` as a user starts it: real processes, real signals, a real Postgres."""

from __future__ import annotations

import signal
import subprocess
import sys
import time
import uuid
import zipfile
from pathlib import Path

import psycopg
import pytest

from tests.support.db import insert_jobs, sql
from tests.support.processes import Processes, Services
from tests.support.waiting import wait_for
from vidjobs.worker.pipelines.yolo_ocr.settings import FIXTURE_WEIGHTS

pytestmark = pytest.mark.acceptance

_QUICK = {
    "VIDJOBS_WORKER_HEARTBEAT_INTERVAL": "0.5",
    "VIDJOBS_WORKER_POLL_INTERVAL": "0.1",
    "VIDJOBS_WORKER_IDLE_BACKOFF_MAX": "0.5",
    "VIDJOBS_LOG_LEVEL": "INFO",
    "VIDJOBS_WORKER_NO_VIDEO": "1",
}


@pytest.fixture
def workers(processes: Processes, database_url: str) -> Services:
    """``vidjobs worker`` processes on the test's database: quick intervals, no video."""
    return Services(processes, database_url, extra_env=_QUICK)


def _state(url: str, job_id: uuid.UUID) -> tuple[str, int]:
    [(state, attempts)] = sql(
        url, "SELECT state::text, attempts FROM vidjobs.jobs WHERE job_id = %s", job_id
    )
    return state, attempts


def _wait_state(url: str, job_id: uuid.UUID, state: str, within: float = 30) -> None:
    wait_for(lambda: _state(url, job_id)[0] == state, within, f"the job is {state}", every=0.05)


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
    workers: Services, tmp_path: Path
) -> None:
    # -X importtime lists every module the real CLI process imports, on stderr.
    proc = subprocess.run(
        [sys.executable, "-X", "importtime", "-m", "vidjobs", "worker", "--check"],
        env=workers.env(**_video_env(tmp_path)),
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
    workers: Services, tmp_path: Path
) -> None:
    proc = workers.start_worker(
        "--check", **_video_env(tmp_path, DATABASE_URL="postgresql://nobody@127.0.0.1:1/none")
    )
    assert proc.wait(60) == 1, proc.text()
    (failed,) = _lines(proc.text(), "FAILED")
    assert failed.startswith("FAILED database: cannot connect (check DATABASE_URL)")
    assert len(_lines(proc.text(), "ok ")) == 2, "the blob store and weights still answer"


def test_check_no_video_checks_the_database_only(workers: Services) -> None:
    proc = workers.start_worker(
        "--check", "--no-video", DATABASE_URL="postgresql://nobody@127.0.0.1:1/none"
    )
    assert proc.wait(60) == 1
    assert [line.split(":")[0] for line in _lines(proc.text(), "FAILED")] == ["FAILED database"]
    assert "DATABASE_URL" in proc.text()


def test_check_exits_1_naming_migrate_on_an_unmigrated_database(
    workers: Services, empty_database_url: str
) -> None:
    proc = workers.start_worker("--check", "--no-video", DATABASE_URL=empty_database_url)
    assert proc.wait(60) == 1
    (failed,) = _lines(proc.text(), "FAILED")
    assert "vidjobs db migrate" in failed


def test_check_passes_as_the_least_privilege_worker_role(
    workers: Services, database_url: str
) -> None:
    """The role deploy/sql/roles.sql gives workers cannot read yoyo's tables, yet is ready."""
    login = f"t_worker_{uuid.uuid4().hex[:8]}"
    roles_sql = (Path(__file__).resolve().parents[2] / "deploy/sql/roles.sql").read_text()
    sql(database_url, roles_sql)
    sql(database_url, f'CREATE ROLE "{login}" LOGIN IN ROLE vidjobs_worker')
    try:
        proc = workers.start_worker(
            "--check", "--no-video", DATABASE_URL=_as_role(database_url, login)
        )
        assert proc.wait(60) == 0, proc.text()
        (line,) = _lines(proc.text(), "ok database")
        assert "worker tables and grants present" in line
        # A role without the worker's grants is told to apply roles.sql.
        bare = f"t_nogrant_{uuid.uuid4().hex[:8]}"
        sql(database_url, f'CREATE ROLE "{bare}" LOGIN')
        try:
            proc = workers.start_worker(
                "--check", "--no-video", DATABASE_URL=_as_role(database_url, bare)
            )
            assert proc.wait(60) == 1
            (failed,) = _lines(proc.text(), "FAILED")
            assert "deploy/sql/roles.sql" in failed
        finally:
            sql(database_url, f'DROP ROLE "{bare}"')
    finally:
        sql(database_url, f'DROP ROLE "{login}"')


def test_check_exits_1_naming_the_setting_when_the_weights_are_missing(
    workers: Services, tmp_path: Path
) -> None:
    proc = workers.start_worker(
        "--check", **_video_env(tmp_path, VIDJOBS_DETECTOR_WEIGHTS="/nonexistent/weights.pt")
    )
    assert proc.wait(60) == 1, proc.text()
    (failed,) = _lines(proc.text(), "FAILED")
    assert failed.startswith("FAILED detector weights: '/nonexistent/weights.pt' no such file")
    assert "VIDJOBS_DETECTOR_WEIGHTS" in failed


def test_check_models_loads_the_detector_and_ocr(workers: Services, tmp_path: Path) -> None:
    proc = workers.start_worker("--check-models", **_video_env(tmp_path))
    assert proc.wait(120) == 0, proc.text()
    (line,) = _lines(proc.text(), "ok models")
    assert "detector and OCR engine loaded" in line


def test_check_models_names_the_setting_when_the_weights_cannot_load(
    workers: Services, tmp_path: Path
) -> None:
    # A file that passes the light check (a zip archive) but is no model: only loading finds it.
    fake = tmp_path / "not-a-model.pt"
    with zipfile.ZipFile(fake, "w") as zf:
        zf.writestr("hello.txt", "not weights")
    env = _video_env(tmp_path, VIDJOBS_DETECTOR_WEIGHTS=str(fake))
    light = workers.start_worker("--check", **env)
    assert light.wait(60) == 0, light.text()
    proc = workers.start_worker("--check-models", **env)
    assert proc.wait(120) == 1, proc.text()
    (failed,) = _lines(proc.text(), "FAILED")
    assert failed.startswith("FAILED models: ModelUnavailable")
    assert "VIDJOBS_DETECTOR_WEIGHTS" in failed


def test_drain_runs_every_job_and_exits_0(workers: Services, database_url: str) -> None:
    insert_jobs(database_url, 300)
    proc = workers.start_worker("--drain", "--concurrency", "4")
    assert proc.wait(60) == 0, proc.text()
    assert sql(database_url, "SELECT state::text, count(*) FROM vidjobs.jobs GROUP BY 1") == [
        ("completed", 300)
    ]


def test_no_video_worker_leaves_video_jobs_to_video_workers(
    workers: Services, database_url: str
) -> None:
    # Submitted first, so a claim that did not filter would take it in the first batch.
    [video] = insert_jobs(database_url, pipeline="yolo_ocr")
    noop = insert_jobs(database_url, 50)
    proc = workers.start_worker("--no-video", "--drain")
    assert proc.wait(60) == 0, proc.text()
    assert sql(
        database_url,
        "SELECT pipeline, state::text, attempts, count(*) FROM vidjobs.jobs"
        " GROUP BY 1, 2, 3 ORDER BY 1",
    ) == [("noop", "completed", 1, len(noop)), ("yolo_ocr", "pending", 0, 1)]
    assert sql(
        database_url, "SELECT count(*) FROM vidjobs.job_events WHERE job_id = %s", video
    ) == [(1,)], "only its submit: never claimed"
    assert "unknown_pipeline" not in proc.text()


def test_sigterm_finishes_a_job_within_the_grace(workers: Services, database_url: str) -> None:
    [job_id] = insert_jobs(database_url, params={"sleep_s": 2})
    proc = workers.start_worker("--grace-seconds", "20")
    _wait_state(database_url, job_id, "running")
    proc.signal(signal.SIGTERM)
    assert proc.wait(20) == 0, proc.text()
    assert _state(database_url, job_id) == ("completed", 1)


def test_sigterm_hands_back_a_long_job_and_another_worker_completes_it(
    workers: Services, database_url: str
) -> None:
    [job_id] = insert_jobs(database_url, params={"sleep_s": 4})
    first = workers.start_worker("--grace-seconds", "1")
    _wait_state(database_url, job_id, "running")
    t0 = time.monotonic()
    first.signal(signal.SIGTERM)
    assert first.wait(20) == 0, first.text()
    assert time.monotonic() - t0 < 1 + 4, "grace plus the stop wait, no more"
    assert _state(database_url, job_id) == ("pending", 0), "released, attempt not counted"
    assert "handed back" in first.text()

    second = workers.start_worker("--drain")
    assert second.wait(30) == 0, second.text()
    assert _state(database_url, job_id) == ("completed", 1)


def test_second_signal_exits_at_once(workers: Services, database_url: str) -> None:
    [job_id] = insert_jobs(database_url, params={"sleep_s": 60})
    proc = workers.start_worker("--grace-seconds", "60")
    _wait_state(database_url, job_id, "running")
    proc.signal(signal.SIGINT)
    time.sleep(0.5)
    assert proc.alive(), "the first signal waits for the grace period"
    t0 = time.monotonic()
    proc.signal(signal.SIGINT)
    assert proc.wait(10) == 128 + signal.SIGINT
    assert time.monotonic() - t0 < 2
    # The lease was left to expire: the job still shows running under the dead worker.
    assert _state(database_url, job_id) == ("running", 1)
