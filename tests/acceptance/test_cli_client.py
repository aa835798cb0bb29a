"""The ``vidjobs`` HTTP client commands, run as a user runs them: separate processes, env config.

A real ``vidjobs api`` (and, where a job must finish, a real ``vidjobs worker``) runs on the
test's database; every client call is a ``vidjobs ...`` process with ``VIDJOBS_API_URL`` and
``VIDJOBS_API_KEY`` in its environment. What a script sees is asserted: the exit code, the job id
on stdout, and errors as one readable line on stderr.
"""

from __future__ import annotations

import json
import os
import subprocess
import uuid
from pathlib import Path

import pytest

from tests.support.keys import create_key
from tests.support.media import mp4_bytes
from tests.support.processes import Services, run_vidjobs, worker_args
from vidjobs.devstack.embedded import free_port
from vidjobs.devstack.synth.video import make_sample_video

pytestmark = [pytest.mark.acceptance]


class Cli:
    """``vidjobs`` with the API URL and key of one test in its environment."""

    def __init__(self, live: Services, key: str) -> None:
        self.live = live
        self.key = key

    def __call__(
        self, *args: str, key: str | None = None, url: str | None = None, cwd: Path | None = None
    ) -> subprocess.CompletedProcess[str]:
        env = dict(os.environ)
        env["VIDJOBS_API_URL"] = url or self.live.base_url
        env["VIDJOBS_API_KEY"] = self.key if key is None else key
        return run_vidjobs(*args, env=env, cwd=cwd)


@pytest.fixture
def cli(live: Services) -> Cli:
    """The client of a running API, with a fresh key of tenant ``acme`` (no worker started)."""
    live.start_api()
    _key_id, key = create_key(live.database_url, "acme")
    return Cli(live, key)


def _noise_mp4(path: Path) -> Path:
    """An ``ftyp`` header and filler: the API accepts it, a video pipeline fails it."""
    path.write_bytes(mp4_bytes(4096))
    return path


def _one_error_line(proc: subprocess.CompletedProcess[str]) -> str:
    """The error a person reads: exactly one line, no traceback."""
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1, proc.stderr
    assert lines[0].startswith("error: "), proc.stderr
    assert "Traceback" not in proc.stderr
    return lines[0]


def _completed_line(stdout: str, job_id: str) -> str:
    (line,) = [ln for ln in stdout.splitlines() if ln.startswith(job_id) and "completed" in ln]
    return line


@pytest.mark.ml
def test_submit_wait_status_results_jobs(live: Services, cli: Cli, tmp_path: Path) -> None:
    """A real video through the real pipeline; then status, results -o and jobs --status."""
    live.start_worker(*worker_args(concurrency=1))
    video = tmp_path / "clip.mp4"
    make_sample_video(video, seconds=2.0)

    sub = cli("submit", str(video), "--wait", "--sample-fps", "2")
    assert sub.returncode == 0, (sub.stdout, sub.stderr, live.processes.logs("worker"))
    job_id = sub.stdout.splitlines()[0].strip()
    assert uuid.UUID(job_id)
    done = _completed_line(sub.stdout, job_id)
    assert "100%" in done
    assert "Traceback" not in sub.stderr

    st = cli("status", job_id)
    assert st.returncode == 0, st.stderr
    assert _completed_line(st.stdout, job_id)
    st_json = cli("status", job_id, "--json")
    assert json.loads(st_json.stdout)["status"] == "completed"

    out = tmp_path / "out.json"
    res = cli("results", job_id, "-o", str(out))
    assert res.returncode == 0, res.stderr
    assert res.stdout == ""
    doc = json.loads(out.read_text())
    assert doc["job_id"] == job_id
    assert doc["results"]["summary"]["frames_analysed"] == 4  # 2 s at 2 fps
    assert doc["results"]["video"]["duration_ms"] == pytest.approx(2000, abs=100)

    listed = cli("jobs", "--status", "completed")
    assert listed.returncode == 0, listed.stderr
    assert job_id in listed.stdout
    assert cli("jobs", "--status", "pending").stdout.strip() == ""
    late = cli("cancel", job_id)  # a completed job cannot be cancelled: refused, one line
    assert late.returncode == 6
    assert "completed" in _one_error_line(late)


@pytest.mark.ml
def test_failed_job_with_wait_exits_1(live: Services, cli: Cli, tmp_path: Path) -> None:
    """A file that passes the header check but is no video: the worker fails it for good."""
    live.start_worker(*worker_args(concurrency=1))
    sub = cli("submit", str(_noise_mp4(tmp_path / "noise.mp4")), "--wait")
    assert sub.returncode == 1, (sub.stdout, sub.stderr, live.processes.logs("worker"))
    job_id = sub.stdout.splitlines()[0].strip()
    assert f"{job_id}  failed" in sub.stdout
    assert "error=invalid_video" in sub.stdout
    assert cli("status", job_id).returncode == 1
    assert cli("results", job_id).returncode == 3


def test_cancel_pending_job(cli: Cli, tmp_path: Path) -> None:
    """No worker runs, so the job stays pending until cancelled."""
    video = _noise_mp4(tmp_path / "v.mp4")
    sub = cli("submit", str(video), "--pipeline", "noop")
    assert sub.returncode == 0, sub.stderr
    job_id = sub.stdout.strip()
    assert uuid.UUID(job_id)
    assert job_id in cli("jobs", "--status", "pending").stdout

    res = cli("results", job_id)  # not completed yet
    assert res.returncode == 3
    assert "pending" in _one_error_line(res)
    live = cli("delete", job_id)  # a live job is cancelled first, never deleted
    assert live.returncode == 6
    assert "cancel it first" in _one_error_line(live)

    can = cli("cancel", job_id)
    assert can.returncode == 0, can.stderr
    assert f"{job_id}  cancelled" in can.stdout
    st = cli("status", job_id)
    assert st.returncode == 1
    assert "cancelled" in st.stdout
    assert job_id in cli("jobs", "--status", "cancelled").stdout
    again = cli("cancel", job_id)  # cancelling is idempotent
    assert again.returncode == 0, again.stderr
    assert f"{job_id}  cancelled" in again.stdout
    gone = cli("delete", job_id)
    assert gone.returncode == 0, gone.stderr
    assert gone.stdout.strip() == f"deleted {job_id}"
    assert cli("status", job_id).returncode == 3


def test_exit_codes_and_one_line_errors(cli: Cli, tmp_path: Path) -> None:
    """What a script branches on: 3 unknown job, 4 bad key, 5 API down, 2 bad URL, 6 refused."""
    unknown = str(uuid.uuid4())
    by_id: list[tuple[str, ...]] = [("status", unknown), ("results", unknown), ("cancel", unknown)]
    for args in by_id:
        proc = cli(*args)
        assert proc.returncode == 3, (args, proc.stderr)
        assert unknown in _one_error_line(proc)

    video = _noise_mp4(tmp_path / "v.mp4")
    calls: list[tuple[str, ...]] = [("status", unknown), ("jobs",), ("submit", str(video))]
    for bad_key in ("vj_not-a-real-key", ""):
        for args in calls:
            proc = cli(*args, key=bad_key)
            assert proc.returncode == 4, (bad_key, args, proc.stderr)
            _one_error_line(proc)

    down = f"http://127.0.0.1:{free_port()}"  # nothing listens there
    for args in [*calls, ("submit", str(video), "--wait")]:
        proc = cli(*args, url=down)
        assert proc.returncode == 5, (args, proc.stderr)
        assert down in _one_error_line(proc)

    proc = cli("status", unknown, url="http://256.1.1.1:80")  # not a URL httpx accepts
    assert proc.returncode == 2, proc.stderr
    assert "invalid API URL" in _one_error_line(proc)

    text = tmp_path / "notes.txt"
    text.write_text("this is not a video\n" * 100)
    proc = cli("submit", str(text))
    assert proc.returncode == 6, proc.stderr
    assert "mp4" in _one_error_line(proc).lower()
    assert proc.stdout == ""

    proc = cli("status", "not-a-job-id")
    assert proc.returncode == 6, proc.stderr
    _one_error_line(proc)
