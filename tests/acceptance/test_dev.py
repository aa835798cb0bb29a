"""``vidjobs dev``: the local stack left running until Ctrl+C, its data kept across restarts."""

from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.support.media import mp4_bytes
from tests.support.processes import Process, Processes, clean_env, run_vidjobs
from vidjobs.devstack.embedded import free_port

pytestmark = [pytest.mark.acceptance]


@pytest.fixture
def data_dir() -> Iterator[Path]:
    """A short path: Postgres puts its unix socket in its data dir (at most 107 bytes)."""
    path = Path(tempfile.mkdtemp(prefix="vj-dev-", dir="/tmp"))
    yield path / "data"
    shutil.rmtree(path, ignore_errors=True)


def _dev(processes: Processes, tmp_path: Path, *args: str) -> Process:
    """``vidjobs dev`` in a terminal of its own, no service settings (stopped by the fixture)."""
    return processes.start("dev", ["dev", *args], clean_env(), cwd=tmp_path, own_session=True)


def _cli(url: str, key: str, *args: str) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "VIDJOBS_API_URL": url, "VIDJOBS_API_KEY": key}
    return run_vidjobs(*args, env=env)


def _ready(run: Process) -> tuple[str, str]:
    """The API URL and key it printed, once it says it is up."""
    run.wait_for_line(r"^Ctrl\+C stops everything\.$", 120)
    out = run.text()
    url = run.wait_for_line(r"^API:\s+(\S+)", 1).group(1)
    key = run.wait_for_line(r"^API key:\s+(\S+)\s+\(tenant demo\)", 1).group(1)
    assert "Traceback" not in out
    return url, key


def _stop(run: Process) -> None:
    run.interrupt(signal.SIGINT)
    assert run.wait(45) == 0, run.text()
    assert "stopped everything" in run.text()
    assert run.leftovers() == []


def test_dev_serves_until_ctrl_c_and_keeps_jobs(
    processes: Processes, tmp_path: Path, data_dir: Path
) -> None:
    port = free_port()
    first = _dev(processes, tmp_path, "--data-dir", str(data_dir), "--port", str(port))
    url, key = _ready(first)
    assert url == f"http://127.0.0.1:{port}"

    video = tmp_path / "v.mp4"
    video.write_bytes(mp4_bytes(4096))
    sub = _cli(url, key, "submit", str(video), "--pipeline", "noop", "--wait")
    assert sub.returncode == 0, (sub.stderr, first.text())
    job_id = sub.stdout.splitlines()[0].strip()
    assert f"{job_id}  completed" in sub.stdout
    _stop(first)

    # A restart on the same folder: a new key, the same tenant, the job still there.
    second = _dev(processes, tmp_path, "--data-dir", str(data_dir), "--port", str(port))
    url2, key2 = _ready(second)
    assert key2 != key
    st = _cli(url2, key2, "status", job_id)
    assert st.returncode == 0, st.stderr
    assert f"{job_id}  completed" in st.stdout
    assert job_id in _cli(url2, key2, "jobs", "--status", "completed").stdout
    assert _cli(url2, key, "status", job_id).returncode == 0  # the first key still works
    _stop(second)


def test_dev_that_cannot_start_says_why_and_leaves_nothing(
    processes: Processes, tmp_path: Path, data_dir: Path
) -> None:
    """The API's port is taken: Postgres was already up; it must be stopped again."""
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        port = busy.getsockname()[1]
        run = _dev(processes, tmp_path, "--data-dir", str(data_dir), "--port", str(port))
        rc = run.wait(120)
    out = run.text()
    assert rc == 1, out
    assert "Traceback" not in out
    (error,) = [ln for ln in out.splitlines() if ln.startswith("Error: ")]
    assert "the dev stack did not start: api exited" in error
    assert run.leftovers() == []
