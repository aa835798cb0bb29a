"""Metrics as Prometheus scrapes them: `vidjobs api --workers 2`, `vidjobs worker --metrics-port`.

Both endpoints are parsed with ``prometheus_client.parser`` (what it rejects, a Prometheus
server would too). The API's request counts are the sum of its two processes whichever one
answers the scrape (prometheus_client's multiprocess mode, in a directory ``vidjobs api``
makes and removes); the worker's count the jobs it ran, by pipeline, and time the video
pipeline's stages.
"""

from __future__ import annotations

import socket
import time
from pathlib import Path

import httpx
import pytest

from tests.support.db import insert_jobs
from tests.support.metrics import Scrape
from tests.support.processes import Process, Processes, Services, worker_args
from vidjobs.devstack.embedded import free_port
from vidjobs.devstack.synth.video import make_sample_video

pytestmark = [pytest.mark.acceptance, pytest.mark.ml]

_MULTIPROC = "PROMETHEUS_MULTIPROC_DIR"


def _environ(pid: int) -> dict[str, str]:
    raw = Path(f"/proc/{pid}/environ").read_bytes().split(b"\0")
    return dict(x.decode(errors="replace").partition("=")[::2] for x in raw if b"=" in x)


def _children(pid: int) -> list[int]:
    kids = Path(f"/proc/{pid}/task/{pid}/children").read_text().split()
    return [int(k) for k in kids]


def _writers(directory: Path) -> set[str]:
    """The pids that wrote request metrics into the shared directory (``counter_<pid>.db``)."""
    return {p.stem.split("_", 1)[1] for p in directory.glob("counter_*.db")}


def _health_count(base: str) -> float:
    resp = httpx.get(f"{base}/metrics", timeout=10)  # a fresh connection: either process
    assert resp.status_code == 200, resp.text
    m = Scrape.parse(resp.text)
    return m.get("vidjobs_http_requests_total", method="GET", route="/health", status="200") or 0


def _wait_done(
    http: httpx.Client, ids: list[str], worker: Process, within: float = 240
) -> dict[str, str]:
    deadline = time.monotonic() + within
    states: dict[str, str] = {}
    while True:
        assert worker.alive(), worker.text()[-3000:]
        for job_id in ids:
            states[job_id] = http.get(f"/video/status/{job_id}").json()["status"]
        if all(s in ("completed", "failed", "cancelled") for s in states.values()):
            return states
        assert time.monotonic() < deadline, f"jobs still running: {states}"
        time.sleep(0.3)


@pytest.mark.timeout(420)
def test_api_and_worker_metrics_scrape_and_parse(
    live: Services, processes: Processes, database_url: str, tmp_path: Path
) -> None:
    api = live.start_api("--workers", "2", VIDJOBS_API_METRICS_REFRESH_S="0.2")
    base = live.base_url
    (uvicorn_child, *_) = _children(api.pid)
    shared = Path(_environ(uvicorn_child)[_MULTIPROC])
    assert shared.is_dir()
    assert _MULTIPROC not in _environ(api.pid)  # set after start: only the children see it

    # -- the API: requests counted across both processes, whichever answers ---------------
    before = _health_count(base)  # start_api's own /health probes
    sent = 0
    while sent < 20 or len(_writers(shared)) < 2:  # new connections: both processes answer
        assert sent < 400, f"one API process answered all {sent} requests"
        assert httpx.get(f"{base}/health", timeout=10).status_code == 200
        sent += 1
    for _ in range(10):  # each scrape on its own connection, so both processes answer some
        assert _health_count(base) == before + sent

    # -- jobs: a video through yolo_ocr, noop jobs that complete and one that fails --------
    port = free_port()
    worker = live.start_worker(*worker_args(2.0), "--metrics-port", str(port))
    made = live.cli("keys", "create", "--tenant", "acme", "--name", "metrics")
    assert made.returncode == 0, made.stderr
    video = tmp_path / "clip.mp4"
    make_sample_video(video, seconds=2.0, seed=5)
    with httpx.Client(
        base_url=base, headers={"Authorization": f"Bearer {made.stdout.strip()}"}, timeout=60
    ) as http:
        with video.open("rb") as f:
            r = http.post(
                "/video/submit",
                data={"pipeline": "yolo_ocr", "sample_fps": "2"},
                files={"file": ("clip.mp4", f, "video/mp4")},
            )
        assert r.status_code == 202, r.text
        ids = [r.json()["job_id"]]
        # Held 1 s each, longer than the heartbeat interval (0.5 s): heartbeats run meanwhile.
        ids += map(str, insert_jobs(database_url, 3, params={"sleep_s": 1.0}))
        ids += map(str, insert_jobs(database_url, 1, params={"fail": "boom", "permanent": True}))
        states = _wait_done(http, ids, worker)
    assert list(states.values()) == ["completed"] * 4 + ["failed"], states

    # -- the worker's endpoint ------------------------------------------------------------
    w = Scrape.parse(httpx.get(f"http://127.0.0.1:{port}/metrics", timeout=10).text)
    for pipeline, n in (("yolo_ocr", 1), ("noop", 4)):
        assert w.get("vidjobs_worker_jobs_claimed_total", pipeline=pipeline) == n
    assert w.get("vidjobs_worker_jobs_completed_total", pipeline="yolo_ocr") == 1
    assert w.get("vidjobs_worker_jobs_completed_total", pipeline="noop") == 3
    failed = {"pipeline": "noop", "error_kind": "noop_failure"}
    assert w.get("vidjobs_worker_jobs_failed_total", **failed) == 1
    assert w.get("vidjobs_worker_job_duration_seconds_count", pipeline="noop") == 3
    assert (w.get("vidjobs_worker_job_duration_seconds_sum", pipeline="noop") or 0) >= 0.6
    assert w.get("vidjobs_worker_job_duration_seconds_count", pipeline="yolo_ocr") == 1
    assert w.get("vidjobs_worker_job_frames_per_second_count", pipeline="yolo_ocr") == 1
    for stage in ("decode", "detect", "ocr"):
        frames = w.get("vidjobs_worker_stage_seconds_count", pipeline="yolo_ocr", stage=stage)
        assert frames is not None, stage
        assert frames >= 1, stage
        assert (
            w.get("vidjobs_worker_stage_seconds_sum", pipeline="yolo_ocr", stage=stage) or 0
        ) > 0
    assert (w.get("vidjobs_worker_model_load_seconds", pipeline="yolo_ocr") or 0) > 0
    assert w.get("vidjobs_worker_jobs_in_flight") == 0
    assert (w.get("vidjobs_worker_heartbeat_lag_seconds_count") or 0) >= 1  # the noop jobs
    assert w.types["vidjobs_worker_stage_seconds"] == "histogram"
    assert w.types["vidjobs_worker_jobs_claimed"] == "counter"

    # -- the API again: the routes the test used, the queue depth, then the directory gone --
    a = Scrape.parse(httpx.get(f"{base}/metrics", timeout=10).text)
    status_route = {"method": "GET", "route": "/video/status/{job_id}", "status": "200"}
    assert (a.get("vidjobs_http_requests_total", **status_route) or 0) >= len(ids)
    assert a.get("vidjobs_http_requests_total", method="POST", route="/video/submit", status="202")
    assert a.get("vidjobs_database_up") == 1
    assert a.get("vidjobs_jobs", state="running") is not None
    processes.stop(worker)
    processes.stop(api)
    assert api.popen.returncode == 0, api.text()[-3000:]
    assert not shared.exists()  # vidjobs api removed the directory it made


def test_worker_refuses_a_metrics_port_that_is_taken(live: Services) -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        worker = live.start_worker("--no-video", "--metrics-port", str(port))
        assert worker.wait(60) == 1
    assert f"cannot serve metrics on 127.0.0.1:{port}" in worker.text()
    assert "VIDJOBS_WORKER_METRICS_PORT" in worker.text()
